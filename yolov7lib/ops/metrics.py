"""Detection metrics computed directly, for training-time validation: P, R, mAP@0.5 and mAP@0.5:0.95.

These follow the official implementation's validation (its test.py and metrics), which the paper's
training curves and best-checkpoint choice rest on; the paper's reported APs (Tables 1, 2, 9, 10) come
from COCO evaluation instead (`yolov7lib.ops.coco`). The two differ in the matching rule and in how the
precision-recall curve is integrated; `method="coco"` switches the integration to COCO's.

Matching rule per image (test.py): detections are visited in descending confidence; each looks only at
its best-overlapping label of the same class; it is a true positive at every threshold below that IoU
if the IoU exceeds the first threshold and no earlier detection already took that label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from yolov7lib.ops.boxes import box_iou

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)
"""The ten IoU thresholds of mAP@0.5:0.95 (float32, as the reference compares them)."""

APMethod = Literal["interp", "continuous", "coco"]
RECALL_POINTS = np.linspace(0, 1, 101)
"""The 101 recall points of the COCO-style interpolated AP."""


def match_detections(
    detections: torch.Tensor,
    labels: torch.Tensor,
    iou_thresholds: torch.Tensor = IOU_THRESHOLDS,
) -> torch.Tensor:
    """Mark detections (n, 6) `[x1, y1, x2, y2, conf, cls]` correct against labels (m, 5) `[cls, xyxy]`.

    Returns an (n, T) boolean tensor, True where detection i is a true positive at threshold t (rule in
    the module docstring). Detections and labels must share one coordinate frame.
    """
    thresholds = iou_thresholds.to(detections.device)
    correct = torch.zeros(len(detections), len(thresholds), dtype=torch.bool, device=detections.device)
    if not len(detections) or not len(labels):
        return correct
    order = torch.sort(detections[:, 4], descending=True, stable=True).indices
    det = detections[order]
    iou = box_iou(det[:, :4], labels[:, 1:5].to(det.dtype))
    iou = torch.where(det[:, 5:6] == labels[:, 0].to(det.dtype), iou, -1.0)
    best_iou, best_label = iou.max(1)
    candidate = (best_iou > thresholds[0]).nonzero().view(-1)
    if len(candidate):
        # a label goes to the first (most confident) candidate that chose it
        _, first = np.unique(best_label[candidate].cpu().numpy(), return_index=True)
        winners = candidate[torch.as_tensor(first, device=candidate.device)]
        correct[order[winners]] = best_iou[winners, None] > thresholds
    return correct


def compute_ap(
    recall: np.ndarray,
    precision: np.ndarray,
    method: APMethod = "interp",
    v5_metric: bool = False,
) -> float:
    """Area under one precision-recall curve (detections in descending confidence).

    `interp` (the reference's default): the precision envelope with sentinels (recall 0 -> precision 1,
    and recall end + 0.01 -> precision 0, or recall 1 with `v5_metric`), linearly interpolated at 101
    recall points and integrated by the trapezoid rule. `continuous`: the exact area under the envelope.
    `coco`: as pycocotools, the envelope sampled at 101 recall points (0 beyond the last recall), averaged.
    """
    if not len(recall):  # no detections: no area (the sentinels alone would give interp 0.005)
        return 0.0
    if method == "coco":
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, RECALL_POINTS, side="left")
        sampled = np.where(at < len(recall), envelope[np.minimum(at, len(recall) - 1)], 0.0)
        return float(sampled.mean())
    end = 1.0 if v5_metric else recall[-1] + 0.01
    mrec = np.concatenate(([0.0], recall, [end]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    if method == "interp":
        return float(np.trapezoid(np.interp(RECALL_POINTS, mrec, mpre), RECALL_POINTS))
    if method == "continuous":
        step = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))
    raise ValueError(f"unknown AP method {method!r}; use interp, continuous or coco")


@dataclass
class ClassAP:
    """Per-class results of `ap_per_class`: arrays indexed like `classes`."""

    classes: np.ndarray  # (k,) class indices that have labels
    p: np.ndarray  # (k,) precision at the confidence of best mean F1
    r: np.ndarray  # (k,) recall at that confidence
    f1: np.ndarray  # (k,) F1 at that confidence
    ap: np.ndarray  # (k, T) AP at each IoU threshold
    confidence: float  # the confidence of best mean F1
    p_curve: np.ndarray = field(repr=False)  # (k, 1000) precision against confidence
    r_curve: np.ndarray = field(repr=False)  # (k, 1000) recall against confidence


CONFIDENCE_GRID = np.linspace(0, 1, 1000)


def ap_per_class(
    tp: np.ndarray,
    conf: np.ndarray,
    pred_cls: np.ndarray,
    target_cls: np.ndarray,
    method: APMethod = "interp",
    v5_metric: bool = False,
) -> ClassAP:
    """Precision, recall and AP per class from per-detection true-positive flags (n, T).

    Classes are those present in `target_cls`; a class without detections has P = R = AP = 0. P and R
    are read, for every class, at the one confidence that maximises the classes' mean F1 (on a grid of
    1000 confidences), as the reference reports them.
    """
    tp = np.asarray(tp, dtype=float).reshape(len(conf), -1)
    order = np.argsort(-np.asarray(conf, dtype=float), kind="stable")
    tp, conf, pred_cls = tp[order], np.asarray(conf, dtype=float)[order], np.asarray(pred_cls)[order]
    target_cls = np.asarray(target_cls)
    classes = np.unique(target_cls)
    k, t = len(classes), tp.shape[1]
    ap = np.zeros((k, t))
    p_curve, r_curve = np.zeros((k, len(CONFIDENCE_GRID))), np.zeros((k, len(CONFIDENCE_GRID)))
    for ci, c in enumerate(classes):
        mine = pred_cls == c
        n_labels = int((target_cls == c).sum())
        if not mine.any():
            continue
        tpc = tp[mine].cumsum(0)
        fpc = (1 - tp[mine]).cumsum(0)
        recall = tpc / n_labels
        precision = tpc / (tpc + fpc)
        # curves against confidence (x reversed because confidence decreases along the detections)
        r_curve[ci] = np.interp(-CONFIDENCE_GRID, -conf[mine], recall[:, 0], left=0)
        p_curve[ci] = np.interp(-CONFIDENCE_GRID, -conf[mine], precision[:, 0], left=1)
        for j in range(t):
            ap[ci, j] = compute_ap(recall[:, j], precision[:, j], method, v5_metric)
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + 1e-16)
    best = int(f1_curve.mean(0).argmax()) if k else 0
    return ClassAP(
        classes=classes.astype(np.int64),
        p=p_curve[:, best],
        r=r_curve[:, best],
        f1=f1_curve[:, best],
        ap=ap,
        confidence=float(CONFIDENCE_GRID[best]),
        p_curve=p_curve,
        r_curve=r_curve,
    )


@dataclass
class ValidationMetrics:
    """Summary of a validation pass: means over the classes that have labels, and per-class values."""

    mp: float  # mean precision
    mr: float  # mean recall
    map50: float  # mAP@0.5
    map: float  # mAP@0.5:0.95
    classes: np.ndarray  # (k,) classes with labels
    p: np.ndarray  # (k,)
    r: np.ndarray  # (k,)
    ap50: np.ndarray  # (k,)
    ap: np.ndarray  # (k,) AP@0.5:0.95 per class
    nt: np.ndarray  # (nc,) number of labels per class
    seen: int  # images seen

    def maps(self, nc: int) -> np.ndarray:
        """AP@0.5:0.95 for every class index, the overall mAP where a class has no labels (reference)."""
        out = np.full(nc, self.map)
        out[self.classes] = self.ap
        return out

    def fitness(self) -> float:
        """The reference's checkpoint-selection score: 0.1 x mAP@0.5 + 0.9 x mAP@0.5:0.95."""
        return 0.1 * self.map50 + 0.9 * self.map


