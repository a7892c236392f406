"""NMS against a naive per-class greedy loop written here from the rules, on random boxes."""

from __future__ import annotations

import pytest
import torch
import torchvision

from yolov7lib.ops import non_max_suppression


def _random_prediction(seed: int, batch: int = 2, n: int = 120, nc: int = 4) -> torch.Tensor:
    """Decoded outputs (batch, n, 5 + nc) in float64: xywh in pixels, objectness, class scores."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, n, 2, generator=gen, dtype=torch.float64) * 300
    wh = torch.rand(batch, n, 2, generator=gen, dtype=torch.float64) * 120 + 2
    scores = torch.rand(batch, n, 1 + nc, generator=gen, dtype=torch.float64)
    return torch.cat([xy, wh, scores], 2)


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _naive_nms(
    rows: list[list[float]],
    conf_thres: float,
    iou_thres: float,
    classes: list[int] | None,
    agnostic: bool,
    multi_label: bool,
    max_det: int,
) -> list[list[float]]:
    """One image: candidates by the stated rules, then greedy suppression class by class."""
    nc = len(rows[0]) - 5
    candidates = []
    for x, y, w, h, obj, *cls_scores in rows:
        if obj <= conf_thres:
            continue
        box = [x - w / 2, y - h / 2, x + w / 2, y + h / 2]
        confs = [obj] if nc == 1 else [obj * s for s in cls_scores]
        if multi_label and nc > 1:
            picked = [(c, conf) for c, conf in enumerate(confs) if conf > conf_thres]
        else:
            best = max(range(nc), key=lambda c: (confs[c], -c))
            picked = [(best, confs[best])] if confs[best] > conf_thres else []
        candidates += [[*box, conf, float(c)] for c, conf in picked if classes is None or c in classes]
    kept = []
    for group in {0.0} if agnostic else {d[5] for d in candidates}:
        members = [d for d in candidates if agnostic or d[5] == group]
        survivors: list[list[float]] = []
        for d in sorted(members, key=lambda d: -d[4]):
            if all(_iou(d, s) <= iou_thres for s in survivors):
                survivors.append(d)
        kept += survivors
    return sorted(kept, key=lambda d: -d[4])[:max_det]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"multi_label": True},
        {"agnostic": True},
        {"classes": [0, 2]},
        {"multi_label": True, "agnostic": True, "classes": [1, 2, 3]},
        {"conf_thres": 0.05, "iou_thres": 0.65, "multi_label": True, "max_det": 25},
    ],
)
def test_nms_equals_naive_greedy_loop(seed: int, options: dict) -> None:
    pred = _random_prediction(seed)
    before = pred.clone()
    ours = non_max_suppression(pred, **options)
    assert torch.equal(pred, before), "the input must not be modified"
    settings = {
        "conf_thres": 0.25,
        "iou_thres": 0.45,
        "classes": None,
        "agnostic": False,
        "multi_label": False,
        "max_det": 300,
        **options,
    }
    assert len(ours) == len(pred)
    for image, det in zip(pred, ours, strict=True):
        expected = torch.tensor(_naive_nms(image.tolist(), **settings), dtype=torch.float64).reshape(-1, 6)
        assert det.shape == expected.shape
        torch.testing.assert_close(det, expected, rtol=0, atol=1e-9)
        assert len(expected) > 3, "the random case should keep several boxes"


def test_one_class_uses_objectness_alone() -> None:
    pred = _random_prediction(5, nc=1)
    for image, det in zip(pred, non_max_suppression(pred, multi_label=True), strict=True):
        expected = _naive_nms(image.tolist(), 0.25, 0.45, None, False, False, 300)
        torch.testing.assert_close(det, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-9)
        assert (det[:, 5] == 0).all()


def test_max_nms_keeps_the_most_confident_candidates() -> None:
    pred = _random_prediction(6, batch=1, n=300)
    capped = non_max_suppression(pred, conf_thres=0.01, max_nms=40)[0]
    rows = pred[0]
    conf, _ = (rows[:, 5:] * rows[:, 4:5]).max(1)
    top = rows[(rows[:, 4] > 0.01) & (conf > 0.01)]
    top_conf, _ = (top[:, 5:] * top[:, 4:5]).max(1)
    top = top[top_conf.argsort(descending=True)[:40]]
    expected = _naive_nms(top.tolist(), 0.01, 0.45, None, False, False, 300)
    torch.testing.assert_close(capped, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-9)


def test_prior_labels_join_with_confidence_one() -> None:
    pred = torch.zeros(1, 3, 8)
    pred[0, :, :4] = torch.tensor([[50.0, 50, 20, 20], [200, 200, 40, 40], [52, 50, 20, 20]])
    pred[0, :, 4] = torch.tensor([0.9, 0.1, 0.8])
    pred[0, :, 5] = 1.0
    labels = [torch.tensor([[2.0, 400, 300, 10, 20]])]
    det = non_max_suppression(pred, labels=labels)[0]
    torch.testing.assert_close(det[0], torch.tensor([395.0, 290, 405, 310, 1.0, 2.0]))
    torch.testing.assert_close(det[1], torch.tensor([40.0, 40, 60, 60, 0.9, 0.0]))
    assert len(det) == 2  # the second box is below conf_thres, the third overlaps the first


def test_empty_and_bad_input() -> None:
    pred = torch.rand(2, 10, 7)
    pred[..., 4] = 0.0
    out = non_max_suppression(pred)
    assert [tuple(d.shape) for d in out] == [(0, 6), (0, 6)]
    with pytest.raises(ValueError, match="batch, boxes"):
        non_max_suppression(torch.rand(10, 7))
    with pytest.raises(ValueError, match="iou_thres"):
        non_max_suppression(torch.rand(1, 10, 7), iou_thres=1.5)
    for conf in (25, -0.1):  # a percentage would silently give no detections at all
        with pytest.raises(ValueError, match=r"conf_thres must lie in \[0, 1\]"):
            non_max_suppression(torch.rand(1, 10, 7), conf_thres=conf)
    # the interval's ends are valid (yolov7 val --conf 0 and --iou 0 pass its parser): conf 0 keeps every
    # box with a positive score, iou 0 keeps one box of each overlapping group
    scored = torch.tensor([[[10.0, 10, 4, 4, 0.5, 0.2, 0.8], [11, 10, 4, 4, 0.4, 0.9, 0.1]]])
    assert len(non_max_suppression(scored, conf_thres=0.0, iou_thres=1.0, multi_label=True)[0]) == 4
    assert len(non_max_suppression(scored, conf_thres=0.0, iou_thres=0.0, agnostic=True)[0]) == 1


def test_half_precision_input_keeps_classes_apart_without_overflow() -> None:
    """Class offsets of 4096 px overflow float16 from class 16 on; candidates are float32."""
    gen = torch.Generator().manual_seed(8)
    n, nc = 200, 80
    xy = torch.rand(n, 2, generator=gen) * 60 + 100  # boxes piled on one spot
    wh = torch.rand(n, 2, generator=gen) * 20 + 40
    scores = torch.zeros(n, nc)
    scores[:, 40] = torch.rand(n, generator=gen) * 0.5 + 0.5
    scores[: n // 2, 70] = 1.0  # half of them also claim class 70 (multi-label)
    obj = torch.rand(n, 1, generator=gen) * 0.5 + 0.5
    pred = torch.cat([xy, wh, obj, scores], 1)[None].half()
    det = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.45, multi_label=True)[0]
    assert det.dtype == torch.float32 and torch.isfinite(det).all()
    for c in (40, 70):
        mine = det[det[:, 5] == c]
        assert 1 <= len(mine) < 30  # without separate classes nothing would be suppressed
        iou = torchvision.ops.box_iou(mine[:, :4], mine[:, :4]).fill_diagonal_(0)
        assert (iou <= 0.45).all()


@pytest.mark.parametrize("multi_label", [False, True])
def test_a_confidence_equal_to_the_threshold_is_dropped(multi_label: bool) -> None:
    """The reference keeps rows strictly above conf_thres, both for objectness and for obj x class (0.5 x 0.5
    is exactly 0.25 in binary floating point, so the boundary is exact)."""
    pred = torch.zeros(1, 4, 7)
    pred[0, :, :4] = torch.tensor(
        [[50.0, 50, 20, 20], [150, 50, 20, 20], [250, 50, 20, 20], [350, 50, 20, 20]]
    )
    pred[0, :, 4:] = torch.tensor(
        [
            [0.25, 1.0, 0.0],  # objectness exactly at the threshold: out at step 1
            [0.5, 0.5, 0.0],  # objectness x class exactly at the threshold: out at step 3
            [0.5, 0.5, 0.5 + 2**-20],  # the second class just above it: in (class 1)
            [0.25 + 2**-20, 1.0, 0.0],  # objectness just above: in (class 0)
        ]
    )
    det = non_max_suppression(pred, conf_thres=0.25, multi_label=multi_label)[0]
    assert sorted((round(d[0].item()), int(d[5])) for d in det) == [(240, 1), (340, 0)]


def test_classes_stay_apart_in_images_up_to_4000_pixels() -> None:
    """The batched NMS moves each class by a fixed offset; boxes anywhere in a 4000 px image, of any of 8
    classes, must be suppressed exactly as the class-by-class loop does (the reference's max_wh is 4096)."""
    gen = torch.Generator().manual_seed(7)
    n, nc = 500, 8
    xy = torch.rand(1, n, 2, generator=gen, dtype=torch.float64) * 4000
    wh = torch.rand(1, n, 2, generator=gen, dtype=torch.float64) * 500 + 300
    pred = torch.cat([xy, wh, torch.rand(1, n, 1 + nc, generator=gen, dtype=torch.float64)], 2)
    det = non_max_suppression(pred, conf_thres=0.05)[0]
    expected = _naive_nms(pred[0].tolist(), 0.05, 0.45, None, False, False, 300)
    torch.testing.assert_close(det, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-9)


def test_prior_labels_join_only_their_own_image() -> None:
    """labels[i] joins image i: the same prediction twice, a known box for one image at a time."""
    pred = torch.zeros(2, 1, 7)
    pred[:, 0, :5] = torch.tensor([50.0, 50, 20, 20, 0.9])
    pred[:, 0, 5] = 1.0
    box = torch.tensor([[1.0, 200, 200, 40, 40]])
    for labels, counts in (([torch.zeros(0, 5), box], [1, 2]), ([box, torch.zeros(0, 5)], [2, 1])):
        det = non_max_suppression(pred, labels=labels)
        assert [len(d) for d in det] == counts
        for d, n in zip(det, counts, strict=True):
            assert (d[:, 5] == 1).sum() == n - 1  # the known box is class 1, the predicted one class 0


def test_max_nms_caps_from_one_candidate_over_the_limit() -> None:
    """Five separate boxes, max_nms=4: the least confident never enters NMS (exactly one over the cap)."""
    pred = torch.zeros(1, 5, 7)
    pred[0, :, 0] = torch.arange(5.0) * 100 + 50
    pred[0, :, 1:4] = torch.tensor([50.0, 20, 20])
    pred[0, :, 4] = torch.tensor([0.9, 0.5, 0.8, 0.6, 0.7])
    pred[0, :, 5] = 1.0
    assert non_max_suppression(pred, max_nms=5)[0][:, 4].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])
    assert non_max_suppression(pred, max_nms=4)[0][:, 4].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])


