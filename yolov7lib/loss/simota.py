"""SimOTA matching of targets to candidate cells, batched over images and levels (Section 4.2).

The rules are those of the reference implementation's OTA losses, applied image by image there and to
the whole batch at once here:

1. each target of an image is paired with every candidate cell of that image (all levels; a cell
   proposed by several targets appears once per proposing target, as a separate candidate);
2. IoU of the target with the box the guiding head predicts at the candidate (pixels);
3. cost = BCE(sqrt(sigmoid(cls) * sigmoid(obj)), one-hot class) summed over classes + 3 * -log(IoU + 1e-8)
   (the reference evaluates the BCE on the logit of that score; the same value is computed here from
   log(1 - score) over all classes and log(score) of the target's class);
4. dynamic k = int(sum of the target's `topk` largest IoUs), at least 1; the target takes its k
   cheapest candidates (ties go to the earlier candidate);
5. a candidate taken by several targets goes to the target of lowest cost among all targets of the
   image (ties to the earlier target); every taken candidate is a positive of exactly one target,
   so a cell proposed by several targets can be a positive more than once, as in the reference.

Ties: where candidates cost exactly the same (a cell proposed by several targets), the reference's
torch.topk picks among them in an unspecified order, which differs between devices and versions; here
the earlier candidate always wins, which is the reference's result under a stable sort.

Batching pads the targets and the candidates of each image into (B, M) and (B, C) tables (a stable
sort on the image index lays them out, so targets may come in any order), sized by the counts that
`find_candidates` reads back; the matching itself, dynamic-k selection included, uses only
fixed-shape tensor operations and reads nothing back. The pairwise quantities are (B, M, C) tensors
built from boxes stored as coordinate planes, so that each operation runs along contiguous rows.
Several candidate sets guided by the same predictions (the fine and the coarse candidates of the
coarse-to-fine assigner) are matched in one pass: set s, image b becomes table row s * B + b, so that
the cost and top-k run on one padded (rows, M, C) tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from yolov7lib.loss.candidates import CELL, GI, GJ, IMAGE, LEVEL_ANCHOR, Candidates
from yolov7lib.loss.decoder import decode_box
from yolov7lib.loss.tables import LevelTables

IOU_COST_WEIGHT = 3.0
LOG_EPS = 1e-8


def planar_pairwise_iou(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """Batched pairwise IoU of corner boxes given as planes (x1, y1, x2, y2): (4, B, M) x (4, B, C) ->
    (B, M, C); the formula of `yolov7lib.ops.box_iou`, which handles one pair of sets.

    Each coordinate is its own plane, so the (B, M, C) operations run along contiguous rows.
    """
    area1 = (box1[2:] - box1[:2]).prod(0)  # width * height
    area2 = (box2[2:] - box2[:2]).prod(0)
    lt = torch.maximum(box1[:2, :, :, None], box2[:2, :, None, :])  # (2, B, M, C)
    rb = torch.minimum(box1[2:, :, :, None], box2[2:, :, None, :])
    wh = (rb - lt).clamp_(min=0)
    inter = wh[0] * wh[1]
    return inter / (area1[:, :, None] + area2[:, None, :] - inter)


def padded_table(
    group: torch.Tensor, n_groups: int, width: int, arange: torch.Tensor, inverse: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Lay out entries 0..n-1 by group, in list order, into a padded (n_groups, width) table.

    Returns (table, where): `table` holds each entry's index at (its group, its rank within the group)
    and -1 in the padding; `where[i]` (if `inverse`) is entry i's position in the flattened table.
    `arange` is torch.arange(k) for some k >= max(n, n_groups).
    """
    n = group.shape[0]
    sorted_group, order = torch.sort(group, stable=True)
    first = torch.searchsorted(sorted_group, arange[:n_groups])  # where each group starts
    position = sorted_group * width + (arange[:n] - first[sorted_group])
    table = torch.full((n_groups * width,), -1, dtype=torch.long, device=group.device)
    table[position] = order
    where = torch.empty_like(order).index_put_((order,), position) if inverse else None
    return table.view(n_groups, width), where


def _candidate_rows(
    cands: Sequence[Candidates], fields: torch.Tensor, preds: list[torch.Tensor]
) -> torch.Tensor:
    """The prediction rows (N, no) at the cells of all candidates (`fields`, set after set)."""
    rows = preds[0].new_empty(fields.shape[0], preds[0].shape[-1])
    cell, start = fields[:, CELL], 0
    for cd in cands:
        for p, s in zip(preds, cd.blocks, strict=True):
            block = slice(start + s.start, start + s.stop)
            torch.index_select(p.reshape(-1, p.shape[-1]), 0, cell[block], out=rows[block])
        start += cd.size
    return rows


def _candidate_boxes(
    fields: torch.Tensor, rows: torch.Tensor, tables: LevelTables, constrained: bool
) -> torch.Tensor:
    """Predicted pixel boxes of the candidates as planes (x1, y1, x2, y2): (4, N)."""
    info = tables.decode[fields[:, LEVEL_ANCHOR]]  # (N, 5): grid W, H, anchor w, h, stride
    stride = info[:, 4:]
    xy, wh = decode_box(rows, info[:, 2:4], constrained)
    xy = (xy + fields[:, GI : GJ + 1]) * stride
    half_wh = wh * stride / 2
    return torch.cat(((xy - half_wh).T, (xy + half_wh).T))


