"""NMS inside the exported graph (`yolov7 export --end2end`).

The graph computes, from the decoded predictions (B, N, 5 + nc), what `ops.non_max_suppression` does
with `multi_label=False`: confidence = objectness x best class score (objectness alone for one class),
boxes moved by `class x 4096` so that classes never suppress each other, one greedy NMS per image
(ONNX `NonMaxSuppression`, strict `>` thresholds on score and IoU, as torchvision's), at most `max_det`
boxes per image. The outputs are padded per image and sorted by descending score:
`num_dets` (B, 1) int64, `boxes` (B, max_det, 4) float xyxy in input pixels, `scores` (B, max_det),
`classes` (B, max_det) int64 (-1 in padding rows). Unlike the PyTorch function, no cap of 30,000
candidates is applied before NMS (it matters only with more candidates than that above `conf_thres`).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from yolov7lib.ops.nms import CLASS_OFFSET

__all__ = ["End2End", "nms_indices"]


class _NonMaxSuppression(torch.autograd.Function):
    """Batched NMS whose eager result equals ONNX NonMaxSuppression with one score class:
    (K, 3) int64 rows `[image, 0, box index]`, per image in descending score order."""

    @staticmethod
    def forward(ctx, boxes, scores, max_det, iou_thres, conf_thres):  # type: ignore[override]
        rows = []
        for b in range(boxes.shape[0]):
            s = scores[b, 0]
            candidates = (s > conf_thres).nonzero().view(-1)
            keep = torchvision.ops.nms(boxes[b, candidates], s[candidates], float(iou_thres))
            kept = candidates[keep[: int(max_det)]]
            rows.append(torch.stack([torch.full_like(kept, b), torch.zeros_like(kept), kept], 1))
        return torch.cat(rows, 0) if rows else torch.zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_det, iou_thres, conf_thres):  # type: ignore[no-untyped-def]
        return g.op("NonMaxSuppression", boxes, scores, max_det, iou_thres, conf_thres)


def nms_indices(
    boxes: torch.Tensor, scores: torch.Tensor, max_det: int, iou_thres: float, conf_thres: float
) -> torch.Tensor:
    """(K, 3) rows `[image, 0, box]` kept by NMS of boxes (B, N, 4) xyxy with scores (B, N)."""
    return _NonMaxSuppression.apply(
        boxes,
        scores.unsqueeze(1),
        torch.tensor([max_det], dtype=torch.int64),
        torch.tensor([iou_thres], dtype=torch.float32),
        torch.tensor([conf_thres], dtype=torch.float32),
    )


class End2End(nn.Module):
    """A deploy model followed by NMS: images -> (num_dets, boxes, scores, classes)."""

    def __init__(
        self, model: nn.Module, conf_thres: float = 0.25, iou_thres: float = 0.45, max_det: int = 100
    ) -> None:
        super().__init__()
        self.model = model
        self.conf_thres, self.iou_thres, self.max_det = conf_thres, iou_thres, max_det

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pred = self.model(images)[0]  # (B, N, 5 + nc)
        xy, wh = pred[..., :2], pred[..., 2:4]
        boxes = torch.cat((xy - wh / 2, xy + wh / 2), -1)
        scores = pred[..., 4:5] if pred.shape[-1] == 6 else pred[..., 5:] * pred[..., 4:5]
        conf, cls = scores.max(-1)  # (B, N): best class, first index on ties
        # class offsets of up to 4096 * nc overflow float16: NMS works in at least float32
        work = torch.promote_types(boxes.dtype, torch.float32)
        offset = cls.unsqueeze(-1).to(work) * CLASS_OFFSET
        sel = nms_indices(
            boxes.to(work) + offset, conf.to(work), self.max_det, self.iou_thres, self.conf_thres
        )
        image, box = sel[:, 0], sel[:, 2]
        kept_scores = conf[image, box]
        shape = (images.shape[0], self.max_det)
        # rank of each kept box within its image: boxes of the same image ahead of it in score order
        # (ties: the earlier row first), so the output does not depend on the order NMS returns. Each
        # row is compared with its own image's rows only (B x max_det x max_det, not (B x max_det)^2):
        # `slot`, its place among them in row order, puts its score in a (B, max_det) table
        batch = torch.arange(images.shape[0], device=images.device)
        mine = (image.unsqueeze(1) == batch.unsqueeze(0)).long()  # (K, B)
        slot = (mine.cumsum(0) * mine).sum(1) - 1
        table = torch.full(shape, -1.0, dtype=kept_scores.dtype, device=kept_scores.device)  # below any
        table[image, slot] = kept_scores
        others, score = table[image], kept_scores.unsqueeze(1)  # (K, max_det), (K, 1)
        j = torch.arange(self.max_det, device=sel.device)
        ahead = (others > score) | ((others == score) & (j.unsqueeze(0) < slot.unsqueeze(1)))
        rank = ahead.sum(1)
        num_dets = mine.sum(0).unsqueeze(1)  # (B, 1)
        out_boxes = torch.zeros((*shape, 4), dtype=boxes.dtype, device=boxes.device)
        out_scores = torch.zeros(shape, dtype=conf.dtype, device=conf.device)
        out_classes = torch.full(shape, -1, dtype=torch.int64, device=conf.device)
        out_boxes[image, rank] = boxes[image, box]
        out_scores[image, rank] = kept_scores
        out_classes[image, rank] = cls[image, box]
        return num_dets, out_boxes, out_scores, out_classes
