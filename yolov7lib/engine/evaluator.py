"""Evaluation on a labelled split, the reference's way (its test.py): letterboxed rectangular batches,
NMS at conf 0.001 / IoU 0.65, P, R, mAP@0.5 and mAP@0.5:0.95 computed directly, and (when COCO
annotations of the split are known) a COCO-format predictions json scored by pycocotools.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from yolov7lib.engine.distributed import synchronize
from yolov7lib.engine.weights import model_grid
from yolov7lib.ops.boxes import scale_boxes, xywh2xyxy
from yolov7lib.ops.coco import detections_to_coco, evaluate_pycocotools, image_id_from_path
from yolov7lib.ops.metrics import DetectionMetrics
from yolov7lib.ops.nms import non_max_suppression

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """What one evaluation pass measured. COCO fields are None without COCO annotations."""

    precision: float
    recall: float
    map50: float
    map: float
    images: int
    labels: int
    per_class: list[dict[str, Any]] = field(default_factory=list)
    coco: dict[str, float] | None = None
    coco_per_class: dict[str, float] | None = None  # class name -> pycocotools AP@0.5:0.95
    predictions_json: str | None = None
    speed_ms: dict[str, float] = field(default_factory=dict)

    def fitness(self) -> float:
        """The reference's checkpoint-selection score: 0.1 x mAP@0.5 + 0.9 x mAP@0.5:0.95."""
        return 0.1 * self.map50 + 0.9 * self.map

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_coco_annotations(split_sources: list[Path]) -> Path | None:
    """The COCO json of a YOLO split, where the reference keeps it: annotations/instances_<split>.json."""
    for src in split_sources:
        src = Path(src)
        if src.suffix == ".json":
            return src
        stem = src.stem if src.suffix == ".txt" else src.name  # val2017.txt or images/val2017
        for root in (src.parent, src.parent.parent):
            candidate = root / "annotations" / f"instances_{stem}.json"
            if candidate.is_file():
                return candidate
    return None


def _json_images(coco_json: Path) -> tuple[dict[str, Any], dict[Any, tuple[int, int]]]:
    """Keys -> COCO image id: every trailing part of each json file name (`camA/0.png`, `0.png`) and its
    stem, so predictions can be keyed the way the json is (a key that several images share is left
    out); and image id -> (width, height) as the json gives them (where it gives both)."""
    images = json.loads(Path(coco_json).read_text())["images"]
    ids: dict[str, Any] = {}
    shared: set[str] = set()
    for img in images:
        parts = PurePosixPath(str(img["file_name"]).replace("\\", "/")).parts
        keys = ["/".join(parts[-k:]) for k in range(1, len(parts) + 1)] + [Path(parts[-1]).stem]
        for key in keys:
            if ids.setdefault(key, img["id"]) != img["id"]:
                shared.add(key)
    sizes = {
        im["id"]: (int(im["width"]), int(im["height"]))
        for im in images
        if im.get("width") and im.get("height")
    }
    return {k: v for k, v in ids.items() if k not in shared}, sizes


def _coco_image_id(ids: dict[str, Any], path: str | Path) -> Any:
    """The COCO id of an image file: the json's entry with the longest matching path tail, else its stem's,
    else the stem itself (as an int where it is a number: the reference's test.py)."""
    parts = Path(path).parts
    for k in range(len(parts), 0, -1):
        key = "/".join(parts[-k:])
        if key in ids:
            return ids[key]
    return ids.get(Path(path).stem, image_id_from_path(path))


TTA_PASSES = ((1.0, False), (0.83, True), (0.67, False))
"""Test-time augmentation's passes, (scale, flipped left-right), as the reference's augmented inference."""


