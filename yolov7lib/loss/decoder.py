"""Box decoder used by the loss, and the Table 7 upper-bound constraint on the auxiliary decoder.

A raw prediction (tx, ty, tw, th) at cell (gi, gj) with anchor (aw, ah), all in grid units, decodes to
centre  (gi, gj) + s(sigma(tx, ty))  and size  (2 sigma(tw, th))^2 (aw, ah).

The centre offset s is  2 sigma - 0.5  in (-0.5, 1.5) for the lead head, as at inference. A candidate
cell of the fine rule is never more than 1.5 cells from the target's centre, so every fine label can be
fitted exactly. The coarse rule adds neighbours up to 2 cells away; with the same bounded offset those
extra coarse cells cannot reach the centre, so their IoU - and with it their objectness soft label -
stays below 1 and shrinks with their distance from the centre. This is the paper's "restrictions in the
decoder, so that the extra coarse positive grids cannot produce soft label perfectly" (Section 4.2,
Table 7 "aux with constraint"), and the reference trains the auxiliary head this way.

"Aux without constraint" (Table 7) decodes the auxiliary offset as  3 sigma - 1  in (-1, 2), just wide
enough for every coarse cell to fit its target exactly (the reference carries this decoder as a
disabled alternative). The auxiliary head is dropped at deployment, so this decoder exists only in the
loss.
"""

from __future__ import annotations

import torch


def decode_xy(raw_xy: torch.Tensor, constrained: bool = True) -> torch.Tensor:
    """Centre offset from the cell corner, in grid units: 2 sigma - 0.5 (constrained) or 3 sigma - 1."""
    if constrained:
        return raw_xy.sigmoid() * 2.0 - 0.5
    return raw_xy.sigmoid() * 3.0 - 1.0


def decode_wh(raw_wh: torch.Tensor, anchor_wh: torch.Tensor) -> torch.Tensor:
    """Box size in the anchors' units: (2 sigma)^2 times the anchor, at most 4 anchors."""
    return (raw_wh.sigmoid() * 2) ** 2 * anchor_wh


def decode_box(
    raw: torch.Tensor, anchor_wh: torch.Tensor, constrained: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """`decode_xy` and `decode_wh` of rows (N, >= 4) of raw (tx, ty, tw, th, ...), with one sigmoid."""
    s = raw[:, :4].sigmoid()
    xy = s[:, :2] * 2.0 - 0.5 if constrained else s[:, :2] * 3.0 - 1.0
    return xy, (s[:, 2:] * 2) ** 2 * anchor_wh
