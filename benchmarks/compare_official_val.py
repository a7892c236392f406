"""Run the official test.py and `yolov7 val` on one checkpoint and data split; compare detections, metrics.

    git clone https://github.com/WongKinYiu/yolov7 /somewhere/yolov7   # and install its requirements.txt
    PYTHONPATH=$PWD python benchmarks/compare_official_val.py --official /somewhere/yolov7 \\
        --weights runs/train/cpu/weights/best.pt --data data/shapes/data.yaml --img 320

Nothing of the official code is part of this project. The official side runs in a subprocess (with
`--official-python`, e.g. a virtual environment holding the official requirements; default: this
interpreter) inside the checkout: it builds the official `Model` from the architecture of `--weights`,
loads its weights, saves the checkpoint as the official train.py saves released weights (a pickle of its
own classes, fp16, no gradients) and runs the official test.py on it with the data split given as
symbolic links in a scratch folder (the official loader writes a label cache next to the labels; this
keeps it out of your data folder). Our side evaluates that very checkpoint with `yolov7 val`, reading it
through `load_official`, which runs no code from the pickle. The script prints both metric tables and
compares every detection (the COCO-style predictions JSON both write) and every printed metric.

Settings (defaults: identical results expected, and measured):
- `--batch 1` (default): the reference's rectangular batches give each batch the padded shape of its
  images' aspect ratios, ordered with numpy's default argsort, which is not stable; where images of equal
  ratio straddle a batch boundary the official order is implementation-defined and yolov7lib's (stable)
  can put an image in the neighbouring batch, with a different padding. With one image per batch there
  is no boundary.
- the training graph on both sides (default): the official `fuse()` is switched off, and ours runs with
  `--no-reparameterize`. With `--fuse` both fuse (official `fuse()`, our `reparameterize`): the fused
  weights agree to about 3e-7 relative, which moves scores in their last digits and can reorder
  near-equal detections, so the metrics then agree to about 1e-3 rather than exactly.

The official torch.load needs `weights_only=False` under torch >= 2.6; the subprocess sets
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for the checkpoint this script has just written itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_checkout import add_official_arguments, check_checkout

from yolov7lib.data.formats import img2label_path, load_data_config
from yolov7lib.engine.val import ValOptions, class_category_ids, run_val
from yolov7lib.engine.weights import load_model

# Runs inside the official checkout: build the model, save the official checkpoint, run the official
# script (test.py here, detect.py for compare_official_detect.py) with the arguments after the first six.
RUNNER = """
import json, os, runpy, sys
import numpy as np
import torch
if not hasattr(np, "trapz"):  # numpy 2 renamed it; the official metrics call the old name
    np.trapz = np.trapezoid
root, script, spec, weights, checkpoint, fuse = sys.argv[1:7]
sys.argv = [script] + sys.argv[7:]
sys.path.insert(0, root)
import models.yolo as yolo
spec = json.loads(open(spec).read())
model = yolo.Model(spec["cfg"], ch=3, nc=spec["nc"])
model.load_state_dict(torch.load(weights, weights_only=True))
model.names = spec["names"]
model.requires_grad_(False)
torch.save({"model": model.half(), "optimizer": None, "training_results": None, "epoch": -1}, checkpoint)
if fuse == "0":
    yolo.Model.fuse = lambda self: self  # evaluate the training graph as it is
runpy.run_path(os.path.join(root, script), run_name="__main__")
"""

ROW = re.compile(r"^\s*(.+?)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$")


def official_rows(stdout: str, names: list[str]) -> dict[str, tuple[str, ...]]:
    """The metric rows test.py prints ('all' and one per class): name -> (images, labels, P, R, mAP@.5,
    mAP@.5:.95) as printed."""
    rows = {}
    for line in stdout.splitlines():
        match = ROW.match(line)
        if match and match.group(1) in ("all", *names):
            rows[match.group(1)] = match.groups()[1:]
    return rows


def our_rows(record: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Our metrics formatted as test.py prints them (%12i, %12.3g)."""

    def fmt(images: int, labels: int, *values: float) -> tuple[str, ...]:
        return (str(images), str(labels), *(f"{v:.3g}" for v in values))

    rows = {
        "all": fmt(
            record["images"], record["labels"], *(record[k] for k in ("precision", "recall", "map50", "map"))
        )
    }
    for c in record["per_class"]:
        rows[c["name"]] = fmt(record["images"], c["labels"], c["precision"], c["recall"], c["ap50"], c["ap"])
    return rows


