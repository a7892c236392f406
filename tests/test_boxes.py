"""Box conversions and IoU variants checked against torchvision's independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision

from yolov7lib.ops import bbox_iou, box_iou, clip_boxes, scale_boxes, xywh2xyxy, xywhn2xyxy, xyxy2xywh
from yolov7lib.ops.boxes import xyxy2xywhn


def _random_xyxy(n: int, gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 500
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 200 + 1
    return torch.cat([xy, xy + wh], 1)


def test_conversions_round_trip_tensor_and_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    b = _random_xyxy(50, gen)
    torch.testing.assert_close(xywh2xyxy(xyxy2xywh(b)), b)
    torch.testing.assert_close(xywhn2xyxy(xyxy2xywhn(b, w=640, h=480), w=640, h=480), b)
    n = b.numpy().copy()
    np.testing.assert_allclose(xywh2xyxy(xyxy2xywh(n)), n)
    np.testing.assert_array_equal(n, b.numpy())  # input untouched


@pytest.mark.parametrize(
    ("kind", "reference"),
    [
        ("iou", torchvision.ops.box_iou),
        ("giou", torchvision.ops.generalized_box_iou),
        ("diou", torchvision.ops.distance_box_iou),
        ("ciou", torchvision.ops.complete_box_iou),
    ],
)
def test_bbox_iou_matches_torchvision(kind: str, reference) -> None:
    gen = torch.Generator().manual_seed(1)
    a, b = _random_xyxy(64, gen), _random_xyxy(64, gen)
    b[:8] = a[:8] + 3  # some heavily overlapping pairs
    ours = bbox_iou(a, b, xywh=False, kind=kind, eps=1e-12)
    theirs = reference(a, b).diagonal()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    ours_xywh = bbox_iou(xyxy2xywh(a), xyxy2xywh(b), xywh=True, kind=kind, eps=1e-12)
    torch.testing.assert_close(ours_xywh, theirs, rtol=1e-6, atol=1e-6)


def test_pairwise_box_iou_matches_torchvision() -> None:
    gen = torch.Generator().manual_seed(2)
    a, b = _random_xyxy(30, gen), _random_xyxy(40, gen)
    torch.testing.assert_close(box_iou(a, b), torchvision.ops.box_iou(a, b))


def test_bbox_iou_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown IoU kind"):
        bbox_iou(torch.zeros(4), torch.zeros(4), kind="eiou")


def test_scale_boxes_inverts_letterbox_geometry_and_clips() -> None:
    img0 = (480, 640)  # h, w
    img1 = (640, 640)
    gain = 1.0  # 640/640 width-limited
    pad = (0.0, 80.0)
    original = torch.tensor([[10.0, 20.0, 200.0, 300.0], [600.0, 400.0, 700.0, 500.0]])
    letterboxed = original.clone()
    letterboxed[:, [0, 2]] = original[:, [0, 2]] * gain + pad[0]
    letterboxed[:, [1, 3]] = original[:, [1, 3]] * gain + pad[1]
    back = scale_boxes(img1, letterboxed, img0)
    expected = clip_boxes(original, img0)
    torch.testing.assert_close(back, expected)
    assert back[1, 2] == 640 and back[1, 3] == 480  # clipped to the image


def test_integer_boxes_give_the_float_results() -> None:
    """Integer inputs (pixel boxes) are converted to floating point, not truncated into their dtype."""
    ints = [[10, 10, 5, 5], [0, 3, 7, 9]]
    for make in (np.array, torch.tensor):
        as_int, as_float = make(ints), make([[float(v) for v in row] for row in ints])
        for fn in (xywh2xyxy, xyxy2xywh, lambda b: xyxy2xywhn(b, 20, 20), lambda b: xywhn2xyxy(b, 20, 20)):
            got, want = fn(as_int), fn(as_float)
            assert np.allclose(np.asarray(got), np.asarray(want)) and np.asarray(got).dtype.kind == "f"
    scaled = scale_boxes((640, 640), torch.tensor([[100, 100, 200, 200]]), (480, 640))
    torch.testing.assert_close(
        scaled, scale_boxes((640, 640), torch.tensor([[100.0, 100, 200, 200]]), (480, 640))
    )


def test_box_iou_is_scale_free() -> None:
    """IoU is a ratio of areas: the same boxes in normalised units (0.01 wide) or in pixels give the same
    value, with no epsilon that matters at small sizes (the loss and metrics see both kinds)."""
    pixels = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]], dtype=torch.float64)
    for scale in (1.0, 1e-3):
        iou = box_iou(pixels * scale, pixels * scale)
        torch.testing.assert_close(iou, torch.tensor([[1.0, 1 / 3], [1 / 3, 1.0]], dtype=torch.float64))


def _naive_iou(b1: torch.Tensor, b2: torch.Tensor, kind: str, eps: float = 1e-7) -> torch.Tensor:
    """One pair of (x, y, w, h) boxes, the published IoU / GIoU / DIoU / CIoU formulas written out per box
    (eps only where a ratio could be 0 / 0; CIoU's alpha held constant, as in the CIoU paper's gradient)."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = b1, b2
    iw = (torch.minimum(x1 + w1 / 2, x2 + w2 / 2) - torch.maximum(x1 - w1 / 2, x2 - w2 / 2)).clamp(min=0)
    ih = (torch.minimum(y1 + h1 / 2, y2 + h2 / 2) - torch.maximum(y1 - h1 / 2, y2 - h2 / 2)).clamp(min=0)
    inter = iw * ih
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    cw = torch.maximum(x1 + w1 / 2, x2 + w2 / 2) - torch.minimum(x1 - w1 / 2, x2 - w2 / 2)
    ch = torch.maximum(y1 + h1 / 2, y2 + h2 / 2) - torch.minimum(y1 - h1 / 2, y2 - h2 / 2)
    if kind == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    diou_term = ((x2 - x1) ** 2 + (y2 - y1) ** 2) / (cw**2 + ch**2 + eps)  # centre distance / diagonal
    if kind == "diou":
        return iou - diou_term
    v = 4 / math.pi**2 * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
    alpha = (v / ((1 - iou) + v + eps)).detach()
    return iou - diou_term - alpha * v


