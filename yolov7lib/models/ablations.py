"""The ablation architectures of Tables 4-8, registered by name. Each is a reading of the paper written
down here, since the official repository ships no cfg for them.

Table 4 (planned RepConcatenation, Figure 6): the 3-stacked ELAN model is YOLOv7-X, whose every ELAN
(backbone and neck) has three stacks of two 3x3 convolutions. Figure 6 marks where 3x3 convolutions
become re-parameterized; its drawing is not in the text we have, so the five variants below are our
reading of it, built to separate the two factors Section 4.1 discusses, position and identity branch
(the second conv of each stack is the one whose output is concatenated):

- ``yolov7x-fig6a``: every 3x3 conv of every ELAN -> RepConv (identity branch everywhere);
- ``yolov7x-fig6b``: the first conv of each stack (output not concatenated) -> RepConv (planned);
- ``yolov7x-fig6c``: the second conv of each stack (output concatenated) -> RepConvN (planned);
- ``yolov7x-fig6d``: the second conv of each stack -> RepConv, identity on a concatenated output;
- ``yolov7x-fig6e``: every 3x3 conv -> RepConvN.

Table 5 (planned RepResidual, Figure 7), on YOLOR-W6 and YOLOR-CSP: the residual blocks of the
CSPDarknet backbone (the stages' CSP blocks; the stem's single dark block and the neck's CSP blocks,
which have no residual, are unchanged) become

- ``-repcsp``: dark blocks whose 3x3 is a RepConv (RepBottleneckCSP*),
- ``-rcsp``: reversed dark blocks, 3x3 then 1x1 (RBottleneckCSP*; same parameters as the base),
- ``-reprcsp``: reversed dark blocks whose leading 3x3 is a RepConv (RepRBottleneckCSP*).

Tables 6 and 7 (auxiliary head): ``yolov7-e6-noaux`` is the base, YOLOv7-E6 trained without the
auxiliary head (IDetect on the four lead levels); the other rows are YOLOv7-E6 with label assigners.

Table 8 (partial auxiliary head, Section 5.4.3): ``yolov7-e6e-noaux`` (no auxiliary head),
``yolov7-e6e-aux`` (auxiliary head attached after merging cardinality: it reads the same E-ELAN outputs
as the next pyramid level) and ``yolov7-e6e`` itself (partial: attached to one cardinality group's
output before the merge, as the official E6E does).
"""

from __future__ import annotations

from dataclasses import replace

from yolov7lib.models.architectures import CSPNet, ELANNet
from yolov7lib.models.blocks import ELAN, RepPlacement

__all__ = ["FIGURE6", "register_ablations", "with_rep", "with_residual_blocks", "without_aux"]

FIGURE6: dict[str, RepPlacement] = {
    "a": (("all", "RepConv"),),
    "b": (("first", "RepConv"),),
    "c": (("last", "RepConvN"),),
    "d": (("last", "RepConv"),),
    "e": (("all", "RepConvN"),),
}
RESIDUAL_VARIANTS = {"repcsp": "RepBottleneckCSP", "rcsp": "RBottleneckCSP", "reprcsp": "RepRBottleneckCSP"}


def with_rep(arch: ELANNet, placement: RepPlacement) -> ELANNet:
    """Every ELAN of ``arch`` with its 3x3 convolutions re-parameterized as ``placement`` says."""

    def placed(blocks: tuple[ELAN, ...]) -> tuple[ELAN, ...]:
        return tuple(replace(b, rep=placement) for b in blocks)

    return replace(
        arch, stages=placed(arch.stages), top_down=placed(arch.top_down), bottom_up=placed(arch.bottom_up)
    )


def with_residual_blocks(arch: CSPNet, variant: str) -> CSPNet:
    """The backbone CSP blocks of ``arch`` rebuilt from another residual block (Table 5)."""
    prefix = RESIDUAL_VARIANTS[variant]
    stages = []
    for stage in arch.stages:
        if not stage.block.startswith("BottleneckCSP"):
            raise ValueError(f"{stage.block} is not a CSP block of dark blocks")
        stages.append(replace(stage, block=prefix + stage.block[-1]))
    return replace(arch, stages=tuple(stages))


def without_aux(arch: ELANNet) -> ELANNet:
    """The model trained without an auxiliary head: IDetect on the lead levels only."""
    return replace(arch, aux_outputs=(), head="IDetect")


def register_ablations() -> None:
    """Register the Table 4-8 architectures (called by the registry)."""
    from yolov7lib.models.registry import get_entry, register_model

    def arch(name: str) -> ELANNet | CSPNet:
        entry = get_entry(name).arch
        assert entry is not None
        return entry

    yolov7x = arch("yolov7x")
    assert isinstance(yolov7x, ELANNet)
    for letter, placement in FIGURE6.items():
        register_model(f"yolov7x-fig6{letter}", with_rep(yolov7x, placement), 640, "YOLOv7 paper, Table 4")
    for base, variants in (("yolor-w6", ("repcsp", "rcsp", "reprcsp")), ("yolor-csp", ("reprcsp",))):
        residual = arch(base)
        assert isinstance(residual, CSPNet)
        size = get_entry(base).img_size
        for variant in variants:
            register_model(
                f"{base}-{variant}", with_residual_blocks(residual, variant), size, "YOLOv7 paper, Table 5"
            )
    e6, e6e = arch("yolov7-e6"), arch("yolov7-e6e")
    assert isinstance(e6, ELANNet) and isinstance(e6e, ELANNet)
    register_model("yolov7-e6-noaux", without_aux(e6), 1280, "YOLOv7 paper, Tables 6 and 7")
    register_model("yolov7-e6e-noaux", without_aux(e6e), 1280, "YOLOv7 paper, Table 8")
    register_model("yolov7-e6e-aux", replace(e6e, aux_partial=False), 1280, "YOLOv7 paper, Table 8")
