"""Train one model from the same weights on the same batches with the official train.py and with
`yolov7lib.train`; compare the weights, the EMA weights and the losses after the epochs.

    git clone https://github.com/WongKinYiu/yolov7 /somewhere/yolov7   # and install its requirements.txt
    PYTHONPATH=$PWD python benchmarks/compare_official_train.py --official /somewhere/yolov7 [--epochs 4]
        [--model yolov7-w6 --img 256 --batch 2]    # a model with an auxiliary head (train_aux.py)
        [--batch 2 --epochs 20]                    # gradient accumulation from iteration 17 on

Nothing of the official code is part of this project. The official side runs in subprocesses (with
`--official-python`, e.g. a virtual environment holding the official requirements; default: this
interpreter) in a scratch folder: one builds the official `Model` from its cfg under `--seed`, saves it as
the initial checkpoint and runs the official train.py (train_aux.py for the models with an auxiliary
head; ours picks the auxiliary-head training by itself); another converts the official per-epoch
checkpoints into plain tensors. Our side reads the same initial checkpoint through `load_official`
(which runs no code from the pickle) and trains with `yolov7lib.train`'s trainer.

The set-up makes both runs see the same batches, so that any difference is the recipe's:
- a generated data set with exactly `--batch` training images: one batch, hence one optimizer step, per
  epoch (the official loader does not shuffle, ours does; the order inside a batch changes nothing but
  rounding);
- the hyperparameters of `--hyp` with every augmentation switched off: probabilities and gains 0, and
  `scale: -0.05`, because the reference draws the affine scale from [1 - scale, 1.1 + scale]; -0.05 pins
  it to exactly 1.05 in both (a fixed, centred zoom);
- the official `--noautoanchor` (yolov7lib has no automatic anchor change) and `--notest` (validation
  after the last epoch only, as our `val_final_only`).
The epochs all fall in the warm-up (at least 1,000 iterations in both), so the comparison covers the
parameter groups, the warm-up of every group's learning rate and of the momentum, Nesterov SGD, the
weight decay scaled to the nominal batch, the loss (times the batch size), BatchNorm and the EMA with
its ramped decay. Gradient accumulation ramps from 1 to 64 / batch over the warm-up: with `--batch 2` it
reaches 2 at iteration 17, so `--batch 2 --epochs 20` also compares accumulated steps. The official run
keeps the checkpoints of epoch 0, of every 25th and of the last five epochs; those are compared.

`--dtype float64` (default) runs both sides in double precision (the official side with the default
dtype set to float64 and its `.float()` / `.half()` calls kept in float64). In float32 the two runs
agree within a few 1e-6 after the first step, but the warm-up's bias learning rate of 0.1 on the
BatchNorm shifts amplifies rounding about a thousandfold per step: after three steps the runs differ
by several percent, exactly as much as our own run differs from itself with 3e-6 of noise added to the
initial weights. In float64 the amplified rounding stays far below the tolerance.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_official_models import relative_difference
from compare_official_val import run_official
from official_checkout import add_official_arguments, check_checkout

from yolov7lib.configs import load_hyp
from yolov7lib.data import synthesize
from yolov7lib.engine.trainer import Trainer, TrainOptions

# Our registry name -> (the official training cfg, the official training script, the hyp profile). The
# models with an auxiliary head train with the official train_aux.py; ours chooses by itself.
OFFICIAL = {
    "yolov7-tiny": ("cfg/training/yolov7-tiny.yaml", "train.py", "tiny"),
    "yolov7": ("cfg/training/yolov7.yaml", "train.py", "p5"),
    "yolov7x": ("cfg/training/yolov7x.yaml", "train.py", "p5"),
    "yolov7-w6": ("cfg/training/yolov7-w6.yaml", "train_aux.py", "p6"),
    "yolov7-e6": ("cfg/training/yolov7-e6.yaml", "train_aux.py", "p6"),
    "yolov7-d6": ("cfg/training/yolov7-d6.yaml", "train_aux.py", "p6"),
    "yolov7-e6e": ("cfg/training/yolov7-e6e.yaml", "train_aux.py", "p6"),
}
# Every augmentation off; see the module docstring for `scale`.
AUGMENTATION_OFF = {
    "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "degrees": 0.0, "translate": 0.0, "scale": -0.05,
    "shear": 0.0, "perspective": 0.0, "flipud": 0.0, "fliplr": 0.0, "mosaic": 0.0, "mixup": 0.0,
    "copy_paste": 0.0, "paste_in": 0.0,
}  # fmt: skip
LOSS_COLUMNS = ("box", "obj", "cls", "total")

# Runs inside the official checkout: the initial checkpoint, then train.py (optionally in float64).
RUNNER = """
import os, runpy, sys
import numpy as np
import torch
if not hasattr(np, "trapz"):  # numpy 2 renamed it; the official metrics call the old name
    np.trapz = np.trapezoid
