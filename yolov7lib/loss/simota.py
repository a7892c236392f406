"""SimOTA matching of targets to candidate cells, batched over images and levels (Section 4.2).

The rules are those of the reference implementation's OTA losses, applied image by image there and to
the whole batch at once here:

1. each target of an image is paired with every candidate cell of that image (all levels; a cell
   proposed by several targets appears once per proposing target, as a separate candidate);
2. IoU of the target with the box the guiding head predicts at the candidate (pixels);
3. cost = BCE(sqrt(sigmoid(cls) * sigmoid(obj)), one-hot class) summed over classes + 3 * -log(IoU + 1e-8);
4. dynamic k = int(sum of the target's `topk` largest IoUs), at least 1; the target takes its k
   cheapest candidates (ties go to the earlier candidate);
5. a candidate taken by several targets goes to the target of lowest cost among all targets of the
   image (ties to the earlier target); every taken candidate is a positive of exactly one target.

Batching pads the targets and the valid candidates of each image into (B, M) and (B, C) tables; the
table sizes are the only values read back to the host (one synchronisation per call). Everything else,
the dynamic-k selection included, is done with fixed-shape tensor operations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from yolov7lib.loss.candidates import Candidates
from yolov7lib.loss.decoder import decode_wh, decode_xy
from yolov7lib.ops.boxes import xywh2xyxy

IOU_COST_WEIGHT = 3.0
LOG_EPS = 1e-8


def pairwise_iou(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """Batched pairwise IoU of corner boxes: (B, M, 4) x (B, C, 4) -> (B, M, C).

    Same formula as `yolov7lib.ops.box_iou`, which handles one pair of sets.
    """
    area1 = (box1[..., 2] - box1[..., 0]) * (box1[..., 3] - box1[..., 1])
    area2 = (box2[..., 2] - box2[..., 0]) * (box2[..., 3] - box2[..., 1])
    lt = torch.max(box1[:, :, None, :2], box2[:, None, :, :2])
    rb = torch.min(box1[:, :, None, 2:], box2[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(3)
    return inter / (area1[:, :, None] + area2[:, None, :] - inter)


def _rank_within_image(image: torch.Tensor, keep: torch.Tensor, batch: int) -> tuple[torch.Tensor, ...]:
    """Per-image counts of the kept entries and each entry's rank among its image's kept entries."""
    n = image.shape[0]
    count = torch.zeros(batch, dtype=torch.long, device=image.device)
    count.scatter_add_(0, image, keep.long())
    order = torch.sort(torch.where(keep, image, batch), stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=image.device)
    start = count.cumsum(0) - count
    return count, rank - start[image.clamp(0, batch - 1)]


def _candidate_predictions(
    cand: Candidates,
    preds: list[torch.Tensor],
    strides: Sequence[float],
    anchors: torch.Tensor,
    constrained: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted pixel boxes (F, 4, corners) and raw objectness+class logits (F, 1 + nc) of each candidate."""
    boxes, logits = [], []
    for level, s in enumerate(cand.blocks):
        gi, gj, a = cand.gi[s], cand.gj[s], cand.anchor[s]
        rows = preds[level][cand.image[s], a, gj, gi]
        grid = torch.stack((gi, gj), 1)
        xy = (decode_xy(rows[:, :2], constrained) + grid) * strides[level]
        wh = decode_wh(rows[:, 2:4], anchors[level][a]) * strides[level]
        boxes.append(xywh2xyxy(torch.cat((xy, wh), 1)))
        logits.append(rows[:, 4:])
    return torch.cat(boxes), torch.cat(logits)


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
    Returns (positive, matched), both (F,) over the candidates: whether each is a positive and the
    index of the target it is matched to (meaningful where positive).
    """
    device, n, batch = targets.device, cand.n_targets, preds[0].shape[0]
    positive = torch.zeros(cand.size, dtype=torch.bool, device=device)
    matched = cand.target.clone()
    if n == 0:
        return positive, matched

    # Per-candidate quantities, computed once on the flat candidate list.
    pbox, logits = _candidate_predictions(cand, preds, strides, anchors, constrained)
    work = torch.promote_types(logits.dtype, torch.float32)
    y = (logits[:, 1:].to(work).sigmoid() * logits[:, :1].to(work).sigmoid()).sqrt()
    cls_logit = torch.log(y / (1 - y))  # (F, nc): the joint score as a logit
    cls_neg = F.binary_cross_entropy_with_logits(cls_logit, torch.zeros_like(cls_logit), reduction="none")
    cls_neg = cls_neg.sum(1)  # BCE against an all-zero class vector; the true class subtracts its logit

    # Pad targets and valid candidates per image; the table sizes are the one host read-back.
    image = targets[:, 0].long()
    gt_count, gt_slot = _rank_within_image(image, torch.ones_like(image, dtype=torch.bool), batch)
    cand_count, cand_slot = _rank_within_image(cand.image, cand.valid, batch)
    m, c = (int(v) for v in torch.stack((gt_count.max(), cand_count.max())).cpu())  # one transfer
    if c == 0:
        return positive, matched

    gt_tab = torch.zeros(batch * m, dtype=torch.long, device=device)
    gt_tab[image * m + gt_slot] = torch.arange(n, device=device)
    gt_ok = torch.zeros(batch * m, dtype=torch.bool, device=device)
    gt_ok[image * m + gt_slot] = True
    gt_tab, gt_ok = gt_tab.view(batch, m), gt_ok.view(batch, m)

    dummy = batch * c  # where invalid candidates are scattered (then dropped)
    cand_flat = torch.where(cand.valid, cand.image * c + cand_slot, dummy)
    cand_tab = torch.zeros(dummy + 1, dtype=torch.long, device=device)
    cand_tab.scatter_(0, cand_flat, torch.arange(cand.size, device=device))
    cand_ok = torch.zeros(dummy + 1, dtype=torch.bool, device=device)
    cand_ok[cand_flat] = True
    cand_tab, cand_ok = cand_tab[:dummy].view(batch, c), cand_ok[:dummy].view(batch, c)

    # Pairwise IoU and cost, (B, M, C).
    h, w = img_hw
    tbox = xywh2xyxy(targets[:, 2:6] * targets.new_tensor([w, h, w, h]))
    ok = gt_ok[:, :, None] & cand_ok[:, None, :]
    iou = pairwise_iou(tbox[gt_tab], pbox[cand_tab])
    iou = torch.where(ok, iou, 0.0)
    gt_cls = targets[:, 1].long()[gt_tab]
    cls_cost = cls_neg[cand_tab][:, None, :] - cls_logit[cand_tab[:, None, :], gt_cls[:, :, None]]
    cost = cls_cost + IOU_COST_WEIGHT * -torch.log(iou + LOG_EPS)
    cost = torch.where(ok, cost, torch.inf)

    # Dynamic k and the k cheapest candidates of every target, earlier candidates first on ties.
    kk = min(topk, c)
    k = torch.topk(iou, kk, dim=2).values.sum(2).int().clamp(min=1)  # (B, M)
    kth = torch.topk(cost, kk, dim=2, largest=False).values.gather(2, (k - 1).long()[..., None])
    below = cost < kth
    tied = cost == kth
    room = k[..., None] - below.sum(2, keepdim=True)
    chosen = (below | (tied & (tied.cumsum(2) <= room))) & ok

    # Candidates chosen by several targets go to the cheapest target of the image.
    count = chosen.sum(1)  # (B, C)
    slot = torch.where(count > 1, cost.argmin(1), chosen.to(torch.uint8).argmax(1))

    pad = torch.zeros(1, dtype=torch.bool, device=device)
    positive = torch.cat((count.view(-1) > 0, pad))[cand_flat]
    slot = torch.cat((slot.view(-1), pad.long()))[cand_flat]
    matched = gt_tab.view(-1)[cand.image.clamp(0, batch - 1) * m + slot]
    return positive, matched
