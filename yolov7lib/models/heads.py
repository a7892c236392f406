"""Detection heads: Detect, IDetect (implicit knowledge) and IAuxDetect (lead + auxiliary heads).

Conventions (CONTRIBUTING.md): in training mode a head returns its raw maps, one (B, na, H, W, no)
tensor per level, lead levels first then auxiliary levels; in eval mode a tuple (decoded
predictions (B, N, no) with xywh in input pixels and sigmoid objectness / class scores, raw lead maps).

Box decoding (YOLOv5 style, as the reference): xy = (2 sigmoid - 0.5 + grid) * stride,
wh = (2 sigmoid)^2 * anchor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from yolov7lib.models.layers import ImplicitA, ImplicitM

__all__ = ["Detect", "IAuxDetect", "IDetect"]

Anchors = Sequence[Sequence[float]]


class Detect(nn.Module):
    """Plain YOLO head: one 1x1 convolution per level predicting ``na * (nc + 5)`` channels.

    Attributes: ``nc``, ``no = nc + 5``, ``nl`` (lead levels), ``na`` (anchors per level), ``stride``
    (tensor (nl,), set by the model), buffers ``anchors`` (nl, na, 2) in grid units (pixels / stride,
    once the model is built) and ``anchor_grid`` (nl, 1, na, 1, 1, 2) in pixels.
    """

    def __init__(self, nc: int = 80, anchors: Anchors = (), ch: Sequence[int] = ()) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        a = torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2)
        self.register_buffer("anchors", a)
        self.register_buffer("anchor_grid", a.clone().view(self.nl, 1, -1, 1, 1, 2))
        self.stride = torch.ones(self.nl, device="cpu")  # set by the model once built
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch[: self.nl])

    def _lead_conv(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.m[i](x)

    def _to_maps(self, x: torch.Tensor) -> torch.Tensor:
        bs, _, ny, nx = x.shape
        return x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()

    def _decode(self, i: int, p: torch.Tensor) -> torch.Tensor:
        _, _, ny, nx, _ = p.shape
        yv, xv = torch.meshgrid(
            torch.arange(ny, device=p.device), torch.arange(nx, device=p.device), indexing="ij"
        )
        grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).to(p.dtype)
        y = p.sigmoid()
        xy = (y[..., 0:2] * 2.0 - 0.5 + grid) * self.stride[i]
        wh = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]
        return torch.cat((xy, wh, y[..., 4:]), -1).view(p.shape[0], -1, self.no)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        lead = [self._to_maps(self._lead_conv(i, x[i])) for i in range(self.nl)]
        if self.training:
            return lead + self._aux_maps(x)
        return torch.cat([self._decode(i, p) for i, p in enumerate(lead)], 1), lead

    def _aux_maps(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        return []

    @torch.no_grad()
    def initialize_biases(self, convs: Sequence[nn.Conv2d] | None = None) -> None:
        """Objectness and class priors (reference): about 8 objects per 640 image, class prob 0.6 / nc."""
        for conv, s in zip(self.m if convs is None else convs, self.stride.tolist(), strict=False):
            b = conv.bias.view(self.na, -1)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            b[:, 5:] += math.log(0.6 / (self.nc - 0.99))


class IDetect(Detect):
    """Detect with YOLOR implicit knowledge: ``im * conv(x + ia)`` per level (Section 4.3, freebie 2).

    At inference the implicit vectors fold into the convolution (see :func:`reparameterize`).
    """

    def __init__(self, nc: int = 80, anchors: Anchors = (), ch: Sequence[int] = ()) -> None:
        super().__init__(nc, anchors, ch)
        self.ia = nn.ModuleList(ImplicitA(c) for c in ch[: self.nl])
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch[: self.nl])

    def _lead_conv(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.im[i](self.m[i](self.ia[i](x)))


class IAuxDetect(IDetect):
    """Lead head (IDetect) plus an auxiliary head ``m2`` (plain 1x1 convs) for deep supervision
    (Section 4.2, Figure 5b). Its inputs are the ``nl`` lead feature maps, then the ``nl`` auxiliary ones;
    the auxiliary outputs are returned in training mode only (they are dropped at deployment)."""

    def __init__(self, nc: int = 80, anchors: Anchors = (), ch: Sequence[int] = ()) -> None:
        super().__init__(nc, anchors, ch)
        self.m2 = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch[self.nl :])

    def _aux_maps(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self._to_maps(self.m2[i](x[self.nl + i])) for i in range(self.nl)]