root, cfg, nc, init, seed, dtype, script = sys.argv[1:8]
sys.path.insert(0, root)
from models.yolo import Model
torch.manual_seed(int(seed))
model = Model(os.path.join(root, cfg), ch=3, nc=int(nc))
torch.save({"model": model, "optimizer": None, "training_results": None, "epoch": -1}, init)
torch.nn.Module.half = lambda self: self  # its checkpoints keep the training precision
if dtype == "float64":
    torch.set_default_dtype(torch.float64)
    torch.nn.Module.float = lambda self: self.double()
    torch.Tensor.float = lambda self, *a, **k: self.double()
sys.argv = [script] + sys.argv[8:]
runpy.run_path(os.path.join(root, script), run_name="__main__")
"""

# Runs inside the official checkout: its per-epoch checkpoints (pickles of its classes, written by the
# run above) as plain tensors that `torch.load(weights_only=True)` reads.
DUMPER = """
import sys
import torch
root, weights, out = sys.argv[1:4]
sys.path.insert(0, root)
for path in sorted(__import__("pathlib").Path(weights).glob("epoch_*.pt")):
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    torch.save({"model": ckpt["model"].state_dict(), "ema": ckpt["ema"].state_dict(),
                "updates": int(ckpt["updates"])}, f"{out}/official_{path.stem}.pt")
"""


class _EveryEpoch(Trainer):
    """Our trainer, also keeping each epoch's checkpoint as weights/epoch_NNN.pt (like the official)."""

    def save(self, epoch: int, result: Any) -> None:
        super().save(epoch, result)
        last = self.weights_dir / "last.pt"
        (self.weights_dir / f"epoch_{epoch:03d}.pt").write_bytes(last.read_bytes())


def official_losses(results_txt: Path) -> list[tuple[float, ...]]:
    """Per epoch, the mean (box, obj, cls, total) losses the official train.py wrote to results.txt
    (columns 3-6, after 'epoch/epochs' and the GPU memory)."""
    rows = []
    for line in results_txt.read_text().splitlines():
        fields = line.split()
        if fields:
            rows.append(tuple(float(x) for x in fields[2:6]))
    return rows


