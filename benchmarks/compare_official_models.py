"""Compare yolov7lib's models with the official implementation's, built from its own cfgs, weight for weight.

    git clone https://github.com/WongKinYiu/yolov7 /somewhere/yolov7   # and install its requirements.txt
    PYTHONPATH=$PWD python benchmarks/compare_official_models.py --official /somewhere/yolov7 [--only NAME]

Nothing of the official code is part of this project: the script imports `models.yolo` from the checkout
you name. For every model with an official cfg (cfg/training, cfg/deploy, cfg/baseline) it builds the
official `Model` and ours, gives the official one trained-like BatchNorm statistics and copies its
weights into ours, and checks on random images:

- parameters: ours against the official training graph;
- weights: the same state-dict keys and shapes (so that official weights load without renaming);
- outputs: the raw maps in training mode and the decoded detections in eval mode;
- fusion: the official `Model.fuse()` (RepConv, Conv+BN, implicit knowledge) against our
  `reparameterize`, parameters and detections;
- deploy cfg: the official cfg/deploy model against ours with `deploy=True`; our re-parameterized
  weights are loaded into the official deploy model, which must then give our detections;
- checkpoint: the official model saved as the official train.py saves it (`{"model": model.half()}`, a
  pickle of its own classes) and read back with our `load_official`, which runs no code from it; its
  detections against the official model's with the same fp16-rounded weights.

Differences are printed relative to the largest output value; rows with any difference above `--tol`
make the script exit non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_checkout import add_official_arguments, import_official

from yolov7lib.models import count_params, create_model, load_official, randomize_batchnorm, reparameterize

BASELINES = ("yolov3", "yolov3-spp", "yolov4-csp", "r50-csp", "x50-csp", "yolor-csp", "yolor-csp-x")
BASELINES += ("yolor-p6", "yolor-w6", "yolor-e6", "yolor-d6")
# our registry name -> (official training cfg, official deploy cfg), relative to the checkout
PAIRS: dict[str, tuple[str | None, str | None]] = {
    **{
        name: (f"cfg/training/{name}.yaml", f"cfg/deploy/{name}.yaml")
        for name in ("yolov7-tiny", "yolov7", "yolov7x", "yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e")
    },
    "yolov7-tiny-silu": (None, "cfg/deploy/yolov7-tiny-silu.yaml"),
    **{name: (f"cfg/baseline/{name}.yaml", None) for name in BASELINES},
}


def import_official_model(root: Path) -> Any:
    """The official `models.yolo` module of the checkout at `root`, or SystemExit with what is missing."""
    return import_official(root, "models.yolo", ("models/yolo.py", "cfg/training"))


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (inf when the shapes differ)."""
    if a.shape != b.shape:
        return float("inf")
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-12)).item()


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call `fn` without autograd and with its prints and log lines swallowed (the official builders
    print model tables; its fuse() changes parameters in place)."""
    logging.disable(logging.INFO)
    try:
        with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            return fn(*args, **kwargs)
    finally:
        logging.disable(logging.NOTSET)


def _detections(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model.eval()(x)
    return out[0] if isinstance(out, (tuple, list)) else out


def _raw_maps(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model.train()(x)
    return list(out)


def _same_keys(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


def compare(name: str, official: Any, root: Path, img: int) -> list[tuple[str, str, float]]:
    """Rows (check, what was seen, largest relative difference; inf where the two cannot be compared)."""
    train_cfg, deploy_cfg = PAIRS[name]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, img, img, generator=gen)
    rows: list[tuple[str, str, float]] = []
    ours_deploy = None
    if train_cfg is not None:
        torch.manual_seed(0)
        theirs = _quiet(official.Model, str(root / train_cfg))
        randomize_batchnorm(theirs, seed=1)
        ours = create_model(name)
        rows.append(("parameters", f"ours {count_params(ours):,}, official {count_params(theirs):,}",
                     0.0 if count_params(ours) == count_params(theirs) else float("inf")))  # fmt: skip
        if not _same_keys(ours, theirs):
            rows.append(("state-dict keys and shapes", "DIFFERENT", float("inf")))
            return rows
        ours.load_state_dict(theirs.state_dict())
        rows.append(("state-dict keys and shapes", "identical", 0.0))
        diffs = [
            relative_difference(a, b) for a, b in zip(_raw_maps(ours, x), _raw_maps(theirs, x), strict=True)
        ]
        rows.append(("training-mode maps", f"{len(diffs)} maps", max(diffs)))
        ref = _detections(theirs, x)
        rows.append(
            ("eval detections", f"{tuple(ref.shape)}", relative_difference(_detections(ours, x), ref))
        )

        fused_theirs = _quiet(copy.deepcopy(theirs).eval().fuse)
        ours_deploy = reparameterize(ours)
        rows.append(
            (
                "fused: official fuse() vs our reparameterize",
                f"params ours {count_params(ours_deploy):,}, official {count_params(fused_theirs):,}",
                relative_difference(_detections(ours_deploy, x), _detections(fused_theirs, x)),
            )
        )

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "official.pt"
            half = copy.deepcopy(theirs).half()
            torch.save({"model": half, "epoch": -1}, path)  # the official train.py's format (a pickle)
            loaded = load_official(path)
            want = _detections(half.float(), x)
            diff = relative_difference(_detections(loaded, x), want)
            rows.append(("official checkpoint -> load_official", "fp16 weights", diff))

    # the official deploy graph, fused as its detect.py fuses it, holds our weights
    if deploy_cfg is not None:
        torch.manual_seed(0)
        theirs_deploy = _quiet(official.Model, str(root / deploy_cfg))
        randomize_batchnorm(theirs_deploy, seed=1)
        theirs_deploy = _quiet(theirs_deploy.eval().fuse)
        if ours_deploy is None:  # no training cfg: our deploy graph with the official (fused) weights
            ours_deploy = create_model(name, deploy=True).eval()
            if _same_keys(ours_deploy, theirs_deploy):
                ours_deploy.load_state_dict(theirs_deploy.state_dict())
        seen = f"params ours {count_params(ours_deploy):,}, official {count_params(theirs_deploy):,}"
        if not _same_keys(ours_deploy, theirs_deploy):
            rows.append(("deploy cfg, fused", seen + ", state-dict keys DIFFERENT", float("inf")))
        else:
            theirs_deploy.load_state_dict(ours_deploy.state_dict())
            diff = relative_difference(_detections(ours_deploy, x), _detections(theirs_deploy, x))
            rows.append(("deploy cfg, fused, holding our deploy weights", seen, diff))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_official_arguments(parser, interpreter=False)
    parser.add_argument("--only", choices=list(PAIRS), action="append", help="compare these models only")
    parser.add_argument(
        "--img", type=int, default=128, help="image size of the random inputs (multiple of 64)"
    )
    parser.add_argument("--tol", type=float, default=1e-4, help="largest relative difference accepted")
    args = parser.parse_args()
    root = args.official.resolve()
    official = import_official_model(root)
    failed = []
    for name in args.only or PAIRS:
        print(name)
        for check, seen, diff in compare(name, official, root, args.img):
            print(f"  {check:62s} {seen:48s} {diff:.1e}")
            if diff > args.tol:
                failed.append(f"{name}: {check}")
    if failed:
        raise SystemExit("differences above --tol: " + "; ".join(failed))
    print(f"all checks within {args.tol:g}")


if __name__ == "__main__":
    main()
