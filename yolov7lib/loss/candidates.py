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
border). Candidates are listed level by level, and within a level by offset (centre, left, up, right,
down), then anchor, then target - the reference's order. A cell proposed by several targets is listed
once per target.

The candidate counts (per level, and the largest per image) are the one value read back to the host,
to size the compact arrays; everything else stays on the device.
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
    """The candidate cells of n targets, all levels concatenated; `blocks[l]` slices level l.

    Tensors are (N,): level, image, anchor, cell row gj and column gi, `cell` the row of the cell in its
    level's map flattened to (B * na * H * W, no), and the proposing target's index.
    `max_per_image` and `max_targets_per_image` are host ints that size the per-image tables of SimOTA.
    """

    n_targets: int
    blocks: tuple[slice, ...]
    level: torch.Tensor
    image: torch.Tensor
    anchor: torch.Tensor
    gj: torch.Tensor
    gi: torch.Tensor
    cell: torch.Tensor
    target: torch.Tensor
    max_per_image: int
    max_targets_per_image: int

    @property
    def size(self) -> int:
        return self.image.shape[0]


def to_host(counts: torch.Tensor) -> list[int]:
    """Read a small integer tensor back to the host: the assigners' one synchronisation point."""
    return counts.cpu().tolist()


def find_candidates(
    targets: torch.Tensor,
    grids: Sequence[tuple[int, int]],
    anchors: torch.Tensor,
    anchor_t: float,
    bias: float,
    batch: int,
) -> Candidates:
    """Candidate cells of `targets` (n, 6) on grids [(H, W), ...] with `anchors` (nl, na, 2) in grid units.

    `bias` is FINE_BIAS (centre + 2 nearest neighbours) or COARSE_BIAS (centre + 4 neighbours); `batch`
    is the number of images. All levels are handled at once, as (nl, 5 offsets, na, n) arrays.
    """
    n, device = targets.shape[0], targets.device
    nl, na = anchors.shape[:2]
    if len(grids) != nl:
        raise ValueError(f"{len(grids)} prediction levels but the head has anchors for {nl}")
    hw = torch.tensor(grids, device=device)  # (nl, 2) as (H, W)
    size = hw.flip(1).to(targets.dtype)[:, None]  # (nl, 1, 2) as (W, H)
    gxy = targets[None, :, 2:4] * size  # (nl, n, 2) centres in grid units
    gwh = targets[None, :, 4:6] * size
    ratio = gwh[:, None] / anchors.to(device)[:, :, None]  # (nl, na, n, 2)
    shape_ok = torch.max(ratio, 1.0 / ratio).max(3).values < anchor_t  # (nl, na, n)

    gxi = size - gxy  # distance to the right / bottom border
    near_lo = (gxy % 1.0 < bias) & (gxy > 1.0)  # left, up neighbours usable
    near_hi = (gxi % 1.0 < bias) & (gxi > 1.0)  # right, down neighbours usable
    centre = torch.ones_like(near_lo[..., 0])
    offset_ok = torch.stack((centre, near_lo[..., 0], near_lo[..., 1], near_hi[..., 0], near_hi[..., 1]), 1)
    valid = (offset_ok[:, :, None] & shape_ok[:, None]).reshape(-1)  # (nl, 5, na, n) flattened

    off = torch.tensor(OFFSETS, device=device, dtype=targets.dtype) * bias  # (5, 2)
    cell = (gxy[:, None] - off[None, :, None]).long()  # (nl, 5, n, 2), truncation as in the reference
    cell = torch.minimum(cell.clamp(min=0), (hw.flip(1) - 1)[:, None, None])
    shape = (nl, 5, na, n)
    gi = cell[..., 0][:, :, None].expand(shape).reshape(-1)
    gj = cell[..., 1][:, :, None].expand(shape).reshape(-1)
    level = torch.arange(nl, device=device)[:, None, None, None].expand(shape).reshape(-1)
    anchor = torch.arange(na, device=device)[None, None, :, None].expand(shape).reshape(-1)
    target = torch.arange(n, device=device).expand(shape).reshape(-1)
    image = targets[:, 0].long()
    cand_image = image[target]
    flat = ((cand_image * na + anchor) * hw[level, 0] + gj) * hw[level, 1] + gi

    # One read-back: candidates per level, the most candidates and the most targets of one image.
    per_level = valid.view(nl, 5 * na * n).sum(1)
    per_image = torch.zeros(batch, dtype=torch.long, device=device).scatter_add_(0, cand_image, valid.long())
    targets_per_image = torch.zeros(batch, dtype=torch.long, device=device)
    targets_per_image.scatter_add_(0, image, torch.ones_like(image))
    counts = to_host(torch.cat((per_level, per_image.max()[None], targets_per_image.max()[None])))
    level_counts, max_per_image, max_targets = counts[:nl], counts[nl], counts[nl + 1]

    keep = torch.nonzero_static(valid, size=sum(level_counts)).flatten()  # level-major, order kept
    blocks, start = [], 0
    for count in level_counts:
        blocks.append(slice(start, start + count))
        start += count
    return Candidates(
        n_targets=n,
        blocks=tuple(blocks),
        level=level[keep],
        image=cand_image[keep],
        anchor=anchor[keep],
        gj=gj[keep],
        gi=gi[keep],
        cell=flat[keep],
        target=target[keep],
        max_per_image=max_per_image,
        max_targets_per_image=max_targets,
    )


def gather_rows(cand: Candidates, maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """The prediction rows (N, no) of the candidates' cells, read from the nl maps (B, na, H, W, no)."""
    rows = [
        m.reshape(-1, m.shape[-1]).index_select(0, cand.cell[s])
        for m, s in zip(maps, cand.blocks, strict=True)
    ]
    return torch.cat(rows)
