"""Box conversions and IoU variants checked against torchvision's independent implementations."""

from __future__ import annotations

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
