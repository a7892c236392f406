"""Compound model scaling for concatenation-based models (paper Section 3.2, Figure 3, Table 3).

In an ELAN, scaling the depth of the computational block (its number of stacks) changes the width of
the concatenation that feeds the block's transition layer (Figure 3 a -> b). The paper's rule
(Figure 3 c): scale the depth of the computational blocks, compute the resulting change of their
output width, and scale the width of the transition layers by that same factor.

Here the *computational blocks* are the ELANs' 1x1 entry convolutions and 3x3 stacks (their widths
``branch`` / ``hidden`` are kept); the *transition layers* are every other layer of an
:class:`~yolov7lib.models.architectures.ELANNet`: the stem, the ELANs' closing 1x1 convolutions,
the down-sampling layers, SPPCSPC, the neck's lateral convolutions and the convolutions feeding the
lead head. The auxiliary head's convolutions are not scaled (the official E6 keeps W6's).

YOLOv7-X comes out of YOLOv7 as ``compound_scale(v7x_light(yolov7), depth=1.5)``: "stack scaling on
neck" (Section 5.1) first, then depth x1.5, which widens every block's output by 5/4, hence
transition width x1.25 (Section 5.4.1).
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any

from yolov7lib.models.architectures import ELANNet
from yolov7lib.models.blocks import ELAN

__all__ = ["compound_scale", "scale_depth", "scale_width", "stack_neck", "v7x_light"]

BLOCK_FIELDS = ("stages", "top_down", "bottom_up")


def _round_width(x: float) -> int:
    """Round a scaled width up to a multiple of 8 (as the reference's width multiple does)."""
    return int(math.ceil(x / 8 - 1e-9) * 8) if x > 0 else 0


def _scale_widths(value: Any, factor: float) -> Any:
    """Scale an int width, a tuple of widths or a tuple of (width, stride) stem pairs."""
    if isinstance(value, int):
        return _round_width(value * factor)
    if value and isinstance(value[0], tuple):
        return tuple((_round_width(w * factor), *rest) for w, *rest in value)
    return tuple(_round_width(w * factor) for w in value)


def _transition_fields(arch: ELANNet) -> dict[str, Any]:
    return {f.name: getattr(arch, f.name) for f in fields(arch) if f.metadata.get("role") == "transition"}


def _blocks(arch: ELANNet) -> list[ELAN]:
    return [block for name in BLOCK_FIELDS for block in getattr(arch, name)]


def scale_depth(arch: ELANNet, depth: float) -> ELANNet:
    """Multiply the number of stacks of every computational block; transition layers unchanged
    (Figure 3 b, Table 3 "depth only"): each block's output (concatenation) widens accordingly."""
    changes = {
        name: tuple(b.scaled(stacks=max(1, round(b.stacks * depth))) for b in getattr(arch, name))
        for name in BLOCK_FIELDS
    }
    return replace(arch, **changes)


def scale_width(arch: ELANNet, width: float, blocks: bool = True) -> ELANNet:
    """Multiply the width of the transition layers and, with ``blocks``, of the computational blocks
    too (Table 3 "width only" scales every layer)."""
    changes: dict[str, Any] = {name: _scale_widths(v, width) for name, v in _transition_fields(arch).items()}
    for name in BLOCK_FIELDS:
        scaled = []
        for b in getattr(arch, name):
            inner = {"branch": _round_width(b.branch * width), "hidden": _round_width(b.hidden * width)}
            scaled.append(b.scaled(out=_round_width(b.out * width), **(inner if blocks else {})))
        changes[name] = tuple(scaled)
    return replace(arch, **changes)


def output_width_change(before: ELANNet, after: ELANNet) -> float:
    """The change of the computational blocks' output width between two depths of one architecture;
    ValueError when the blocks do not all change by the same factor."""
    ratios = {b.concat_width / a.concat_width for a, b in zip(_blocks(before), _blocks(after), strict=True)}
    if len({round(r, 9) for r in ratios}) != 1:
        raise ValueError(f"computational blocks widen by different factors {sorted(ratios)}; no single width")
    return ratios.pop()


def compound_scale(arch: ELANNet, depth: float) -> ELANNet:
    """The paper's compound scaling (Section 3.2, Figure 3 c): depth x ``depth`` in the computational
    blocks, then the transition layers' width x the resulting change of the blocks' output width."""
    deeper = scale_depth(arch, depth)
    return scale_width(deeper, output_width_change(arch, deeper), blocks=False)


def stack_neck(arch: ELANNet) -> ELANNet:
    """Stack scaling on the neck (Section 5.1): neck ELANs of one half-width 3x3 conv per stack become
    stacks of two full-width 3x3 convs (the backbone's form) with the same concatenation width."""

    def stacked(b: ELAN) -> ELAN:
        if b.convs_per_stack != 1:
            return b
        stacks, remainder = divmod(b.concat_width - 2 * b.branch, b.branch)
        if remainder or stacks < 1:
            raise ValueError(
                f"cannot stack {b}: its 3x3 outputs do not add up to whole stacks of width {b.branch}"
            )
        return b.scaled(hidden=b.branch, stacks=stacks, convs_per_stack=2)

    return replace(
        arch,
        top_down=tuple(stacked(b) for b in arch.top_down),
        bottom_up=tuple(stacked(b) for b in arch.bottom_up),
    )


def v7x_light(arch: ELANNet) -> ELANNet:
    """Table 3's base "v7-X light": YOLOv7 with stack scaling on the neck and plain 3x3 convolutions
    before the head (YOLOv7-X has no RepConv there; fused, both are one 3x3 convolution)."""
    return replace(stack_neck(arch), output_conv="Conv")
