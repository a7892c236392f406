"""Architectures as code: a few numbers per model, turned into a spec by builder functions.

- :class:`ELANNet`: the YOLOv7 family (tiny, P5 and P6 models): stem, ELAN / E-ELAN backbone stages,
  SPPCSPC, a PAN neck of ELANs, lead (and auxiliary) output convolutions, the head.
- :class:`CSPNet`: the CSP baselines (YOLOv4-CSP, YOLOR-CSP/-X, YOLOR-P6/W6/E6/D6, CSP-ResNet/-ResNeXt):
  CSP stages, SPPCSPC, a PAN neck of CSP blocks.
- :func:`yolov3_spec`: Darknet-53 with the YOLOv3 FPN head (YOLOv3, YOLOv3-SPP).

The numbers of every registered model are in :mod:`yolov7lib.models.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from yolov7lib.models.blocks import ELAN, conv, down_transition, elan, sppcspc, sppcspc_tiny
from yolov7lib.models.spec import SpecBuilder

__all__ = ["ANCHORS_P5", "ANCHORS_P6", "ANCHORS_TINY", "CSPNet", "CSPStage", "ELANNet", "yolov3_spec"]

Anchors = tuple[tuple[int, ...], ...]
ANCHORS_P5: Anchors = ((12, 16, 19, 36, 40, 28), (36, 75, 76, 55, 72, 146), (142, 110, 192, 243, 459, 401))
ANCHORS_TINY: Anchors = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))
ANCHORS_P6: Anchors = (
    (19, 27, 44, 40, 38, 94),
    (96, 68, 86, 152, 180, 137),
    (140, 301, 303, 264, 238, 542),
    (436, 615, 739, 380, 925, 792),
)
HEAD_ARGS = ["nc", "anchors"]
Down = Literal["MPConv", "Conv", "DownC", "MP"]


def transition(*, aux: bool = False, default: Any = None) -> Any:
    """Field marker: a transition-layer width (scaled by compound scaling), or an auxiliary one (not)."""
    metadata = {"role": "aux" if aux else "transition"}
    return field(metadata=metadata) if default is None else field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ELANNet:
    """A YOLOv7 detector (Section 3, Figures 2-3), from its stage widths, ELAN depths and head type.

    ``stem``: (width, stride) of the 3x3 stem convolutions (after a ReOrg when ``reorg``).
    ``stages``: backbone ELANs, shallow to deep; the last ``len(top_down) + 1`` are the pyramid levels.
    ``down``: width of the down-sampling before each of the last ``len(down)`` stages (``down_type``).
    ``spp``: SPPCSPC width at the deepest level.
    ``lateral``: widths of the top-down reduce / route 1x1 convolutions, deep to shallow.
    ``top_down`` / ``bottom_up``: the neck ELANs; ``neck_down``: widths of the bottom-up down-sampling.
    ``outputs``: 3x3 convolutions feeding the lead head (``output_conv`` type), shallow to deep.
    ``aux_outputs``: 3x3 convolutions feeding the auxiliary head; they read the top-down outputs and
    the SPPCSPC (Figure 5b), or with ``aux_partial`` the last cardinality group of each top-down
    E-ELAN before its merge (the partial auxiliary head of E6E, Section 5.4.3).
    ``head``: "IDetect" (training graph of P5 models), "IAuxDetect" (P6), or "Detect".
    ``act``: activation of every conv (None = SiLU); ``spp_tiny`` writes SPPCSPC as rows (tiny models).
    """

    stem: tuple[tuple[int, int], ...] = transition()
    stages: tuple[ELAN, ...]
    down: tuple[int, ...] = transition()
    spp: int = transition()
    lateral: tuple[int, ...] = transition()
    top_down: tuple[ELAN, ...]
    neck_down: tuple[int, ...] = transition()
    bottom_up: tuple[ELAN, ...]
    outputs: tuple[int, ...] = transition()
    aux_outputs: tuple[int, ...] = transition(aux=True, default=())
    down_type: Down = "MPConv"
    neck_down_type: Down = "MPConv"
    output_conv: str = "RepConv"
    aux_partial: bool = False
    head: str = "IDetect"
    reorg: bool = False
    act: str | None = None
    spp_tiny: bool = False
    anchors: Anchors = ANCHORS_P5

    def spec(self, name: str | None = None, nc: int = 80) -> dict[str, Any]:
        """The architecture as an official-format spec dict."""
        b, act = SpecBuilder(), self.act
        x: int | None = None
        with b.group("stem", "stem"):
            if self.reorg:
                x = b.add("ReOrg", [])
            for c, s in self.stem:
                x = conv(b, c, 3, s, x, act)
        assert x is not None, "an ELANNet needs a stem"
        levels: list[int] = []
        first_down = len(self.stages) - len(self.down)
        for k, stage in enumerate(self.stages):
            if k >= first_down:
                x = down_transition(b, self.down_type, self.down[k - first_down], x, f"backbone.down{k}", act)
            x, _ = elan(b, stage, x, f"backbone.stage{k}", act)
            levels.append(x)
        b.end_backbone()

        n_levels = len(self.top_down) + 1
        pyramid = levels[-n_levels:]  # backbone outputs P3 .. deepest
        if self.spp_tiny:
            spp = sppcspc_tiny(b, self.spp, pyramid[-1], act)
        else:
            spp = sppcspc(b, self.spp, pyramid[-1])
        td_out, td_partial, x = [spp], [spp], spp  # deep to shallow
        for k, block in enumerate(self.top_down):
            level = n_levels - 2 - k
            with b.group(f"neck.up{level}", "upsample"):
                reduced = conv(b, self.lateral[k], 1, 1, x, act)
                up = b.add("nn.Upsample", [None, 2, "nearest"], reduced)
                route = conv(b, self.lateral[k], 1, 1, pyramid[level], act)
                cat = b.add("Concat", [1], [route, up])
            x, partial = elan(b, block, cat, f"neck.top_down{level}", act)
            td_out.append(x)
            td_partial.append(partial)
        td_out, td_partial = td_out[::-1], td_partial[::-1]  # shallow to deep, SPPCSPC last
        lead = [x]
        for k, block in enumerate(self.bottom_up):
            level = k + 1
            x = down_transition(
                b, self.neck_down_type, self.neck_down[k], x, f"neck.down{level}", act, lateral=td_out[level]
            )
            x, _ = elan(b, block, x, f"neck.bottom_up{level}", act)
            lead.append(x)

        with b.group("lead", "lead head convs"):
            heads = [
                conv(b, c, 3, 1, src, act, kind=self.output_conv)
                for c, src in zip(self.outputs, lead, strict=True)
            ]
        if self.aux_outputs:
            sources = td_partial if self.aux_partial else td_out
            with b.group("aux", "auxiliary head convs"):
                heads += [
                    conv(b, c, 3, 1, src, act) for c, src in zip(self.aux_outputs, sources, strict=True)
                ]
        with b.group("head", self.head):
            b.add(self.head, HEAD_ARGS, heads)
        return b.spec(self.anchors, nc=nc, name=name)


@dataclass(frozen=True)
class CSPStage:
    """A CSP backbone stage: an optional stride-2 transition, then a block repeated n times."""

    down: int | None
    block: str
    n: int
    width: int


@dataclass(frozen=True)
class CSPNet:
    """A CSP baseline detector (YOLOv4-CSP, YOLOR, CSP-ResNet): CSP backbone, SPPCSPC, CSP-PAN neck.

    ``stem``: rows (module, args) before the stages; ``stages``: shallow to deep, the last
    ``len(lateral) + 1`` being the pyramid levels; ``lateral``: top-down reduce / route widths (also the
    top-down block widths), deep to shallow; ``neck_block`` repeated ``neck_n`` times in every neck node;
    ``neck_down`` / ``bottom_up``: bottom-up transition and block widths; ``outputs``: 3x3 convs before
    the head, shallow to deep. ``depth_multiple`` / ``width_multiple`` scale as in Scaled-YOLOv4.
    """

    stem: tuple[tuple[str, tuple[Any, ...]], ...]
    stages: tuple[CSPStage, ...]
    spp: int
    lateral: tuple[int, ...]
    neck_block: str
    neck_n: int
    neck_down: tuple[int, ...]
    bottom_up: tuple[int, ...]
    outputs: tuple[int, ...]
    down_type: Literal["Conv", "DownC"] = "Conv"
    head: str = "IDetect"
    depth_multiple: float = 1.0
    width_multiple: float = 1.0
    anchors: Anchors = ANCHORS_P5

    def spec(self, name: str | None = None, nc: int = 80) -> dict[str, Any]:
        """The architecture as an official-format spec dict."""
        b = SpecBuilder()
        levels = _csp_backbone(b, self.stem, self.stages, self.down_type)
        n_levels = len(self.lateral) + 1
        pyramid = levels[-n_levels:]
        spp = sppcspc(b, self.spp, pyramid[-1])
        td_out, x = [spp], spp
        for k, width in enumerate(self.lateral):
            level = n_levels - 2 - k
            with b.group(f"neck.up{level}", "upsample"):
                reduced = conv(b, width, 1, 1, x)
                up = b.add("nn.Upsample", [None, 2, "nearest"], reduced)
                route = conv(b, width, 1, 1, pyramid[level])
                cat = b.add("Concat", [1], [route, up])
            with b.group(f"neck.top_down{level}", self.neck_block):
                x = b.add(self.neck_block, [width], cat, n=self.neck_n)
            td_out.append(x)
        td_out = td_out[::-1]
        heads = [conv(b, self.outputs[0], 3, 1, x)]
        for k, (down, width) in enumerate(zip(self.neck_down, self.bottom_up, strict=True)):
            level = k + 1
            with b.group(f"neck.down{level}", self.down_type):
                y = conv(b, down, 3, 2, x) if self.down_type == "Conv" else b.add("DownC", [down], x)
                cat = b.add("Concat", [1], [y, td_out[level]])
            with b.group(f"neck.bottom_up{level}", self.neck_block):
                x = b.add(self.neck_block, [width], cat, n=self.neck_n)
            heads.append(conv(b, self.outputs[level], 3, 1, x))
        with b.group("head", self.head):
            b.add(self.head, HEAD_ARGS, heads)
        return b.spec(self.anchors, nc, name, self.depth_multiple, self.width_multiple)


def _csp_backbone(
    b: SpecBuilder,
    stem: tuple[tuple[str, tuple[Any, ...]], ...],
    stages: tuple[CSPStage, ...],
    down_type: str,
) -> list[int]:
    with b.group("stem", "stem"):
        for module, args in stem:
            b.add(module, list(args))
    levels = []
    for k, stage in enumerate(stages):
        with b.group(f"backbone.stage{k}", stage.block):
            if stage.down is not None:
                if down_type == "Conv":
                    conv(b, stage.down, 3, 2)
                else:
                    b.add("DownC", [stage.down])
            levels.append(b.add(stage.block, [stage.width], n=stage.n))
    b.end_backbone()
    return levels


def yolov3_spec(spp: bool = False, name: str | None = None, nc: int = 80) -> dict[str, Any]:
    """YOLOv3 (Redmon and Farhadi 2018): Darknet-53 and its three-level FPN head, with SPP if ``spp``."""
    b = SpecBuilder()
    stem = (("Conv", (32, 3, 1)), ("Conv", (64, 3, 2)), ("Bottleneck", (64,)))
    widths, repeats = (128, 256, 512, 1024), (2, 8, 8, 4)
    stages = tuple(CSPStage(w, "Bottleneck", n, w) for w, n in zip(widths, repeats, strict=True))
    p3, p4, _ = _csp_backbone(b, stem, stages, "Conv")[-3:]
    with b.group("neck.p5", "FPN"):
        b.add("Bottleneck", [1024, False])
        if spp:
            b.add("SPP", [512, [5, 9, 13]])
        else:
            b.add("Conv", [512, [1, 1]])
        conv(b, 1024, 3, 1)
        lat5 = conv(b, 512, 1, 1)
        out5 = conv(b, 1024, 3, 1)
    with b.group("neck.p4", "FPN"):
        x = conv(b, 256, 1, 1, lat5)
        x = b.add("nn.Upsample", [None, 2, "nearest"])
        b.add("Concat", [1], [x, p4])
        b.add("Bottleneck", [512, False])
        b.add("Bottleneck", [512, False])
        lat4 = conv(b, 256, 1, 1)
        out4 = conv(b, 512, 3, 1)
    with b.group("neck.p3", "FPN"):
        x = conv(b, 128, 1, 1, lat4)
        x = b.add("nn.Upsample", [None, 2, "nearest"])
        b.add("Concat", [1], [x, p3])
        b.add("Bottleneck", [256, False])
        out3 = b.add("Bottleneck", [256, False], n=2)
    with b.group("head", "Detect"):
        b.add("Detect", HEAD_ARGS, [out3, out4, out5])
    return b.spec(ANCHORS_TINY, nc, name)