def detections_by_image(
    path: Path, coco_json: str | None = None, category_ids: list[int] | None = None
) -> dict[Any, list[tuple]]:
    """COCO-style predictions json -> image -> [(class, *bbox, score)] in file order, named as test.py
    names them: the file stem (an int where numeric) and the class index. `coco_json` maps COCO image
    ids back to file names, `category_ids` (class index -> category id, as yolov7 val wrote them) maps
    category ids back to class indices."""
    stems = {}
    if coco_json:
        stems = {
            im["id"]: Path(im["file_name"]).stem for im in json.loads(Path(coco_json).read_text())["images"]
        }
    classes = {cid: i for i, cid in enumerate(category_ids or [])}
    out: dict[Any, list[tuple]] = defaultdict(list)
    for d in json.loads(path.read_text()):
        image = stems.get(d["image_id"], d["image_id"])
        image = int(image) if isinstance(image, str) and image.isnumeric() else image
        out[image].append((classes.get(d["category_id"], d["category_id"]), *d["bbox"], d["score"]))
    return out


def compare_detections(theirs: dict[Any, list[tuple]], ours: dict[Any, list[tuple]]) -> tuple[int, int, int]:
    """(images, images whose detection lists are identical in order, detections in the official file)."""
    images = set(theirs) | set(ours)
    same = sum(theirs.get(i) == ours.get(i) for i in images)
    return len(images), same, sum(len(v) for v in theirs.values())


def scratch_split(split: Path, scratch: Path) -> Path:
    """`scratch/images/<name>` and `scratch/labels/<name>` as links to a YOLO-layout image folder and its
    labels; returns the image link."""
    if not split.is_dir():
        raise SystemExit(f"{split}: the comparison needs the split as one image folder (YOLO layout)")
    labels = img2label_path(split / "x.jpg").parent
    if not labels.is_dir():
        raise SystemExit(f"{split}: no label folder {labels} beside it")
    for kind, target in (("images", split), ("labels", labels)):
        (scratch / kind).mkdir(parents=True, exist_ok=True)
        (scratch / kind / split.name).symlink_to(target.resolve(), target_is_directory=True)
    return scratch / "images" / split.name


def official_command(
    python: str, root: Path, script: str, model: torch.nn.Module, names: list[str], tmp: Path, fuse: bool
) -> tuple[list[str], Path]:
    """The command that runs RUNNER for the official `script` on `model` (its architecture and weights
    written to `tmp`), and the path of the official checkpoint it saves; append the script's arguments."""
    (tmp / "spec.json").write_text(json.dumps({"cfg": model.cfg, "nc": len(names), "names": list(names)}))
    torch.save(model.state_dict(), tmp / "weights.pt")
    checkpoint = tmp / "official.pt"
    command = [python, "-c", RUNNER, str(root), script, str(tmp / "spec.json"), str(tmp / "weights.pt"),
               str(checkpoint), "1" if fuse else "0"]  # fmt: skip
    return command, checkpoint


