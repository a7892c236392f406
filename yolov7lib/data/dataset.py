"""The detection data set: images and labels with the reference's training pipeline and eval letterbox.

One sample, in the reference's order: mosaic (4 or 9 tiles, then copy-paste and random perspective)
and MixUp of two mosaics, or a letterboxed single image with random perspective; then HSV jitter,
paste-in, up-down and left-right flips. Evaluation (`augment=False`) letterboxes each image to its
batch's shape: square, or with `rect=True` the smallest stride multiple that fits the batch's aspect
ratios (images sorted by aspect ratio, the reference's rule).

Every sample draws its randomness from a numpy Generator seeded by the sampler (see `loader.py`), so
a batch does not depend on the number of workers or their scheduling.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from yolov7lib.configs import load_hyp
from yolov7lib.data.augment import (
    augment_hsv,
    copy_paste,
    letterbox,
    mixup,
    paste_in,
    random_perspective,
    sample_objects,
)
from yolov7lib.data.formats import LABEL_LAYOUT
from yolov7lib.data.mosaic import mosaic4, mosaic9
from yolov7lib.data.scan import ScanReport, scan_source
from yolov7lib.ops.boxes import xywhn2xyxy, xyxy2xywhn

logger = logging.getLogger(__name__)

PASTE_IN_POOL = 30  # paste-in gathers at least this many object samples (the reference's number)
PASTE_IN_MAX_LOADS = 10  # ... from at most this many 4-tile mosaics (the reference loops unbounded)

Shapes = tuple[tuple[int, int], tuple[tuple[float, float], tuple[float, float]]] | None


def rect_batch_shapes(wh: np.ndarray, batch_size: int, img_size: int, stride: int, pad: float) -> np.ndarray:
    """Per-batch letterbox shapes (h, w) of images already sorted by aspect ratio h / w.

    Each batch gets [max ratio, 1] if all its images are wider than tall, [1, 1 / min ratio] if all are
    taller than wide, else square; times img_size / stride plus `pad` strides, rounded up to a stride.
    """
    ar = wh[:, 1] / wh[:, 0]
    bi = np.arange(len(wh)) // batch_size
    shapes = np.ones((bi[-1] + 1, 2))
    for i in range(len(shapes)):
        ari = ar[bi == i]
        lo, hi = ari.min(), ari.max()
        if hi < 1:
            shapes[i] = [hi, 1]
        elif lo > 1:
            shapes[i] = [1, 1 / lo]
    return np.ceil(shapes * img_size / stride + pad).astype(int) * stride


class DetectionDataset(Dataset):
    """A YOLO source (folder, list file, list of them) or COCO json, as training or evaluation samples.

    Items are (image uint8 (3, H, W) RGB, targets (n, 6) [0, class, x, y, w, h] normalised, path,
    shapes) where shapes is ((h0, w0), ((h / h0, w / w0), (pad_w, pad_h))) without mosaic, else None.
    Index with an int (randomness seeded by (seed, index)) or an (index, seed) pair from the sampler.
    """

    def __init__(
        self,
        path: str | Path | list[str | Path],
        img_size: int = 640,
        batch_size: int = 16,
        augment: bool = False,
        hyp: str | Path | dict[str, Any] | None = None,
        rect: bool = False,
        stride: int = 32,
        pad: float = 0.0,
        nc: int | None = None,
        single_cls: bool = False,
        cache_labels: bool = True,
        cache_images: bool = False,
        images_dir: str | Path | None = None,
        seed: int = 0,
        prefix: str = "",
        progress: bool = True,
    ) -> None:
        self.img_size = img_size
        self.augment = augment
        self.hyp = load_hyp(hyp if hyp is not None else "p5") if augment else None
        self.rect = rect
        self.mosaic = augment and not rect
        self.stride = stride
        self.seed = seed
        scan = scan_source(path, nc, cache_labels, images_dir, progress, prefix)
        where = ", ".join(map(str, path)) if isinstance(path, list | tuple) else str(path)
        if not scan.img_files:
            raise ValueError(f"{prefix}no usable image in {where}: {scan.report.line()}")
        if augment and not scan.report.labelled:  # as the reference: no label file at all, no training set
            raise ValueError(
                f"{prefix}no label file for any of the {len(scan.img_files)} images in {where}: training "
                f"needs YOLO txt labels in {LABEL_LAYOUT}"
            )
        if augment and not any(len(lb) for lb in scan.labels):  # backgrounds alone: nothing to learn
            raise ValueError(
                f"{prefix}no object in the {len(scan.img_files)} images of {where}: {scan.report.line()}; "
                "training needs at least one labelled box (`yolov7 data check` lists every dropped row)"
            )
        self.report: ScanReport = scan.report
        self.img_files = scan.img_files
        self.labels = [lb.copy() for lb in scan.labels]
        if single_cls:
            for lb in self.labels:
                lb[:, 0] = 0
        self.segments = scan.segments
        self.shapes = scan.shapes.astype(np.float64)  # (n, 2) width, height
        self.image_ids = scan.image_ids
        self.n = len(self.img_files)
        self.batch = np.arange(self.n) // batch_size
        self.batch_shapes = None
        if rect:
            order = (self.shapes[:, 1] / self.shapes[:, 0]).argsort(kind="stable")
            self.img_files = [self.img_files[i] for i in order]
            self.labels = [self.labels[i] for i in order]
            self.segments = [self.segments[i] for i in order]
            self.shapes = self.shapes[order]
            if self.image_ids is not None:
                self.image_ids = [self.image_ids[i] for i in order]
            self.batch_shapes = rect_batch_shapes(self.shapes, batch_size, img_size, stride, pad)
        self._bad: set[int] = set()
        self.imgs: list[np.ndarray | None] = [None] * self.n
        if cache_images:
            for i in tqdm(range(self.n), desc=f"{prefix}Caching images", disable=not progress):
                self.imgs[i] = self._read(i)

    def __len__(self) -> int:
        return self.n

    # -- loading --------------------------------------------------------------------------------------

    def _read(self, index: int) -> np.ndarray | None:
        """Read and resize an image so its long side is img_size (area interpolation when shrinking for
        evaluation, linear otherwise); None if it cannot be decoded any more."""
        img = cv2.imread(self.img_files[index], cv2.IMREAD_COLOR)  # BGR, EXIF orientation applied
        if img is None:
            return None
        h0, w0 = img.shape[:2]
        r = self.img_size / max(h0, w0)
        if r != 1:
            interp = cv2.INTER_AREA if r < 1 and not self.augment else cv2.INTER_LINEAR
            size = max(1, int(w0 * r)), max(1, int(h0 * r))  # a very thin image keeps one row or column
            img = cv2.resize(img, size, interpolation=interp)
        return img

    def load_image(self, index: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], int]:
        """(resized BGR image, original (h, w), resized (h, w), index used). An image that stopped
        decoding since the scan is replaced by the next good one (whose index is returned, so that
        its own labels go with it) and reported once."""
        for k in range(self.n):
            i = (index + k) % self.n
            if i in self._bad:
                continue
            img = self.imgs[i] if self.imgs[i] is not None else self._read(i)
            if img is not None:
                w0, h0 = (int(v) for v in self.shapes[i])
                return img, (h0, w0), img.shape[:2], i
            self._bad.add(i)
            logger.warning("image no longer readable, replaced by another: %s", self.img_files[i])
        raise RuntimeError("no image of the data set can be read any more")

    def _tile(self, index: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        img, _, _, i = self.load_image(index)
        return img, self.labels[i], self.segments[i]

    def _mosaic(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        hyp, s = self.hyp, self.img_size
        build = mosaic9 if rng.random() < hyp.get("mosaic9", 0.2) else mosaic4
        img, labels, segments = build(self._tile, index, self.n, s, rng)
        img, labels, segments = copy_paste(img, labels, segments, hyp.get("copy_paste", 0.0), rng)
        return self._perspective(img, labels, segments, (-s // 2, -s // 2), rng)

    def _perspective(self, img, labels, segments, border, rng) -> tuple[np.ndarray, np.ndarray]:
        hyp = self.hyp
        keys = ("degrees", "translate", "scale", "shear", "perspective")
        return random_perspective(img, labels, segments, **{k: hyp[k] for k in keys}, border=border, rng=rng)

    def _paste_in_samples(self, rng: np.random.Generator) -> list:
        samples: list = []
        for _ in range(PASTE_IN_MAX_LOADS):
            img, labels, segments = mosaic4(self._tile, int(rng.integers(self.n)), self.n, self.img_size, rng)
            samples += sample_objects(img, labels, segments, rng)
            if len(samples) >= PASTE_IN_POOL or not samples:
                break
        return samples

    # -- one sample -----------------------------------------------------------------------------------

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, str, Shapes]:
        index, sample_seed = item if isinstance(item, tuple | list) else (item, None)
        index = int(index)
        rng = np.random.default_rng(sample_seed if sample_seed is not None else [self.seed, index])
        hyp = self.hyp
        shapes: Shapes = None
        mosaic = self.mosaic and rng.random() < hyp["mosaic"]
        if mosaic:
            img, labels = self._mosaic(index, rng)
            if rng.random() < hyp["mixup"]:
                img2, labels2 = self._mosaic(int(rng.integers(self.n)), rng)
                img, labels = mixup(img, labels, img2, labels2, rng)
        else:
            shape = self.batch_shapes[self.batch[index]] if self.rect else self.img_size  # the batch's
            img, (h0, w0), (h, w), index = self.load_image(index)
            img, ratio, pad = letterbox(img, shape, auto=False, scaleup=self.augment)
            shapes = (h0, w0), ((h / h0, w / w0), pad)
            labels = self.labels[index].copy()
            if len(labels):
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, pad[0], pad[1])

        if self.augment:
            if not mosaic:
                img, labels = self._perspective(img, labels, [], (0, 0), rng)
            augment_hsv(img, hyp["hsv_h"], hyp["hsv_s"], hyp["hsv_v"], rng)
            if rng.random() < hyp["paste_in"]:
                labels = paste_in(img, labels, self._paste_in_samples(rng), rng)

        n = len(labels)
        if n:
            labels[:, 1:5] = xyxy2xywhn(labels[:, 1:5], w=img.shape[1], h=img.shape[0])
        if self.augment:
            if rng.random() < hyp["flipud"]:
                img = np.flipud(img)
                if n:
                    labels[:, 2] = 1 - labels[:, 2]
            if rng.random() < hyp["fliplr"]:
                img = np.fliplr(img)
                if n:
                    labels[:, 1] = 1 - labels[:, 1]

        out = torch.zeros((n, 6))
        if n:
            out[:, 1:] = torch.from_numpy(np.asarray(labels, np.float32))
        chw = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))  # BGR HWC -> RGB CHW
        return torch.from_numpy(chw), out, self.img_files[index], shapes

    @staticmethod
    def collate_fn(batch: list) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...], tuple[Shapes, ...]]:
        """Stack images, concatenate targets with their image index in column 0."""
        imgs, targets, paths, shapes = zip(*batch, strict=True)
        for i, t in enumerate(targets):
            t[:, 0] = i
        return torch.stack(imgs, 0), torch.cat(targets, 0), paths, shapes

    def class_counts(self, nc: int) -> np.ndarray:
        """Number of labelled objects per class (for class weights and reports)."""
        classes = np.concatenate([lb[:, 0] for lb in self.labels]).astype(int)
        return np.bincount(classes, minlength=nc)
