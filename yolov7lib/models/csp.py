"""Residual and cross-stage-partial (CSP) blocks of the baselines: YOLOv3, YOLOv4-CSP, YOLOR, CSP-ResNet.

A CSP block splits its input into two paths, runs a stack of residual blocks on one of them and
concatenates the two (CSPNet). The reference implementation names three layouts:

- ``A``: both paths start from the block input with a 1x1 conv; the merged result goes through a 1x1.
- ``B``: one 1x1 conv first, both paths branch from its output (used in the PAN necks).
- ``C``: like ``A`` with one more 1x1 after the residual stack (CSPDarknet of YOLOv4-CSP / YOLOR).

The residual block is the Darknet bottleneck (1x1 then 3x3, Figure 7 left), a ResNet bottleneck
(1x1, 3x3, 1x1) or its grouped form (ResNeXt, 32 groups). Attribute names follow the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from yolov7lib.models.layers import Conv, RepConv

__all__ = [
    "Bottleneck",
    "BottleneckCSPA",
    "BottleneckCSPB",
    "BottleneckCSPC",
    "RBottleneck",
    "RBottleneckCSPA",
    "RBottleneckCSPC",
    "RepBottleneck",
    "RepBottleneckCSPA",
    "RepBottleneckCSPC",
    "RepRBottleneck",
    "RepRBottleneckCSPA",
    "RepRBottleneckCSPC",
    "Res",
    "ResCSPA",
    "ResCSPB",
    "ResCSPC",
    "ResX",
    "ResXCSPA",
    "ResXCSPB",
    "ResXCSPC",
]


class Bottleneck(nn.Module):
    """Darknet residual block: 1x1 conv to ``c2 * e``, 3x3 conv to ``c2``, plus the input if shapes agree."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class Res(nn.Module):
    """ResNet bottleneck: 1x1 to ``c2 * e``, 3x3 (``g`` groups), 1x1 back to ``c2``, plus the input."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, hidden, 3, 1, g=g)
        self.cv3 = Conv(hidden, c2, 1, 1)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv3(self.cv2(self.cv1(x)))
        return x + y if self.add else y


class ResX(Res):
    """ResNeXt bottleneck: :class:`Res` with 32 groups in the 3x3 convolution."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 32, e: float = 0.5) -> None:
        super().__init__(c1, c2, shortcut, g, e)


class _CSP(nn.Module):
    """Shared body of the CSP blocks; subclasses pick the layout and the residual block."""

    layout = "A"
    default_shortcut = True
    default_groups = 1
    # the block stacked n times, built as residual(width, width, shortcut, g, e=residual_e)
    residual: type[nn.Module] = Bottleneck
    residual_e = 1.0

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        shortcut: bool | None = None,
        g: int | None = None,
        e: float = 0.5,
    ) -> None:
        super().__init__()
        shortcut = self.default_shortcut if shortcut is None else shortcut
        g = self.default_groups if g is None else g
        hidden = int(c2) if self.layout == "B" else int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden if self.layout == "B" else c1, hidden, 1, 1)
        if self.layout == "C":
            self.cv3 = Conv(hidden, hidden, 1, 1)
            self.cv4 = Conv(2 * hidden, c2, 1, 1)
        else:
            self.cv3 = Conv(2 * hidden, c2, 1, 1)
        self.m = nn.Sequential(
            *(self.residual(hidden, hidden, shortcut, g, e=self.residual_e) for _ in range(n))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "B":
            x1 = self.cv1(x)
            return self.cv3(torch.cat((self.m(x1), self.cv2(x1)), dim=1))
        if self.layout == "C":
            return self.cv4(torch.cat((self.cv3(self.m(self.cv1(x))), self.cv2(x)), dim=1))
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class BottleneckCSPA(_CSP):
    """CSP block, layout A, Darknet bottlenecks (YOLOR-P6/W6/E6/D6 backbones)."""


class BottleneckCSPB(_CSP):
    """CSP block, layout B, Darknet bottlenecks without shortcut (CSP-PAN necks)."""

    layout = "B"
    default_shortcut = False


class BottleneckCSPC(_CSP):
    """CSP block, layout C, Darknet bottlenecks (CSPDarknet53 of YOLOv4-CSP / YOLOR-CSP)."""

    layout = "C"


class ResCSPA(_CSP):
    """CSP block, layout A, ResNet bottlenecks."""

    residual = Res
    residual_e = 0.5


class ResCSPB(_CSP):
    """CSP block, layout B, ResNet bottlenecks (r50-csp neck)."""

    layout = "B"
    residual = Res
    residual_e = 0.5


class ResCSPC(_CSP):
    """CSP block, layout C, ResNet bottlenecks (r50-csp backbone)."""

    layout = "C"
    residual = Res
    residual_e = 0.5


class ResXCSPA(_CSP):
    """CSP block, layout A, ResNeXt bottlenecks (32 groups)."""

    default_groups = 32
    residual = Res


class ResXCSPB(_CSP):
    """CSP block, layout B, ResNeXt bottlenecks (x50-csp neck)."""

    layout = "B"
    default_groups = 32
    residual = Res


class ResXCSPC(_CSP):
    """CSP block, layout C, ResNeXt bottlenecks (x50-csp backbone)."""

    layout = "C"
    default_groups = 32
    residual = Res


# ---- Table 5 (Section 5.4.2, Figure 7): planned re-parameterization of residual blocks ----------------
#
# A dark block's 3x3 convolution feeds the residual addition directly, so a RepConv there (with its
# identity branch) does not follow the planned design ("RepCSP"). The reversed dark block of Figure 7
# puts the 3x3 first and the 1x1 last, with exactly the same parameters and operations ("RCSP"); its
# 3x3 then no longer touches the residual and can be a RepConv ("RepRCSP").


class RepBottleneck(Bottleneck):
    """Dark block with its 3x3 convolution as a RepConv (identity branch when widths agree): "RepCSP"."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, shortcut, g, e)
        self.cv2 = RepConv(int(c2 * e), c2, 3, 1, g=g)


class RBottleneck(nn.Module):
    """Reversed dark block (Figure 7): 3x3 conv to ``c2 * e``, then 1x1 conv to ``c2``, plus the input."""

    conv3 = Conv

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = self.conv3(c1, hidden, 3, 1, g=g)
        self.cv2 = Conv(hidden, c2, 1, 1)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class RepRBottleneck(RBottleneck):
    """Reversed dark block whose leading 3x3 convolution is a RepConv (the planned form): "RepRCSP"."""

    conv3 = RepConv


class RepBottleneckCSPA(BottleneckCSPA):
    """CSP block A of RepBottlenecks. (The reference's class of this name builds its first 1x1 with
    e=0.5 whatever ``e`` it is given, so it cannot run inside a CSP block; this one follows its intent.)"""

    residual = RepBottleneck


class RepBottleneckCSPC(BottleneckCSPC):
    """CSP block C of RepBottlenecks (see :class:`RepBottleneckCSPA`)."""

    residual = RepBottleneck


class RBottleneckCSPA(BottleneckCSPA):
    """CSP block A of reversed dark blocks (RCSP of Table 5)."""

    residual = RBottleneck


class RBottleneckCSPC(BottleneckCSPC):
    """CSP block C of reversed dark blocks."""

    residual = RBottleneck


class RepRBottleneckCSPA(BottleneckCSPA):
    """CSP block A of reversed dark blocks with RepConv (RepRCSP of Table 5)."""

    residual = RepRBottleneck


class RepRBottleneckCSPC(BottleneckCSPC):
    """CSP block C of reversed dark blocks with RepConv."""

    residual = RepRBottleneck
