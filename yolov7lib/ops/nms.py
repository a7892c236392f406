"""Non-maximum suppression of decoded YOLO outputs (the post-processing behind every AP of the paper).

The semantics are the official implementation's, step by step, so that detections (and therefore every
AP and FPS figure) agree with it for the same network output:

1. candidates are the rows whose objectness exceeds `conf_thres`;
2. a row's class confidences are objectness x class score (for one-class models the objectness alone);
3. with `multi_label` every (box, class) pair whose confidence exceeds `conf_thres` is a detection,
   otherwise only the best class of each box (first index on ties) is kept when it exceeds `conf_thres`;
4. optional class filter; at most `max_nms` candidates (highest confidence) enter NMS;
5. one greedy NMS over all classes at once, each class moved by `class x 4096` pixels so that boxes of
   different classes never overlap (no offset when `agnostic`), keeping at most `max_det` boxes in
   descending confidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision

from yolov7lib.ops.boxes import xywh2xyxy

CLASS_OFFSET = 4096
"""Pixels between classes in the batched NMS; the reference's largest box side (`max_wh`)."""


def _with_prior_labels(rows: torch.Tensor, labels: torch.Tensor, nc: int) -> torch.Tensor:
    """Append known boxes (class, x, y, w, h in pixels) as rows of objectness 1 and class score 1."""
    extra = rows.new_zeros((len(labels), nc + 5), dtype=torch.promote_types(rows.dtype, torch.float32))
    extra[:, :4] = labels[:, 1:5]
    extra[:, 4] = 1.0
    extra[torch.arange(len(labels), device=rows.device), labels[:, 0].long() + 5] = 1.0
    return torch.cat((rows, extra), 0)


def _candidates(rows: torch.Tensor, conf_thres: float, multi_label: bool) -> torch.Tensor:
    """Turn (n, 5 + nc) rows into (m, 6) candidates [x1, y1, x2, y2, conf, cls] above `conf_thres`.

    Scores and boxes are computed in the input's precision; the candidates are at least float32, so that
    class offsets of the batched NMS cannot overflow half precision.
    """
    nc = rows.shape[1] - 5
    dtype = torch.promote_types(rows.dtype, torch.float32)
    scores = rows[:, 4:5].expand(-1, nc) if nc == 1 else rows[:, 5:] * rows[:, 4:5]
    boxes = xywh2xyxy(rows[:, :4])
    if multi_label:
        box_index, cls = (scores > conf_thres).nonzero(as_tuple=True)
        conf = scores[box_index, cls]
        return torch.cat((boxes[box_index].to(dtype), conf[:, None].to(dtype), cls[:, None].to(dtype)), 1)
    conf, cls = scores.max(1, keepdim=True)
    keep = conf.view(-1) > conf_thres
    return torch.cat((boxes.to(dtype), conf.to(dtype), cls.to(dtype)), 1)[keep]


def non_max_suppression(
    prediction: torch.Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    labels: Sequence[torch.Tensor] = (),
    max_nms: int = 30000,
) -> list[torch.Tensor]:
    """Suppress overlapping detections of a decoded batch (B, N, 5 + nc): xywh in pixels, objectness, classes.

    Returns one (n, 6) tensor `[x1, y1, x2, y2, conf, cls]` per image, sorted by descending confidence,
    with n <= `max_det`. `labels` optionally gives, per image, known boxes (k, 5) `[cls, x, y, w, h]` in
    pixels that join the candidates with confidence 1 (auto-labelling). `multi_label` is ignored for
    one-class models. The input is not modified. Half-precision input gives float32 detections.
    """
    if prediction.ndim != 3 or prediction.shape[2] < 6:
        raise ValueError(f"prediction must be (batch, boxes, 5 + classes), got {tuple(prediction.shape)}")
    for key, value in (("conf_thres", conf_thres), ("iou_thres", iou_thres)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{key} must lie in [0, 1], got {value}")
    nc = prediction.shape[2] - 5
    multi_label = multi_label and nc > 1
    wanted = None if classes is None else torch.as_tensor(classes, device=prediction.device)

    output = []
    for image_index, rows in enumerate(prediction):
        rows = rows[rows[:, 4] > conf_thres]
        if len(labels) and len(labels[image_index]):
            rows = _with_prior_labels(rows, labels[image_index].to(rows.device), nc)
        det = _candidates(rows, conf_thres, multi_label)
        if wanted is not None:
            det = det[(det[:, 5:6] == wanted.to(det.dtype)).any(1)]
        if len(det) > max_nms:
            det = det[det[:, 4].argsort(descending=True)[:max_nms]]
        if len(det):
            offsets = det[:, 5:6] * (0 if agnostic else CLASS_OFFSET)
            keep = torchvision.ops.nms(det[:, :4] + offsets, det[:, 4], iou_thres)[:max_det]
            det = det[keep]
        output.append(det)
    return output
