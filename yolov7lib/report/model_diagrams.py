"""Figures 2-7 drawn from the model code: built models (and blocks) -> diagram :class:`Node` lists.

The adapter reads what a built :class:`~yolov7lib.models.Model` carries: each layer's type, its
from-indices (``.f``), kernel size and stride, its output width (from a shape-only pass on the meta
device), and the labelled groups that :class:`~yolov7lib.models.SpecBuilder` wrote into the spec
(``model.cfg["groups"]``: one ELAN, one E-ELAN and its cardinality groups, the lead and auxiliary
head convolutions, ...). A node's id is its layer index, so a diagram's edges are the layers'
from-indices; a block cut out with :func:`block_nodes` gets one ``input`` node per layer outside the
block that it reads.

- :func:`model_nodes` / :func:`block_nodes`: layers of a model (a group of it) as nodes;
- :func:`residual_block_nodes`: the inside of one residual block of ``models/csp.py`` (dark block,
  reversed dark block, their RepConv forms: Figures 4 and 7);
- :func:`assigner_nodes`: the label-assigner wiring of Figure 5 (c)-(e), from the behaviour of
  :class:`yolov7lib.loss.LabelAssigner` for each of ``loss.AUX_ASSIGNERS``;
- :func:`figure_panels` / :func:`write_architecture_figures`: Figures 2-7 as the paper lays them out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from yolov7lib.models.spec import resolve_from
from yolov7lib.report.diagram import Node

__all__ = [
    "ARCHITECTURE_FIGURES",
    "ASSIGNER_WIRING",
    "LayerGraph",
    "assigner_nodes",
    "block_nodes",
    "build_meta",
    "figure_panels",
    "group_layers",
    "layer_groups",
    "layer_widths",
    "model_nodes",
    "residual_block_nodes",
    "write_architecture_figures",
]

ARCHITECTURE_FIGURES: dict[int, str] = {
    2: "Figure 2: ELAN (YOLOv7 backbone) and E-ELAN (YOLOv7-E6E), drawn from the models",
    3: "Figure 3: model scaling for concatenation-based models (models/scaling.py on YOLOv7)",
    4: "Figure 4: planned re-parameterized model (where RepConv / RepConvN sit)",
    5: "Figure 5: lead and auxiliary heads, and the label assigners",
    6: "Figure 6: planned RepConv 3-stacked ELAN (YOLOv7-X ablation variants)",
    7: "Figure 7: dark block and reversed dark block (CSPDarknet of YOLOR-W6)",
}

HEAD_TYPES = ("Detect", "IDetect", "IAuxDetect")


@dataclass
class LayerGraph:
    """The layers of a spec built by the model's own builder (``models.graph.build_layers``) on the
    meta device, without running the model: what the diagrams read (``.model``, ``.cfg``), in a
    fraction of the time a full :class:`~yolov7lib.models.Model` takes to build."""

    model: nn.ModuleList
    cfg: dict[str, Any]


def build_meta(name_or_cfg: Any) -> LayerGraph:
    """The layers of a registry name, cfg file, spec dict or architecture (``ELANNet`` /
    ``CSPNet``), built on the meta device (no memory, no arithmetic): enough to draw them."""
    from yolov7lib.models import model_spec
    from yolov7lib.models.graph import build_layers

    if hasattr(name_or_cfg, "spec") and not isinstance(name_or_cfg, str | dict):  # an architecture
        cfg = name_or_cfg.spec()
    else:
        cfg = model_spec(name_or_cfg)
    cfg = {**cfg, "ch": cfg.get("ch", 3)}
    with torch.device("meta"):
        layers, _ = build_layers(cfg, cfg["ch"])
    return LayerGraph(nn.ModuleList(layers), cfg)


class _ShapePass(nn.Module):
    """Runs the layers before the head in graph order (as ``Model.forward`` does), recording widths."""

    def __init__(self, layers: nn.ModuleList) -> None:
        super().__init__()
        self.layers = layers
        self.widths: dict[int, int | None] = {}

    def forward(self, x: torch.Tensor) -> None:
        outputs: list[torch.Tensor] = []
        for layer in self.layers[:-1]:
            if layer.f != -1:
                x = (
                    outputs[layer.f]
                    if isinstance(layer.f, int)
                    else [x if j == -1 else outputs[j] for j in layer.f]
                )
            x = layer(x)
            outputs.append(x)
            self.widths[layer.i] = int(x.shape[1])


def layer_widths(model: nn.Module | LayerGraph) -> dict[int, int | None]:
    """Output width (channels) of every layer, from one shape-only pass on meta tensors through the
    layers before the head (eval mode, 128 px); None for the detection head."""
    shapes = _ShapePass(model.model)
    modes = {m: m.training for m in shapes.modules()}
    state = {
        k: torch.empty_like(v, device="meta")
        for k, v in [*shapes.named_parameters(), *shapes.named_buffers()]
    }
    shapes.eval()
    try:
        with torch.no_grad():
            functional_call(shapes, state, (torch.zeros(1, model.cfg.get("ch", 3), 128, 128, device="meta"),))
    finally:
        for m, mode in modes.items():
            m.training = mode
    return {**shapes.widths, len(model.model) - 1: None}


def _groups(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(cfg.get("groups") or [])


def group_layers(model: nn.Module, name: str) -> range:
    """The layer indices of the labelled group `name`; KeyError listing the groups."""
    for g in _groups(model.cfg):
        if g["name"] == name:
            return range(g["first"], g["last"] + 1)
    names = ", ".join(g["name"] for g in _groups(model.cfg))
    raise KeyError(f"the model has no group {name!r}; groups: {names}")


def layer_groups(model: nn.Module, i: int) -> tuple[str, ...]:
    """The group path of layer `i`, outermost first, each written ``name (kind)``."""
    found = [g for g in _groups(model.cfg) if g["first"] <= i <= g["last"]]
    found.sort(key=lambda g: (g["first"], -g["last"]))
    return tuple(f"{g['name']} ({g['kind']})" for g in found)


def _conv_of(layer: nn.Module) -> nn.Conv2d | None:
    for name in ("conv", "rbr_reparam"):
        conv = getattr(layer, name, None)
        if isinstance(conv, nn.Conv2d):
            return conv
    dense = getattr(layer, "rbr_dense", None)
    return dense[0] if isinstance(dense, nn.Sequential) else None


def _kind_label(layer: nn.Module, model: nn.Module) -> tuple[str, str]:
    """Diagram kind and label of one layer, from its type and kernel."""
    t = layer.type
    if t in ("Conv", "RepConv", "RepConvN"):
        conv = _conv_of(layer)
        k, s, g = (conv.kernel_size[0], conv.stride[0], conv.groups) if conv is not None else (3, 1, 1)
        label = f"{k}x{k} conv" if t == "Conv" else t
        label += f", s{s}" if s > 1 else ""
        label += f", g{g}" if g > 1 else ""
        if t != "Conv":
            if getattr(layer, "rbr_identity", "fused") is None:
                label += " (no identity: widths differ)" if t == "RepConv" else ""
            return t, label
        if g > 1:
            return "group-conv", label
        if k == 1 and _reads_concat_in_group(layer, model):
            return "transition", "1x1 transition"
        return ("conv1x1" if k == 1 else "conv3x3"), label
    simple = {
        "Concat": ("concat", "concat"),
        "Shortcut": ("add", "+"),
        "MP": ("pool", "maxpool 2x2, s2"),
        "nn.MaxPool2d": ("pool", "maxpool"),
        "nn.Upsample": ("upsample", "upsample x2"),
        "DownC": ("pool", "DownC"),
        "ReOrg": ("block", "ReOrg"),
    }
    if t in simple:
        return simple[t]
    if t == "SP":
        k = getattr(getattr(layer, "m", None), "kernel_size", "")
        return "pool", f"maxpool {k}x{k}" if k else "maxpool"
    if t in HEAD_TYPES:
        return "head", t
    return "block", t


def _reads_concat_in_group(layer: nn.Module, model: nn.Module) -> bool:
    sources = resolve_from(layer.f, layer.i)
    if len(sources) != 1 or sources[0] < 0:
        return False
    src = model.model[sources[0]]
    return src.type == "Concat" and layer_groups(model, src.i) == layer_groups(model, layer.i)


def _outside_label(model: nn.Module, j: int) -> str:
    if j < 0:
        return "image"
    groups = layer_groups(model, j)
    where = groups[-1].split(" (")[0] if groups else model.model[j].type
    return f"from {j} ({where})"


def model_nodes(
    model: nn.Module,
    layers: Iterable[int] | None = None,
    *,
    split_head: bool = False,
    widths: Mapping[int, int | None] | None = None,
    group_prefix: int = 0,
) -> list[Node]:
    """The given layers of `model` (all by default) as diagram nodes, id = layer index, preceded by
    one ``input`` node per layer outside the selection that they read (id = its index, ``"-1"`` for
    the image). Edges are the layers' from-indices. `split_head` draws an IAuxDetect head as a lead
    head node (``"<i>.lead"``) reading the lead levels and an auxiliary head node (``"<i>.aux"``)
    reading the auxiliary levels. `group_prefix` drops that many outer groups from every path."""
    chosen = sorted(set(range(len(model.model)) if layers is None else layers))
    if not chosen:
        raise ValueError("no layers to draw")
    widths = layer_widths(model) if widths is None else widths
    inside = set(chosen)
    outside: dict[int, None] = {}
    nodes: list[Node] = []
    for i in chosen:
        layer = model.model[i]
        sources = resolve_from(layer.f, i)
        outside.update((j, None) for j in sources if j not in inside)
        kind, label = _kind_label(layer, model)
        group = layer_groups(model, i)[group_prefix:]
        ids = tuple(str(j) for j in sources)
        if split_head and layer.type == "IAuxDetect":
            nl = layer.nl
            nodes.append(Node(f"{i}.lead", f"lead head ({nl} levels)", "lead-head", ids[:nl], group=group))
            nodes.append(Node(f"{i}.aux", f"auxiliary head ({nl} levels)", "aux-head", ids[nl:], group=group))
            continue
        if split_head and layer.type in HEAD_TYPES:
            kind, label = "lead-head", f"lead head ({layer.type})"
        nodes.append(Node(str(i), label, kind, ids, widths.get(i), group))
    inputs = [
        Node(str(j), _outside_label(model, j), "input", (), widths.get(j) if j >= 0 else None)
        for j in outside
    ]
    return inputs + nodes


def block_nodes(model: nn.Module, *groups: str, split_head: bool = False) -> list[Node]:
    """The layers of the named groups (e.g. ``"backbone.stage1"``) with their outside inputs."""
    if not groups:
        raise ValueError("name at least one group")
    layers = [i for name in groups for i in group_layers(model, name)]
    return model_nodes(model, layers, split_head=split_head)


# ---- inside a residual block (models/csp.py): Figures 4 and 7 -------------------------------------


def _conv_node(name: str, module: nn.Module, src: str) -> Node:
    t = type(module).__name__
    conv = _conv_of(module)
    k = conv.kernel_size[0] if conv is not None else 3
    width = conv.out_channels if conv is not None else None
    if t in ("RepConv", "RepConvN"):
        if t == "RepConv" and getattr(module, "rbr_identity", "fused") is None:
            return Node(name, "RepConv (no identity)", "RepConvN", (src,), width)
        return Node(name, t + (" + identity" if t == "RepConv" else ""), t, (src,), width)
    return Node(name, f"{k}x{k} conv", "conv1x1" if k == 1 else "conv3x3", (src,), width)


def residual_block_nodes(block: nn.Module, prefix: str = "") -> list[Node]:
    """The inside of one residual block of ``models/csp.py`` (Bottleneck, RepBottleneck, RBottleneck,
    RepRBottleneck, Res, ResX): input, its convolutions in order (``cv1``, ``cv2``, ``cv3``), and the
    residual addition when the block has one (``block.add``)."""
    convs = [(n, m) for n, m in block.named_children() if n.startswith("cv")]
    if not convs:
        raise ValueError(f"{type(block).__name__} has no cv1/cv2 convolutions: not a residual block")
    first = _conv_of(convs[0][1])
    c_in = first.in_channels if first is not None else None
    nodes = [Node(f"{prefix}in", "input", "input", (), c_in)]
    x = f"{prefix}in"
    for name, module in convs:
        nodes.append(_conv_node(f"{prefix}{name}", module, x))
        x = f"{prefix}{name}"
    if getattr(block, "add", False):
        nodes.append(Node(f"{prefix}add", "+", "add", (x, f"{prefix}in")))
        x = f"{prefix}add"
    nodes.append(Node(f"{prefix}out", "output", "output", (x,)))
    return nodes


# ---- label assigners: Figure 5 (c)-(e) ---------------------------------------------------------------

# What LabelAssigner does with the auxiliary head for each AUX_ASSIGNERS mode (loss/assigners.py):
# which head's predictions guide the auxiliary head's assignment, and which labels it gets.
ASSIGNER_WIRING: dict[str, dict[str, str]] = {
    "independent": {
        "aux_guide": "aux",
        "aux_labels": "own fine labels",
        "panel": "(c) independent assigners",
    },
    "lead_guided": {
        "aux_guide": "lead",
        "aux_labels": "lead's fine labels",
        "panel": "(d) lead guided assigner",
    },
    "coarse_to_fine": {
        "aux_guide": "lead",
        "aux_labels": "coarse labels",
        "panel": "(e) coarse-to-fine lead guided assigner",
    },
}


def assigner_nodes(mode: str) -> list[Node]:
    """Figure 5 (c)-(e): heads, ground truth, assigners, labels and losses for the auxiliary-head
    assigner `mode` (one of ``loss.AUX_ASSIGNERS``); ``"lead_only"`` is the normal model (one head)."""
    from yolov7lib.loss import AUX_ASSIGNERS

    nodes = [
        Node("fpn", "backbone + neck", "block"),
        Node("lead", "lead head", "lead-head", ("fpn",)),
        Node("gt", "ground truth", "input"),
        Node("assign", "assigner (SimOTA, fine)", "assigner", ("lead", "gt")),
        Node("fine", "fine labels", "label", ("assign",)),
        Node("lead_loss", "lead loss", "loss", ("lead", "fine")),
    ]
    if mode == "lead_only":
        return nodes
    if mode not in AUX_ASSIGNERS:
        raise ValueError(f"mode must be 'lead_only' or one of {', '.join(AUX_ASSIGNERS)}, got {mode!r}")
    nodes.append(Node("aux", "auxiliary head", "aux-head", ("fpn",)))
    if mode == "independent":
        nodes.append(Node("assign_aux", "assigner (SimOTA, fine)", "assigner", ("aux", "gt")))
        nodes.append(Node("aux_labels", "fine labels (aux)", "label", ("assign_aux",)))
        aux_labels = "aux_labels"
    elif mode == "lead_guided":
        aux_labels = "fine"
    else:  # coarse_to_fine: the lead-guided assigner also gives coarse labels
        nodes[3] = Node("assign", "lead guided assigner (SimOTA)", "assigner", ("lead", "gt"))
        nodes.append(Node("coarse", "coarse labels", "label", ("assign",)))
        aux_labels = "coarse"
    if mode == "lead_guided":
        nodes[3] = Node("assign", "lead guided assigner (SimOTA)", "assigner", ("lead", "gt"))
        nodes[4] = Node("fine", "soft labels", "label", ("assign",))
    nodes.append(Node("aux_loss", "auxiliary loss", "loss", ("aux", aux_labels)))
    return nodes


# ---- the figures -------------------------------------------------------------------------------------


def _entry_arch(name: str) -> Any:
    from yolov7lib.models.registry import get_entry

    return get_entry(name).arch


def figure_panels(number: int) -> dict[str, list[Node]]:
    """The panels (title -> nodes) of Figure `number` (2-7), drawn from the models."""
    from yolov7lib.models import csp, scaling

    if number == 2:
        v7, e6e = build_meta("yolov7"), build_meta("yolov7-e6e")
        return {
            "(c) ELAN: yolov7 backbone.stage1": block_nodes(v7, "backbone.stage1"),
            "(d) E-ELAN: yolov7-e6e backbone.stage1 (2 cardinality groups, merged)": block_nodes(
                e6e, "backbone.stage1"
            ),
        }
    if number == 3:
        light = _entry_arch("yolov7x-light")
        models = {
            "(a) base: v7-X light": light,
            "(b) depth x1.5 only (scale_depth)": scaling.scale_depth(light, 1.5),
            "(c) compound: yolov7x (transitions x1.25)": scaling.compound_scale(light, 1.5),
        }
        return {title: block_nodes(build_meta(arch), "backbone.stage1") for title, arch in models.items()}
    if number == 4:
        v7, fig6c = build_meta("yolov7"), build_meta("yolov7x-fig6c")
        return {
            "(a) plain: RepConv before the lead head (yolov7)": block_nodes(v7, "lead"),
            "(b) residual: RepConv on the sum (RepCSP)": residual_block_nodes(
                csp.RepBottleneck(64, 64, e=1.0)
            ),
            "(c) residual: RepConv first (RepRCSP)": residual_block_nodes(csp.RepRBottleneck(64, 64, e=1.0)),
            "(d) concatenation: RepConvN (yolov7x-fig6c)": block_nodes(fig6c, "backbone.stage1"),
        }
    if number == 5:
        v7, w6 = build_meta("yolov7"), build_meta("yolov7-w6")
        panels = {
            "(a) normal model: lead head (yolov7)": block_nodes(v7, "lead", "head", split_head=True),
            "(b) with auxiliary head (yolov7-w6)": block_nodes(w6, "lead", "aux", "head", split_head=True),
        }
        for mode, wiring in ASSIGNER_WIRING.items():
            panels[wiring["panel"]] = assigner_nodes(mode)
        return panels
    if number == 6:
        from yolov7lib.models.ablations import FIGURE6

        return {
            f"({letter}) yolov7x-fig6{letter}": block_nodes(
                build_meta(f"yolov7x-fig6{letter}"), "backbone.stage1"
            )
            for letter in FIGURE6
        }
    if number == 7:
        dark, reversed_dark = csp.BottleneckCSPA(128, 128, 1), csp.RBottleneckCSPA(128, 128, 1)
        n_dark = sum(p.numel() for p in dark.m.parameters())
        n_rev = sum(p.numel() for p in reversed_dark.m.parameters())
        return {
            f"dark block (BottleneckCSPA), {n_dark:,} params": residual_block_nodes(dark.m[0]),
            f"reversed dark block (RBottleneckCSPA), {n_rev:,} params": residual_block_nodes(
                reversed_dark.m[0]
            ),
        }
    raise ValueError(f"architecture figures are {sorted(ARCHITECTURE_FIGURES)}, not {number!r}")


def write_architecture_figures(
    out_dir: str | os.PathLike[str], numbers: Sequence[int] = tuple(ARCHITECTURE_FIGURES)
) -> dict[int, Path]:
    """Write ``figure<N>.png`` for each of `numbers` (2-7) into `out_dir`."""
    from yolov7lib.report.figures import write_diagram

    ncols = {4: 2, 5: 2, 6: 3}
    out = {}
    for n in numbers:
        panels = figure_panels(n)
        out[n] = write_diagram(panels, Path(out_dir) / f"figure{n}.png", title=ARCHITECTURE_FIGURES[n],
                               ncols=ncols.get(n))  # fmt: skip
    return out
