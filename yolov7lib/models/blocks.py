"""Builder functions: the blocks of the paper written into a spec as rows of layers.

Each function takes a :class:`~yolov7lib.models.spec.SpecBuilder`, the absolute index of its input
layer, appends its layers inside a labelled group and returns the index of its output layer. The
groups are what the Figure 2-7 notebooks draw.

- :func:`elan`: the ELAN computational block and its transition (Figure 2c); with
  ``cardinality > 1`` the E-ELAN of Section 3.1 (Figure 2d, the E6E form of the reference):
  ``g`` copies of the block on the same input (the expanded, group-convolved computational block),
  each ending in its own transition, merged by summation (merge cardinality).
- :func:`mp_transition`: the two-branch max-pool / strided-conv down-sampling of YOLOv7 and -X.
- :func:`down_transition`: strided 3x3 conv (W6) or DownC (E6, D6, E6E) down-sampling.
- :func:`sppcspc`, :func:`sppcspc_tiny`: the SPP-in-CSP block (one layer, or rows for the tiny models).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from yolov7lib.models.spec import SpecBuilder

__all__ = [
    "ELAN",
    "conv",
    "down_transition",
    "elan",
    "mp_transition",
    "sppcspc",
    "sppcspc_tiny",
]

# Where the 3x3 convolutions of an ELAN stack become RepConv / RepConvN (Table 4, Figure 6):
# position of the conv inside its stack ("first" / "last" / "all") -> layer type.
RepPlacement = tuple[tuple[Literal["first", "last", "all"], str], ...]


@dataclass(frozen=True)
class ELAN:
    """An ELAN computational block and its transition layer (Section 3.1, Figure 2c).

    Two 1x1 convolutions of width ``branch`` read the block input; ``stacks`` stacks of
    ``convs_per_stack`` 3x3 convolutions of width ``hidden`` follow the second one; the outputs of the
    stacks and of both 1x1 convolutions are concatenated (width :attr:`concat_width`) and a 1x1
    transition of width ``out`` closes the block. ``stacks`` is the depth that compound scaling
    multiplies (Section 3.2). The backbone form has 2 convs per stack at full width; the neck of
    YOLOv7 and of the P6 models uses 1 conv per stack at half width (every 3x3 output concatenated).
    ``cardinality > 1`` makes it an E-ELAN. ``rep`` places RepConv / RepConvN (Table 4 ablation).
    """

    branch: int
    hidden: int
    stacks: int
    convs_per_stack: int
    out: int
    cardinality: int = 1
    rep: RepPlacement = ()

    @property
    def concat_width(self) -> int:
        """Width of the concatenation that feeds the transition layer (output width of the block)."""
        return 2 * self.branch + self.stacks * self.hidden

    def scaled(self, **changes: int) -> ELAN:
        return replace(self, **changes)


def conv(
    b: SpecBuilder,
    c: int,
    k: int = 1,
    s: int = 1,
    src: int | None = None,
    act: str | None = None,
    kind: str = "Conv",
) -> int:
    """One conv-BN-activation layer (or RepConv / RepConvN with ``kind``)."""
    args: list[object] = [c, k, s]
    if act is not None:
        args += [None, 1, act]
    return b.add(kind, args, src)


def _conv3_kind(spec: ELAN, position: int) -> str:
    """Layer type of the 3x3 conv at ``position`` (0-based) inside its stack."""
    kind = "Conv"
    last = spec.convs_per_stack - 1
    for where, layer in spec.rep:
        if where == "all" or (where == "first" and position == 0) or (where == "last" and position == last):
            kind = layer
    return kind


def elan(b: SpecBuilder, spec: ELAN, src: int, name: str, act: str | None = None) -> tuple[int, int]:
    """Append an ELAN (or E-ELAN when ``spec.cardinality > 1``) reading layer ``src``.

    Returns (output, partial output): the merged output and, for an E-ELAN, the output of its last
    cardinality group before the merge (where the partial auxiliary head of E6E attaches, Section
    5.4.3); both are the block output for a plain ELAN.
    """
    kind = "E-ELAN" if spec.cardinality > 1 else "ELAN"
    with b.group(name, kind, **_describe(spec)):
        outs = []
        for g in range(spec.cardinality):
            sub = f"{name}.{g}" if spec.cardinality > 1 else None
            outs.append(_elan_group(b, spec, src, sub, act))
        if spec.cardinality == 1:
            return outs[0], outs[0]
        merged = b.add("Shortcut", [1], list(reversed(outs)))
        return merged, outs[-1]


def _describe(spec: ELAN) -> dict[str, object]:
    return {
        "branch": spec.branch,
        "hidden": spec.hidden,
        "stacks": spec.stacks,
        "convs_per_stack": spec.convs_per_stack,
        "out": spec.out,
        "cardinality": spec.cardinality,
    }


def _elan_group(b: SpecBuilder, spec: ELAN, src: int, sub: str | None, act: str | None) -> int:
    def body() -> int:
        first = conv(b, spec.branch, 1, 1, src, act)
        second = conv(b, spec.branch, 1, 1, src, act)
        x, stack_outputs = second, []
        for _ in range(spec.stacks):
            for position in range(spec.convs_per_stack):
                x = conv(b, spec.hidden, 3, 1, x, act, kind=_conv3_kind(spec, position))
            stack_outputs.append(x)
        cat = b.add("Concat", [1], [*reversed(stack_outputs), second, first])
        return conv(b, spec.out, 1, 1, cat, act)

    if sub is None:
        return body()
    with b.group(sub, "ELAN"):
        return body()


def mp_transition(
    b: SpecBuilder, c: int, src: int, name: str, act: str | None = None, lateral: int | None = None
) -> int:
    """Two-branch down-sampling of YOLOv7: concat(3x3 s2 conv branch, max-pool branch [, lateral])."""
    with b.group(name, "MP"):
        pooled = b.add("MP", [], src)
        pooled = conv(b, c, 1, 1, pooled, act)
        strided = conv(b, c, 1, 1, src, act)
        strided = conv(b, c, 3, 2, strided, act)
        inputs = [strided, pooled] + ([] if lateral is None else [lateral])
        return b.add("Concat", [1], inputs)


def down_transition(
    b: SpecBuilder, kind: str, c: int, src: int, name: str, act: str | None = None, lateral: int | None = None
) -> int:
    """Down-sampling by ``kind``: "MPConv" (:func:`mp_transition`), "Conv" (3x3 stride 2), "DownC" or
    "MP" (max-pool only, ``c`` ignored); ``lateral`` is concatenated after it (PAN bottom-up path)."""
    if kind == "MPConv":
        return mp_transition(b, c, src, name, act, lateral)
    with b.group(name, kind):
        if kind == "Conv":
            x = conv(b, c, 3, 2, src, act)
        elif kind == "DownC":
            x = b.add("DownC", [c], src)
        elif kind == "MP":
            x = b.add("MP", [], src)
        else:
            raise ValueError(f"unknown down-sampling {kind!r}; valid: MPConv, Conv, DownC, MP")
        return x if lateral is None else b.add("Concat", [1], [x, lateral])


def sppcspc(b: SpecBuilder, c: int, src: int, name: str = "SPPCSPC") -> int:
    """The SPPCSPC block (one layer)."""
    with b.group(name, "SPPCSPC"):
        return b.add("SPPCSPC", [c], src)


def sppcspc_tiny(b: SpecBuilder, c: int, src: int, act: str | None, name: str = "SPPCSPC") -> int:
    """The tiny models' SPP-in-CSP block written as rows (pools 5, 9, 13 by :class:`SP` layers)."""
    with b.group(name, "SPPCSPC"):
        cross = conv(b, c, 1, 1, src, act)
        x = conv(b, c, 1, 1, src, act)
        pools = [b.add("SP", [k], x) for k in (5, 9, 13)]
        y = b.add("Concat", [1], [*reversed(pools), x])
        y = conv(b, c, 1, 1, y, act)
        y = b.add("Concat", [1], [y, cross])
        return conv(b, c, 1, 1, y, act)
