"""Run the official detect.py and `yolov7 detect` on one checkpoint and image folder; compare every txt row.

    PYTHONPATH=$PWD python benchmarks/compare_official_detect.py --official /somewhere/yolov7 \\
        --weights runs/train/cpu/weights/best.pt --source data/shapes/images/val --img 320

Nothing of the official code is part of this project. As in compare_official_val.py (whose helpers this
script uses), a subprocess with `--official-python` builds the official `Model` from the architecture of
`--weights`, loads its weights, saves an official-format fp16 checkpoint and runs the official detect.py
on it (`--save-txt --save-conf --nosave --no-trace`, on the CPU); our side runs `run_detect` on that very
checkpoint, read through `load_official` (no code from the pickle runs), with `save_txt` and `save_conf`.
Both graphs are the training graph by default (the official `fuse()` switched off, ours without
re-parameterization); `--fuse` fuses both, and scores then move in their last digits (see
compare_official_val.py).

The script compares, per image, the rows of `labels/<stem>.txt` (class, x, y, w, h, conf, normalised to
the original image) as numbers. Three differences of the two detect programs are intended, and the
comparison turns our rows into the official ones through them before comparing:

- order: the official detect.py writes an image's detections from the lowest confidence to the highest
  (it walks them reversed, so that the best box is drawn last); ours writes them as NMS returns them,
  highest first, as in our predictions.json.
- padding: the letterbox pads the top (left) with the rounded-down half of an odd padding; the official
  detect.py maps boxes back through the unrounded half (`scale_coords` recomputes gain and padding from
  the two shapes), which puts them 0.5 / gain pixels too far up (left); ours maps them through the rows
  really padded (see `yolov7lib.engine.detect.preprocess`).
- rounding: the official detect.py rounds the corners to whole pixels before it writes them; ours writes
  the corners it computed (6 decimals of the normalised values).

So each corner of our rows is taken back into the letterboxed frame through our mapping and out again
the official way (half padding, gain from the shapes, clipped, rounded to whole pixels); where ours
clipped a corner to the edge, or its 6 decimals leave it at a half pixel, both roundings are allowed.
The official corners must fall within those bounds, classes must be equal and confidences agree to the
official `%g` (6 significant digits) plus our 5 decimals, row for row. Measured on a yolov7-tiny-cpu
trained 25 epochs on 64 generated images (32 validation images of 193 to 320 px, `--conf 0.001`): all
rows identical at `--img` 160, 320 and 640, with `--agnostic` and with `--fuse`. The script also prints
the largest difference between the rows as written (order aside), which is what the conventions above
amount to (about 0.005 of the image there).

Other settings must match for a comparison: `--img` a multiple of the model's stride (the official
detect.py rounds it up, ours does not), and the images in one flat folder (the official loader does not
recurse into sub-folders; ours does). NMS is the same on both sides: confidence and IoU thresholds as
given, best class per box, at most 300 boxes, `--agnostic` for both.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_official_val import official_command, run_official
from official_checkout import add_official_arguments, check_checkout

from yolov7lib.data.formats import IMG_FORMATS
from yolov7lib.engine.detect import DetectOptions, preprocess, run_detect
from yolov7lib.engine.weights import load_model
from yolov7lib.ops.boxes import scale_boxes, xywhn2xyxy

Row = tuple[float, ...]
OUR_CONF_STEP = 1e-5  # ours writes confidences with 5 decimals


def read_rows(path: Path) -> list[Row]:
    """The rows of a YOLO txt file (`class x y w h [conf]`) as numbers, in file order; empty lines skipped."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (5, 6):
            raise ValueError(f"{path}:{number}: expected 5 or 6 numbers, got {line!r}")
        rows.append(tuple(float(f) for f in fields))
    return rows


def read_labels(folder: Path) -> dict[str, list[Row]]:
    """`labels/*.txt` of a run: file stem -> rows (no folder: no detections anywhere)."""
    return {p.stem: read_rows(p) for p in sorted(folder.glob("*.txt"))} if folder.is_dir() else {}


def g_tolerance(value: float) -> float:
    """Half a unit in the last place of `%g` (6 significant digits) of `value`."""
    return 0.0 if value == 0 else 0.5 * 10 ** (math.floor(math.log10(abs(value))) - 5)