class DetectionMetrics:
    """Accumulate detections and labels image by image, then compute `ValidationMetrics`.

    Give detections and labels in one frame; the reference maps both back to original-image pixels
    (`ops.scale_boxes`) first, whose clipping can change an IoU slightly. Images with neither detections
    nor labels are counted as seen and contribute nothing; detections of an image without labels are all
    false positives. If no detection is a true positive anywhere, every metric is 0 (as the reference
    reports it). `method` and `v5_metric` choose the AP integration (`compute_ap`).
    """

    def __init__(
        self,
        nc: int,
        iou_thresholds: torch.Tensor = IOU_THRESHOLDS,
        method: APMethod = "interp",
        v5_metric: bool = False,
    ) -> None:
        self.nc = nc
        self.iou_thresholds = iou_thresholds
        self.method: APMethod = method
        self.v5_metric = v5_metric
        self.seen = 0
        self._stats: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, detections: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Add one image: detections (n, 6) and labels (m, 5) `[cls, xyxy]`; returns its (n, T) flags."""
        self.seen += 1
        correct = match_detections(detections, labels, self.iou_thresholds)
        if len(detections) or len(labels):
            self._stats.append(
                (
                    correct.cpu().numpy(),
                    detections[:, 4].detach().cpu().double().numpy(),
                    detections[:, 5].detach().cpu().numpy().astype(np.int64),
                    labels[:, 0].detach().cpu().numpy().astype(np.int64),
                )
            )
        return correct

    def compute(self) -> ValidationMetrics:
        """Means and per-class values over everything added so far."""
        t = len(self.iou_thresholds)
        if self._stats:
            tp, conf, pred_cls, target_cls = (np.concatenate(x, 0) for x in zip(*self._stats, strict=True))
        else:
            tp, conf = np.zeros((0, t), bool), np.zeros(0)
            pred_cls, target_cls = np.zeros(0, np.int64), np.zeros(0, np.int64)
        nt = np.bincount(target_cls, minlength=self.nc)
        if not tp.any():
            empty = np.zeros(0)
            return ValidationMetrics(
                0.0, 0.0, 0.0, 0.0, np.zeros(0, np.int64), empty, empty, empty, empty, nt, self.seen
            )
        res = ap_per_class(tp, conf, pred_cls, target_cls, self.method, self.v5_metric)
        ap50, ap = res.ap[:, 0], res.ap.mean(1)
        return ValidationMetrics(
            mp=float(res.p.mean()),
            mr=float(res.r.mean()),
            map50=float(ap50.mean()),
            map=float(ap.mean()),
            classes=res.classes,
            p=res.p,
            r=res.r,
            ap50=ap50,
            ap=ap,
            nt=nt,
            seen=self.seen,
        )


class ConfusionMatrix:
    """Counts of (predicted class, true class) with a background row and column (index `nc`).

    Per image, detections above `conf` are matched one to one to labels with IoU > `iou_thres`, regardless
    of class: each detection keeps its best-IoU label, then each label keeps its best-IoU detection (the
    reference's rule). Matched pairs count at [detected class, true class], unmatched labels at
    [background, true class] (missed), unmatched detections at [detected class, background] (false alarms).
    """

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45) -> None:
        self.nc, self.conf, self.iou_thres = nc, conf, iou_thres
        self.matrix = np.zeros((nc + 1, nc + 1), dtype=np.int64)

    def update(self, detections: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one image: detections (n, 6) `[xyxy, conf, cls]` and labels (m, 5) `[cls, xyxy]`."""
        det = detections[detections[:, 4] > self.conf]
        det_cls = det[:, 5].long().cpu().numpy()
        true_cls = labels[:, 0].long().cpu().numpy()
        det_matched = np.zeros(len(det), bool)
        label_matched = np.zeros(len(labels), bool)
        if len(det) and len(labels):
            iou = box_iou(labels[:, 1:5].to(det.dtype), det[:, :4]).cpu().numpy()
            li, di = np.nonzero(iou > self.iou_thres)
            strength = iou[li, di]
            by_iou = np.argsort(-strength, kind="stable")
            li, di = li[by_iou], di[by_iou]
            _, keep = np.unique(di, return_index=True)  # each detection: its best label
            li, di = li[keep], di[keep]
            by_iou = np.argsort(-iou[li, di], kind="stable")
            li, di = li[by_iou], di[by_iou]
            _, keep = np.unique(li, return_index=True)  # each label: its best detection
            li, di = li[keep], di[keep]
            np.add.at(self.matrix, (det_cls[di], true_cls[li]), 1)
            det_matched[di], label_matched[li] = True, True
        np.add.at(self.matrix, (self.nc, true_cls[~label_matched]), 1)
        np.add.at(self.matrix, (det_cls[~det_matched], self.nc), 1)
