"""Data loaders: seeded sampling, multi-worker loading and the distributed split.

`SeededSampler` draws, in the main process, the order of an epoch and one random seed per sample from
(seed, epoch); a sample's augmentation depends only on its seed, so a batch is the same whatever the
number of workers and whichever worker builds it. With `rank`/`world_size` each process takes every
world_size-th item of one shared order padded to a multiple of world_size (DistributedSampler's split).
Workers are also seeded per worker by torch (base seed from `seed`) for any library drawing from global
state.

OpenCV and forked workers: OpenCV's own thread pool does not survive fork(). A worker forked while a pool
thread holds the pool's lock waits forever at its first multi-threaded OpenCV call, and changing the
thread count inside the worker can deadlock the same way. So a loader with workers switches OpenCV's
threads off in the main process, before any worker is forked (`opencv_threads_off`); workers inherit
the setting and run OpenCV calls on their own thread. The reference does the same at import. The
images are the same either way: OpenCV computes each pixel alike whatever the thread count.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from yolov7lib.data.dataset import DetectionDataset

logger = logging.getLogger(__name__)


def opencv_threads_off() -> None:
    """Run OpenCV single-threaded in this process and in the processes it forks from now on.

    Called by `create_dataloader` for loaders with worker processes (see the module docstring). It is a
    process-wide setting, like the reference's `cv2.setNumThreads(0)` at import; set it back with
    `cv2.setNumThreads(n)` once no loader workers will be started any more.
    """
    cv2.setNumThreads(0)


class SeededSampler(Sampler):
    """Yields (index, sample seed) pairs; each pass over it is the next epoch unless `set_epoch` is used."""

    def __init__(
        self, n: int, seed: int = 0, shuffle: bool = False, rank: int = -1, world_size: int = 1
    ) -> None:
        if rank != -1 and not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size = (rank, world_size) if rank != -1 else (0, 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch `epoch` (order and augmentation are functions of it)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = rng.integers(0, 2**63 - 1, size=self.n, dtype=np.int64)  # by sample index
        total = len(self) * self.world_size
        if total > self.n:  # pad by repeating the head, as DistributedSampler does
            order = np.concatenate([order, order[: total - self.n]])
        for i in order[self.rank :: self.world_size]:
            yield int(i), int(seeds[i])


def create_dataloader(
    path: str | Path | list[str | Path],
    img_size: int,
    batch_size: int,
    stride: int,
    hyp: str | Path | dict[str, Any] | None = None,
    augment: bool = False,
    rect: bool = False,
    pad: float = 0.0,
    workers: int = 0,
    rank: int = -1,
    world_size: int = 1,
    seed: int = 0,
    shuffle: bool = False,
    nc: int | None = None,
    single_cls: bool = False,
    cache_images: bool = False,
    images_dir: str | Path | None = None,
    prefix: str = "",
    progress: bool = True,
) -> tuple[DataLoader, DetectionDataset]:
    """Build the data set and its loader; return (loader, dataset).

    Training: `augment=True, hyp=...` (and usually `shuffle=True`). Evaluation, the reference's way:
    `rect=True, pad=0.5`. Batches are (imgs uint8 (B, 3, H, W) RGB, targets (n, 6), paths, shapes).
    The worker count is capped like the reference's: by the CPUs per process and the batch size. With
    workers, OpenCV's own threads are switched off in this process (`opencv_threads_off`).
    """
    if rect and rank != -1 and world_size > 1:
        raise ValueError(
            "rect=True batches are built for one process (evaluation on rank 0, as the reference)"
        )
    if rect and shuffle:
        logger.warning("%srect=True keeps the aspect-ratio order of batches; shuffle turned off", prefix)
        shuffle = False
    dataset = DetectionDataset(
        path, img_size, batch_size, augment=augment, hyp=hyp, rect=rect, stride=int(stride), pad=pad,
        nc=nc, single_cls=single_cls, cache_images=cache_images, images_dir=images_dir, seed=seed,
        prefix=prefix, progress=progress,
    )  # fmt: skip
    batch_size = min(batch_size, len(dataset))
    nw = min((os.cpu_count() or 1) // max(world_size, 1), batch_size if batch_size > 1 else 0, workers)
    if nw > 0:
        opencv_threads_off()  # before the workers fork (they start at the first iteration)
    sampler = SeededSampler(len(dataset), seed=seed, shuffle=shuffle, rank=rank, world_size=world_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=nw,
        collate_fn=DetectionDataset.collate_fn,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=nw > 0,
    )
    return loader, dataset
