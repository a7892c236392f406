"""Compare yolov7lib.loss with the official implementation's loss on the same inputs: labels, loss, time.

    git clone https://github.com/WongKinYiu/yolov7 /somewhere/yolov7      # your own checkout
    PYTHONPATH=$PWD python benchmarks/compare_official_loss.py --official /somewhere/yolov7 [--real-models]

Nothing of the official code is part of this project: the script imports `utils.loss` from the checkout
you name, builds its loss classes (ComputeLoss for `loss_ota: 0`, ComputeLossOTA, ComputeLossAuxOTA for
the coarse-to-fine auxiliary head) on a stand-in model that carries our detection head's anchors and
strides and the hyperparameters scaled as its train.py scales them, and runs them on the inputs of
benchmarks/bench_loss.py. For each setting it prints

- the positives of every head (image, anchor, gj, gi, matched target) from the official `build_targets`
  next to ours, compared as sorted lists per level (a cell can be a positive more than once; the
  listing order differs by design);
- the loss items [box, obj, cls, total] of both and their largest relative difference, and the
  gradients of both losses with respect to every prediction map (ours reads the maps through a
  hand-written backward, `yolov7lib.loss.maps`);
- where they differ, the same again with the official torch.topk's ties broken towards the earlier
  candidate, as ours are (see `_StableTopk`);
- the time of one loss step (median of interleaved runs) of ours, of the per-image oracle of the
  tests, and of the official code, with the ratios.

The official utils/general.py imports OpenCV at module level without using it in the loss; where
OpenCV is not installed, a stand-in module is registered for that import (and the script says so).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_loss import SETTINGS, interleaved_times, predictions, random_targets
from official_checkout import add_official_arguments, check_checkout, import_official
from test_assign_oracle import oracle_config, oracle_loss

from yolov7lib.configs import load_hyp
from yolov7lib.loss import build_loss
from yolov7lib.loss.criterion import scaled_gains

# The settings of bench_loss, and the plain YOLOv5-style assignment (loss_ota 0) on the tiny setting.
COMPARISONS = {name: (name, {}) for name in SETTINGS} | {
    "yolov7-tiny-plain": ("yolov7-tiny", {"loss_ota": 0})
}


class _StableTopk(types.ModuleType):
    """`torch` for the official loss module with ties of torch.topk broken towards the earlier index.

    torch.topk returns tied entries in an unspecified order; SimOTA's dynamic-k selection meets exact ties
    where several targets propose the same cell (same prediction, same cost). yolov7lib takes the earlier
    candidate (a stable sort); running the official code with this stand-in shows whether a difference in
    the labels comes from that tie order alone.
    """

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def topk(x: torch.Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
        order = torch.sort(x, dim=dim, descending=largest, stable=True).indices.narrow(dim, 0, k)
        return torch.return_types.topk((x.gather(dim, order), order))


OFFICIAL_FILES = ("utils/loss.py", "models/yolo.py")


def import_official_loss(root: Path) -> types.ModuleType:
    """`utils.loss` of the official checkout at `root`, or SystemExit with what is missing."""
    root = check_checkout(root, OFFICIAL_FILES)  # a wrong folder is refused before any stand-in is made
    try:
        importlib.import_module("cv2")
    except ImportError:
        print("  OpenCV is not installed: a stand-in module serves the official utils/general.py's import")
        stand_in = types.ModuleType("cv2")
        stand_in.setNumThreads = lambda n: None  # type: ignore[attr-defined]
        sys.modules["cv2"] = stand_in
    return import_official(root, "utils.loss", OFFICIAL_FILES)


class _OfficialModelShim(torch.nn.Module):
    """What the official loss classes read from a model: `hyp`, `gr`, a parameter for the device, and
    `model[-1]` with na, nc, nl, anchors (grid units) and stride."""

    def __init__(self, head: Any, hyp: dict[str, Any]) -> None:
        super().__init__()
        self.anchor_for_device = torch.nn.Parameter(torch.zeros(1))
        det = types.SimpleNamespace(
            na=head.na, nc=head.nc, nl=head.nl, anchors=head.anchors.clone(), stride=head.stride.clone()
        )
        self.model = [det]
        self.hyp = hyp
        self.gr = hyp["gr"]


def official_hyp(hyp: dict[str, Any], nl: int, nc: int, img: int) -> dict[str, Any]:
    """The hyperparameters as the official train.py hands them to the loss (gains scaled)."""
    return dict(hyp) | scaled_gains(hyp, nl, nc, img)


def _check_supported(hyp: dict[str, Any], aux: bool) -> None:
    """The official classes implement the reference's defaults only; say so for anything else."""
    wanted = {"ota_topk": 0, "fl_gamma": 0.0}
    if aux:
        wanted |= {"aux_assign": "coarse_to_fine", "aux_constraint": 1, "aux_weight": 0.25, "loss_ota": 1}
    off = {k: hyp[k] for k, v in wanted.items() if hyp[k] != v}
    if off:
        raise SystemExit(f"the official loss classes have no switch for {off}; compare the defaults")