def official_corner_bounds(
    rows: list[Row], shape: tuple[int, int], img_size: int, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lowest, highest) whole-pixel corners (n, 4) that the official detect.py can write for our rows of
    an image of `shape` (h, w), lowest confidence first (see the module docstring).

    Each corner of ours (known to our 6 decimals) goes back into the letterboxed frame through our
    mapping and out through the official one (half padding, gain from the shapes), clipped and rounded.
    A corner that ours clipped to the image edge may lie anywhere beyond it, and a corner known only to
    our decimals may round either way at a half pixel: the bounds cover both."""
    if not rows:
        return torch.zeros((0, 4)), torch.zeros((0, 4))
    h, w = shape
    x, (ratio, pad) = preprocess(np.zeros((h, w, 3), np.uint8), img_size, stride)
    corners = xywhn2xyxy(torch.tensor(rows, dtype=torch.float64)[:, 1:5], w=w, h=h).flip(0)
    size = torch.tensor([w, h, w, h], dtype=torch.float64)
    eps = 1e-6 * size  # the precision of our 6 decimals
    low = torch.where(corners <= eps, -1e9, corners - eps)
    high = torch.where(corners >= size - eps, 1e9, corners + eps)
    offset = torch.tensor([*pad, *pad], dtype=torch.float64)
    bounds = [scale_boxes(tuple(x.shape[2:]), c * ratio[0] + offset, shape).round() for c in (low, high)]
    return bounds[0], bounds[1]


def compare_image(
    theirs: list[Row], ours: list[Row], shape: tuple[int, int], img_size: int, stride: int
) -> tuple[bool, float, float]:
    """(whether the official rows are what the official detect.py writes for our rows, the largest corner
    difference in pixels beyond `official_corner_bounds`, the largest confidence difference) for one
    image, row by row in order. Classes, row counts and row lengths must be equal; confidences may differ
    by half the official `%g` step plus half our 5-decimal step."""
    if len(theirs) != len(ours) or any(len(a) != len(b) for a, b in zip(theirs, ours, strict=False)):
        return False, math.inf, math.inf
    if not theirs:
        return True, 0.0, 0.0
    low, high = official_corner_bounds(ours, shape, img_size, stride)
    h, w = shape
    corners = xywhn2xyxy(torch.tensor(theirs, dtype=torch.float64)[:, 1:5], w=w, h=h)
    box = float((low - corners).clamp(min=0).add((corners - high).clamp(min=0)).max())
    same = box <= 0.01 and all(a[0] == b[0] for a, b in zip(theirs, ours[::-1], strict=True))
    conf = 0.0
    for a, b in zip(theirs, ours[::-1], strict=True):
        if len(a) == 6:
            conf = max(conf, abs(a[5] - b[5]))
            same &= abs(a[5] - b[5]) <= g_tolerance(a[5]) + OUR_CONF_STEP / 2 + 1e-9
    return same, box, conf


def largest_difference(theirs: list[Row], ours: list[Row]) -> float:
    """The largest difference of any number between two equally long row lists, row by row."""
    return max((abs(u - v) for a, b in zip(theirs, ours, strict=True) for u, v in zip(a, b, strict=True)),
               default=0.0)  # fmt: skip


def compare_runs(
    theirs: dict[str, list[Row]], ours: dict[str, list[Row]], shapes: dict[str, tuple[int, int]],
    img_size: int, stride: int,
) -> dict[str, Any]:  # fmt: skip
    """Every image of `shapes` (stem -> (h, w)) compared: counts, the largest differences and the stems
    that differ. An image without a txt file has no detections."""
    result: dict[str, Any] = {"images": len(shapes), "identical": 0, "rows": 0, "box_px": 0.0, "conf": 0.0,
                              "as_written": 0.0, "differing": []}  # fmt: skip
    for stem, shape in sorted(shapes.items()):
        a, b = theirs.get(stem, []), ours.get(stem, [])
        result["rows"] += len(a)
        same, box, conf = compare_image(a, b, shape, img_size, stride)
        result["identical"] += same
        if not same:
            result["differing"].append(stem)
        if len(a) == len(b):
            result["box_px"] = max(result["box_px"], box)
            result["conf"] = max(result["conf"], conf)
            result["as_written"] = max(result["as_written"], largest_difference(a, b[::-1]))
    return result


def image_shapes(folder: Path) -> dict[str, tuple[int, int]]:
    """stem -> (h, w) of each image directly in `folder` (the images both detect programs read)."""
    shapes = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix[1:].lower() in IMG_FORMATS:
            img = cv2.imread(str(p))
            if img is None:
                raise SystemExit(f"{p}: unreadable image; the comparison needs readable images only")
            if p.stem in shapes:
                raise SystemExit(f"{p}: two images named {p.stem}; their txt files would collide")
            shapes[p.stem] = img.shape[:2]
    if not shapes:
        raise SystemExit(f"{folder}: no images")
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_official_arguments(parser)
    parser.add_argument("--weights", required=True, help="a yolov7lib or official checkpoint")
    parser.add_argument("--source", type=Path, required=True, help="one folder of images")
    parser.add_argument("--img", type=int, default=640, help="a multiple of the model's stride")
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--iou", type=float, default=0.45)
    parser.add_argument("--agnostic", action="store_true", help="class-agnostic NMS on both sides")
    parser.add_argument(
        "--fuse", action="store_true", help="fuse on both sides (official fuse(), ours reparameterize)"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep both runs' outputs here (default: only on differences)"
    )
    args = parser.parse_args()

    root = check_checkout(args.official, ("detect.py", "models/yolo.py"))
    if not args.source.is_dir():
        raise SystemExit(f"{args.source}: the comparison needs one folder of images")
    shapes = image_shapes(args.source)
    model = load_model(args.weights, reparameterize=False)
    stride = max(int(model.stride.max()), 32)
    if args.img % stride:
        raise SystemExit(f"--img {args.img} is not a multiple of the model's stride {stride}")

    tmp = Path(tempfile.mkdtemp(prefix="compare_detect_"))
    command, checkpoint = official_command(
        args.official_python, root, "detect.py", model, list(model.names), tmp, args.fuse
    )
    command += [
        "--weights", str(checkpoint), "--source", str(args.source.resolve()), "--img-size", str(args.img),
        "--conf-thres", str(args.conf), "--iou-thres", str(args.iou), "--device", "cpu", "--save-txt",
        "--save-conf", "--nosave", "--no-trace", "--project", str(tmp / "official"), "--name", "exp",
        "--exist-ok", *(["--agnostic-nms"] if args.agnostic else []),
    ]  # fmt: skip
    t0 = time.perf_counter()
    run_official(command, root, f"the official detect.py (outputs in {tmp})")
    t_official = time.perf_counter() - t0

    t0 = time.perf_counter()
    options = DetectOptions(
        source=str(args.source), weights=str(checkpoint), img=args.img, conf=args.conf, iou=args.iou,
        agnostic=args.agnostic, save_txt=True, save_conf=True, nosave=True, project=str(tmp / "ours"),
        name="exp", progress=False,
    )  # fmt: skip
    report = run_detect(options, load_model(str(checkpoint), reparameterize=args.fuse))
    t_ours = time.perf_counter() - t0
    if report.skipped:
        raise SystemExit(f"yolov7 detect skipped inputs: {report.skipped}")

    result = compare_runs(
        read_labels(tmp / "official" / "exp" / "labels"), read_labels(Path(report.run_dir) / "labels"),
        shapes, args.img, stride,
    )  # fmt: skip
    print(f"images compared: {result['images']}; identical: {result['identical']}")
    print(f"rows (official detect.py): {result['rows']}; ours: {report.detections}")
    print(
        f"largest difference: corners {result['box_px']:.3g} px beyond the official rounding of ours, "
        f"confidences {result['conf']:.3g}"
    )
    print(f"largest difference of the rows as written (order aside): {result['as_written']:.3g}")
    print(f"time: official {t_official:.1f} s (with its start-up), ours {t_ours:.1f} s")
    if args.keep:
        shutil.copytree(tmp, args.keep, dirs_exist_ok=True)
    if result["differing"] and not args.keep:
        raise SystemExit(
            f"{len(result['differing'])} images differ: {', '.join(result['differing'])}; see {tmp}"
        )
    shutil.rmtree(tmp)
    if result["differing"]:
        raise SystemExit(f"{len(result['differing'])} images differ: {', '.join(result['differing'])}")
    print("identical detections")


if __name__ == "__main__":
    main()
