"""Candidate positive cells of the label assigners (Section 4.2, Figure 5).

Every target proposes, at every level and for every anchor whose shape is within `anchor_t` of its own
(width and height ratios both below `anchor_t`), the grid cell that holds its centre plus some of the
four neighbouring cells:

- fine rule (`FINE_BIAS = 0.5`): the centre cell and the 2 neighbours nearest to the centre, i.e. the
  left cell when the centre lies in the left half of its cell, the right one when in the right half,
  and likewise vertically. These are the lead head's candidates and those of the plain YOLOv5-style
  assignment.
- coarse rule (`COARSE_BIAS = 1.0`): the centre cell and all 4 neighbours, the relaxed rule that
  makes the auxiliary head's coarse labels.

A neighbour is proposed only when the centre is more than one cell away from the image border on that
side, so proposed cells are always inside the grid (the centre cell is clamped for centres on the
border). The output enumerates every (level, offset, anchor, target) combination, valid or not, in
this order, so shapes depend only on the number of targets and the head, never on the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

FINE_BIAS = 0.5
COARSE_BIAS = 1.0

# Cell offsets (x, y), in the enumeration order: centre, left, up, right, down. A candidate's cell is
# floor(centre - offset * bias).
OFFSETS = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))


@dataclass(frozen=True)
class Candidates:
    """Candidate cells of n targets, flattened level-major, then offset, anchor, target.

    All tensors are (F,) with F = nl * 5 * na * n; `blocks[l]` is the slice of level l. Entries with
    `valid` False are placeholders whose cell is still inside the grid.
    """

    n_targets: int
    na: int
    blocks: tuple[slice, ...]
    valid: torch.Tensor
    image: torch.Tensor
    anchor: torch.Tensor
    gj: torch.Tensor
    gi: torch.Tensor
    target: torch.Tensor

    @property
    def size(self) -> int:
        return self.valid.shape[0]

    def level_of(self, level: int) -> dict[str, torch.Tensor]:
        """The tensors of one level's block, keyed by field name."""
        s = self.blocks[level]
        return {k: getattr(self, k)[s] for k in ("valid", "image", "anchor", "gj", "gi", "target")}


def find_candidates(
    targets: torch.Tensor,
    grids: Sequence[tuple[int, int]],
    anchors: torch.Tensor,
    anchor_t: float,
    bias: float,
) -> Candidates:
    """Candidate cells of `targets` (n, 6) on grids [(H, W), ...] with `anchors` (nl, na, 2) in grid units.

    `bias` is FINE_BIAS (centre + 2 nearest neighbours) or COARSE_BIAS (centre + 4 neighbours).
    """
    n, device = targets.shape[0], targets.device
    nl, na = anchors.shape[:2]
    if len(grids) != nl:
        raise ValueError(f"{len(grids)} prediction levels but the head has anchors for {nl}")
    off = torch.tensor(OFFSETS, device=device, dtype=targets.dtype) * bias  # (5, 2)
    image = targets[:, 0].long()
    tidx = torch.arange(n, device=device)
    aidx = torch.arange(na, device=device)

    fields: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("valid", "image", "anchor", "gj", "gi", "target")
    }
    blocks, start = [], 0
    for level, (h, w) in enumerate(grids):
        size = targets.new_tensor([w, h])
        gxy = targets[:, 2:4] * size  # (n, 2) centre in grid units
        gwh = targets[:, 4:6] * size
        ratio = gwh[None] / anchors[level].to(device)[:, None]  # (na, n, 2)
        shape_ok = torch.max(ratio, 1.0 / ratio).max(2).values < anchor_t  # (na, n)

        gxi = size - gxy  # distance to the right / bottom border
        near_lo = (gxy % 1.0 < bias) & (gxy > 1.0)  # (n, 2): left, up neighbours usable
        near_hi = (gxi % 1.0 < bias) & (gxi > 1.0)  # (n, 2): right, down neighbours usable
        offset_ok = torch.stack((torch.ones_like(near_lo[:, 0]), *near_lo.T, *near_hi.T))  # (5, n)
        valid = offset_ok[:, None, :] & shape_ok[None]  # (5, na, n)

        cell = (gxy[None] - off[:, None]).long()  # (5, n, 2), truncation as in the reference
        gi = cell[..., 0].clamp(0, w - 1)
        gj = cell[..., 1].clamp(0, h - 1)

        shape = (5, na, n)
        fields["valid"].append(valid.reshape(-1))
        fields["image"].append(image[None, None].expand(shape).reshape(-1))
        fields["anchor"].append(aidx[None, :, None].expand(shape).reshape(-1))
        fields["gj"].append(gj[:, None].expand(shape).reshape(-1))
        fields["gi"].append(gi[:, None].expand(shape).reshape(-1))
        fields["target"].append(tidx[None, None].expand(shape).reshape(-1))
        blocks.append(slice(start, start + 5 * na * n))
        start += 5 * na * n

    return Candidates(
        n_targets=n,
        na=na,
        blocks=tuple(blocks),
        **{k: torch.cat(v) for k, v in fields.items()},
    )
