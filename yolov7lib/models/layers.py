"""The layers of YOLOv7 and of its reference implementation.

Attribute names (``conv``, ``bn``, ``rbr_dense``, ``cv1`` ...) follow the official checkpoints so that
their state dicts map one to one. Every layer that holds a BatchNorm can be fused in place
(``fuse_()``): the BatchNorm is folded into the preceding convolution (paper Section 4.3, freebie 1),
and a RepConv's three branches become one 3x3 convolution (Section 4.1).
"""

from __future__ import annotations

import re

import torch
from torch import nn

__all__ = [
    "MP",
    "SP",
    "SPP",
    "SPPCSPC",
    "Concat",
    "Conv",
    "DownC",
    "ImplicitA",
    "ImplicitM",
    "ReOrg",
    "RepConv",
    "RepConvN",
    "Shortcut",
    "Stem",
    "autopad",
    "fuse_conv_bn",
    "parse_activation",
]

Kernel = int | list[int] | tuple[int, int]


def autopad(k: Kernel, p: int | list[int] | None = None) -> int | list[int]:
    """Padding that keeps the spatial size for stride 1 ('same' padding) unless ``p`` is given."""
    if p is not None:
        return p
    return k // 2 if isinstance(k, int) else [x // 2 for x in k]


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "SiLU": nn.SiLU,
    "ReLU": nn.ReLU,
    "ReLU6": nn.ReLU6,
    "LeakyReLU": nn.LeakyReLU,
    "Hardswish": nn.Hardswish,
    "Mish": nn.Mish,
    "Sigmoid": nn.Sigmoid,
    "Identity": nn.Identity,
}
_ACT_RE = re.compile(r"^nn\.(\w+)\(\s*([0-9.eE+-]*)\s*\)$")


def parse_activation(text: str) -> nn.Module:
    """Build an activation from its cfg spelling, e.g. ``"nn.LeakyReLU(0.1)"``, without ``eval``."""
    match = _ACT_RE.match(text.strip())
    if not match or match.group(1) not in _ACTIVATIONS:
        valid = ", ".join(f"nn.{name}()" for name in _ACTIVATIONS)
        raise ValueError(f"unsupported activation {text!r} in cfg; valid: {valid}")
    cls, arg = _ACTIVATIONS[match.group(1)], match.group(2)
    return cls(float(arg)) if arg else cls()


