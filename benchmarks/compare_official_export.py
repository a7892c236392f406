"""Export one checkpoint with the official export.py and with yolov7lib; run both ONNX graphs, compare.

    PYTHONPATH=$PWD python benchmarks/compare_official_export.py --official /somewhere/yolov7 \\
        --weights runs/train/cpu/weights/best.pt --source data/shapes/images/val --img 320

Nothing of the official code is part of this project. As in compare_official_val.py (whose helpers this
script uses), a subprocess with `--official-python` builds the official `Model` from the architecture of
`--weights` (or of `--model`, with random weights and BatchNorm statistics), saves an official-format
fp16 checkpoint and runs the official export.py on it twice, on the CPU: `--grid` (the decoded
predictions) and `--grid --end2end --max-wh M` (NMS for onnxruntime). The official export fuses the
model (Conv+BN, RepConv, the implicit layers of IDetect); ours exports `reparameterize` of that very
checkpoint, read through `load_official` (no code from the pickle runs), with `export_onnx`. The
subprocess makes two changes to the official run, not to its graphs: `torch.onnx.export` gets
`dynamo=False` (the default of torch >= 2.9 is the torch.export-based exporter, which needs onnxscript
and is not the exporter export.py was written for), and its TorchScript and CoreML exports, which this
comparison does not use, are skipped.

Both graphs then run in onnxruntime on the same batch: the images of `--source` (sorted by name, at most
`--limit`), letterboxed to `--img` square (no minimum rectangle), RGB, float32 in [0, 1]; without
`--source`, `--limit` smooth random images (`yolov7lib.deploy.probe_images`).

- plain: the official `--grid` output and ours are both (B, N, 5 + nc): xywh in input pixels, then
  sigmoid objectness and class scores, rows in the same order. Compared: the largest difference of the
  scores, of the boxes in pixels and of the boxes relative to (input side + |value|). Tolerance: 1e-4
  for scores and relative box differences (float32 with weights folded in two different ways).
- end2end: the official graph returns one (K, 7) float tensor of rows [image, x0, y0, x1, y1, class,
  score], per image in descending score; ours returns `num_dets` (B, 1), `boxes` (B, max_det, 4) xyxy,
  `scores` (B, max_det) and `classes` (B, max_det), padded, per image in descending score. Both compute
  the confidence as objectness x best class score (objectness alone for one class) and run ONNX
  NonMaxSuppression once per image with the same thresholds (`--conf`, `--iou`, at most `--max-det`).
  Ours is turned into the official rows; per image the kept detections must match one to one (same
  class, boxes within 1e-3 px + 1e-5 relative, scores within 1e-4); the order is reported (near-equal
  scores may swap).

One difference is intended: the offset that keeps classes apart in NMS. The official ONNX-Runtime graph
moves all four coordinates of each box by `class x --max-wh` (640 in the official README), ours by
`class x 4096` (as our and the official PyTorch NMS do). With 640, a box of class c that reaches beyond
about 640 px in both x and y can overlap a box of class c + 1 after the shift (possible from `--img 640`
on), and the official graph may then suppress across classes where ours does not. `--max-wh 4096` makes
the two graphs' NMS the same.

To tell a difference of the NMS graphs from one of the predictions they start from, the script also runs
torchvision's NMS (float32, each graph's class offset) on each graph's own plain output and reports
whether each end2end graph keeps exactly that. Where both do and the end2end detections still differ,
the ~1e-7 rounding between the two plain outputs decided near-tied scores: the greedy NMS then keeps
another box and the difference spreads through the suppressions after it.

Measured here (2-core CPU): a yolov7-tiny-cpu trained 25 epochs on 64 generated images (8 classes), the
32 validation images at 320 px: plain scores within 4.8e-7, boxes within 1.2e-4 px (2.6e-7 relative);
end2end identical sets and order at `--conf 0.25` (1 detection), 0.05 (142) and 0.001 (3,200, 100 per
image), boxes within 6.1e-5 px and scores within 1.3e-7. yolov7 with random weights and BatchNorm
statistics (`--model yolov7`, 80 classes, 4 images at 640 px, `--conf 2e-5`): plain within 1.5e-7
(scores) and 1.5e-4 px, but only 223 of 400 kept detections match: the random network's scores are
nearly input-independent and tied to 1e-7 across thousands of positions, each end2end graph keeps what
NMS keeps of its own plain output, so this is the rounding described above (it exits 1), not a
difference of the exporters.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_official_val import official_command, run_official
from official_checkout import add_official_arguments, check_checkout

from yolov7lib.data.augment import letterbox
from yolov7lib.data.formats import IMG_FORMATS
from yolov7lib.deploy.onnx_export import export_onnx, onnx_session, probe_images
from yolov7lib.engine.weights import load_model
from yolov7lib.ops.nms import CLASS_OFFSET

SCORE_TOL = 1e-4  # plain scores and kept scores, absolute
BOX_REL_TOL = 1e-4  # plain boxes, relative to (side + |value|)
BOX_PX_TOL, BOX_PX_REL = 1e-3, 1e-5  # kept boxes: pixels + relative to |value|

# Runs before RUNNER in the official subprocess: the exporter export.py was written for, and no
# TorchScript (nor, through it, CoreML) export, which the comparison does not read.
EXPORT_PATCH = """
import torch, torch.onnx
_onnx_export = torch.onnx.export
def _legacy_onnx_export(*args, **kwargs):
    kwargs.setdefault("dynamo", False)
    return _onnx_export(*args, **kwargs)