def run_official(
    command: list[str], root: Path, what: str, log: Path | None = None
) -> subprocess.CompletedProcess:
    """Run `command` in the checkout, its output captured (and kept in `log` when given); if it fails,
    SystemExit naming `what` with the end of its output. The official torch.load reads the checkpoint
    this script has just written, so full unpickling is allowed for it."""
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    if log is not None:
        log.write_text(output)
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        kept = f"; the end of {log}" if log is not None else ""
        raise SystemExit(f"{what} failed (exit {done.returncode}){kept}:\n{tail}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_official_arguments(parser)
    parser.add_argument("--weights", required=True, help="a yolov7lib or official checkpoint")
    parser.add_argument("--data", required=True, help="data.yaml (the split must be one YOLO-layout folder)")
    parser.add_argument("--task", default="val", choices=("val", "test"))
    parser.add_argument("--img", type=int, default=640)
    parser.add_argument("--batch", type=int, default=1, help="images per batch (1: see the docstring)")
    parser.add_argument("--conf", type=float, default=0.001)
    parser.add_argument("--iou", type=float, default=0.65)
    parser.add_argument(
        "--fuse", action="store_true", help="fuse on both sides (official fuse(), ours reparameterize)"
    )
    args = parser.parse_args()

    root = check_checkout(args.official, ("test.py", "models/yolo.py"))
    data = load_data_config(args.data)
    splits = data.splits.get(args.task)
    if splits is None:
        raise SystemExit(f"{args.data} has no {args.task!r} split")
    split = Path(splits[0] if isinstance(splits, list) else splits)
    model = load_model(args.weights, reparameterize=False)
    if model.head.nc != data.nc:
        raise SystemExit(f"the model predicts {model.head.nc} classes but {args.data} has {data.nc}")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        images = scratch_split(split, tmp / "data")
        (tmp / "data.yaml").write_text(
            json.dumps({args.task: str(images), "nc": data.nc, "names": list(data.names)})
        )
        command, checkpoint = official_command(
            args.official_python, root, "test.py", model, list(data.names), tmp, args.fuse
        )
        command += [
            "--weights", str(checkpoint), "--data", str(tmp / "data.yaml"), "--img-size", str(args.img),
            "--batch-size", str(args.batch), "--conf-thres", str(args.conf), "--iou-thres", str(args.iou),
            "--task", args.task, "--device", "cpu", "--no-trace", "--verbose", "--save-json",
            "--project", str(tmp / "official"), "--name", "exp", "--exist-ok",
        ]  # fmt: skip
        t0 = time.perf_counter()
        done = run_official(command, root, "the official test.py")
        t_official = time.perf_counter() - t0
        theirs_rows = official_rows(done.stdout, list(data.names))

        t0 = time.perf_counter()
        options = ValOptions(
            data=args.data, weights=str(checkpoint), img=args.img, batch=args.batch, conf=args.conf,
            iou=args.iou, task=args.task, reparameterize=args.fuse, save_json=True,
            project=str(tmp / "ours"), name="exp", progress=False,
        )  # fmt: skip
        _, record = run_val(options)
        coco_json = record["coco_annotations"]
        t_ours = time.perf_counter() - t0
        ours_rows = our_rows(record)
        n_images, same, n_det = compare_detections(
            detections_by_image(tmp / "official" / "exp" / "official_predictions.json"),
            detections_by_image(Path(record["predictions"]), coco_json, class_category_ids(data, coco_json)),
        )

    header = ("images", "labels", "P", "R", "mAP@.5", "mAP@.5:.95")
    print(f"{'class':20s} {'by':>16s}" + "".join(f"{h:>11s}" for h in header))
    differing = []
    for name in ["all", *data.names]:
        a, b = theirs_rows.get(name), ours_rows.get(name)
        print(f"{name:20s} {'official test.py':>16s}" + "".join(f"{v:>11s}" for v in a or ("-",) * 6))
        print(f"{'':20s} {'yolov7 val':>16s}" + "".join(f"{v:>11s}" for v in b or ("-",) * 6))
        if a != b:
            differing.append(name)
    print(f"detections: {n_det} in {n_images} images; identical (in order, to the json rounding): {same}")
    print(f"time: official {t_official:.1f} s (with its start-up), ours {t_ours:.1f} s")
    if differing or same != n_images:
        raise SystemExit(
            f"differences: metric rows {differing or 'none'}, {n_images - same} images' detections"
        )
    print("identical detections and metrics")


if __name__ == "__main__":
    main()