@pytest.mark.parametrize("seed", [0, 1])
def test_two_class_models_are_multi_label(seed: int) -> None:
    """multi_label is ignored only for one class: with two, a box can be kept once per class."""
    pred = _random_prediction(seed, batch=1, nc=2)
    det = non_max_suppression(pred, conf_thres=0.1, multi_label=True)[0]
    expected = _naive_nms(pred[0].tolist(), 0.1, 0.45, None, False, True, 300)
    torch.testing.assert_close(det, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-9)
    boxes = {tuple(d[:4].tolist()) for d in det}
    assert len(boxes) < len(det), "some box should be kept for both classes"


def test_objectness_at_the_threshold_is_dropped_whatever_the_class_score() -> None:
    """Step 1 filters on objectness alone: a class score above 1 (obj x cls = 0.5) does not bring back a
    row whose objectness equals conf_thres."""
    pred = torch.zeros(1, 2, 7)
    pred[0, :, :4] = torch.tensor([[50.0, 50, 20, 20], [150, 50, 20, 20]])
    pred[0, :, 4:] = torch.tensor([[0.25, 2.0, 0.0], [0.25 + 2**-20, 2.0, 0.0]])
    det = non_max_suppression(pred, conf_thres=0.25)[0]
    assert [round(d[0].item()) for d in det] == [140]