def official_positives(
    loss: Any, maps: list[torch.Tensor], targets: torch.Tensor, imgs: torch.Tensor, nl: int, coarse: bool
) -> list[list[tuple[int, ...]]]:
    """Per level, the sorted list of (image, anchor, gj, gi, target index) of the official labels."""
    build = loss.build_targets2 if coarse else loss.build_targets
    with torch.no_grad():
        bs, as_, gjs, gis, tgts, _ = build(maps[:nl], targets, imgs)
    index = {tuple(row.tolist()): i for i, row in enumerate(targets)}
    out = []
    for b, a, gj, gi, t in zip(bs, as_, gjs, gis, tgts, strict=True):
        rows = zip(b.tolist(), a.tolist(), gj.tolist(), gi.tolist(), t.tolist(), strict=True)
        out.append(sorted((b_, a_, gj_, gi_, index[tuple(t_)]) for b_, a_, gj_, gi_, t_ in rows))
    return out


def official_plain_positives(loss: Any, maps: list[torch.Tensor], targets: torch.Tensor) -> list[list[tuple]]:
    """Per level, the sorted list of (image, anchor, gj, gi, class) of the official plain labels."""
    tcls, _, indices, _ = loss.build_targets(maps, targets)
    return [
        sorted(zip(*(f.tolist() for f in (*idx, c)), strict=True))
        for idx, c in zip(indices, tcls, strict=True)
    ]


def our_positives(loss_fn: Any, maps: list[torch.Tensor], targets: torch.Tensor, imgs: torch.Tensor):
    """(lead, auxiliary or None): per level, the sorted list of (image, anchor, gj, gi, target index)."""
    return [
        None
        if lab is None
        else [sorted(zip(*(f.tolist() for f in lv), strict=True)) for lv in lab.positives()]
        for lab in loss_fn.assign(maps, targets, imgs)
    ]


