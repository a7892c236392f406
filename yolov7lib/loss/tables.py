"""Per-level constants of a detection head on given grids, built once and cached.

The candidate search, SimOTA and the loss terms need the same small tensors at every step: grid sizes,
anchors, strides, row offsets of the flattened maps, and a few constants. `LevelTables.get` builds
them once per (grids, anchors, strides, device, dtype) and returns the cached ones afterwards, so a
training step neither rebuilds them nor copies them to the device.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch

# Cell offsets (x, y), in the enumeration order: centre, left, up, right, down. A candidate's cell is
# floor(centre - offset * bias).
OFFSETS = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))


class LevelTables:
    """Per-level constants of a detection head on given grids, as tensors on one device.

    Built once per (grids, anchors, strides, device, dtype) by `LevelTables.get` and cached (the last
    16 in the process), so that a training step does not rebuild them. `dtype` is the floating type of
    the quantities they meet (targets for the candidate search, predictions for decoding). A cached
    entry holds the anchors tensor itself and its version counter, so a replaced anchor tensor and
    in-place changes (`anchors[:] = ...`, `load_state_dict`) are seen; changes made through
    `anchors.data` bypass the counter and are not.
    """

    _cache: ClassVar[OrderedDict[tuple, tuple[torch.Tensor, int, LevelTables]]] = OrderedDict()
    _cache_size: ClassVar[int] = 16

    def __init__(
        self,
        grids: Sequence[tuple[int, int]],
        anchors: torch.Tensor,
        strides: Sequence[float] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        nl, na = anchors.shape[:2]
        if len(grids) != nl:
            raise ValueError(f"{len(grids)} prediction levels but the head has anchors for {nl}")
        long = dict(device=device, dtype=torch.long)
        hw = torch.tensor(grids, **long)  # (nl, 2) as (H, W)
        self.nl, self.na = nl, na
        self.anchors = anchors.to(device)  # (nl, na, 2) grid units, the head's dtype
        self.size = hw.flip(1).to(dtype)[:, None]  # (nl, 1, 2) as (W, H)
        self.cell_max = (hw.flip(1) - 1)[None, :, None, None]  # (1, nl, 1, 1, 2) largest (gi, gj)
        self.cell_min = torch.zeros_like(self.cell_max)
        # Row offsets of the flattened maps: image * na*H*W + anchor * H*W + gj * W + gi.
        area = hw[:, 0] * hw[:, 1]
        self.image_stride = (area * na)[:, None]  # (nl, 1)
        self.row_stride = hw[:, 1][None, :, None, None]  # (1, nl, 1, 1) = W
        self.anchor_offset = (torch.arange(na, **long)[None] * area[:, None])[None, :, None, :, None]
        level, anchor = torch.meshgrid(torch.arange(nl, **long), torch.arange(na, **long), indexing="ij")
        # (1, nl, 1, na, 1, 3): level, anchor, level * na + anchor, to broadcast over (bias, offset, target)
        self.level_anchor = torch.stack((level, anchor, level * na + anchor), 2)[None, :, None, :, None]
        # Per level * na + anchor: grid width and height, anchor width and height, stride.
        wh = hw.flip(1).to(dtype)[:, None].expand(nl, na, 2)
        stride = torch.tensor(
            list(strides) if strides is not None else [0.0] * nl, dtype=dtype, device=device
        )
        self.decode = torch.cat((wh, self.anchors.to(dtype), stride[:, None, None].expand(nl, na, 1)), 2)
        self.decode = self.decode.reshape(nl * na, 5)
        self.dtype, self.device = dtype, device
        self._small: dict[tuple, torch.Tensor] = {}  # small constants, made on first use
        self._arange = torch.arange(256, device=device)

    def _constant(self, key: tuple, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key not in self._small:
            self._small[key] = make()
        return self._small[key]

    def biases(self, biases: Sequence[float]) -> torch.Tensor:
        """The biases as a (nb, 1, 1, 1) tensor, in the tables' dtype."""
        return self._constant(
            ("biases", *biases),
            lambda: torch.tensor(biases, device=self.device, dtype=self.dtype)[:, None, None, None],
        )

    def offsets(self, biases: Sequence[float]) -> torch.Tensor:
        """(nb, 5, 2) cell offsets times each bias, in the tables' dtype."""

        def make() -> torch.Tensor:
            off = torch.tensor(OFFSETS, device=self.device, dtype=self.dtype)
            return torch.stack([off * b for b in biases])

        return self._constant(("offsets", *biases), make)

    def constant(self, values: tuple[float, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
        """`values` as a tensor on the tables' device, of `dtype` (default: the tables' dtype)."""
        dtype = dtype or self.dtype
        return self._constant(
            ("constant", dtype, *values), lambda: torch.tensor(values, device=self.device, dtype=dtype)
        )

    def arange(self, n: int) -> torch.Tensor:
        """torch.arange(n) on the tables' device (a view of a cached, growing range)."""
        if self._arange.shape[0] < n:
            self._arange = torch.arange(max(n, 2 * self._arange.shape[0]), device=self.device)
        return self._arange[:n]

    def pixels(self, w: int, h: int, dtype: torch.dtype) -> torch.Tensor:
        """(2,) tensor (w, h) in `dtype`, to scale normalised coordinates to pixels."""
        return self._constant(
            ("pixels", w, h, dtype), lambda: torch.tensor([w, h], device=self.device, dtype=dtype)
        )

    @classmethod
    def get(
        cls,
        grids: Sequence[tuple[int, int]],
        anchors: torch.Tensor,
        strides: Sequence[float] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> LevelTables:
        """The cached tables for these arguments (built on first use)."""
        key = (
            tuple(tuple(g) for g in grids),
            None if strides is None else tuple(float(s) for s in strides),
            id(anchors),
            torch.device(device),
            dtype,
        )
        hit = cls._cache.get(key)
        if hit is not None and hit[0] is anchors and hit[1] == anchors._version:
            cls._cache.move_to_end(key)
            return hit[2]
        tables = cls(grids, anchors, strides, torch.device(device), dtype)
        cls._cache[key] = (anchors, anchors._version, tables)  # holding `anchors` keeps its id unique
        if len(cls._cache) > cls._cache_size:
            cls._cache.popitem(last=False)
        return tables