torch.onnx.export = _legacy_onnx_export
def _skip_trace(*args, **kwargs):
    raise RuntimeError("skipped by compare_official_export.py")
torch.jit.trace = _skip_trace
"""

Detection = tuple[int, float, float, float, float, float]  # class, score, x0, y0, x1, y1


def load_batch(folder: Path, img_size: int, limit: int) -> tuple[list[str], np.ndarray]:
    """(file names, (B, 3, img_size, img_size) float32 RGB in [0, 1]) of the first `limit` images of
    `folder` by name, each letterboxed to the full square."""
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix[1:].lower() in IMG_FORMATS)
    paths = paths[:limit]
    if not paths:
        raise SystemExit(f"{folder}: no images")
    batch = []
    for p in paths:
        img = cv2.imread(str(p))
        if img is None:
            raise SystemExit(f"{p}: unreadable image")
        boxed = letterbox(img, img_size, auto=False)[0]
        batch.append(boxed[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0)
    return [p.name for p in paths], np.ascontiguousarray(np.stack(batch))


def plain_differences(theirs: np.ndarray, ours: np.ndarray, side: int) -> dict[str, float]:
    """Largest differences of two (B, N, 5 + nc) prediction tensors: scores (absolute), boxes in pixels
    and boxes relative to (side + |official value|)."""
    if theirs.shape != ours.shape:
        raise ValueError(f"shapes differ: official {theirs.shape}, ours {ours.shape}")
    box = np.abs(theirs[..., :4].astype(np.float64) - ours[..., :4])
    return {
        "scores_abs": float(np.abs(theirs[..., 4:].astype(np.float64) - ours[..., 4:]).max(initial=0.0)),
        "boxes_px": float(box.max(initial=0.0)),
        "boxes_rel": float((box / (side + np.abs(theirs[..., :4]))).max(initial=0.0)),
    }


def official_detections(rows: np.ndarray, batch: int) -> list[list[Detection]]:
    """The official ORT end2end rows (K, 7) [image, x0, y0, x1, y1, class, score] per image, in order."""
    out: list[list[Detection]] = [[] for _ in range(batch)]
    for image, x0, y0, x1, y1, cls, score in np.asarray(rows, dtype=np.float64).reshape(-1, 7):
        out[int(image)].append((int(cls), float(score), float(x0), float(y0), float(x1), float(y1)))
    return out


def our_detections(
    num_dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray
) -> list[list[Detection]]:
    """Our end2end outputs (num_dets, padded boxes, scores, classes) per image, in order."""
    return [
        [(int(classes[b, k]), float(scores[b, k]), *map(float, boxes[b, k])) for k in range(int(n))]
        for b, n in enumerate(np.asarray(num_dets).reshape(-1))
    ]


def nms_of_plain(
    pred: np.ndarray, conf_thres: float, iou_thres: float, max_det: int, class_offset: float
) -> list[list[Detection]]:
    """What an end2end graph should keep from plain predictions (B, N, 5 + nc), by torchvision's NMS in
    float32: confidence objectness x best class (objectness alone for one class), boxes moved by
    `class x class_offset`, descending score, at most `max_det` per image."""
    import torch
    import torchvision

    out = []
    for p in torch.from_numpy(np.asarray(pred, dtype=np.float32)):
        boxes = torch.cat((p[:, :2] - p[:, 2:4] / 2, p[:, :2] + p[:, 2:4] / 2), 1)
        conf, cls = (p[:, 4:5] if p.shape[1] == 6 else p[:, 5:] * p[:, 4:5]).max(1)
        idx = (conf > conf_thres).nonzero().view(-1)
        keep = idx[torchvision.ops.nms(boxes[idx] + cls[idx, None] * class_offset, conf[idx], iou_thres)]
        out.append([(int(cls[i]), float(conf[i]), *map(float, boxes[i])) for i in keep[:max_det]])
    return out


def _close(a: Detection, b: Detection) -> bool:
    if a[0] != b[0] or abs(a[1] - b[1]) > SCORE_TOL:
        return False
    return all(abs(u - v) <= BOX_PX_TOL + BOX_PX_REL * abs(u) for u, v in zip(a[2:], b[2:], strict=True))


def match_image(theirs: list[Detection], ours: list[Detection]) -> dict[str, object]:
    """Match one image's detections one to one (same class, box and score within the tolerances).

    Returns the matched count, the official and our unmatched rows, whether the matched pairs come in
    the same order, and the largest box (px) and score differences of the matched pairs."""
    free = list(range(len(ours)))
    pairs = []
    for i, a in enumerate(theirs):
        j = next((j for j in free if _close(a, ours[j])), None)
        if j is not None:
            free.remove(j)
            pairs.append((i, j))
    matched_theirs = {i for i, _ in pairs}
    box = max((abs(u - v) for i, j in pairs for u, v in zip(theirs[i][2:], ours[j][2:], strict=True)),
              default=0.0)  # fmt: skip
    return {
        "matched": len(pairs),
        "missing": [theirs[i] for i in range(len(theirs)) if i not in matched_theirs],
        "extra": [ours[j] for j in free],
        "same_order": [j for _, j in pairs] == sorted(j for _, j in pairs),
        "box_px": box,
        "score": max((abs(theirs[i][1] - ours[j][1]) for i, j in pairs), default=0.0),
    }


def compare_end2end(theirs: list[list[Detection]], ours: list[list[Detection]]) -> dict[str, object]:
    """All images matched: counts, the images that differ (any unmatched row), those in another order,
    and the largest differences."""
    if len(theirs) != len(ours):
        raise ValueError(f"image counts differ: official {len(theirs)}, ours {len(ours)}")
    result: dict[str, object] = {"official": 0, "ours": 0, "matched": 0, "differing": [], "reordered": [],
                                 "box_px": 0.0, "score": 0.0}  # fmt: skip
    for index, (a, b) in enumerate(zip(theirs, ours, strict=True)):
        m = match_image(a, b)
        result["official"] += len(a)
        result["ours"] += len(b)
        result["matched"] += m["matched"]
        if m["missing"] or m["extra"]:
            result["differing"].append(index)
        elif not m["same_order"]:
            result["reordered"].append(index)
        result["box_px"] = max(result["box_px"], m["box_px"])
        result["score"] = max(result["score"], m["score"])
    return result


def run_official_export(
    command: list[str], root: Path, arguments: list[str], checkpoint: Path, target: Path
) -> None:
    """Run the official export.py (RUNNER preceded by EXPORT_PATCH) and move its ONNX file to `target`."""
    command = [
        *command[:2],
        EXPORT_PATCH + command[2],
        *command[3:],
        "--weights",
        str(checkpoint),
        *arguments,
    ]
    done = run_official(command, root, "the official export.py")
    written = checkpoint.with_suffix(".onnx")
    if not written.is_file():
        raise SystemExit(f"the official export.py wrote no ONNX file:\n{(done.stdout + done.stderr)[-3000:]}")
    written.rename(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_official_arguments(parser)
    parser.add_argument("--weights", help="a yolov7lib or official checkpoint")
    parser.add_argument("--model", help="an architecture with random weights instead (e.g. yolov7)")
    parser.add_argument("--nc", type=int, default=80, help="classes of --model")
    parser.add_argument("--seed", type=int, default=0, help="seed of --model's random weights")
    parser.add_argument("--source", type=Path, help="one folder of images (default: smooth random images)")
    parser.add_argument("--limit", type=int, default=32, help="images in the batch (the first by name)")
    parser.add_argument("--img", type=int, default=640, help="a multiple of the model's stride")
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--iou", type=float, default=0.45)
    parser.add_argument("--max-det", type=int, default=100)
    parser.add_argument("--max-wh", type=int, default=640, help="the official class offset (see docstring)")
    parser.add_argument("--keep", type=Path, help="keep the exports here (default: only on differences)")
    args = parser.parse_args()

    root = check_checkout(args.official, ("export.py", "models/yolo.py", "models/experimental.py"))
    if args.source is not None and not args.source.is_dir():
        raise SystemExit(f"{args.source}: the comparison needs one folder of images")
    if bool(args.weights) == bool(args.model):
        raise SystemExit("give --weights or --model")
    if args.weights:
        model = load_model(args.weights, reparameterize=False)
    else:
        import torch

        from yolov7lib.models import randomize_batchnorm

        torch.manual_seed(args.seed)
        model = randomize_batchnorm(load_model(model=args.model, nc=args.nc, reparameterize=False), args.seed)
    stride = max(int(model.stride.max()), 32)
    if args.img % stride:
        raise SystemExit(f"--img {args.img} is not a multiple of the model's stride {stride}")
    if args.source is None:
        images = probe_images(args.limit, args.img, args.img, args.seed).numpy()
        names = [f"random image {i}" for i in range(args.limit)]
    else:
        names, images = load_batch(args.source, args.img, args.limit)
    batch = len(names)

    tmp = Path(tempfile.mkdtemp(prefix="compare_export_"))
    command, checkpoint = official_command(
        args.official_python, root, "export.py", model, list(model.names), tmp, True
    )
    common = ["--img-size", str(args.img), "--batch-size", str(batch), "--device", "cpu", "--grid"]
    nms = ["--conf-thres", str(args.conf), "--iou-thres", str(args.iou), "--topk-all", str(args.max_det)]
    t0 = time.perf_counter()
    run_official_export(command, root, common, checkpoint, tmp / "official_grid.onnx")
    run_official_export(
        command, root, [*common, "--end2end", "--max-wh", str(args.max_wh), *nms], checkpoint,
        tmp / "official_end2end.onnx",
    )  # fmt: skip
    t_official = time.perf_counter() - t0

    t0 = time.perf_counter()
    deploy = load_model(str(checkpoint), reparameterize=True)
    export_onnx(deploy, tmp / "ours.onnx", args.img, batch)
    export_onnx(deploy, tmp / "ours_end2end.onnx", args.img, batch, end2end=True, conf_thres=args.conf,
                iou_thres=args.iou, max_det=args.max_det)  # fmt: skip
    t_ours = time.perf_counter() - t0

    def run(name: str) -> list[np.ndarray]:
        return onnx_session(tmp / name).run(None, {"images": images})

    theirs_plain, ours_plain = run("official_grid.onnx")[0], run("ours.onnx")[0]
    plain = plain_differences(theirs_plain, ours_plain, args.img)
    theirs_e2e = official_detections(run("official_end2end.onnx")[0], batch)
    ours_e2e = our_detections(*run("ours_end2end.onnx"))
    e2e = compare_end2end(theirs_e2e, ours_e2e)
    nms = (args.conf, args.iou, args.max_det)
    own = {  # each end2end graph against NMS of its own plain graph's output
        "official": not compare_end2end(theirs_e2e, nms_of_plain(theirs_plain, *nms, args.max_wh))[
            "differing"
        ],
        "ours": not compare_end2end(ours_e2e, nms_of_plain(ours_plain, *nms, CLASS_OFFSET))["differing"],
    }

    print(f"batch: {batch} images from {args.source or 'probe_images'}, {args.img}x{args.img}")
    print(
        f"plain: largest difference scores {plain['scores_abs']:.3g}, boxes {plain['boxes_px']:.3g} px "
        f"({plain['boxes_rel']:.3g} relative to side + |value|)"
    )
    print(
        f"end2end: detections official {e2e['official']}, ours {e2e['ours']}, matched {e2e['matched']}; "
        f"images differing {len(e2e['differing'])}, in another order {len(e2e['reordered'])}; largest "
        f"difference boxes {e2e['box_px']:.3g} px, scores {e2e['score']:.3g}"
    )
    print(
        "end2end equal to torchvision NMS of its own plain output: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in own.items())
    )
    print(f"time: official exports {t_official:.1f} s (with start-up), ours {t_ours:.1f} s")
    problems = []
    if plain["scores_abs"] > SCORE_TOL or plain["boxes_rel"] > BOX_REL_TOL:
        problems.append("plain predictions beyond tolerance")
    if e2e["differing"]:
        problems.append(f"end2end detections of images {[names[i] for i in e2e['differing']]}")
        if all(own.values()):
            problems.append("each NMS graph keeps what NMS keeps of its own plain output, so the plain "
                            "outputs' rounding decides near-tied scores (see the docstring)")  # fmt: skip
    if args.keep:
        shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
    if problems:
        raise SystemExit(f"differences: {'; '.join(problems)}; see {args.keep or tmp}")
    shutil.rmtree(tmp)
    print("same predictions and detections within the tolerances")


if __name__ == "__main__":
    main()
