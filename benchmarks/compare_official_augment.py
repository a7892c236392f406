"""Compare yolov7lib.data.augment with the official implementation's augmentation functions, draw for draw.

    git clone https://github.com/WongKinYiu/yolov7 /somewhere/yolov7   # and install its requirements.txt
    PYTHONPATH=$PWD python benchmarks/compare_official_augment.py --official /somewhere/yolov7 [--cases 200]

Nothing of the official code is part of this project: the script imports `utils.datasets` from the
checkout you name and runs its functions and ours on the same random images and boxes:

- `letterbox` (square and rectangular targets, `auto`, `scaleFill`, `scaleup=False`, strides 32 and 64)
  and `box_candidates`, `bbox_ioa`: deterministic, compared directly;
- `random_perspective`, `augment_hsv` and paste-in (`pastein` against our `paste_in`): the official
  functions draw from Python's `random` and numpy's global generator, ours from the generator passed in.
  The script records every draw the official call makes (value and range) and replays them to ours
  through a stand-in generator that also checks that ours asks for the same ranges in the same order;
  the warped or pasted images, the transformed boxes and the kept boxes must then be the same. The
  paste-in samples (objects cut out along polygons, on black, with their masks) are given to both in
  the form each takes.
"""

from __future__ import annotations

import argparse
import random
import sys
import types
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_checkout import add_official_arguments, import_official

from yolov7lib.data import augment as ours


class Recorder(types.ModuleType):
    """Python's `random` for the official module, recording each `uniform(a, b)` draw."""

    def __init__(self, seed: int) -> None:
        super().__init__("random")
        self._random = random.Random(seed)
        self.draws: list[tuple[float, float, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._random, name)

    def uniform(self, a: float, b: float) -> float:
        value = self._random.uniform(a, b)
        self.draws.append((a, b, value))
        return value

    def random(self) -> float:
        value = self._random.random()
        self.draws.append((0.0, 1.0, value, "random"))
        return value

    def randint(self, a: int, b: int) -> int:
        value = self._random.randint(a, b)
        self.draws.append((a, b + 1, value, "integers"))  # as numpy's integers(a, b + 1)
        return value


class Replay:
    """A stand-in numpy Generator that hands out recorded draws, checking the ranges asked for."""

    def __init__(self, draws: list[tuple[float, float, Any]]) -> None:
        self.draws = list(draws)

    def _next(self, kind: str, low: float, high: float) -> Any:
        if not self.draws:
            raise AssertionError("ours draws more numbers than the official function")
        a, b, value, *rest = self.draws.pop(0)
        theirs = rest[0] if rest else "uniform"
        if (theirs, a, b) != (kind, low, high):
            raise AssertionError(
                f"ours draws {kind}[{low}, {high}) where the official draws {theirs}[{a}, {b})"
            )
        return value

    def uniform(self, low: float, high: float, size: Any = None) -> Any:
        value = self._next("uniform", low, high)
        if size is not None and np.shape(value) != np.shape(np.empty(size)):
            raise AssertionError(f"ours draws {size} numbers where the official draws {np.shape(value)}")
        return value

    def random(self) -> float:
        return self._next("random", 0.0, 1.0)

    def integers(self, low: int, high: int | None = None) -> int:
        return self._next("integers", 0, low) if high is None else self._next("integers", low, high)


def import_official_datasets(root: Path) -> Any:
    """The official `utils.datasets` of the checkout at `root`, or SystemExit saying what is missing."""
    return import_official(root, "utils.datasets", ("utils/datasets.py",))


def random_image(rng: np.random.Generator, max_side: int = 200) -> np.ndarray:
    h, w = rng.integers(8, max_side, 2)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def random_boxes(rng: np.random.Generator, n: int, w: int, h: int) -> np.ndarray:
    """[class, x1, y1, x2, y2] rows in pixels, some of them tiny or thin."""
    xy = rng.uniform(0, 1, (n, 2)) * (w, h)
    wh = rng.uniform(0, 1, (n, 2)) ** 2 * (w, h)
    boxes = np.concatenate([xy, np.minimum(xy + wh, (w, h))], 1)
    return np.concatenate([rng.integers(0, 80, (n, 1)), boxes], 1)


def check_letterbox(theirs: Any, rng: np.random.Generator, cases: int) -> int:
    mismatches = 0
    for i in range(cases):
        img = random_image(rng)
        shape = (
            int(rng.choice([64, 160, 320]))
            if i % 2
            else (int(rng.choice([64, 96])), int(rng.choice([128, 160])))
        )
        auto, scale_fill, scaleup = bool(rng.integers(2)), bool(rng.integers(2)), bool(rng.integers(2))
        stride = int(rng.choice([32, 64]))
        a = theirs.letterbox(
            img.copy(), shape, auto=auto, scaleFill=scale_fill, scaleup=scaleup, stride=stride
        )
        b = ours.letterbox(
            img.copy(), shape, auto=auto, scale_fill=scale_fill, scaleup=scaleup, stride=stride
        )
        same = np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], rtol=0, atol=0)
        same &= np.allclose(a[2], b[2], rtol=0, atol=0)
        mismatches += not same
    return mismatches


