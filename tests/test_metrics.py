"""Training-time detection metrics against naive loops and independent definitions written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from yolov7lib.ops.metrics import (
    CONFIDENCE_GRID,
    IOU_THRESHOLDS,
    ConfusionMatrix,
    DetectionMetrics,
    ap_per_class,
    compute_ap,
    match_detections,
)


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _scene(gen: torch.Generator, nc: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (m, 5) [cls, xyxy] and detections (n, 6) [xyxy, conf, cls]: jittered label copies and noise."""
    m = int(torch.randint(0, 9, (1,), generator=gen))
    xy = torch.rand(m, 2, generator=gen, dtype=torch.float64) * 300
    wh = torch.rand(m, 2, generator=gen, dtype=torch.float64) * 80 + 5
    labels = torch.cat([torch.randint(0, nc, (m, 1), generator=gen).double(), xy, xy + wh], 1)
    if m > 1:
        labels[-1] = labels[0]  # an exact duplicate label
    copies = labels.repeat(int(torch.randint(0, 3, (1,), generator=gen)), 1)
    boxes = copies[:, 1:] + torch.randn(len(copies), 4, generator=gen, dtype=torch.float64) * 6
    cls = copies[:, 0].clone()
    flip = torch.rand(len(cls), generator=gen) < 0.15
    cls[flip] = torch.randint(0, nc, (int(flip.sum()),), generator=gen).double()
    k = int(torch.randint(0, 6, (1,), generator=gen))
    rxy = torch.rand(k, 2, generator=gen, dtype=torch.float64) * 300
    noise = torch.cat([rxy, rxy + torch.rand(k, 2, generator=gen, dtype=torch.float64) * 80 + 5], 1)
    boxes = torch.cat([boxes, noise])
    cls = torch.cat([cls, torch.randint(0, nc, (k,), generator=gen).double()])
    conf = torch.rand(len(cls), generator=gen, dtype=torch.float64)
    return torch.cat([boxes, conf[:, None], cls[:, None]], 1), labels