def augmented_forward(model: nn.Module, imgs: torch.Tensor, grid: int = 32) -> torch.Tensor:
    """Test-time augmentation (the reference's test.py --augment): the batch at scales 1, 0.83 (flipped
    left-right) and 0.67, each resized bilinearly and padded right and bottom to a multiple of `grid` with
    grey 0.447; each pass's boxes are scaled back and unflipped into the input's pixels and all of them
    concatenated (n1 + n2 + n3 candidates per image) for one NMS."""
    height, width = imgs.shape[2:]
    outputs = []
    for scale, flip in TTA_PASSES:
        x = imgs.flip(3) if flip else imgs
        if scale != 1:
            size = int(height * scale), int(width * scale)
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
            padded = [math.ceil(side * scale / grid) * grid for side in (height, width)]
            x = torch.nn.functional.pad(x, [0, padded[1] - size[1], 0, padded[0] - size[0]], value=0.447)
        y = model(x)[0].clone()
        y[..., :4] /= scale
        if flip:
            y[..., 0] = width - y[..., 0]
        outputs.append(y)
    return torch.cat(outputs, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataloader: torch.utils.data.DataLoader,
    names: list[str],
    conf_thres: float = 0.001,
    iou_thres: float = 0.65,
    half: bool = False,
    coco_json: str | Path | None = None,
    category_ids: list[int] | None = None,
    save_json: str | Path | None = None,
    progress: bool = True,
    max_det: int = 300,
    v5_metric: bool = False,
    augment: bool = False,
) -> EvalResult:
    """Evaluate `model` (eval mode, returns (decoded, raw)) on `dataloader` (rect batches, pad 0.5).

    `category_ids[c]` maps class c to the COCO category id used in the predictions json (for COCO,
    the 80-to-91 mapping); without it the class index is the id. pycocotools runs when `coco_json`
    is given; the predictions are written to `save_json` (default: next to nothing, kept in memory).
    `v5_metric` integrates AP up to recall 1 (the reference's test.py --v5-metric; `ops.compute_ap`).
    `augment` runs test-time augmentation (`augmented_forward`).
    """
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    half = half and device.type == "cuda"
    caller, was_training = model, model.training
    model.eval()
    if half:  # a float16 copy: the caller's weights are not rounded to float16 for good
        model = copy.deepcopy(model).half()
    nc = len(names)
    metrics = DetectionMetrics(nc, v5_metric=v5_metric)
    ids, json_sizes = _json_images(Path(coco_json)) if coco_json else ({}, {})
    known = set(ids.values())
    not_in_json: list[str] = []
    resized: list[str] = []  # images whose size differs from the json's: predictions go to its frame
    records: list[dict[str, Any]] = []
    image_ids: list[Any] = []
    n_labels = 0
    t_infer = t_nms = 0.0
    bar = tqdm(dataloader, desc="val", disable=not progress, leave=False)
    try:
        for imgs, targets, paths, shapes in bar:
            if shapes[0] is None:
                raise ValueError(
                    "evaluate needs batches that keep each image's original shape (shapes[i] = "
                    "((h0, w0), ratio_pad)); this loader's are None, as augmented training batches' "
                    "are: build it without augment=True, e.g. rect=True, pad=0.5"
                )
            imgs = imgs.to(device, non_blocking=True)
            imgs = imgs.to(torch.float16 if half else dtype) / 255.0
            targets = targets.to(device)
            _, _, height, width = imgs.shape
            synchronize(device)  # the clock reads the end of the work queued on an asynchronous device
            t0 = time.perf_counter()
            pred = augmented_forward(model, imgs, model_grid(model)) if augment else model(imgs)[0]
            synchronize(device)
            t1 = time.perf_counter()
            dets = non_max_suppression(pred.float(), conf_thres, iou_thres, multi_label=True, max_det=max_det)
            synchronize(device)
            t_infer += t1 - t0
            t_nms += time.perf_counter() - t1
            scale = torch.tensor([width, height, width, height], device=device, dtype=targets.dtype)
            for si, det in enumerate(dets):
                labels = targets[targets[:, 0] == si, 1:]
                n_labels += len(labels)
                shape0, ratio_pad = shapes[si]
                native = det.clone()
                native[:, :4] = scale_boxes((height, width), native[:, :4], shape0, ratio_pad)
                boxes = scale_boxes((height, width), xywh2xyxy(labels[:, 1:5] * scale), shape0, ratio_pad)
                metrics.update(native, torch.cat([labels[:, :1], boxes], 1))
                if coco_json or save_json:
                    image_id = _coco_image_id(ids, paths[si])
                    if coco_json and image_id not in known:  # pycocotools cannot score it
                        not_in_json.append(str(paths[si]))
                        continue
                    size = json_sizes.get(image_id)
                    if size is not None and size != (int(shape0[1]), int(shape0[0])):
                        resized.append(
                            f"{paths[si]}: {shape0[1]}x{shape0[0]} on disk, {size[0]}x{size[1]} in"
                        )
                        native = native.clone()
                        native[:, [0, 2]] *= size[0] / shape0[1]
                        native[:, [1, 3]] *= size[1] / shape0[0]
                    image_ids.append(image_id)
                    records += detections_to_coco(native, image_id, category_ids)
    finally:  # the caller's model as it was, also when the loop fails
        caller.train(was_training)

    if not_in_json:
        logger.warning(
            "%d of the %d images evaluated are not in %s (e.g. %s): left out of the predictions json and "
            "the pycocotools scores (the direct metrics include them)",
            len(not_in_json), metrics.seen, coco_json, not_in_json[0],
        )  # fmt: skip
    if resized:
        logger.warning(
            "%d of the %d images evaluated differ in size from %s's width and height (e.g. %s it): their "
            "boxes there are read relative to the json's size and their predictions scaled to it",
            len(resized), metrics.seen, coco_json, resized[0],
        )  # fmt: skip
    m = metrics.compute()
    if len(m.nt) > nc:
        raise ValueError(f"the data has labels of class {len(m.nt) - 1} but names lists {nc} classes")
    per_class = [
        {
            "class": int(c),
            "name": names[int(c)],
            "labels": int(m.nt[int(c)]),
            "precision": float(p),
            "recall": float(r),
            "ap50": float(a50),
            "ap": float(a),
        }
        for c, p, r, a50, a in zip(m.classes, m.p, m.r, m.ap50, m.ap, strict=True)
    ]
    seen = max(m.seen, 1)
    result = EvalResult(
        precision=m.mp,
        recall=m.mr,
        map50=m.map50,
        map=m.map,
        images=m.seen,
        labels=n_labels,
        per_class=per_class,
        speed_ms={"inference": 1e3 * t_infer / seen, "nms": 1e3 * t_nms / seen},
    )
    if save_json:
        Path(save_json).parent.mkdir(parents=True, exist_ok=True)
        Path(save_json).write_text(json.dumps(records))
        result.predictions_json = str(save_json)
    if coco_json:
        if progress:  # pycocotools prints nothing here (its output is captured) and takes minutes on COCO
            logger.info(
                "pycocotools: scoring %d predictions of %d images against %s ...",
                len(records), len(set(image_ids)), coco_json,
            )  # fmt: skip
        # scored on the evaluated images only (the json may list more, e.g. images skipped as corrupt)
        coco = evaluate_pycocotools(Path(coco_json), records, img_ids=image_ids)
        result.coco = coco.as_dict()
        class_of = {cat: c for c, cat in enumerate(category_ids)} if category_ids else None
        result.coco_per_class = {}
        for cat, ap in coco.per_class_ap.items():
            c = class_of.get(cat) if class_of is not None else cat
            if isinstance(c, int) and 0 <= c < nc and ap >= 0:
                result.coco_per_class[names[c]] = ap
    return result
