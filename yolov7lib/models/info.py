"""Parameter and FLOP counts (Tables 1, 2, 3 and 9 report #Param and FLOPs).

FLOPs are 2 x multiply-accumulates of one forward pass on a square image, counted by
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; the official-figures
convention). The pass runs on meta tensors: no arithmetic, so any model size counts in a moment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import chain
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["ModelInfo", "count_params", "model_flops", "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """Number of parameters and GFLOPs of a model at ``img_size``."""

    params: int
    gflops: float
    img_size: tuple[int, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    """Sum of ``numel()`` over the parameters (buffers such as anchors excluded)."""
    return sum(p.numel() for p in model.parameters())


def _size(img_size: int | tuple[int, int]) -> tuple[int, int]:
    return (img_size, img_size) if isinstance(img_size, int) else (int(img_size[0]), int(img_size[1]))


def model_flops(
    model: nn.Module, img_size: int | tuple[int, int] = 640, ch: int | None = None, train: bool = False
) -> float:
    """FLOPs (2 x MACs) of one forward pass of a batch of one image, in eval mode (``train=True``:
    training mode, which also runs the auxiliary head's output convolutions)."""
    h, w = _size(img_size)
    ch = ch if ch is not None else getattr(model, "cfg", {}).get("ch", 3)
    # training-mode BatchNorm refuses one value per channel (a 1 x 1 last map of one image): count two
    # images and halve, exactly, as every counted operation is per image
    batch = 2 if train else 1
    state = {
        k: torch.empty_like(v, device="meta")
        for k, v in chain(model.named_parameters(), model.named_buffers())
    }
    was_training = model.training
    model.train(train)
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            functional_call(model, state, (torch.zeros(batch, ch, h, w, device="meta"),))
    finally:
        model.train(was_training)
    return float(counter.get_total_flops() // batch)


def model_info(model: nn.Module, img_size: int | tuple[int, int] = 640) -> ModelInfo:
    """Parameters and GFLOPs of ``model`` as it is (``reparameterize`` it first for deploy figures)."""
    return ModelInfo(count_params(model), model_flops(model, img_size) / 1e9, _size(img_size))


def native_img_size(cfg: dict[str, Any]) -> int:
    """The paper's input size for a spec: 1280 for four-level (P6) models, 640 otherwise."""
    anchors = cfg.get("anchors")
    return 1280 if isinstance(anchors, list) and len(anchors) >= 4 else 640


def describe_model(name_or_cfg: Any, img_size: int | None = None, nc: int | None = None) -> dict[str, Any]:
    """The four parameter counts of official-figures.md and the GFLOPs of the fused deploy graph.

    ``params``: ``training`` (training graph), ``training_fused`` (its BatchNorms and RepConvs fused,
    implicit and auxiliary heads kept), ``deploy`` (inference graph: implicit folded, auxiliary heads
    dropped, unfused) and ``deploy_fused``. ``gflops``: fused deploy graph; ``training_gflops``: the
    training graph in training mode (auxiliary head included; the paper's D6 row counts this one).
    ``layers``: the training graph's layer count and how many of them the cfg's backbone lists (the
    indices `yolov7 train --freeze` takes). Built on the meta device: no memory, no arithmetic.
    """
    from yolov7lib.models.registry import create_model
    from yolov7lib.models.reparam import reparameterize

    with torch.device("meta"):
        model = create_model(name_or_cfg, nc=nc)
        deploy = reparameterize(model)
        params = {
            "training": count_params(model),
            "training_fused": count_params(reparameterize(model, drop_aux=False, fold_implicit=False)),
            "deploy": count_params(reparameterize(model, fuse=False)),
            "deploy_fused": count_params(deploy),
        }
    size = img_size or native_img_size(model.cfg)
    name = model.cfg.get("name") or str(name_or_cfg)
    return {
        "model": name,
        "img_size": size,
        "params": params,
        "layers": {"count": len(model.model), "backbone": len(model.cfg["backbone"])},
        "gflops": round(model_flops(deploy, size) / 1e9, 2),
        "training_gflops": round(model_flops(model, size, train=True) / 1e9, 2),
    }


def format_description(info: dict[str, Any]) -> str:
    """Human-readable form of :func:`describe_model`'s result."""
    p = info["params"]
    n, b = info["layers"]["count"], info["layers"]["backbone"]
    return "\n".join(
        [
            f"{info['model']}  (input {info['img_size']}x{info['img_size']})",
            f"  training graph   {p['training']:>13,} params   fused {p['training_fused']:>13,}",
            f"  deploy graph     {p['deploy']:>13,} params   fused {p['deploy_fused']:>13,}",
            f"  GFLOPs           {info['gflops']:>13.1f} (fused deploy graph)   "
            f"training graph {info['training_gflops']:.1f}",
            f"  layers           {n:>13} (backbone 0-{b - 1}, head {b}-{n - 1}: "
            f"yolov7 train --freeze {b} freezes the backbone)",
        ]
    )
