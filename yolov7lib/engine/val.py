"""`yolov7 val`: the evaluation behind the paper's AP columns (Tables 1, 2, 9) and Table 10's settings.

The reference's test protocol: letterboxed rectangular batches (padding 0.5 stride), NMS at confidence
0.001 and IoU 0.65 with multi-label candidates, P, R and mAP computed directly, and, when COCO
annotations of the split exist, a COCO predictions json scored by pycocotools (AP, AP50, AP75, AP_S,
AP_M, AP_L, the six recall numbers, AP per class). Table 10 compares FP16 / FP32 and NMS IoU 0.65 /
0.70: those are `half` and `iou` here. FP16 runs on CUDA only; on the CPU it is refused with a note and
the pass runs in FP32 (the result records which precision was used).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from yolov7lib.engine.evaluator import EvalResult, evaluate, find_coco_annotations
from yolov7lib.engine.runs import create_run_dir, free_path
from yolov7lib.engine.weights import fit_img_size, load_model

__all__ = ["ValOptions", "format_result", "run_val"]

logger = logging.getLogger(__name__)


@dataclass
class ValOptions:
    """The options of `yolov7 val` (defaults: the reference's test.py)."""

    data: str
    weights: str | None = None
    model: str | None = None
    img: int = 640
    batch: int = 32
    conf: float = 0.001
    iou: float = 0.65
    half: bool = False
    task: str = "val"
    reparameterize: bool = True
    save_json: bool = False
    v5_metric: bool = False
    augment: bool = False
    device: str = "cpu"
    workers: int = 0
    project: str = "runs/val"
    name: str = "exp"
    exist_ok: bool = False
    progress: bool = True


def class_category_ids(data: Any, coco_json: Path | None) -> list[int] | None:
    """Class index -> COCO category id: the data config's, else the json's categories in id order
    (for COCO: the 80-to-91 mapping) or, where the json has another number of categories, the one
    named like each class, else None (the class index is the id)."""
    if data.category_ids is not None:
        return list(data.category_ids)
    if coco_json is not None:
        from yolov7lib.data.formats import read_coco_categories

        cats = read_coco_categories(coco_json)
        if len(cats) == data.nc:
            return [int(c["id"]) for c in cats]
        named: dict[str, list[int]] = {}
        for c in cats:
            named.setdefault(str(c.get("name")), []).append(int(c["id"]))
        if all(len(named.get(n, ())) == 1 for n in data.names):
            return [named[n][0] for n in data.names]
    if data.nc == 80 and Path(data.path).stem.startswith("coco"):
        from yolov7lib.ops.coco import COCO80_TO_COCO91

        return list(COCO80_TO_COCO91)  # COCO images listed in YOLO format: the reference's mapping
    return None


def coco_ground_truth(data: Any, split: str) -> tuple[Path | None, list[int] | None]:
    """The COCO annotations a split is scored against (named by the data config, else found beside the
    split, as the official coco.yaml names none) and the class -> category id mapping that goes with
    them (`class_category_ids`); used by `yolov7 val` and by the trainer's final validation alike.
    A json whose categories cannot be matched to the classes is not used (pycocotools is not run)."""
    coco_json = data.json.get(split) or find_coco_annotations(data.splits[split])
    category_ids = class_category_ids(data, coco_json)
    if coco_json is not None and category_ids is None:
        from yolov7lib.data.formats import read_coco_categories

        cats = read_coco_categories(coco_json)
        known = [str(c.get("name")) for c in cats]
        missing = [n for n in data.names if n not in known]
        logger.warning(
            "%s has %d categories for %d classes and %s: the classes cannot be mapped to its category ids, "
            "so pycocotools is not run (direct metrics only)",
            coco_json, len(cats), data.nc,
            f"no category named {missing[0]!r}" if missing else "class names shared by several categories",
        )  # fmt: skip
        return None, None
    return coco_json, category_ids


def run_val(options: ValOptions) -> tuple[EvalResult, dict[str, Any]]:
    """Evaluate a model on a split; return the result and the metrics record written to
    `<run dir>/metrics.json` (with `predictions.json` beside it when asked or needed by pycocotools)."""
    from yolov7lib.data import create_dataloader, load_data_config
    from yolov7lib.engine.distributed import select_device

    opts = options
    data = load_data_config(opts.data)
    if opts.task not in data.splits:
        raise ValueError(f"{opts.data} has no {opts.task!r} split (it has {', '.join(data.splits)})")
    device = select_device(opts.device)
    model = load_model(
        opts.weights, opts.model, nc=data.nc, device=device, reparameterize=opts.reparameterize
    )
    if model.head.nc != data.nc:
        raise ValueError(f"the model predicts {model.head.nc} classes but {opts.data} has {data.nc}")
    differ = [c for c, (a, b) in enumerate(zip(model.names, data.names, strict=True)) if a != b]
    if opts.weights and differ and model.names != [str(c) for c in range(data.nc)]:  # not unnamed
        c = differ[0]
        note = (
            f"yolov7 val: warning: the weights' class names differ from {opts.data}'s ({len(differ)} of "
            f"{data.nc}; class {c} is {model.names[c]!r} in the weights but {data.names[c]!r} in the "
            "data); classes are scored by index and reported with the data's names"
        )
        print(note, file=sys.stderr)
    half = opts.half and device.type == "cuda"
    if opts.half and not half:
        print("yolov7 val: --half needs CUDA (FP16 on the CPU is not Table 10's setting); running FP32",
              file=sys.stderr)  # fmt: skip
    img, grid = fit_img_size(opts.img, model)

    loader, _ = create_dataloader(
        data.splits[opts.task], img, opts.batch, grid, rect=True, pad=0.5, workers=opts.workers,
        nc=data.nc, prefix=f"{opts.task}: ", progress=opts.progress,
    )  # fmt: skip
    # the run folder is made once the model and the images are known good: a failed run leaves none
    run_dir = create_run_dir(opts.project, opts.name, opts.exist_ok)
    coco_json, category_ids = coco_ground_truth(data, opts.task)
    # with --exist-ok the folder may hold earlier results: new files take free names, never theirs
    predictions = free_path(run_dir / "predictions.json") if (opts.save_json or coco_json) else None
    names = list(data.names)
    result = evaluate(
        model, loader, names, conf_thres=opts.conf, iou_thres=opts.iou, half=half,
        coco_json=coco_json, category_ids=category_ids, save_json=predictions, progress=opts.progress,
        v5_metric=opts.v5_metric, augment=opts.augment,
    )  # fmt: skip
    record = {
        "weights": opts.weights,
        "model": opts.model or model.cfg.get("name"),
        "data": str(opts.data),
        "task": opts.task,
        "img": img,
        "batch": opts.batch,
        "conf": opts.conf,
        "iou": opts.iou,
        "half": half,
        "reparameterized": opts.reparameterize,
        "v5_metric": opts.v5_metric,
        "augment": opts.augment,
        "device": str(device),
        "coco_annotations": str(coco_json) if coco_json else None,
        **{k: v for k, v in result.to_dict().items() if k != "predictions_json"},
        "predictions": str(predictions) if predictions else None,
        "run_dir": str(run_dir),
    }
    free_path(run_dir / "metrics.json").write_text(json.dumps(record, indent=2))
    return result, record


def format_result(record: dict[str, Any]) -> str:
    """The reference's per-class table (P, R, mAP@.5, mAP@.5:.95), then the COCO numbers when scored."""
    head = f"{'Class':>14s}{'Images':>9s}{'Labels':>9s}{'P':>9s}{'R':>9s}{'mAP@.5':>9s}{'mAP@.5:.95':>12s}"
    rows = [
        head,
        f"{'all':>14s}{record['images']:>9d}{record['labels']:>9d}{record['precision']:>9.3f}"
        f"{record['recall']:>9.3f}{record['map50']:>9.3f}{record['map']:>12.3f}",
    ]
    for c in record["per_class"]:
        rows.append(
            f"{c['name'][:14]:>14s}{record['images']:>9d}{c['labels']:>9d}{c['precision']:>9.3f}"
            f"{c['recall']:>9.3f}{c['ap50']:>9.3f}{c['ap']:>12.3f}"
        )
    if record.get("augment"):
        rows.append("with test-time augmentation (--augment: scales 1, 0.83 flipped, 0.67)")
    if record.get("v5_metric"):
        rows.append("mAP above: YOLOv5's AP, integrated up to recall 1 (--v5-metric)")
    speed = record.get("speed_ms", {})
    if speed:
        rows.append(
            f"Speed: {speed.get('inference', 0):.1f} ms inference, "
            f"{speed.get('nms', 0):.1f} ms NMS per image "
            f"at {record['img']}x{record['img']} (batch {record['batch']}, "
            f"{'FP16' if record['half'] else 'FP32'}, {record['device']})"
        )
    coco = record.get("coco")
    if coco:
        from yolov7lib.ops.coco_eval import STAT_NAMES

        rows.append("pycocotools (" + str(record.get("coco_annotations")) + "):")
        rows += [f"  {name:<10s} {coco[name]:.4f}" for name in STAT_NAMES]
        per_class = record.get("coco_per_class") or {}
        if per_class:
            rows.append("  AP per class: " + ", ".join(f"{k} {v:.3f}" for k, v in per_class.items()))
    else:
        rows.append(
            "no COCO annotations for this split (annotations/instances_<split>.json beside its list or image "
            "folder, or <split>_json in the data.yaml): pycocotools not run (direct metrics above)"
        )
    rows.append(f"results in {record['run_dir']}")
    return "\n".join(rows)


def options_from_namespace(values: dict[str, Any]) -> ValOptions:
    """ValOptions from the CLI's parsed arguments (unknown keys ignored, None leaves the default)."""
    known = {f.name for f in fields(ValOptions)}
    return ValOptions(**{k: v for k, v in values.items() if k in known and v is not None})
