"""Image-space augmentations of the reference training recipe, with their box transforms.

The paper does not describe its data augmentation (Section 5.1 defers training settings to an
appendix), so steps and hyperparameter names follow the reference implementation's data pipeline:
letterbox, random perspective (`degrees`, `translate`, `scale`, `shear`, `perspective`) with box
transform, clipping and candidate filtering, HSV jitter (`hsv_h`, `hsv_s`, `hsv_v`), MixUp
(`mixup`), copy-paste (`copy_paste`) and paste-in (`paste_in`). Boxes here are pixel corners:
label rows are `[class, x1, y1, x2, y2]`. Randomness comes only from the `rng` argument (a numpy
Generator), never from global state.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

PAD_VALUE = 114  # grey of padding and of the empty mosaic canvas
PASTE_IN_SCALES = (0.75,) * 2 + (0.5,) * 4 + (0.25,) * 4 + (0.125,) * 4 + (0.0625,) * 6  # image fractions
PASTE_IN_MAX_OCCLUSION = 0.30  # a pasted or copied object may cover at most 30 % of an existing box
MIXUP_BETA = 8.0  # MixUp ratio ~ Beta(8, 8)


def letterbox(
    img: np.ndarray,
    new_shape: int | tuple[int, int] = 640,
    color: tuple[int, int, int] = (PAD_VALUE, PAD_VALUE, PAD_VALUE),
    auto: bool = True,
    scale_fill: bool = False,
    scaleup: bool = True,
    stride: int = 32,
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize keeping the aspect ratio and pad to `new_shape` (h, w); return (img, (rw, rh), (dw, dh)).

    `auto` pads only to the next multiple of `stride` (minimum rectangle); `scale_fill` stretches
    without padding; `scaleup=False` only shrinks. (dw, dh) is the padding on the left and top
    (half the total, possibly fractional), as `ops.scale_boxes` expects.
    """
    shape = img.shape[:2]
    new_shape = (
        (int(new_shape), int(new_shape)) if np.ndim(new_shape) == 0 else tuple(int(v) for v in new_shape)
    )
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scaleup:
        r = min(r, 1.0)
    ratio = r, r
    new_unpad = max(1, round(shape[1] * r)), max(1, round(shape[0] * r))  # never a zero side
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = dw % stride, dh % stride
    elif scale_fill:
        dw, dh = 0, 0
        new_unpad = new_shape[1], new_shape[0]
        ratio = new_shape[1] / shape[1], new_shape[0] / shape[0]
    dw, dh = dw / 2, dh / 2
    if shape[::-1] != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return img, (float(ratio[0]), float(ratio[1])), (float(dw), float(dh))


def box_candidates(
    box1: np.ndarray,
    box2: np.ndarray,
    wh_thr: float = 2,
    ar_thr: float = 20,
    area_thr: float = 0.1,
    eps: float = 1e-16,
) -> np.ndarray:
    """Which transformed boxes to keep: box1 before (4, n), box2 after (4, n) the transform.

    Kept: wider and taller than `wh_thr` pixels, keeping more than `area_thr` of the (scaled) area
    and an aspect ratio under `ar_thr`.
    """
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def resample_polygon(poly: np.ndarray, n: int = 1000) -> np.ndarray:
    """A closed polygon (k, 2) resampled to n points evenly spread over its vertex sequence."""
    closed = np.concatenate([poly, poly[:1]], 0)
    t = np.linspace(0, len(closed) - 1, n)
    idx = np.arange(len(closed))
    return np.stack([np.interp(t, idx, closed[:, 0]), np.interp(t, idx, closed[:, 1])], 1)


def _polygon_box(xy: np.ndarray, width: float, height: float) -> np.ndarray:
    inside = (xy[:, 0] >= 0) & (xy[:, 1] >= 0) & (xy[:, 0] <= width) & (xy[:, 1] <= height)
    xy = xy[inside]
    if not len(xy):
        return np.zeros(4)
    return np.array([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()])