def compare(name: str, official: types.ModuleType, repeats: int, real: bool) -> bool:
    setting, overrides = COMPARISONS[name]
    aux, img, batch, per_image, profile, model_name = SETTINGS[setting]
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the model's initial weights, with --real-models
    head, maps, source = predictions(aux, img, batch, model_name, real, gen)
    targets = random_targets(batch, per_image, gen)
    imgs = torch.zeros(batch, 3, img, img)
    hyp = dict(load_hyp(profile)) | overrides
    _check_supported(hyp, aux)
    ours = build_loss(head, hyp, img_size=img)
    shim = _OfficialModelShim(head, official_hyp(hyp, head.nl, head.nc, img))
    plain = not hyp["loss_ota"]
    if plain:
        theirs = official.ComputeLoss(shim)
    else:
        theirs = (official.ComputeLossAuxOTA if aux else official.ComputeLossOTA)(shim)
    cfg = oracle_config(hyp, head.nl, head.nc, img, aux)

    def run_ours() -> torch.Tensor:
        with torch.no_grad():
            return ours(maps, targets, imgs)[1]

    def official_loss(m: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The official loss of maps `m` (its plain ComputeLoss takes no images)."""
        return theirs(m, targets) if plain else theirs(m, targets, imgs)

    def run_official() -> torch.Tensor:
        with torch.no_grad():
            return official_loss(maps)

    print(
        f"{name}: {img} px, batch {batch}, {per_image} objects/image, loss_ota {hyp['loss_ota']} ({source})"
    )
    mine = our_positives(ours, maps, targets, imgs)
    if plain:  # the official plain labels keep the class, not the target: compare (cell, class) lists
        cls = targets[:, 1].long().tolist()
        labels = {"": [sorted((*p[:4], cls[p[4]]) for p in level) for level in mine[0]]}
    else:
        labels = {"lead ": mine[0]} | ({"auxiliary ": mine[1]} if aux else {})

    def official_labels() -> dict[str, Any]:
        if plain:
            return {"": official_plain_positives(theirs, maps, targets)}
        return {
            h: official_positives(theirs, maps, targets, imgs, head.nl, h == "auxiliary ") for h in labels
        }

    def gradients(fn: Any) -> list[torch.Tensor]:
        """d(loss)/d(maps) through `fn(maps) -> (loss, items)`."""
        leaves = [m.detach().requires_grad_() for m in maps]
        fn(leaves)[0].sum().backward()
        return [leaf.grad for leaf in leaves]

    def report(tie_note: str) -> bool:
        same = True
        for h, theirs_h in official_labels().items():
            equal = labels[h] == theirs_h
            same &= equal
            counts = "/".join(str(len(s)) for s in labels[h])
            print(f"  {h}positives per level {counts}: {'identical' if equal else 'DIFFERENT'}{tie_note}")
        a, b = run_ours(), run_official()[1]
        rel = ((a.double() - b.double()).abs() / b.double().abs().clamp(min=1e-12)).max().item()
        print(f"  loss items [box, obj, cls, total] ours     {[f'{x:.8f}' for x in a.tolist()]}")
        print(f"                                    official {[f'{x:.8f}' for x in b.tolist()]}")
        print(f"  largest relative difference {rel:.1e}{tie_note}")
        g_ours = gradients(lambda m: ours(m, targets, imgs))
        g_theirs = gradients(official_loss)
        scale = max(g.abs().max().item() for g in g_theirs)
        g_rel = max((a - b).abs().max().item() for a, b in zip(g_ours, g_theirs, strict=True)) / scale
        print(f"  gradients of the loss w.r.t. every map: largest difference / largest gradient {g_rel:.1e}")
        return same and rel < 1e-5 and g_rel < 1e-5

    same = report("")
    if not same and not plain:  # try again with torch.topk's ties broken as ours are
        official.torch = _StableTopk()
        try:
            same = report(" (official torch.topk ties broken towards the earlier candidate)")
        finally:
            official.torch = torch

    fns = {"ours": run_ours, "official": run_official}
    fns["oracle"] = lambda: oracle_loss(cfg, head, maps, targets, (img, img))
    t = {k: statistics.median(v) for k, v in interleaved_times(fns, repeats, time.perf_counter).items()}
    print(
        f"  one loss step, median ms: ours {t['ours'] * 1e3:.1f}, per-image oracle {t['oracle'] * 1e3:.1f}, "
        f"official {t['official'] * 1e3:.1f}; official / ours {t['official'] / t['ours']:.1f}x, "
        f"oracle / ours {t['oracle'] / t['ours']:.1f}x"
    )
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_official_arguments(parser, interpreter=False)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadier)")
    parser.add_argument(
        "--real-models", action="store_true", help="predictions of create_model on random images"
    )
    parser.add_argument("--only", choices=list(COMPARISONS), help="run one comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    official = import_official_loss(args.official.resolve())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; official code: {args.official}")
    results = [
        compare(n, official, args.repeats, args.real_models)
        for n in ([args.only] if args.only else COMPARISONS)
    ]
    if not all(results):
        raise SystemExit("the official labels or loss differ from ours (see above)")


if __name__ == "__main__":
    main()
