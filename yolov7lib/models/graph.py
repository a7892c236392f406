"""The graph builder: a spec (official cfg format) -> a :class:`Model` executing a flat list of layers.

Each layer carries ``.i`` (its index), ``.f`` (the layer or layers it reads, -1 = previous) and
``.type`` (its cfg module name); state-dict keys are ``model.<index>.<submodule>...`` as in the
official checkpoints. Building follows the reference's cfg semantics exactly (width multiple with
rounding up to a multiple of 8, depth multiple, repeated layers, channel bookkeeping), and its
initialisation (BatchNorm eps 1e-3 and momentum 0.03, in-place ReLU-family activations, detection
bias priors), so that training behaves the same.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from itertools import chain
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from yolov7lib.models import csp
from yolov7lib.models.heads import Detect, IAuxDetect, IDetect
from yolov7lib.models.layers import (
    MP,
    SP,
    SPP,
    SPPCSPC,
    Concat,
    Conv,
    DownC,
    ReOrg,
    RepConv,
    RepConvN,
    Shortcut,
    Stem,
    parse_activation,
)
from yolov7lib.models.spec import HEAD_TYPES, check_nc, resolve_from, spec_rows, validate_cfg

__all__ = ["LAYER_TYPES", "Model", "build_layers", "register_layer"]

# type name -> (class, kind). kind "width": first arg is the output width (scaled by width_multiple);
# "csp": same, and the repeat count goes inside the module; "concat"/"sum"/"reorg"/"head"/"bn":
# width rules of their own; "same": output width = input width.
LAYER_TYPES: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "Conv": (Conv, "width"),
    "RepConv": (RepConv, "width"),
    "RepConvN": (RepConvN, "width"),
    "nn.Conv2d": (nn.Conv2d, "width"),
    "SPP": (SPP, "width"),
    "Stem": (Stem, "width"),
    "Bottleneck": (csp.Bottleneck, "width"),
    "Res": (csp.Res, "width"),
    "ResX": (csp.ResX, "width"),
    "RepBottleneck": (csp.RepBottleneck, "width"),
    "RBottleneck": (csp.RBottleneck, "width"),
    "RepRBottleneck": (csp.RepRBottleneck, "width"),
    "DownC": (DownC, "csp"),
    "SPPCSPC": (SPPCSPC, "csp"),
    **{name: (getattr(csp, name), "csp") for name in csp.__all__ if "CSP" in name},
    "Concat": (Concat, "concat"),
    "Shortcut": (Shortcut, "sum"),
    "ReOrg": (ReOrg, "reorg"),
    "MP": (MP, "same"),
    "SP": (SP, "same"),
    "nn.Upsample": (nn.Upsample, "same"),
    "nn.MaxPool2d": (nn.MaxPool2d, "same"),
    "nn.BatchNorm2d": (nn.BatchNorm2d, "bn"),
    "Detect": (Detect, "head"),
    "IDetect": (IDetect, "head"),
    "IAuxDetect": (IAuxDetect, "head"),
}


def register_layer(name: str, cls: Callable[..., nn.Module], kind: str = "width") -> None:
    """Make a layer type available to specs, under ``name`` with width rule ``kind`` (see ``LAYER_TYPES``)."""
    LAYER_TYPES[name] = (cls, kind)


def _make_divisible(x: float, divisor: int = 8) -> int:
    return math.ceil(x / divisor) * divisor


def _parse_arg(a: Any, nc: int, anchors: Any) -> Any:
    """Interpret one cfg argument the way the reference does, without ``eval``."""
    if not isinstance(a, str):
        return a
    text = a.strip()
    named = {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}
    if text in named:
        return named[text]
    if text.startswith("nn."):
        return parse_activation(text)
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return a  # e.g. 'nearest'


def build_layers(cfg: dict[str, Any], ch: int = 3) -> tuple[list[nn.Module], list[int]]:
    """Instantiate the layers of a spec; return them and the indices whose outputs must be kept."""
    validate_cfg(cfg)
    nc, gd, gw = cfg["nc"], cfg.get("depth_multiple", 1.0), cfg.get("width_multiple", 1.0)
    anchors = cfg["anchors"]
    na = len(anchors[0]) // 2 if isinstance(anchors, list) else int(anchors)
    no = na * (nc + 5)
    layers: list[nn.Module] = []
    save: list[int] = []
    widths: list[int] = []
    for i, (f, n, type_name, raw_args) in enumerate(spec_rows(cfg)):
        if type_name not in LAYER_TYPES:
            raise ValueError(
                f"layer {i}: unknown module {type_name!r}; known: {', '.join(sorted(LAYER_TYPES))}"
            )
        cls, kind = LAYER_TYPES[type_name]
        args = [_parse_arg(a, nc, anchors) for a in raw_args]
        n = max(round(n * gd), 1) if n > 1 else n
        sources = resolve_from(f, i)
        c_in = [ch if j < 0 else widths[j] for j in sources]
        if kind in ("width", "csp"):
            c2 = args[0]
            if c2 != no:
                c2 = _make_divisible(c2 * gw, 8)
            args = [c_in[0], c2, *args[1:]]
            if kind == "csp":
                args.insert(2, n)
                n = 1
        elif kind == "concat":
            c2 = sum(c_in)
        elif kind == "sum":
            c2 = c_in[0]
        elif kind == "reorg":
            c2 = c_in[0] * 4
        elif kind == "bn":
            c2, args = c_in[0], [c_in[0]]
        elif kind == "head":
            if not isinstance(args[1], list):  # number of anchors instead of anchor sizes
                levels = len(sources) // (2 if type_name == "IAuxDetect" else 1)
                args[1] = [list(range(args[1] * 2))] * levels
            args = [*args[:2], c_in]
            c2 = 0
        else:
            c2 = c_in[0]
        try:
            module = nn.Sequential(*(cls(*args) for _ in range(n))) if n > 1 else cls(*args)
        except (TypeError, ValueError) as err:
            raise ValueError(f"layer {i} ({type_name} {raw_args}): {err}") from err
        module.i, module.f, module.type = i, f, type_name
        module.np = sum(p.numel() for p in module.parameters())
        entries = [f] if isinstance(f, int) else f
        save.extend(j for e, j in zip(entries, sources, strict=True) if e != -1 and j >= 0)
        layers.append(module)
        widths.append(c2)
    return layers, sorted(set(save))


_STRIDES: dict[str, list[float]] = {}  # spec -> strides of the lead levels (a spec's strides never change)


class Model(nn.Module):
    """A YOLO detector executing the flat layer graph of a spec (see :mod:`yolov7lib.models.spec`).

    ``model.model`` is the ``nn.ModuleList`` of layers, ``model.head`` the detection head,
    ``model.cfg`` the spec (a plain dict; checkpoints store it), ``model.names`` the class names,
    ``model.hyp`` the training hyperparameters (set by the trainer), ``model.stride`` the strides of
    the lead levels.
    """

    def __init__(self, cfg: dict[str, Any], ch: int | None = None, nc: int | None = None) -> None:
        super().__init__()
        cfg = copy.deepcopy(cfg)
        if nc is not None:
            cfg["nc"] = check_nc(nc)
        cfg["ch"] = int(ch if ch is not None else cfg.get("ch", 3))
        self.cfg: dict[str, Any] = cfg
        layers, self.save = build_layers(cfg, cfg["ch"])
        self.model = nn.ModuleList(layers)
        self.names: list[str] = [str(i) for i in range(cfg["nc"])]
        self.hyp: dict[str, Any] | None = None
        self._init_head()
        _initialize_weights(self)
        if cfg.get("fused"):
            fuse_layers_(self, exact=False)

    @property
    def head(self) -> Detect:
        """The detection head (last layer)."""
        return self.model[-1]

    @property
    def fused(self) -> bool:
        """True when BatchNorms and RepConvs are in their fused (deploy) form."""
        return bool(self.cfg.get("fused"))

    def forward(self, x: torch.Tensor) -> Any:
        """Training mode: list of raw maps (lead then auxiliary); eval: (decoded, raw lead maps)."""
        outputs: list[torch.Tensor | None] = []
        for layer in self.model:
            if layer.f != -1:
                x = (
                    outputs[layer.f]
                    if isinstance(layer.f, int)
                    else [x if j == -1 else outputs[j] for j in layer.f]
                )
            x = layer(x)
            outputs.append(x if layer.i in self.save else None)
        return x

    def _init_head(self, probe: int = 256) -> None:
        head = self.head
        if type(head).__name__ not in HEAD_TYPES:
            raise ValueError(f"the last layer must be a detection head, got {type(head).__name__}")
        key = repr(
            (
                spec_rows(self.cfg),
                self.cfg["ch"],
                self.cfg.get("depth_multiple"),
                self.cfg.get("width_multiple"),
            )
        )
        strides = _STRIDES.get(key)
        if strides is None:
            # strides from a shape-only forward pass (meta tensors: no compute, any model size)
            state = {
                k: torch.empty_like(v, device="meta")
                for k, v in chain(self.named_parameters(), self.named_buffers())
            }
            was_training = self.training
            self.train()
            maps = functional_call(
                self, state, (torch.zeros(1, self.cfg["ch"], probe, probe, device="meta"),)
            )
            self.train(was_training)
            strides = _STRIDES[key] = [probe / m.shape[2] for m in maps[: head.nl]]
        head.stride = torch.tensor(strides, device="cpu")
        self.stride = head.stride
        with torch.no_grad():
            if _anchor_order_reversed(self.cfg["anchors"], strides):  # flip in pixels, then divide
                head.anchors[:] = head.anchors.flip(0)
                head.anchor_grid[:] = head.anchor_grid.flip(0)
            head.anchors /= head.stride.to(head.anchors.device).view(-1, 1, 1)
            head.initialize_biases()
            if isinstance(head, IAuxDetect):
                head.initialize_biases(head.m2)


def _anchor_order_reversed(anchors: Any, strides: list[float]) -> bool:
    """Whether the reference's check_anchor_order flips the levels' anchors: when the sign of (area of the
    last anchor - area of the first) differs from that of (last stride - first stride), equal areas
    included (with one level the flip changes nothing)."""
    if not isinstance(anchors, list) or len(anchors) < 2:
        return False
    first, last = anchors[0][0] * anchors[0][1], anchors[-1][-2] * anchors[-1][-1]
    return _sign(last - first) != _sign(strides[-1] - strides[0])


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _initialize_weights(model: nn.Module) -> None:
    """BatchNorm eps 1e-3 / momentum 0.03 and in-place activations, as the reference initialises."""
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.eps, m.momentum = 1e-3, 0.03
        elif type(m) in (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6):
            m.inplace = True


def fuse_layers_(model: nn.Module, exact: bool = True) -> nn.Module:
    """Fold every BatchNorm into its convolution and every RepConv into one 3x3 convolution, in place
    (``exact=False``: the fused structure only, for weights loaded afterwards)."""
    for m in list(model.modules()):
        if isinstance(m, Conv | RepConv):
            m.fuse_(exact)
    return model