@torch.no_grad()
def simota_match(
    cand: Candidates,
    preds: list[torch.Tensor],
    targets: torch.Tensor,
    img_hw: tuple[int, int],
    strides: Sequence[float],
    anchors: torch.Tensor,
    topk: int,
    constrained: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match `targets` (n, 6) to their candidates using the predictions `preds` of the guiding head.

    `preds` are the nl raw maps (B, na, H, W, no); `anchors` (nl, na, 2) in grid units, `strides` (nl,).
    Returns (positive, matched), both (N,) over the candidates: whether each is a positive and the
    index of the target it is matched to (meaningful where positive).
    """
    return simota_match_sets([cand], preds, targets, img_hw, strides, anchors, topk, constrained)[0]


@torch.no_grad()
def simota_match_sets(
    cands: Sequence[Candidates],
    preds: list[torch.Tensor],
    targets: torch.Tensor,
    img_hw: tuple[int, int],
    strides: Sequence[float],
    anchors: torch.Tensor,
    topk: int,
    constrained: bool = True,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`simota_match` of several candidate sets of the same targets and predictions, in one pass.

    Each set is matched on its own, exactly as `simota_match` would: its images become their own rows
    of the padded tables. Returns (positive, matched) per set.
    """
    device, n, batch = targets.device, cands[0].n_targets, preds[0].shape[0]
    sizes = [c.size for c in cands]
    m, c = cands[0].max_targets_per_image, max(cd.max_per_image for cd in cands)
    if n == 0 or c == 0:
        return [(torch.zeros(cd.size, dtype=torch.bool, device=device), cd.target.clone()) for cd in cands]

    fields = torch.cat([cd.fields for cd in cands]) if len(cands) > 1 else cands[0].fields
    rows = _candidate_rows(cands, fields, preds)
    work = torch.promote_types(rows.dtype, torch.float32)  # half maps (AMP): match in float32
    rows = rows.to(work)
    tables = LevelTables.get([tuple(p.shape[2:4]) for p in preds], anchors, strides, device, work)

    # Per-candidate quantities, computed once on the candidate list: boxes and class scores.
    # The class cost is BCE(y, one-hot) summed over classes with y = sqrt(sigmoid(cls) * sigmoid(obj)):
    # -sum_j log(1 - y_j) over all classes, minus log(y_k / (1 - y_k)) for the target's class k.
    pbox = _candidate_boxes(fields, rows, tables, constrained)
    y = rows[:, 5:].sigmoid().mul_(rows[:, 4:5].sigmoid()).sqrt_()  # (N, nc)
    sum_log_1my = torch.log1p(-y).sum(1)

    # Padded tables: the targets of each image (B, M), the candidates of each (set, image) (S*B, C);
    # -1 marks the padding (it reads the last entry, masked by `ok`).
    groups = fields[:, IMAGE]
    if len(cands) > 1:
        groups = groups + torch.cat([torch.full((k,), i * batch, device=device) for i, k in enumerate(sizes)])
    arange = tables.arange(max(n, fields.shape[0], len(cands) * batch))
    gt_tab, _ = padded_table(targets[:, 0].long(), batch, m, arange, inverse=False)
    cand_tab, cand_where = padded_table(groups, len(cands) * batch, c, arange)
    if len(cands) > 1:
        gt_tab = gt_tab.repeat(len(cands), 1)
    ok = (gt_tab >= 0)[:, :, None] & (cand_tab >= 0)[:, None, :]

    # Pairwise IoU and cost, (S*B, M, C): cost = 3 * -log(IoU + eps) - (sum_j log(1 - y_j) + logit(y_k)).
    h, w = img_hw
    pixels = tables.pixels(w, h, targets.dtype)
    txy, half_twh = targets[:, 2:4] * pixels, targets[:, 4:6] * pixels / 2
    tbox = torch.cat(((txy - half_twh).T, (txy + half_twh).T))  # (4, n) planes x1, y1, x2, y2
    iou = planar_pairwise_iou(tbox[:, gt_tab], pbox[:, cand_tab]).where(ok, 0.0)
    y_k = y[cand_tab[:, None, :], targets[:, 1].long()[gt_tab][:, :, None]]  # score of each target's class
    logit_k = torch.log(y_k) - torch.log1p(-y_k)
    cost = (
        torch.log(iou + LOG_EPS).mul_(-IOU_COST_WEIGHT) - (sum_log_1my[cand_tab][:, None, :] + logit_k)
    ).where(ok, torch.inf)

    # Dynamic k and the k cheapest candidates of every target, earlier candidates first on ties.
    kk = min(topk, c)
    k = torch.topk(iou, kk, dim=2).values.sum(2, keepdim=True).long().clamp_(min=1)  # (S*B, M, 1)
    kth = torch.topk(cost, kk, dim=2, largest=False).values.gather(2, k - 1)
    below = cost < kth
    tied = cost == kth
    chosen = (below | (tied & (tied.cumsum(2) <= k - below.sum(2, keepdim=True)))) & ok

    # Candidates chosen by several targets go to the cheapest target of the image.
    count = chosen.sum(1)  # (S*B, C)
    cheapest = cost.min(1).indices  # first of equal minima, as documented for torch.min
    first = torch.where(chosen, tables.arange(m)[:, None], m - 1).min(1).values  # first target choosing it
    owner = gt_tab.gather(1, torch.where(count > 1, cheapest, first)).view(-1)
    positive = count.view(-1)[cand_where] > 0
    return list(zip(positive.split(sizes), owner[cand_where].split(sizes), strict=True))
