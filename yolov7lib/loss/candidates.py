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

Both rules can be searched in one pass (`find_candidate_sets`), which the coarse-to-fine assigner
does: they share everything but the offsets and the half-cell test. The candidate counts of each rule
(per level, and the largest per image) are the one value read back to the host per rule, to size the
compact arrays; everything else stays on the device. Per-level constants (grid sizes, anchors, strides)
are built once per (grids, anchors, device, dtype) and cached (`LevelTables`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from yolov7lib.loss.tables import LevelTables

FINE_BIAS = 0.5
COARSE_BIAS = 1.0

# Columns of `Candidates.fields`: cell column gi and row gj, level, anchor, image, proposing target,
# the row of the cell in its level's map flattened to (B * na * H * W, no), and level * na + anchor.
GI, GJ, LEVEL, ANCHOR, IMAGE, TARGET, CELL, LEVEL_ANCHOR = range(8)
N_FIELDS = 8


@dataclass(frozen=True)
class Candidates:
    """The candidate cells of n targets, all levels concatenated; `blocks[l]` slices level l.

    `fields` is one (N, 8) integer table (columns GI, GJ, LEVEL, ANCHOR, IMAGE, TARGET, CELL,
    LEVEL_ANCHOR), so that selecting candidates is a single indexing operation; the properties give
    the columns by name. `max_per_image` and `max_targets_per_image` are host ints that size the
    per-image tables of SimOTA.
    """

    n_targets: int
    blocks: tuple[slice, ...]
    fields: torch.Tensor
    max_per_image: int
    max_targets_per_image: int

    @property
    def size(self) -> int:
        return self.fields.shape[0]

    @property
    def gi(self) -> torch.Tensor:
        return self.fields[:, GI]

    @property
    def gj(self) -> torch.Tensor:
        return self.fields[:, GJ]

    @property
    def level(self) -> torch.Tensor:
        return self.fields[:, LEVEL]

    @property
    def anchor(self) -> torch.Tensor:
        return self.fields[:, ANCHOR]

    @property
    def image(self) -> torch.Tensor:
        return self.fields[:, IMAGE]

    @property
    def target(self) -> torch.Tensor:
        return self.fields[:, TARGET]

    @property
    def cell(self) -> torch.Tensor:
        return self.fields[:, CELL]

    @property
    def level_anchor(self) -> torch.Tensor:
        return self.fields[:, LEVEL_ANCHOR]


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
    return find_candidate_sets(targets, grids, anchors, anchor_t, (bias,), batch)[0]


def find_candidate_sets(
    targets: torch.Tensor,
    grids: Sequence[tuple[int, int]],
    anchors: torch.Tensor,
    anchor_t: float,
    biases: Sequence[float],
    batch: int,
) -> tuple[Candidates, ...]:
    """`find_candidates` for several biases in one pass: one `Candidates` per bias.

    The rules share the targets' grid positions, the anchor-shape test and the cell arithmetic; all
    biases, levels, offsets, anchors and targets form one (biases, nl, 5, na, n) array.
    """
    n, device = targets.shape[0], targets.device
    nb = len(biases)
    t = LevelTables.get(grids, anchors, None, device, targets.dtype)
    nl, na = t.nl, t.na
    gxy = targets[:, 2:4] * t.size  # (nl, n, 2) centres in grid units
    ratio = (targets[:, 4:6] * t.size)[:, None] / t.anchors[:, :, None]  # (nl, na, n, 2)
    shape_ok = torch.maximum(ratio, ratio.reciprocal()).amax(3) < anchor_t  # (nl, na, n)

    # Neighbour tests on (x, y, W - x, H - y): left, up, right, down, each per bias.
    g = torch.cat((gxy, t.size - gxy), 2)  # (nl, n, 4)
    side_ok = (g % 1.0 < t.biases(biases)) & (g > 1.0)  # (nb, nl, n, 4)
    offset_ok = F.pad(side_ok, (1, 0), value=True).transpose(2, 3)  # (nb, nl, 5, n), centre first
    valid = (offset_ok[:, :, :, None] & shape_ok[:, None]).contiguous()  # (nb, nl, 5, na, n)

    # Cells, truncated as in the reference, and their rows in the flattened maps.
    cell = (gxy[:, None] - t.offsets(biases)[:, None, :, None]).long()  # (nb, nl, 5, n, 2)
    cell = cell.clamp_(min=t.cell_min, max=t.cell_max)
    image = targets[:, 0].long()
    row = (cell[..., 1] * t.row_stride + cell[..., 0])[:, :, :, None]  # (nb, nl, 5, 1, n) gj * W + gi
    flat = row + (image * t.image_stride)[:, None, None] + t.anchor_offset  # + image * na*H*W + anchor * H*W

    # The table of all (bias, level, offset, anchor, target) combinations; candidates are its valid rows.
    shape = (nb, nl, 5, na, n)
    table = torch.cat(
        (
            cell[:, :, :, None].expand(*shape, 2),
            t.level_anchor[:, :, :, :, :, :2].expand(*shape, 2),
            torch.stack((image, t.arange(n)), 1).expand(*shape, 2),
            flat[..., None],
            t.level_anchor[:, :, :, :, :, 2:].expand(*shape, 1),
        ),
        5,
    )

    # Counts: candidates per level, the most of one image, the most targets of one image.
    per_target = torch.cat((valid.view(nb, nl * 5 * na, n).sum(1), torch.ones_like(image)[None]))
    per_image = torch.zeros(nb + 1, batch, dtype=torch.long, device=device)
    most = per_image.scatter_add_(1, image.expand(nb + 1, n), per_target).amax(1)  # (nb + 1,)
    counts = torch.cat((valid.view(nb, nl, 5 * na * n).sum(2), most[:nb, None], most[nb:].expand(nb, 1)), 1)
    host = [to_host(c) for c in counts]  # one read-back per rule

    keep = torch.nonzero_static(valid.view(-1), size=sum(sum(c[:nl]) for c in host)).flatten()
    fields = table.view(-1, N_FIELDS)[keep]  # bias-major, then level-major: the reference's order
    out, start = [], 0
    for c in host:
        bounds = list(itertools.accumulate(c[:nl], initial=0))
        blocks = tuple(slice(a, b) for a, b in itertools.pairwise(bounds))
        out.append(Candidates(n, blocks, fields[start : start + bounds[-1]], c[nl], c[nl + 1]))
        start += bounds[-1]
    return tuple(out)
