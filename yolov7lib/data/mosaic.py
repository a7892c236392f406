"""Mosaic augmentation: 4 or 9 training images tiled on one canvas (the reference's layout).

Both builders return a 2s x 2s canvas (s = image size) with the labels of every tile as pixel corners
`[class, x1, y1, x2, y2]`, clipped to the canvas; the caller then warps and crops it to s x s with
`random_perspective(..., border=(-s // 2, -s // 2))`. Polygons, when any tile has them, follow the
boxes (a tile without polygons contributes its boxes' rectangles).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from yolov7lib.data.augment import PAD_VALUE
from yolov7lib.ops.boxes import xywhn2xyxy

# A tile loader: index -> (BGR image resized to long side s, labels (n, 5) class + normalised xywh,
# polygons normalised per label row or []).
TileLoader = Callable[[int], tuple[np.ndarray, np.ndarray, list[np.ndarray]]]
# A mosaic: (canvas, labels (n, 5) class + pixel corners, polygons in canvas pixels or []).
Mosaic = tuple[np.ndarray, np.ndarray, list[np.ndarray]]


def _rectangles(boxes: np.ndarray) -> list[np.ndarray]:
    return [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32) for x1, y1, x2, y2 in boxes]


def _place(labels: np.ndarray, segs: list[np.ndarray], w: int, h: int, padw: float, padh: float):
    """Tile labels (normalised) to canvas pixels shifted by the tile's offset."""
    out = labels.copy()
    if len(out):
        out[:, 1:] = xywhn2xyxy(labels[:, 1:], w, h, padw, padh)
    polys = [np.stack([p[:, 0] * w + padw, p[:, 1] * h + padh], 1) for p in segs] if segs else None
    return out, polys


def _gather(tiles: list[tuple[np.ndarray, list[np.ndarray] | None]], limit: float):
    labels = np.concatenate([t[0] for t in tiles], 0)
    any_polys = any(t[1] for t in tiles)
    segments: list[np.ndarray] = []
    if any_polys:
        for lb, polys in tiles:
            segments += polys if polys else _rectangles(lb[:, 1:5])
    np.clip(labels[:, 1:], 0, limit, out=labels[:, 1:])
    for p in segments:
        np.clip(p, 0, limit, out=p)
    return labels, segments


def mosaic4(load: TileLoader, index: int, n: int, s: int, rng: np.random.Generator) -> Mosaic:
    """Four tiles around a random centre in [s/2, 3s/2]^2: the image `index` and 3 random others."""
    yc, xc = (int(rng.uniform(s // 2, 2 * s - s // 2)) for _ in range(2))
    indices = [index, *(int(i) for i in rng.integers(0, n, 3))]
    canvas = None
    tiles = []
    for i, idx in enumerate(indices):
        img, labels, segs = load(idx)
        h, w = img.shape[:2]
        if canvas is None:
            canvas = np.full((s * 2, s * 2, img.shape[2]), PAD_VALUE, np.uint8)
        if i == 0:  # top left
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
        elif i == 1:  # top right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, s * 2), yc
            x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
        elif i == 2:  # bottom left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(s * 2, yc + h)
            x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
        else:  # bottom right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, s * 2), min(s * 2, yc + h)
            x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
        tiles.append(_place(labels, segs, w, h, x1a - x1b, y1a - y1b))
    labels, segments = _gather(tiles, 2 * s)
    return canvas, labels, segments


def mosaic9(load: TileLoader, index: int, n: int, s: int, rng: np.random.Generator) -> Mosaic:
    """Nine tiles: the image `index` at the centre of a 3s canvas, 8 random others around it clockwise
    from the top; a random 2s x 2s window of it is returned."""
    indices = [index, *(int(i) for i in rng.integers(0, n, 8))]
    canvas = None
    tiles = []
    h0 = w0 = hp = wp = 0
    for i, idx in enumerate(indices):
        img, labels, segs = load(idx)
        h, w = img.shape[:2]
        if i == 0:  # centre
            canvas = np.full((s * 3, s * 3, img.shape[2]), PAD_VALUE, np.uint8)
            h0, w0 = h, w
            c = s, s, s + w, s + h
        elif i == 1:  # top
            c = s, s - h, s + w, s
        elif i == 2:  # top right
            c = s + wp, s - h, s + wp + w, s
        elif i == 3:  # right
            c = s + w0, s, s + w0 + w, s + h
        elif i == 4:  # bottom right
            c = s + w0, s + hp, s + w0 + w, s + hp + h
        elif i == 5:  # bottom
            c = s + w0 - w, s + h0, s + w0, s + h0 + h
        elif i == 6:  # bottom left
            c = s + w0 - wp - w, s + h0, s + w0 - wp, s + h0 + h
        elif i == 7:  # left
            c = s - w, s + h0 - h, s, s + h0
        else:  # top left
            c = s - w, s + h0 - hp - h, s, s + h0 - hp
        padx, pady = c[:2]
        x1, y1, x2, y2 = (max(v, 0) for v in c)
        canvas[y1:y2, x1:x2] = img[y1 - pady :, x1 - padx :]
        tiles.append(_place(labels, segs, w, h, padx, pady))
        hp, wp = h, w
    yc, xc = (int(rng.uniform(0, s)) for _ in range(2))
    canvas = canvas[yc : yc + 2 * s, xc : xc + 2 * s]
    for lb, polys in tiles:
        lb[:, [1, 3]] -= xc
        lb[:, [2, 4]] -= yc
        for p in polys or []:
            p -= (xc, yc)
    labels, segments = _gather(tiles, 2 * s)
    return np.ascontiguousarray(canvas), labels, segments