def _naive_match(det: torch.Tensor, labels: torch.Tensor, thresholds: list[float]) -> list[list[bool]]:
    """The rule spelled out: most confident first, best same-class label only, first taker wins."""
    out = [[False] * len(thresholds) for _ in range(len(det))]
    taken: set[int] = set()
    for i in sorted(range(len(det)), key=lambda i: -float(det[i, 4])):
        best, best_iou = -1, -1.0
        for j in range(len(labels)):
            if labels[j, 0] == det[i, 5]:
                v = _iou(det[i, :4].tolist(), labels[j, 1:].tolist())
                if v > best_iou:
                    best, best_iou = j, v
        if best >= 0 and best_iou > thresholds[0] and best not in taken:
            taken.add(best)
            out[i] = [best_iou > t for t in thresholds]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_match_detections_equals_naive_rule(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    thresholds = IOU_THRESHOLDS.double()
    n_true = 0
    for _ in range(25):
        det, labels = _scene(gen)
        ours = match_detections(det, labels, thresholds)
        assert ours.tolist() == _naive_match(det, labels, thresholds.tolist())
        n_true += int(ours.sum())
    assert n_true > 20


def test_a_detection_at_exactly_the_first_threshold_does_not_claim_the_label() -> None:
    """test.py takes candidates with IoU strictly above 0.5: a more confident detection at IoU exactly 0.5
    (a 2 x 1 box on a 1 x 1 label) must leave the label to the later detection at IoU 0.8."""
    labels = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    det = torch.tensor([[0.0, 0.0, 2.0, 1.0, 0.9, 0.0], [0.0, 0.0, 1.0, 0.8, 0.7, 0.0]], dtype=torch.float64)
    correct = match_detections(det, labels, IOU_THRESHOLDS.double())
    assert correct[0].tolist() == [False] * 10
    assert correct[1].tolist() == [t < 0.8 for t in IOU_THRESHOLDS.double().tolist()]  # 0.5 to 0.75


def _coco_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO's definition: mean over r in 0:0.01:1 of the best precision at any recall >= r (0 if none)."""
    total = 0.0
    for r in np.linspace(0, 1, 101):
        reached = precision[recall >= r]
        total += reached.max() if reached.size else 0.0
    return total / 101


def _interp_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """The reference's definition: monotone envelope with end points, piecewise-linear, trapezoid rule."""
    xs = [0.0, *recall.tolist(), recall[-1] + 0.01]
    ys = [1.0, *precision.tolist(), 0.0]
    env = [max(ys[i:]) for i in range(len(ys))]
    grid = [i / 100 for i in range(101)]
    values = []
    for x in grid:
        if x >= xs[-1]:
            values.append(env[-1])
            continue
        j = max(i for i in range(len(xs)) if xs[i] <= x)
        values.append(env[j] + (env[j + 1] - env[j]) * (x - xs[j]) / (xs[j + 1] - xs[j]))
    return sum((values[i] + values[i + 1]) / 2 * 0.01 for i in range(100))


def _continuous_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone envelope: each recall gain times the best precision from there on."""
    area, previous = 0.0, 0.0
    for i in range(len(recall)):
        if recall[i] > previous:
            area += (recall[i] - previous) * precision[i:].max()
            previous = recall[i]
    return area


@pytest.mark.parametrize("seed", range(5))
def test_compute_ap_equals_its_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_labels = (7, 11, 13, 17, 23)[seed]  # recall steps never land on the 0.01 grid
    hits = rng.random(60) < 0.45
    hits[0] = True
    hits[hits.cumsum() > n_labels - 1] = False  # recall stays below 1
    tp = hits.cumsum()
    recall, precision = tp / n_labels, tp / np.arange(1, len(hits) + 1)
    assert compute_ap(recall, precision, "coco") == pytest.approx(_coco_ap(recall, precision), abs=1e-12)
    assert compute_ap(recall, precision, "interp") == pytest.approx(_interp_ap(recall, precision), abs=1e-12)
    assert compute_ap(recall, precision, "continuous") == pytest.approx(
        _continuous_ap(recall, precision), abs=1e-12
    )
    # the reference's and COCO's integrals of one curve stay within 0.03 of each other (see the report)
    assert abs(compute_ap(recall, precision, "interp") - compute_ap(recall, precision, "coco")) < 0.03
    with pytest.raises(ValueError, match="unknown AP method"):
        compute_ap(recall, precision, "voc")  # type: ignore[arg-type]


def test_ap_per_class_picks_the_best_mean_f1_confidence() -> None:
    rng = np.random.default_rng(3)
    n = 300
    pred_cls = rng.integers(0, 3, n)
    conf = rng.random(n)
    tp = (rng.random((n, 2)) < conf[:, None] * [0.9, 0.5]).astype(float)  # confident ones are mostly right
    target_cls = np.concatenate([np.full(60, 0), np.full(40, 1), np.full(50, 2), np.full(5, 4)])
    res = ap_per_class(tp, conf, pred_cls, target_cls, method="coco")
    assert res.classes.tolist() == [0, 1, 2, 4]
    for ci, c in enumerate(res.classes):
        mine = np.argsort(-conf)[pred_cls[np.argsort(-conf)] == c]
        n_labels = (target_cls == c).sum()
        for j in range(2):
            hits = tp[mine, j].cumsum()
            expected = _coco_ap(hits / n_labels, hits / np.arange(1, len(mine) + 1)) if len(mine) else 0.0
            assert res.ap[ci, j] == pytest.approx(expected, abs=1e-12)
        # P and R at the chosen confidence, counted directly
        above = mine[conf[mine] >= res.confidence]
        if c != 4 and len(above):  # the curves interpolate between neighbouring detections
            assert abs(res.r[ci] - tp[above, 0].sum() / n_labels) <= 1 / n_labels + 1e-12
            assert abs(res.p[ci] - tp[above, 0].mean()) <= 1 / len(above) + 1e-12
    assert res.ap[3].tolist() == [0.0, 0.0]  # labels but no detections
    f1 = 2 * res.p_curve * res.r_curve / (res.p_curve + res.r_curve + 1e-16)
    assert f1.mean(0).max() == pytest.approx(res.f1.mean())


def test_detection_metrics_accumulates_like_the_reference() -> None:
    gen = torch.Generator().manual_seed(7)
    metrics = DetectionMetrics(nc=4)
    tps, confs, classes, targets = [], [], [], []
    for _ in range(40):
        det, labels = _scene(gen)
        flags = metrics.update(det, labels)
        tps.append(flags.numpy())
        confs.append(det[:, 4].numpy())
        classes.append(det[:, 5].numpy())
        targets.append(labels[:, 0].numpy())
    metrics.update(torch.zeros(0, 6), torch.zeros(0, 5))  # an empty image is seen but adds nothing
    res = metrics.compute()
    direct = ap_per_class(*(np.concatenate(x) for x in (tps, confs, classes, targets)))
    assert res.seen == 41
    assert res.map50 == pytest.approx(direct.ap[:, 0].mean())
    assert res.map == pytest.approx(direct.ap.mean())
    assert (res.mp, res.mr) == (pytest.approx(direct.p.mean()), pytest.approx(direct.r.mean()))
    assert res.nt.tolist() == np.bincount(np.concatenate(targets).astype(int), minlength=4).tolist()
    assert 0 < res.map < res.map50 < 1
    maps = res.maps(6)
    assert maps[res.classes].tolist() == res.ap.tolist() and maps[5] == res.map
    assert res.fitness() == pytest.approx(0.1 * res.map50 + 0.9 * res.map)


def test_detection_metrics_without_true_positives_is_zero() -> None:
    metrics = DetectionMetrics(nc=2)
    assert metrics.compute().map == 0.0
    far = torch.tensor([[500.0, 500, 520, 520, 0.9, 0]])
    metrics.update(far, torch.tensor([[0.0, 0, 0, 10, 10]]))
    res = metrics.compute()
    assert (res.mp, res.mr, res.map50, res.map, res.nt.tolist()) == (0.0, 0.0, 0.0, 0.0, [1, 0])


def _naive_confusion(det: torch.Tensor, labels: torch.Tensor, nc: int, conf: float, thr: float) -> np.ndarray:
    det = det[det[:, 4] > conf]
    pairs = [
        (_iou(labels[i, 1:].tolist(), det[j, :4].tolist()), i, j)
        for i in range(len(labels))
        for j in range(len(det))
    ]
    pairs = [p for p in pairs if p[0] > thr]
    best_per_det = {}
    for v, i, j in pairs:
        if j not in best_per_det or v > best_per_det[j][0]:
            best_per_det[j] = (v, i)
    best_per_label = {}
    for j, (v, i) in best_per_det.items():
        if i not in best_per_label or v > best_per_label[i][0]:
            best_per_label[i] = (v, j)
    out = np.zeros((nc + 1, nc + 1), np.int64)
    for i in range(len(labels)):
        t = int(labels[i, 0])
        if i in best_per_label:
            out[int(det[best_per_label[i][1], 5]), t] += 1
        else:
            out[nc, t] += 1
    matched = {j for _, j in best_per_label.values()}
    for j in range(len(det)):
        if j not in matched:
            out[int(det[j, 5]), nc] += 1
    return out


def test_confusion_matrix_equals_naive_counting() -> None:
    gen = torch.Generator().manual_seed(11)
    cm = ConfusionMatrix(nc=4, conf=0.25, iou_thres=0.45)
    expected = np.zeros((5, 5), np.int64)
    for _ in range(40):
        det, labels = _scene(gen)
        cm.update(det, labels)
        expected += _naive_confusion(det, labels, 4, 0.25, 0.45)
    np.testing.assert_array_equal(cm.matrix, expected)
    assert cm.matrix[:4, :4].trace() > 10 and cm.matrix[4].sum() > 0 and cm.matrix[:, 4].sum() > 0


def test_compute_ap_of_an_empty_curve_is_zero_by_every_method() -> None:
    empty = np.zeros(0)
    assert [compute_ap(empty, empty, m) for m in ("interp", "continuous", "coco")] == [0.0, 0.0, 0.0]


def test_a_true_positive_at_iou_exactly_on_a_threshold_is_not_counted_there() -> None:
    """test.py: `correct[pi[j]] = ious[j] > iouv`, strictly. A 3 x 1 box inside a 4 x 1 label has IoU 3/4,
    exactly the 0.75 threshold (0.75 is exact in float32): true at 0.50 to 0.70, false from 0.75 on."""
    labels = torch.tensor([[0.0, 0.0, 0.0, 4.0, 1.0]], dtype=torch.float64)
    det = torch.tensor([[0.0, 0.0, 3.0, 1.0, 0.9, 0.0]], dtype=torch.float64)
    assert float(IOU_THRESHOLDS[5]) == 0.75
    assert match_detections(det, labels).tolist() == [[True] * 5 + [False] * 5]


def test_interp_ap_starts_the_envelope_at_precision_one() -> None:
    """The reference's compute_ap puts a sentinel (recall 0, precision 1) in front of the curve. For the
    one-point curve (recall 0.5, precision 0.5) the envelope is 1 - r on [0, 0.5] (area 0.375), then falls
    linearly from 0.5 to the sentinel 0 at recall 0.51 (trapezoid 0.01 x 0.25 = 0.0025): 0.3775 in all."""
    assert compute_ap(np.array([0.5]), np.array([0.5]), "interp") == pytest.approx(0.3775, abs=1e-9)


def test_precision_and_recall_curves_above_every_confidence_and_the_best_f1_point() -> None:
    """One class, two labels, detections TP (0.9), FP (0.6), TP (0.3). Above every confidence nothing is kept:
    recall 0 and (the reference's convention, `left=1`) precision 1. At or below 0.3 all three are kept:
    P = 2/3, R = 1, F1 = 2PR/(P+R) = 0.8, the best mean F1, first reached at confidence 0."""
    res = ap_per_class(
        tp=np.array([[1.0], [0.0], [1.0]]),
        conf=np.array([0.9, 0.6, 0.3]),
        pred_cls=np.array([0, 0, 0]),
        target_cls=np.array([0, 0]),
    )
    above = CONFIDENCE_GRID > 0.9
    assert above.any()
    assert (res.r_curve[0, above] == 0).all()
    assert (res.p_curve[0, above] == 1).all()
    low = CONFIDENCE_GRID <= 0.3
    np.testing.assert_allclose(res.r_curve[0, low], 1.0)
    np.testing.assert_allclose(res.p_curve[0, low], 2 / 3)
    assert res.confidence == 0.0
    assert (res.p[0], res.r[0], res.f1[0]) == (pytest.approx(2 / 3), pytest.approx(1.0), pytest.approx(0.8))


def test_confusion_matrix_needs_iou_strictly_above_the_threshold() -> None:
    """The reference's ConfusionMatrix matches on `iou > iou_thres`. A 1 x 1 box on a 2 x 1 label has IoU
    exactly 0.5: with iou_thres 0.5 the label is missed ([background, 0]) and the detection is a false alarm
    ([0, background])."""
    cm = ConfusionMatrix(nc=2, conf=0.25, iou_thres=0.5)
    cm.update(torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.9, 0.0]]), torch.tensor([[0.0, 0.0, 0.0, 2.0, 1.0]]))
    expected = np.zeros((3, 3), np.int64)
    expected[2, 0] = expected[0, 2] = 1
    np.testing.assert_array_equal(cm.matrix, expected)


def test_confusion_matrix_drops_detections_at_exactly_the_confidence_threshold() -> None:
    """The reference keeps detections with `conf > self.conf`: a perfect detection at confidence exactly
    0.25 is dropped, so its label counts as missed; one at 0.5 on the same label is a match."""
    cm = ConfusionMatrix(nc=2, conf=0.25, iou_thres=0.45)
    labels = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0]])
    cm.update(torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.25, 1.0]]), labels)
    cm.update(torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.5, 1.0]]), labels)
    expected = np.zeros((3, 3), np.int64)
    expected[2, 1] = expected[1, 1] = 1
    np.testing.assert_array_equal(cm.matrix, expected)