def check_perspective(theirs: Any, rng: np.random.Generator, cases: int) -> int:
    mismatches = 0
    for i in range(cases):
        img = random_image(rng)
        h, w = img.shape[:2]
        targets = random_boxes(rng, int(rng.integers(0, 12)), w, h)
        kwargs = dict(
            degrees=float(rng.choice([0.0, 10.0])), translate=float(rng.choice([0.1, 0.2])),
            scale=float(rng.choice([0.5, 0.9])), shear=float(rng.choice([0.0, 2.0])),
            perspective=float(rng.choice([0.0, 0.0005])),
            border=(0, 0) if i % 2 else (-int(h // 4), -int(w // 4)),
        )  # fmt: skip
        recorder = Recorder(seed=i)
        theirs.random = recorder
        try:
            img_a, t_a = theirs.random_perspective(img.copy(), targets.copy(), **kwargs)
        finally:
            theirs.random = random
        img_b, t_b = ours.random_perspective(img.copy(), targets.copy(), rng=Replay(recorder.draws), **kwargs)
        same = (
            np.array_equal(img_a, img_b)
            and t_a.shape == t_b.shape
            and np.allclose(t_a, t_b, rtol=0, atol=1e-9)
        )
        mismatches += not same
    return mismatches


def check_hsv(theirs: Any, rng: np.random.Generator, cases: int) -> int:
    mismatches = 0
    for i in range(cases):
        img = random_image(rng)
        gains = tuple(float(g) for g in rng.uniform(0, 0.9, 3))
        # the official function draws from numpy's global generator: draw its numbers ahead, then rewind
        np.random.seed(i)  # noqa: NPY002
        draw = np.random.uniform(-1, 1, 3)  # noqa: NPY002
        np.random.seed(i)  # noqa: NPY002
        a, b = img.copy(), img.copy()
        theirs.augment_hsv(a, *gains)
        ours.augment_hsv(b, *gains, rng=Replay([(-1, 1, draw)]))
        mismatches += not np.array_equal(a, b)
    return mismatches


def check_boxes(theirs: Any, rng: np.random.Generator, cases: int) -> int:
    mismatches = 0
    for _ in range(cases):
        n = int(rng.integers(1, 20))
        b1 = random_boxes(rng, n, 300, 200)[:, 1:]
        b2 = b1 * rng.uniform(0.3, 1.2, (n, 1)) + rng.uniform(-5, 5, (n, 4))
        same = np.array_equal(theirs.box_candidates(b1.T, b2.T), ours.box_candidates(b1.T, b2.T))
        same &= np.allclose(theirs.bbox_ioa(b1[0], b2), ours.bbox_ioa(b1[0], b2), rtol=1e-12, atol=0)
        mismatches += not same
    return mismatches


def random_samples(rng: np.random.Generator, n: int) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Paste-in samples as our `sample_objects` makes them: (class, pixels on black outside the mask,
    mask), the mask a random polygon (a triangle or a quadrilateral) or the whole box."""
    out = []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(12, 90, 2))
        if rng.integers(3):
            corners = rng.uniform(0, 1, (int(rng.integers(3, 5)), 2)) * (w, h)
            mask = np.zeros((h, w), np.uint8)
            cv2.fillPoly(mask, [corners.astype(np.int32)], 255)
        else:
            mask = np.full((h, w), 255, np.uint8)
        pixels = np.where(mask[..., None] > 0, rng.integers(1, 256, (h, w, 3), dtype=np.uint8), 0)
        out.append((float(rng.integers(80)), pixels.astype(np.uint8), mask))
    return out


def check_paste_in(theirs: Any, rng: np.random.Generator, cases: int) -> int:
    mismatches = 0
    for i in range(cases):
        h, w = (int(v) for v in rng.integers(64, 320, 2))  # both draw spot sides from 1 to side / 16
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        labels = random_boxes(rng, int(rng.integers(0, 6)), w, h)
        samples = random_samples(rng, int(rng.integers(1, 6)))
        # the official takes lists of classes, cut-outs and 3-channel masks
        sample_labels = [cls for cls, _, _ in samples]
        sample_images = [pixels for _, pixels, _ in samples]
        sample_masks = [np.repeat(mask[..., None], 3, 2) for _, _, mask in samples]
        recorder = Recorder(seed=i)
        theirs.random = recorder
        img_a = img.copy()
        try:
            t_a = theirs.pastein(img_a, labels.copy(), sample_labels, sample_images, sample_masks)
        finally:
            theirs.random = random
        img_b = img.copy()
        try:  # which draws come next depends on the samples pasted so far
            t_b = ours.paste_in(img_b, labels.copy(), samples, Replay(recorder.draws))
        except AssertionError:
            mismatches += 1
            continue
        same = np.array_equal(img_a, img_b) and np.shape(t_a) == np.shape(t_b)
        mismatches += not (same and np.allclose(t_a, t_b, rtol=0, atol=0))
    return mismatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_official_arguments(parser, interpreter=False)
    parser.add_argument("--cases", type=int, default=200, help="random cases per function")
    args = parser.parse_args()
    theirs = import_official_datasets(args.official.resolve())
    rng = np.random.default_rng(0)
    failed = []
    for name, check in (
        ("letterbox", check_letterbox),
        ("random_perspective (draws replayed)", check_perspective),
        ("augment_hsv (draws replayed)", check_hsv),
        ("paste-in (draws replayed)", check_paste_in),
        ("box_candidates, bbox_ioa", check_boxes),
    ):
        bad = check(theirs, rng, args.cases)
        print(f"{name:40s} {args.cases - bad} of {args.cases} cases identical")
        if bad:
            failed.append(name)
    if failed:
        raise SystemExit("differences in: " + ", ".join(failed))


if __name__ == "__main__":
    main()