def _random_xywh(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a = torch.cat([torch.rand(n, 2, generator=gen) * 300, torch.rand(n, 2, generator=gen) * 150 + 1], 1)
    b = torch.cat([torch.rand(n, 2, generator=gen) * 300, torch.rand(n, 2, generator=gen) * 150 + 1], 1)
    b[: n // 2] = a[: n // 2] + (torch.rand(n // 2, 4, generator=gen) - 0.5) * 20  # overlapping pairs
    return a.double(), b.double()


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_bbox_iou_values_and_gradient_match_a_per_box_loop_at_the_default_eps(kind: str) -> None:
    """Loss-style use (xywh, default eps, gradient into the predicted boxes): the vectorised function
    equals the per-box formula, and for CIoU alpha carries no gradient (the reference's no_grad)."""
    pred, target = _random_xywh(24, seed=3)
    pred.requires_grad_(True)
    ours = bbox_iou(pred, target, xywh=True, kind=kind)
    (1 - ours).sum().backward()
    grad_ours = pred.grad.clone()

    pred_naive = pred.detach().clone().requires_grad_(True)
    naive = torch.stack([_naive_iou(p, t, kind) for p, t in zip(pred_naive, target, strict=True)])
    (1 - naive).sum().backward()
    torch.testing.assert_close(ours.detach(), naive.detach(), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(grad_ours, pred_naive.grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_bbox_iou_of_zero_area_boxes_is_finite(kind: str) -> None:
    """A predicted box can collapse to zero width (or both sides); the union's eps keeps the IoU and every
    variant finite (0 / 0 would make the loss NaN), with the per-box formula's value."""
    pairs = torch.tensor(
        [
            [[50.0, 50.0, 0.0, 20.0], [50.0, 50.0, 0.0, 20.0]],  # the same zero-width box
            [[50.0, 50.0, 0.0, 0.0], [50.0, 50.0, 0.0, 0.0]],  # the same point
            [[10.0, 10.0, 0.0, 10.0], [30.0, 40.0, 0.0, 10.0]],  # two distant zero-width boxes
        ],
        dtype=torch.float64,
    )
    ours = bbox_iou(pairs[:, 0], pairs[:, 1], xywh=True, kind=kind)
    assert torch.isfinite(ours).all(), ours
    naive = torch.stack([_naive_iou(a, b, kind) for a, b in pairs])
    torch.testing.assert_close(ours, naive, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(480, 640), (640, 480)])
def test_clip_boxes_clips_x_to_width_and_y_to_height_for_numpy_and_torch(shape: tuple[int, int]) -> None:
    h, w = shape
    boxes = np.random.default_rng(0).uniform(-100, 800, (60, 4))
    original = boxes.copy()
    expected = np.array(
        [[min(max(v, 0.0), w if k % 2 == 0 else h) for k, v in enumerate(row)] for row in boxes]
    )
    np.testing.assert_array_equal(clip_boxes(boxes, shape), expected)
    np.testing.assert_array_equal(clip_boxes(torch.from_numpy(boxes), shape).numpy(), expected)
    np.testing.assert_array_equal(boxes, original)  # input untouched


def test_scale_boxes_with_ratio_pad_divides_both_axes_by_the_first_ratio_as_the_reference() -> None:
    """test.py passes the loader's ((h / h0, w / w0), (pad_w, pad_h)); the reference's scale_coords removes
    the padding and divides x and y by the first (height) ratio. Integer resizing makes the two ratios
    differ a little; the evaluation must follow the reference's rule to give its numbers."""
    boxes = torch.tensor([[13.0, 17.0, 55.0, 41.0]], dtype=torch.float64)
    ratio_pad = ((0.5, 0.52), (3.0, 7.0))
    out = scale_boxes((64, 64), boxes, (200, 200), ratio_pad)
    expected = [(13 - 3) / 0.5, (17 - 7) / 0.5, (55 - 3) / 0.5, (41 - 7) / 0.5]
    torch.testing.assert_close(out, torch.tensor([expected], dtype=torch.float64))
