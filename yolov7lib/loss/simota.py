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

Batching pads the targets and the candidates of each image into (B, M) and (B, C) tables, sized by
the counts that `find_candidates` reads back; the matching itself, dynamic-k selection included, uses
only fixed-shape tensor operations and reads nothing back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from yolov7lib.loss.candidates import Candidates, gather_rows
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


def _slot_within_image(image: torch.Tensor, batch: int) -> torch.Tensor:
    """Each entry's rank among the entries of its image, in list order."""
    n = image.shape[0]
    count = torch.zeros(batch, dtype=torch.long, device=image.device).scatter_add_(
        0, image, torch.ones_like(image)
    )
    order = torch.sort(image, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=image.device)
    return rank - (count.cumsum(0) - count)[image]


def _candidate_predictions(
    cand: Candidates,
    preds: list[torch.Tensor],
    strides: Sequence[float],
    anchors: torch.Tensor,
    constrained: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted pixel boxes (N, 4, corners) and raw objectness+class logits (N, 1 + nc) of each candidate."""
    rows = gather_rows(cand, preds)
    rows = rows.to(torch.promote_types(rows.dtype, torch.float32))  # half maps (AMP): match in float32
    stride = rows.new_tensor(strides)[cand.level, None]
    anchor_wh = anchors.reshape(-1, 2)[cand.level * anchors.shape[1] + cand.anchor]
    grid = torch.stack((cand.gi, cand.gj), 1)
    xy = (decode_xy(rows[:, :2], constrained) + grid) * stride
    wh = decode_wh(rows[:, 2:4], anchor_wh) * stride
    return xywh2xyxy(torch.cat((xy, wh), 1)), rows[:, 4:]


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
    device, n, batch = targets.device, cand.n_targets, preds[0].shape[0]
    m, c = cand.max_targets_per_image, cand.max_per_image
    if n == 0 or c == 0:
        return torch.zeros(cand.size, dtype=torch.bool, device=device), cand.target.clone()

    # Per-candidate quantities, computed once on the candidate list.
    pbox, logits = _candidate_predictions(cand, preds, strides, anchors, constrained)
    # The class cost is BCE(y, one-hot) summed over classes with y = sqrt(sigmoid(cls) * sigmoid(obj)):
    # -sum_j log(1 - y_j) over all classes, minus log(y_k / (1 - y_k)) for the target's class k.
    y = (logits[:, 1:].sigmoid() * logits[:, :1].sigmoid()).sqrt()  # (N, nc)
    cls_neg = -torch.log1p(-y).sum(1)

    # Per-image tables: targets (B, M) and candidates (B, C), padded; sizes known from `cand`.
    image = targets[:, 0].long()
    gt_flat = image * m + _slot_within_image(image, batch)
    gt_tab = torch.zeros(batch * m, dtype=torch.long, device=device)
    gt_tab[gt_flat] = torch.arange(n, device=device)
    gt_ok = torch.zeros(batch * m, dtype=torch.bool, device=device)
    gt_ok[gt_flat] = True
    gt_tab, gt_ok = gt_tab.view(batch, m), gt_ok.view(batch, m)

    cand_flat = cand.image * c + _slot_within_image(cand.image, batch)
    cand_tab = torch.zeros(batch * c, dtype=torch.long, device=device)
    cand_tab[cand_flat] = torch.arange(cand.size, device=device)
    cand_ok = torch.zeros(batch * c, dtype=torch.bool, device=device)
    cand_ok[cand_flat] = True
    cand_tab, cand_ok = cand_tab.view(batch, c), cand_ok.view(batch, c)

    # Pairwise IoU and cost, (B, M, C).
    h, w = img_hw
    tbox = xywh2xyxy(targets[:, 2:6] * targets.new_tensor([w, h, w, h]))
    ok = gt_ok[:, :, None] & cand_ok[:, None, :]
    iou = pairwise_iou(tbox[gt_tab], pbox[cand_tab])
    iou = torch.where(ok, iou, 0.0)
    gt_cls = targets[:, 1].long()[gt_tab]
    y_k = y[cand_tab[:, None, :], gt_cls[:, :, None]]  # (B, M, C) score of each target's class
    cls_cost = cls_neg[cand_tab][:, None, :] - (torch.log(y_k) - torch.log1p(-y_k))
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
    cheapest = cost.min(1).indices  # first of equal minima, as documented for torch.min
    first = torch.where(chosen, torch.arange(m, device=device)[:, None], m).min(1).values
    slot = torch.where(count > 1, cheapest, first.clamp(max=m - 1))
    positive = (count > 0).view(-1)[cand_flat]
    matched = gt_tab.view(-1)[cand.image * m + slot.view(-1)[cand_flat]]
    return positive, matched