def random_perspective(
    img: np.ndarray,
    targets: np.ndarray,
    segments: list[np.ndarray] | tuple = (),
    degrees: float = 10,
    translate: float = 0.1,
    scale: float = 0.1,
    shear: float = 10,
    perspective: float = 0.0,
    border: tuple[int, int] = (0, 0),
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp an image by a random perspective/affine transform and its boxes with it.

    The transform is, applied right to left, translation @ shear @ rotation-and-scale @ perspective @
    centring; scale is drawn from [1 - scale, 1.1 + scale] (the reference's range). A negative
    `border` crops the output (the mosaic's 2s canvas to s). Boxes are transformed through their four
    corners, or through their polygons resampled to 1000 points when `segments` are given (tighter
    under rotation), clipped to the output and filtered by `box_candidates` (area kept > 10 %, or
    > 1 % with polygons). `targets` rows are [class, x1, y1, x2, y2] in pixels.
    """
    rng = rng if rng is not None else np.random.default_rng()
    height = img.shape[0] + border[0] * 2
    width = img.shape[1] + border[1] * 2

    centre = np.eye(3)
    centre[0, 2] = -img.shape[1] / 2
    centre[1, 2] = -img.shape[0] / 2
    persp = np.eye(3)
    persp[2, 0] = rng.uniform(-perspective, perspective)
    persp[2, 1] = rng.uniform(-perspective, perspective)
    rot = np.eye(3)
    a = rng.uniform(-degrees, degrees)
    s = rng.uniform(1 - scale, 1.1 + scale)
    rot[:2] = cv2.getRotationMatrix2D(angle=a, center=(0, 0), scale=s)
    sh = np.eye(3)
    sh[0, 1] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    sh[1, 0] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    tr = np.eye(3)
    tr[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * width
    tr[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * height
    m = tr @ sh @ rot @ persp @ centre

    if border[0] != 0 or border[1] != 0 or (m != np.eye(3)).any():
        fill = (PAD_VALUE,) * 3
        if perspective:
            img = cv2.warpPerspective(img, m, dsize=(width, height), borderValue=fill)
        else:
            img = cv2.warpAffine(img, m[:2], dsize=(width, height), borderValue=fill)

    n = len(targets)
    if not n:
        return img, targets
    use_segments = len(segments) == n and any(len(x) for x in segments)
    if use_segments:
        new = np.zeros((n, 4))
        for i, seg in enumerate(segments):
            xy = np.ones((1000, 3))
            xy[:, :2] = resample_polygon(seg)
            xy = xy @ m.T
            xy = xy[:, :2] / xy[:, 2:3] if perspective else xy[:, :2]
            new[i] = _polygon_box(xy, width, height)
    else:
        xy = np.ones((n * 4, 3))
        xy[:, :2] = targets[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
        xy = xy @ m.T
        xy = (xy[:, :2] / xy[:, 2:3] if perspective else xy[:, :2]).reshape(n, 8)
        x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
        new = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], 1)
        new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
        new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
    keep = box_candidates(targets[:, 1:5].T * s, new.T, area_thr=0.01 if use_segments else 0.10)
    targets = targets[keep]
    targets[:, 1:5] = new[keep]
    return img, targets


def augment_hsv(img: np.ndarray, hgain: float, sgain: float, vgain: float, rng: np.random.Generator) -> None:
    """Scale hue, saturation and value by random gains in [1 - gain, 1 + gain], in place (BGR uint8)."""
    r = rng.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=np.int16)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=img)


def mixup(
    img: np.ndarray, labels: np.ndarray, img2: np.ndarray, labels2: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """MixUp (Zhang et al. 2018): blend two images by r ~ Beta(8, 8) and keep the labels of both."""
    r = rng.beta(MIXUP_BETA, MIXUP_BETA)
    img = (img * r + img2 * (1 - r)).astype(np.uint8)
    return img, np.concatenate((labels, labels2), 0)


def bbox_ioa(box: np.ndarray, boxes: np.ndarray, eps: float = 1e-16) -> np.ndarray:
    """Intersection of one box (4,) with each of `boxes` (n, 4) over the area of the latter."""
    iw = (np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])).clip(0)
    ih = (np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])).clip(0)
    return iw * ih / ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + eps)


def copy_paste(
    img: np.ndarray,
    labels: np.ndarray,
    segments: list[np.ndarray],
    probability: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Copy-paste (Ghiasi et al. 2021): mirror a share of the polygon objects left-right into the image.

    A mirrored copy is pasted only where it covers less than 30 % of every existing box. Needs polygons;
    without them the image is returned unchanged (as in the reference).
    """
    n = len(segments)
    if not probability or not n or not any(len(s) for s in segments):
        return img, labels, segments
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    segments = list(segments)
    for j in rng.choice(n, size=round(probability * n), replace=False):
        cls, x1, y1, x2, y2 = labels[j]
        box = np.array([w - x2, y1, w - x1, y2])
        if (bbox_ioa(box, labels[:, 1:5]) < PASTE_IN_MAX_OCCLUSION).all():
            labels = np.concatenate((labels, [[cls, *box]]), 0)
            seg = segments[j]
            segments.append(np.concatenate((w - seg[:, 0:1], seg[:, 1:2]), 1))
            cv2.drawContours(mask, [seg.astype(np.int32)], -1, 255, cv2.FILLED)
    sel = cv2.flip(mask, 1) > 0
    img[sel] = cv2.flip(img, 1)[sel]
    return img, labels, segments


def sample_objects(
    img: np.ndarray,
    labels: np.ndarray,
    segments: list[np.ndarray],
    rng: np.random.Generator,
    share: float = 0.5,
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Cut out a random `share` of the objects of an image, for paste-in: (class, pixels, mask) each.

    With polygons the mask is the polygon and the pixels are the object on black outside it (the
    reference's cut-outs); without, the mask is the whole box, which on tight boxes is the object and a
    thin margin (a departure: the reference samples nothing without polygons).
    """
    n = len(labels)
    out = []
    if not n:
        return out
    h, w = img.shape[:2]
    for j in rng.choice(n, size=round(share * n), replace=False):
        x1, y1, x2, y2 = (int(v) for v in labels[j, 1:5])
        x1, x2 = min(max(x1, 0), w - 1), min(max(x2, 0), w - 1)
        y1, y2 = min(max(y1, 0), h - 1), min(max(y2, 0), h - 1)
        if x2 <= x1 or y2 <= y1:
            continue
        if segments and len(segments[j]):
            full = np.zeros((h, w), np.uint8)
            cv2.drawContours(full, [segments[j].astype(np.int32)], -1, 255, cv2.FILLED)
            mask = full[y1:y2, x1:x2]
            pixels = np.where(mask[..., None] > 0, img[y1:y2, x1:x2], 0).astype(img.dtype)
        else:
            mask = np.full((y2 - y1, x2 - x1), 255, np.uint8)
            pixels = img[y1:y2, x1:x2].copy()
        out.append((float(labels[j, 0]), pixels, mask))
    return out


def paste_in(
    img: np.ndarray,
    labels: np.ndarray,
    samples: list[tuple[float, np.ndarray, np.ndarray]],
    rng: np.random.Generator,
) -> np.ndarray:
    """Paste-in (the reference's `pastein`): paste sampled objects into random free spots, in place.

    For each of 20 spot sizes (3/4 down to 1/16 of the image side, each skipped with probability 0.2)
    a random rectangle is drawn; if it covers less than 30 % of every existing box and is over 20 px
    on both sides, a random sample is resized into it (aspect kept) and its box appended to `labels`.
    As in the reference, the pixels pasted are those where the bilinearly resized mask is not 0 (the
    sample's edge pixels included), and a sample covering 20 pixels or fewer there is not pasted.
    Returns the new labels.
    """
    h, w = img.shape[:2]
    if not samples:
        return labels
    for s in PASTE_IN_SCALES:
        if rng.random() < 0.2:
            continue
        mask_h = int(rng.integers(1, int(h * s) + 1))
        mask_w = int(rng.integers(1, int(w * s) + 1))
        xmin = max(0, int(rng.integers(0, w + 1)) - mask_w // 2)
        ymin = max(0, int(rng.integers(0, h + 1)) - mask_h // 2)
        xmax, ymax = min(w, xmin + mask_w), min(h, ymin + mask_h)
        box = np.array([xmin, ymin, xmax, ymax], np.float32)
        ioa = bbox_ioa(box, labels[:, 1:5]) if len(labels) else np.zeros(1)
        if not ((ioa < PASTE_IN_MAX_OCCLUSION).all() and xmax > xmin + 20 and ymax > ymin + 20):
            continue
        cls, pixels, mask = samples[int(rng.integers(len(samples)))]
        hs, ws = pixels.shape[:2]
        r = min((ymax - ymin) / hs, (xmax - xmin) / ws)
        rw, rh = int(ws * r), int(hs * r)
        if rw <= 10 or rh <= 10:
            continue
        sel = cv2.resize(mask, (rw, rh)) > 0
        if sel.sum() <= 20:
            continue
        crop = img[ymin : ymin + rh, xmin : xmin + rw]
        crop[sel] = cv2.resize(pixels, (rw, rh))[sel]
        row = np.array([[cls, xmin, ymin, xmin + rw, ymin + rh]], labels.dtype if len(labels) else np.float32)
        labels = np.concatenate((labels.reshape(-1, 5), row), 0)
    return labels
