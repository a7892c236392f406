"""Box conversions and IoU variants.

Conventions: `xyxy` is (x1, y1, x2, y2) corners, `xywh` is (centre x, centre y, width, height); an `n`
suffix means normalised to [0, 1] by the image width and height. Every function accepts torch tensors
and the conversions also accept numpy arrays; none modifies its input.
"""

from __future__ import annotations

import math

import numpy as np
import torch

Array = torch.Tensor | np.ndarray


def _empty_like(x: Array) -> Array:
    """A floating-point copy of `x` (integer boxes give fractional centres and normalised values)."""
    if isinstance(x, torch.Tensor):
        return x.clone() if x.is_floating_point() else x.to(torch.get_default_dtype())
    return np.copy(x) if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def xywh2xyxy(x: Array) -> Array:
    """Centre-size boxes to corner boxes."""
    y = _empty_like(x)
    y[..., 0] = x[..., 0] - x[..., 2] / 2
    y[..., 1] = x[..., 1] - x[..., 3] / 2
    y[..., 2] = x[..., 0] + x[..., 2] / 2
    y[..., 3] = x[..., 1] + x[..., 3] / 2
    return y


def xyxy2xywh(x: Array) -> Array:
    """Corner boxes to centre-size boxes."""
    y = _empty_like(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def xywhn2xyxy(x: Array, w: float = 640, h: float = 640, padw: float = 0, padh: float = 0) -> Array:
    """Normalised centre-size boxes to pixel corner boxes, shifted by a padding offset."""
    y = _empty_like(x)
    y[..., 0] = w * (x[..., 0] - x[..., 2] / 2) + padw
    y[..., 1] = h * (x[..., 1] - x[..., 3] / 2) + padh
    y[..., 2] = w * (x[..., 0] + x[..., 2] / 2) + padw
    y[..., 3] = h * (x[..., 1] + x[..., 3] / 2) + padh
    return y


def xyxy2xywhn(x: Array, w: float = 640, h: float = 640) -> Array:
    """Pixel corner boxes to normalised centre-size boxes."""
    y = xyxy2xywh(x)
    y[..., 0] = y[..., 0] / w
    y[..., 2] = y[..., 2] / w
    y[..., 1] = y[..., 1] / h
    y[..., 3] = y[..., 3] / h
    return y


def box_iou(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of two sets of corner boxes: (n, 4) x (m, 4) -> (n, m)."""
    area1 = (box1[:, 2] - box1[:, 0]) * (box1[:, 3] - box1[:, 1])
    area2 = (box2[:, 2] - box2[:, 0]) * (box2[:, 3] - box2[:, 1])
    lt = torch.max(box1[:, None, :2], box2[None, :, :2])
    rb = torch.min(box1[:, None, 2:], box2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    return inter / (area1[:, None] + area2[None, :] - inter)


def bbox_iou(
    box1: torch.Tensor,
    box2: torch.Tensor,
    xywh: bool = True,
    kind: str = "iou",
    eps: float = 1e-7,
) -> torch.Tensor:
    """Element-wise IoU, GIoU, DIoU or CIoU of boxes that broadcast against each other: (..., 4).

    The formulas follow the reference implementation's, eps placement included, so that losses built on
    them give the reference's numbers: heights carry +eps, the union carries +eps, and the CIoU trade-off
    factor alpha is computed without gradient.
    """
    if kind not in ("iou", "giou", "diou", "ciou"):
        raise ValueError(f"unknown IoU kind {kind!r}; use iou, giou, diou or ciou")
    if xywh:
        (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
        b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
        b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    else:
        b1_x1, b1_y1, b1_x2, b1_y2 = box1.unbind(-1)
        b2_x1, b2_y1, b2_x2, b2_y2 = box2.unbind(-1)

    inter = (torch.min(b1_x2, b2_x2) - torch.max(b1_x1, b2_x1)).clamp(0) * (
        torch.min(b1_y2, b2_y2) - torch.max(b1_y1, b2_y1)
    ).clamp(0)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou

    cw = torch.max(b1_x2, b2_x2) - torch.min(b1_x1, b2_x1)  # enclosing box
    ch = torch.max(b1_y2, b2_y2) - torch.min(b1_y1, b2_y1)
    if kind == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    c2 = cw**2 + ch**2 + eps  # enclosing diagonal squared
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
    if kind == "diou":
        return iou - rho2 / c2
    v = (4 / math.pi**2) * torch.pow(torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps)), 2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def clip_boxes(boxes: Array, shape: tuple[int, int]) -> Array:
    """Clip corner boxes to an image of shape (height, width); returns a new array."""
    out = _empty_like(boxes)
    h, w = shape[:2]
    if isinstance(out, torch.Tensor):
        out[..., 0::2] = out[..., 0::2].clamp(0, w)
        out[..., 1::2] = out[..., 1::2].clamp(0, h)
    else:
        out[..., 0::2] = out[..., 0::2].clip(0, w)
        out[..., 1::2] = out[..., 1::2].clip(0, h)
    return out


def scale_boxes(
    img1_shape: tuple[int, int],
    boxes: Array,
    img0_shape: tuple[int, int],
    ratio_pad: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> Array:
    """Map corner boxes from a letterboxed image (img1_shape, h x w) back to the original (img0_shape).

    `ratio_pad` is ((ratio_h, ratio_w), (pad_w, pad_h)), the second item of the data loader's `shapes[i]`
    (the letterbox itself returns its ratios as (rw, rh)); only ``ratio_h`` is used, the resize keeping
    the aspect ratio. Without it the letterbox geometry is recomputed from the two shapes. The result is
    clipped to the original image.
    """
    if ratio_pad is None:
        gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
        pad = ((img1_shape[1] - img0_shape[1] * gain) / 2, (img1_shape[0] - img0_shape[0] * gain) / 2)
    else:
        gain = ratio_pad[0][0]
        pad = ratio_pad[1]
    out = _empty_like(boxes)
    out[..., [0, 2]] = (boxes[..., [0, 2]] - pad[0]) / gain
    out[..., [1, 3]] = (boxes[..., [1, 3]] - pad[1]) / gain
    return clip_boxes(out, img0_shape)