def largest_differences(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> tuple[float, str]:
    """The largest `relative_difference` (max |ours - theirs| / max |theirs|) over the tensors of two state
    dicts with the same keys (BatchNorm's batch counters left out), and the tensor where it is."""
    keys = [k for k in theirs if not k.endswith("num_batches_tracked")]
    missing = sorted(set(keys) ^ {k for k in ours if not k.endswith("num_batches_tracked")})
    if missing:
        raise SystemExit(f"the state dicts differ in their tensors: {missing[:5]}")
    worst, where = 0.0, ""
    for k in keys:
        diff = relative_difference(ours[k], theirs[k])
        if diff > worst:
            worst, where = diff, k
    return worst, where


def training_hyp(profile: str) -> dict[str, Any]:
    """The hyperparameters of `profile` with every augmentation off (`AUGMENTATION_OFF`)."""
    return {**load_hyp(profile), **AUGMENTATION_OFF}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_official_arguments(parser)
    parser.add_argument("--model", default="yolov7-tiny", choices=sorted(OFFICIAL))
    parser.add_argument("--hyp", help="hyperparameter profile (default: the model's); augmentation is off")
    parser.add_argument("--epochs", type=int, default=4, help="epochs, of one batch each")
    parser.add_argument("--batch", type=int, default=16, help="images in the data set and in the batch")
    parser.add_argument("--img", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0, help="seed of the official initial weights")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--tol", type=float, default=1e-6, help="largest relative weight difference accepted")
    parser.add_argument("--keep", type=Path, help="work in this (new) folder and keep it")
    args = parser.parse_args()

    cfg, script, profile = OFFICIAL[args.model]
    root = check_checkout(args.official, (script, "models/yolo.py", cfg))
    if args.keep and args.keep.exists():
        raise SystemExit(f"{args.keep} exists; --keep takes a new folder")
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="compare_train_"))
    scratch.mkdir(parents=True, exist_ok=True)
    scratch = scratch.resolve()

    data_dir = scratch / "data"
    synthesize(data_dir, n_train=args.batch, n_val=8, img_size=args.img, seed=0, workers=1, progress=False)
    ours_data = yaml.safe_load((data_dir / "data.yaml").read_text())
    official_data = scratch / "official_data.yaml"  # the official loader resolves paths against its cwd
    official_data.write_text(
        yaml.safe_dump(
            {
                "train": str(data_dir / ours_data["train"]),
                "val": str(data_dir / ours_data["val"]),
                "nc": ours_data["nc"],
                "names": ours_data["names"],
            }
        )
    )
    hyp_file = scratch / "hyp.yaml"
    hyp_file.write_text(yaml.safe_dump(training_hyp(args.hyp or profile), sort_keys=False))
    init = scratch / "init.pt"

    print(f"official {script}: {args.model}, {args.epochs} epochs of one batch of {args.batch}, {args.dtype}")
    run_official(
        [
            args.official_python, "-c", RUNNER, str(root), cfg, str(ours_data["nc"]),
            str(init), str(args.seed), args.dtype, script,
            "--cfg", str(root / cfg), "--weights", str(init),
            "--data", str(official_data),
            "--hyp", str(hyp_file), "--epochs", str(args.epochs), "--batch-size", str(args.batch),
            "--img-size", str(args.img), str(args.img), "--device", "cpu", "--noautoanchor", "--notest",
            "--workers", "0", "--project", str(scratch / "official"), "--name", "exp",
        ],
        root, f"the official {script}", scratch / "official.log",
    )  # fmt: skip
    run_official(
        [args.official_python, "-c", DUMPER, str(root), str(scratch / "official/exp/weights"), str(scratch)],
        root, "reading the official checkpoints", scratch / "official_dump.log",
    )  # fmt: skip

    print("yolov7lib trainer: the same initial weights, data and hyperparameters")
    opts = TrainOptions(
        data=str(data_dir / "data.yaml"), model=args.model, hyp=str(hyp_file), epochs=args.epochs,
        batch=args.batch, img=args.img, weights=str(init), workers=0, val_final_only=True, plots=False,
        progress=False, project=str(scratch / "ours"), name="exp", float64=args.dtype == "float64",
    )  # fmt: skip
    _EveryEpoch(opts).fit()  # reads the official initial checkpoint through load_official

    theirs_losses = official_losses(scratch / "official/exp/results.txt")
    ours_rows = (scratch / "ours/exp/results.csv").read_text().splitlines()[1:]
    columns = ("epoch", "losses, official (box obj cls total)", "losses, yolov7lib", "model: largest diff",
               "EMA: largest diff", "EMA updates")  # fmt: skip
    print("  |  ".join(columns))
    worst = 0.0
    summary = []
    # The official run keeps the checkpoints of epoch 0, of every 25th and of the last five epochs.
    saved = sorted(int(p.stem.rsplit("_", 1)[1]) for p in scratch.glob("official_epoch_*.pt"))
    for epoch in saved:
        theirs = torch.load(scratch / f"official_epoch_{epoch:03d}.pt", weights_only=True)
        ours = torch.load(scratch / f"ours/exp/weights/epoch_{epoch:03d}.pt", weights_only=True)
        model_diff = largest_differences(ours["model"], theirs["model"])
        ema_diff = largest_differences(ours["ema"]["model"], theirs["ema"])
        worst = max(worst, model_diff[0], ema_diff[0])
        ours_loss = tuple(float(x) for x in ours_rows[epoch].split(",")[1:5])
        official_loss = theirs_losses[epoch]
        cells = (
            f"{epoch:>5}",
            " ".join(f"{x:.4g}" for x in official_loss),
            " ".join(f"{x:.4g}" for x in ours_loss),
            f"{model_diff[0]:.1e} ({model_diff[1]})",
            f"{ema_diff[0]:.1e} ({ema_diff[1]})",
            f"{theirs['updates']} / {ours['ema']['updates']}",
        )
        print("  |  ".join(cells))
        summary.append(
            {
                "epoch": epoch, "official_loss": official_loss, "ours_loss": ours_loss,
                "model_rel_diff": model_diff[0], "ema_rel_diff": ema_diff[0],
                "ema_updates": [theirs["updates"], int(ours["ema"]["updates"])],
                "same_printed_losses": [f"{a:.4g}" for a in official_loss] == [f"{b:.4g}" for b in ours_loss],
            }
        )  # fmt: skip
    (scratch / "comparison.json").write_text(json.dumps(summary, indent=1))
    same_updates = all(row["ema_updates"][0] == row["ema_updates"][1] for row in summary)
    same_losses = all(row["same_printed_losses"] for row in summary)
    agree = worst <= args.tol and same_updates and same_losses
    print(
        f"largest relative weight difference {worst:.1e} (tolerance {args.tol:g}); losses "
        f"{'equal' if same_losses else 'NOT equal'} at the official's "
        f"4 printed digits: {'AGREE' if agree else 'DIFFER'}"
    )
    if agree and not args.keep:
        shutil.rmtree(scratch)
    else:
        print(f"the runs, logs and comparison.json are in {scratch}")
    sys.exit(0 if agree else 1)


if __name__ == "__main__":
    main()
