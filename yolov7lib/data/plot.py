"""Drawing a batch: images in a grid with their boxes and class names (the reference's train_batch*.jpg)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from yolov7lib.ops.boxes import xywh2xyxy

# Ten distinct RGB colours (matplotlib's tableau palette), one per class modulo 10.
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip


def _draw_box(canvas: np.ndarray, box: np.ndarray, colour: tuple[int, int, int], text: str) -> None:
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2, cv2.LINE_AA)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    ty = max(y1, th + base)
    cv2.rectangle(canvas, (x1, ty - th - base), (x1 + tw + 2, ty), colour, -1)
    cv2.putText(
        canvas, text, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA
    )


def plot_batch(
    imgs: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    paths: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    fname: str | Path | None = None,
    max_images: int = 16,
    max_size: int = 1920,
    conf_thres: float = 0.25,
) -> np.ndarray:
    """Draw up to `max_images` images of a batch in a square grid with their boxes; return RGB uint8.

    `imgs` is (B, 3, H, W) RGB, uint8 or float in [0, 1]; `targets` is (n, 6) [image, class, x, y, w, h]
    (labels, normalised or pixels) or (n, 7) with a confidence last (predictions; those under
    `conf_thres` are not drawn). Written to `fname` (JPEG or PNG by its suffix) when given.
    """
    imgs = imgs.detach().cpu().numpy() if isinstance(imgs, torch.Tensor) else np.asarray(imgs)
    targets = targets.detach().cpu().numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
    targets = targets.reshape(-1, targets.shape[-1] if targets.ndim == 2 else 6)
    if imgs.dtype != np.uint8:
        imgs = (imgs * 255 if imgs.max() <= 1 else imgs).clip(0, 255).astype(np.uint8)
    bs = min(len(imgs), max_images)
    _, _, h, w = imgs.shape
    ns = max(1, math.ceil(bs**0.5))
    scale = min(1.0, max_size / (ns * max(h, w)))
    th, tw = math.ceil(h * scale), math.ceil(w * scale)
    canvas = np.full((ns * th, ns * tw, 3), 255, np.uint8)
    for i in range(bs):
        bx, by = tw * (i % ns), th * (i // ns)
        tile = imgs[i].transpose(1, 2, 0)
        canvas[by : by + th, bx : bx + tw] = cv2.resize(tile, (tw, th)) if scale < 1 else tile
        rows = targets[targets[:, 0] == i]
        if len(rows):
            boxes = xywh2xyxy(rows[:, 2:6].astype(np.float64))
            if boxes.max() <= 1.01:  # normalised
                boxes[:, [0, 2]] *= tw
                boxes[:, [1, 3]] *= th
            else:
                boxes *= scale
            boxes[:, [0, 2]] += bx
            boxes[:, [1, 3]] += by
            for row, box in zip(rows, boxes, strict=True):
                cls = int(row[1])
                conf = row[6] if rows.shape[1] > 6 else None
                if conf is not None and conf < conf_thres:
                    continue
                name = names[cls] if names is not None and 0 <= cls < len(names) else str(cls)
                _draw_box(
                    canvas, box, PALETTE[cls % len(PALETTE)], name if conf is None else f"{name} {conf:.2f}"
                )
        if paths is not None:
            cv2.putText(canvas, Path(paths[i]).name[:40], (bx + 4, by + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (230, 230, 230), 1, cv2.LINE_AA)  # fmt: skip
        cv2.rectangle(canvas, (bx, by), (bx + tw - 1, by + th - 1), (255, 255, 255), 2)
    if fname is not None:
        fname = Path(fname)
        fname.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(fname), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
            raise ValueError(f"cannot write {fname}: use a .jpg or .png name in a writable folder")
    return canvas