def _activation(act: bool | nn.Module | str | None) -> nn.Module:
    if isinstance(act, str):
        return parse_activation(act)
    if act is True:
        return nn.SiLU()
    return act if isinstance(act, nn.Module) else nn.Identity()


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one convolution equal to ``bn(conv(x))`` in eval mode (computed in at least
    float32, returned in the convolution's dtype).

    ``bn=None`` returns the convolution's own weight and bias (zeros when it has none). On the meta
    device (shapes only) no arithmetic is done.
    """
    dtype = conv.weight.dtype
    if conv.weight.is_meta:
        return torch.empty_like(conv.weight), conv.weight.new_empty(conv.out_channels)
    work = torch.promote_types(dtype, torch.float32)
    w = conv.weight.to(work)
    b = conv.bias.to(work) if conv.bias is not None else torch.zeros_like(w[:, 0, 0, 0])
    if bn is None:
        return w.to(dtype), b.to(dtype)
    scale = bn.weight.to(work) / (bn.running_var.to(work) + bn.eps).sqrt()
    w = w * scale.view(-1, 1, 1, 1)
    b = (b - bn.running_mean.to(work)) * scale + bn.bias.to(work)
    return w.to(dtype), b.to(dtype)


def _biased_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A copy of ``conv``'s geometry with a bias, holding the given weight and bias."""
    out = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    return out


class Conv(nn.Module):
    """Convolution, BatchNorm, activation (conv-BN-activation topology, Section 4.3).

    ``act=True`` is SiLU (every YOLOv7 model but the tiny ones, which pass ``nn.LeakyReLU(0.1)``).
    After ``fuse_()`` the BatchNorm is folded into ``conv``, which then carries a bias.
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        k: Kernel = 1,
        s: int = 1,
        p: int | None = None,
        g: int = 1,
        act: bool | nn.Module | str = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn: nn.BatchNorm2d | None = nn.BatchNorm2d(c2)
        self.act = _activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    @property
    def fused(self) -> bool:
        return self.bn is None

    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the fused convolution."""
        return fuse_conv_bn(self.conv, self.bn)

    def fuse_(self, exact: bool = True) -> Conv:
        """Fold the BatchNorm into the convolution, in place.

        ``exact=False`` only changes the structure (keeps the weight, zero bias): for building a
        deploy graph whose weights are loaded afterwards.
        """
        if self.bn is not None:
            weights = (
                self.fused_weights()
                if exact
                else (self.conv.weight, torch.zeros_like(self.conv.weight[:, 0, 0, 0]))
            )
            self.conv = _biased_like(self.conv, *weights)
            self.bn = None
        return self


class RepConv(nn.Module):
    """Re-parameterizable 3x3 convolution (RepVGG, Section 4.1).

    Training form: 3x3 conv-BN + 1x1 conv-BN + an identity BatchNorm (only when input and output
    widths agree and the stride is 1), summed, then the activation. Deploy form (``fuse_()``): one
    3x3 convolution ``rbr_reparam`` with a bias, computing the same function in eval mode.
    """

    identity_branch = True

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 3,
        s: int = 1,
        p: int | None = None,
        g: int = 1,
        act: bool | nn.Module | str = True,
    ) -> None:
        super().__init__()
        if k != 3 or autopad(k, p) != 1:
            raise ValueError(f"{type(self).__name__} needs a 3x3 kernel with padding 1, got k={k}, p={p}")
        self.groups, self.in_channels, self.out_channels = g, c1, c2
        self.act = _activation(act)
        use_identity = self.identity_branch and c1 == c2 and s == 1
        self.rbr_identity: nn.BatchNorm2d | None = nn.BatchNorm2d(c1) if use_identity else None
        self.rbr_dense: nn.Sequential | None = nn.Sequential(
            nn.Conv2d(c1, c2, 3, s, 1, groups=g, bias=False), nn.BatchNorm2d(c2)
        )
        self.rbr_1x1: nn.Sequential | None = nn.Sequential(
            nn.Conv2d(c1, c2, 1, s, 0, groups=g, bias=False), nn.BatchNorm2d(c2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "rbr_reparam"):
            return self.act(self.rbr_reparam(x))
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return self.act(out)

    @property
    def fused(self) -> bool:
        return hasattr(self, "rbr_reparam")

    @torch.no_grad()
    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the single 3x3 convolution equal to the three branches in eval mode."""
        if self.fused:
            return self.rbr_reparam.weight, self.rbr_reparam.bias
        if self.rbr_dense[0].weight.is_meta:  # shapes only
            return fuse_conv_bn(self.rbr_dense[0], None)
        w3, b3 = fuse_conv_bn(self.rbr_dense[0], self.rbr_dense[1])
        w1, b1 = fuse_conv_bn(self.rbr_1x1[0], self.rbr_1x1[1])
        dtype = w3.dtype
        work = torch.promote_types(dtype, torch.float32)
        w = w3.to(work) + nn.functional.pad(w1.to(work), [1, 1, 1, 1])
        b = b3.to(work) + b1.to(work)
        if self.rbr_identity is not None:
            bn = self.rbr_identity
            per_group = self.in_channels // self.groups
            eye = torch.zeros_like(w)
            rows = torch.arange(self.in_channels, device=w.device)
            eye[rows, rows % per_group, 1, 1] = 1.0
            scale = bn.weight.to(work) / (bn.running_var.to(work) + bn.eps).sqrt()
            w = w + eye * scale.view(-1, 1, 1, 1)
            b = b + bn.bias.to(work) - bn.running_mean.to(work) * scale
        return w.to(dtype), b.to(dtype)

    def fuse_(self, exact: bool = True) -> RepConv:
        """Replace the branches by one 3x3 convolution ``rbr_reparam``, in place (``exact``: as Conv)."""
        if not self.fused:
            dense = self.rbr_dense[0]
            weights = (
                self.fused_weights() if exact else (dense.weight, torch.zeros_like(dense.weight[:, 0, 0, 0]))
            )
            self.rbr_reparam = _biased_like(dense, *weights)
            self.rbr_dense = self.rbr_1x1 = self.rbr_identity = None
        return self


class RepConvN(RepConv):
    """RepConv without the identity branch (Section 4.1, Figure 4): for layers whose output joins a
    residual or a concatenation, where the identity would destroy the diversity of gradients."""

    identity_branch = False


class MP(nn.Module):
    """Max-pool with kernel = stride = k (halves the resolution)."""

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class SP(nn.Module):
    """Max-pool that keeps the resolution (stride 1, 'same' padding): the SPP pools of the tiny models."""

    def __init__(self, k: int = 3, s: int = 1) -> None:
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class ReOrg(nn.Module):
    """Space to depth: (B, C, H, W) -> (B, 4C, H/2, W/2), the first layer of the P6 models."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)


class Concat(nn.Module):
    """Concatenate a list of tensors along ``dimension`` (channels)."""

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


class Shortcut(nn.Module):
    """Element-wise sum of its inputs: the merge-cardinality step of E-ELAN (Section 3.1)."""

    def __init__(self, dimension: int = 0) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        out = x[0]
        for other in x[1:]:
            out = out + other
        return out


class DownC(nn.Module):
    """Down-sampling transition of the E6/D6/E6E models: concat(3x3 s-k conv branch, max-pool branch)."""

    def __init__(self, c1: int, c2: int, n: int = 1, k: int = 2) -> None:
        super().__init__()
        self.cv1 = Conv(c1, c1, 1, 1)
        self.cv2 = Conv(c1, c2 // 2, 3, k)
        self.cv3 = Conv(c1, c2 // 2, 1, 1)
        self.mp = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.cv2(self.cv1(x)), self.cv3(self.mp(x))), dim=1)


class SPPCSPC(nn.Module):
    """Spatial pyramid pooling in a cross-stage-partial block (max-pools 5, 9, 13), hidden width c2."""

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        shortcut: bool = False,
        g: int = 1,
        e: float = 0.5,
        k: tuple[int, ...] = (5, 9, 13),
    ) -> None:
        super().__init__()
        hidden = int(2 * c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(hidden, hidden, 3, 1)
        self.cv4 = Conv(hidden, hidden, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)
        self.cv5 = Conv(4 * hidden, hidden, 1, 1)
        self.cv6 = Conv(hidden, hidden, 3, 1)
        self.cv7 = Conv(2 * hidden, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.cv4(self.cv3(self.cv1(x)))
        spp = self.cv6(self.cv5(torch.cat([pooled, *(m(pooled) for m in self.m)], 1)))
        return self.cv7(torch.cat((spp, self.cv2(x)), dim=1))


class SPP(nn.Module):
    """Spatial pyramid pooling of YOLOv3-SPP."""

    def __init__(self, c1: int, c2: int, k: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x, *(m(x) for m in self.m)], 1))


class Stem(nn.Module):
    """Stride-4 stem of the CSP-ResNet baselines (r50-csp, x50-csp)."""

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        hidden = int(c2 / 2)
        self.cv1 = Conv(c1, hidden, 3, 2)
        self.cv2 = Conv(hidden, hidden, 1, 1)
        self.cv3 = Conv(hidden, hidden, 3, 2)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.cv4 = Conv(2 * hidden, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv4(torch.cat((self.cv3(self.cv2(x)), self.pool(x)), dim=1))


class ImplicitA(nn.Module):
    """Additive implicit knowledge of YOLOR (Section 4.3, freebie 2): ``x + a``, a ~ N(0, 0.02)."""

    def __init__(self, channel: int, mean: float = 0.0, std: float = 0.02) -> None:
        super().__init__()
        self.channel, self.mean, self.std = channel, mean, std
        self.implicit = nn.Parameter(torch.zeros(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=mean, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit + x


class ImplicitM(nn.Module):
    """Multiplicative implicit knowledge of YOLOR: ``m * x``, m ~ N(1, 0.02)."""

    def __init__(self, channel: int, mean: float = 1.0, std: float = 0.02) -> None:
        super().__init__()
        self.channel, self.mean, self.std = channel, mean, std
        self.implicit = nn.Parameter(torch.ones(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=mean, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit * x
