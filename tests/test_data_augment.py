"""Every geometric augmentation keeps each box on its object; mosaic and MixUp label counts add up.

Objects are solid rectangles (or discs) of unique colours; after an augmentation, the pixels of each
label's colour near its box must lie inside the box and, for objects away from the image border, span
it. Tolerance TOL = 3 px: the label box is exact in continuous coordinates, but the image is resampled
bilinearly (an edge becomes a one-source-pixel ramp, i.e. up to `s` output pixels at scale s, and our
colour test keeps pixels at least 3/4 of the way into the object), and OpenCV samples at pixel centres
while boxes use pixel edges (half a source pixel, times s); with s <= 1.5 here that is at most
0.75 * 1.5 + 0.5 * 1.5 * sqrt(2) < 2.2 px, plus 0.5 px of rounding in the expected extent.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolov7lib.data import DetectionDataset
from yolov7lib.data.augment import (
    PASTE_IN_SCALES,
    augment_hsv,
    bbox_ioa,
    box_candidates,
    copy_paste,
    letterbox,
    mixup,
    paste_in,
    random_perspective,
    resample_polygon,
    sample_objects,
)
from yolov7lib.data.formats import img2label_path
from yolov7lib.data.mosaic import mosaic4, mosaic9
from yolov7lib.ops.boxes import scale_boxes, xywhn2xyxy, xyxy2xywhn

TOL = 3.0
COLOUR_TOL = 60  # a pixel belongs to a colour when every channel is within this of it
PALETTE = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0),
           (255, 255, 255), (0, 0, 0), (0, 140, 255), (255, 140, 0)]  # fmt: skip
BACKGROUND = (128, 64, 192)
NO_AUG = {"hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "degrees": 0.0, "translate": 0.0, "scale": 0.0,
          "shear": 0.0, "perspective": 0.0, "flipud": 0.0, "fliplr": 0.0, "mosaic": 0.0, "mixup": 0.0,
          "paste_in": 0.0, "copy_paste": 0.0, "mosaic9": 0.0}  # fmt: skip


def _scene(h: int, w: int, classes: list[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping solid rectangles of the given palette classes; labels [class, x1, y1, x2, y2]."""
    img = np.full((h, w, 3), BACKGROUND, np.uint8)
    boxes: list[list[float]] = []
    for cls in classes:
        for _ in range(200):
            bw, bh = int(rng.integers(w // 8, w // 3)), int(rng.integers(h // 8, h // 3))
            x1, y1 = int(rng.integers(2, w - bw - 2)), int(rng.integers(2, h - bh - 2))
            if all(x1 > b[3] + 4 or x1 + bw + 4 < b[1] or y1 > b[4] + 4 or y1 + bh + 4 < b[2] for b in boxes):
                img[y1 : y1 + bh, x1 : x1 + bw] = PALETTE[cls]
                boxes.append([cls, x1, y1, x1 + bw, y1 + bh])
                break
    return img, np.array(boxes, np.float64).reshape(-1, 5)


def _colour_mask(img: np.ndarray, cls: int) -> np.ndarray:
    return (np.abs(img.astype(np.int16) - np.array(PALETTE[cls], np.int16)).max(2) <= COLOUR_TOL).astype(bool)


def assert_boxes_frame_objects(img: np.ndarray, labels: np.ndarray, tol: float = TOL) -> int:
    """Each label box frames the pixels of its colour near it; returns how many boxes were tight-checked."""
    h, w = img.shape[:2]
    tight = 0
    for cls, x1, y1, x2, y2 in labels:
        m = int(tol) + 3
        rx1, ry1 = max(math.floor(x1) - m, 0), max(math.floor(y1) - m, 0)
        rx2, ry2 = min(math.ceil(x2) + m, w), min(math.ceil(y2) + m, h)
        ys, xs = np.nonzero(_colour_mask(img[ry1:ry2, rx1:rx2], int(cls)))
        assert len(xs), f"box {[x1, y1, x2, y2]} of class {cls} frames none of its pixels"
        px = np.array([xs.min() + rx1, ys.min() + ry1, xs.max() + 1 + rx1, ys.max() + 1 + ry1], float)
        box = np.array([x1, y1, x2, y2])
        assert (px[:2] >= box[:2] - tol).all() and (px[2:] <= box[2:] + tol).all(), (cls, box, px)
        if x1 > tol and y1 > tol and x2 < w - tol and y2 < h - tol:  # not clipped: the box is tight too
            assert np.abs(px - box).max() <= tol, (cls, box, px)
            tight += 1
    return tight


TRANSFORMS = {
    "rotate": {"degrees": 40.0},
    "shear": {"shear": 15.0},
    "scale_translate": {"scale": 0.4, "translate": 0.2},
    "perspective": {"perspective": 0.0008},
    "all": {"degrees": 25.0, "shear": 8.0, "scale": 0.4, "translate": 0.15, "perspective": 0.0004},
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_random_perspective_keeps_each_box_on_its_object(name: str) -> None:
    params = {"degrees": 0.0, "translate": 0.0, "scale": 0.0, "shear": 0.0, "perspective": 0.0}
    params |= TRANSFORMS[name]
    tight = kept = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        img, labels = _scene(96, 128, [0, 1, 2, 3, 4], rng)
        out, new = random_perspective(img, labels.copy(), **params, rng=rng)
        assert out.shape == img.shape and new.shape[1] == 5
        tight += assert_boxes_frame_objects(out, new)
        kept += len(new)
    assert kept >= 25 and tight >= 10  # most objects survive and many are checked for tightness


def test_random_perspective_with_polygons_gives_tight_boxes_of_rotated_discs() -> None:
    img = np.full((128, 128, 3), BACKGROUND, np.uint8)
    centres = [(44, 50, 16), (86, 80, 20)]
    polys, labels = [], []
    for cls, (cx, cy, r) in enumerate(centres):
        cv2.circle(img, (cx, cy), r, PALETTE[cls], -1)
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        polys.append(np.stack([cx + (r + 0.5) * np.cos(t), cy + (r + 0.5) * np.sin(t)], 1))
        labels.append([cls, cx - r, cy - r, cx + r + 1, cy + r + 1])
    labels = np.array(labels, float)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        params = {"degrees": 45.0, "translate": 0.0, "scale": 0.1, "shear": 0.0, "perspective": 0.0}
        out, new = random_perspective(img, labels.copy(), polys, **params, rng=rng)
        assert assert_boxes_frame_objects(out, new) == len(new) == 2  # corners alone would be ~40 % too wide


def test_letterbox_and_scale_boxes_round_trip() -> None:
    img, labels = _scene(40, 64, [0, 1, 2], np.random.default_rng(0))
    for shape, auto, scaleup in (((96, 96), False, True), ((64, 64), True, True), ((32, 48), False, False)):
        out, (rw, rh), (dw, dh) = letterbox(img, shape, auto=auto, scaleup=scaleup)
        boxes = labels.copy()
        boxes[:, [1, 3]] = boxes[:, [1, 3]] * rw + dw
        boxes[:, [2, 4]] = boxes[:, [2, 4]] * rh + dh
        assert_boxes_frame_objects(out, boxes)
        back = scale_boxes(out.shape[:2], boxes[:, 1:], img.shape[:2], ((rh, rw), (dw, dh)))
        np.testing.assert_allclose(back, labels[:, 1:], atol=1e-6)


@pytest.mark.parametrize(("h", "w"), [(9, 16), (16, 9)])
def test_letterbox_splits_an_odd_padding_one_pixel_more_below_and_right(h: int, w: int) -> None:
    """7 pixels of padding at 16 px: the reference puts round(3.5 - 0.1) = 3 above (left) and 4 below
    (right), and reports 3.5, which scale_boxes subtracts; a half-pixel shift of every label otherwise."""
    out, ratio, pad = letterbox(np.full((h, w, 3), 255, np.uint8), 16, auto=False)
    assert ratio == (1.0, 1.0) and pad == ((3.5, 0.0) if w == 9 else (0.0, 3.5))
    image = (out == 255).all(2)
    rows, cols = np.nonzero(image.any(1))[0], np.nonzero(image.any(0))[0]
    assert (rows.min(), 15 - rows.max(), cols.min(), 15 - cols.max()) == (
        (3, 4, 0, 0) if h == 9 else (0, 0, 3, 4)
    )
    assert (out[~image] == 114).all()


def test_letterbox_auto_pads_only_to_the_next_multiple_of_the_stride() -> None:
    """auto: a 20 x 64 image at 64 keeps scale 1 and gets 44 % 32 = 12 rows of padding (6 above), not 44."""
    out, ratio, pad = letterbox(np.zeros((20, 64, 3), np.uint8), 64, auto=True, stride=32)
    assert out.shape == (32, 64, 3) and ratio == (1.0, 1.0) and pad == (0.0, 6.0)


def test_letterbox_rounds_the_resized_side_to_the_nearest_pixel() -> None:
    """6 x 7 at 10: r = 10 / 7 and 6 r = 8.57 -> 9 rows (the reference rounds; truncation gives 8), leaving
    1 row of padding: none above, 1 below, reported as 0.5."""
    out, _, pad = letterbox(np.full((6, 7, 3), 255, np.uint8), 10, auto=False)
    assert out.shape == (10, 10, 3) and pad == (0.0, 0.5)
    rows = np.nonzero((out != 114).any((1, 2)))[0]
    assert (rows.min(), rows.max()) == (0, 8)


def test_letterbox_scale_fill_stretches_each_axis_by_its_own_ratio() -> None:
    """scale_fill: 40 x 64 -> 60 x 80 without padding; the ratios are (80 / 64, 60 / 40) as (w, h) and move
    the boxes onto their objects."""
    img, labels = _scene(40, 64, [0, 1, 2], np.random.default_rng(0))
    out, (rw, rh), pad = letterbox(img, (60, 80), auto=False, scale_fill=True)
    assert out.shape == (60, 80, 3) and pad == (0.0, 0.0) and (rw, rh) == (1.25, 1.5)
    boxes = labels.copy()
    boxes[:, [1, 3]] *= rw
    boxes[:, [2, 4]] *= rh
    assert assert_boxes_frame_objects(out, boxes) >= 2


def _write_set(root: Path, n_images: int, per_image: int, h: int = 48, w: int = 64) -> Path:
    """PNG images of coloured rectangles, class = colour, each colour used once in the whole set."""
    img_dir = root / "images" / "train"
    img_dir.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(n_images):
        classes = list(range(i * per_image, (i + 1) * per_image))
        img, labels = _scene(h, w, classes, rng)
        cv2.imwrite(str(img_dir / f"{i}.png"), img)
        lf = img2label_path(img_dir / f"{i}.png")
        lf.parent.mkdir(parents=True, exist_ok=True)
        rows = np.concatenate([labels[:, :1], xyxy2xywhn(labels[:, 1:], w=w, h=h)], 1)
        lf.write_text("".join(f"{int(c)} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n" for c, x, y, bw, bh in rows))
    return img_dir


def _pixel_labels(sample) -> tuple[np.ndarray, np.ndarray]:
    img_t, targets, _, _ = sample
    img = img_t.numpy().transpose(1, 2, 0)[:, :, ::-1].copy()  # back to BGR HWC
    h, w = img.shape[:2]
    t = targets.numpy().astype(np.float64)
    return img, np.concatenate([t[:, 1:2], xywhn2xyxy(t[:, 2:], w=w, h=h)], 1)


MOSAIC_CASES = {
    "mosaic4": {"mosaic": 1.0, "mosaic9": 0.0, "degrees": 10.0, "shear": 3.0, "scale": 0.4, "translate": 0.1},
    "mosaic9": {"mosaic": 1.0, "mosaic9": 1.0, "degrees": 10.0, "shear": 3.0, "scale": 0.4, "translate": 0.1},
    "mosaic_perspective": {"mosaic": 1.0, "mosaic9": 0.5, "perspective": 0.0005, "scale": 0.3},
    "single_image_affine": {"degrees": 20.0, "shear": 5.0, "scale": 0.4, "translate": 0.2},
    "flips": {"fliplr": 0.5, "flipud": 0.5},
}


@pytest.mark.parametrize("name", sorted(MOSAIC_CASES))
def test_dataset_pipeline_keeps_each_box_on_its_object(tmp_path: Path, name: str) -> None:
    img_dir = _write_set(tmp_path, n_images=5, per_image=2)
    ds = DetectionDataset(img_dir, img_size=64, augment=True, hyp=NO_AUG | MOSAIC_CASES[name], progress=False)
    tight = total = 0
    for seed in range(12):
        img, labels = _pixel_labels(ds[(seed % len(ds), seed)])
        assert img.shape == (64, 64, 3)
        tight += assert_boxes_frame_objects(img, labels)
        total += len(labels)
    assert total >= 12 and tight >= 6


def test_flip_moves_boxes_with_the_image(tmp_path: Path) -> None:
    img_dir = _write_set(tmp_path, n_images=1, per_image=3)
    plain = DetectionDataset(img_dir, img_size=64, augment=True, hyp=NO_AUG, progress=False)
    flipped = DetectionDataset(
        img_dir, img_size=64, augment=True, hyp=NO_AUG | {"fliplr": 1.0}, progress=False
    )
    a, b = plain[0], flipped[0]
    assert (b[0].numpy() == a[0].numpy()[:, :, ::-1]).all()
    np.testing.assert_allclose(b[1][:, 2].numpy(), 1 - a[1][:, 2].numpy(), atol=1e-6)


def _recording_loader(tiles: list[tuple[np.ndarray, np.ndarray]], used: list[int]):
    def load(i: int):
        used.append(i)
        img, lb = tiles[i]
        h, w = img.shape[:2]
        return img, np.concatenate([lb[:, :1], xyxy2xywhn(lb[:, 1:], w=w, h=h)], 1), []

    return load


@pytest.mark.parametrize("build", [mosaic4, mosaic9])
def test_mosaic_label_counts_add_up(build) -> None:
    rng = np.random.default_rng(0)
    tiles = [
        _scene(int(rng.integers(30, 65)), 64, list(range(int(rng.integers(0, 4)))), rng) for _ in range(7)
    ]
    for seed in range(6):
        used: list[int] = []
        canvas, labels, _ = build(
            _recording_loader(tiles, used), seed % 7, 7, 64, np.random.default_rng(seed)
        )
        assert canvas.shape == (128, 128, 3) and len(used) == (4 if build is mosaic4 else 9)
        assert len(labels) == sum(len(tiles[i][1]) for i in used)
        assert labels[:, 1:].min(initial=0) >= 0 and labels[:, 1:].max(initial=0) <= 128


def test_mixup_label_counts_add_up_and_pixels_blend() -> None:
    rng = np.random.default_rng(1)
    a, la = _scene(64, 64, [0, 1, 2], rng)
    b, lb = _scene(64, 64, [3, 4], rng)
    out, labels = mixup(a, la, b, lb, rng)
    assert len(labels) == len(la) + len(lb) == 5
    lo, hi = np.minimum(a, b).astype(int), np.maximum(a, b).astype(int)
    assert ((out >= lo - 1) & (out <= hi)).all() and (out != a).any() and (out != b).any()


def test_paste_in_boxes_frame_the_pasted_objects_and_respect_occlusion() -> None:
    rng = np.random.default_rng(3)
    donor, donor_labels = _scene(128, 128, [5, 6, 7, 8, 9], rng)
    samples = sample_objects(donor, donor_labels, [], rng, share=1.0)
    assert len(samples) == 5
    pasted_total = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        img, labels = _scene(96, 96, [0, 1], rng)
        out = img.copy()
        new = paste_in(out, labels.copy(), samples, rng)
        pasted = new[len(labels) :]
        pasted_total += len(pasted)
        for k, row in enumerate(pasted):
            earlier = new[: len(labels) + k, 1:5]
            iw = (np.minimum(row[3], earlier[:, 2]) - np.maximum(row[1], earlier[:, 0])).clip(0)
            ih = (np.minimum(row[4], earlier[:, 3]) - np.maximum(row[2], earlier[:, 1])).clip(0)
            area = (earlier[:, 2] - earlier[:, 0]) * (earlier[:, 3] - earlier[:, 1])
            assert (iw * ih / area < 0.3).all()
        assert_boxes_frame_objects(out, pasted, tol=1.0)  # resized solid crops: exact up to rounding
    assert pasted_total >= 6


def test_copy_paste_mirrors_polygon_objects_with_their_boxes() -> None:
    img, labels = _scene(96, 128, [0, 1, 2], np.random.default_rng(4))
    polys = [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], float) for _, x1, y1, x2, y2 in labels]
    out, new, segs = copy_paste(img.copy(), labels.copy(), polys, 1.0, np.random.default_rng(0))
    assert len(new) > len(labels) and len(segs) == len(new)
    assert_boxes_frame_objects(out, new[len(labels) :], tol=1.5)


def _boxes_scene(h: int, w: int, boxes: list[list[float]]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Solid rectangles of palette class k at the given corners; labels and the rectangles as polygons."""
    img = np.full((h, w, 3), BACKGROUND, np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        img[int(y1) : int(y2), int(x1) : int(x2)] = PALETTE[k]
    labels = np.array([[k, *b] for k, b in enumerate(boxes)], float)
    return (
        img,
        labels,
        [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], float) for x1, y1, x2, y2 in boxes],
    )


def test_copy_paste_skips_a_copy_that_would_cover_an_existing_object() -> None:
    """Mirrored in a 100 px wide image, the object at x 40..60 lands on itself (covering 100 % of it) and is
    not pasted, though it misses the other object; the one at x 5..25 lands free at 75..95 and is pasted, with
    its polygon mirrored (x -> 100 - x)."""
    img, labels, polys = _boxes_scene(50, 100, [[40, 10, 60, 30], [5, 15, 25, 35]])
    out, new, segs = copy_paste(img.copy(), labels.copy(), polys, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(new, [[0, 40, 10, 60, 30], [1, 5, 15, 25, 35], [1, 75, 15, 95, 35]])
    assert len(segs) == 3
    np.testing.assert_allclose(segs[2], [[95, 15], [75, 15], [75, 35], [95, 35]])
    assert_boxes_frame_objects(out, new[2:], tol=1.5)


def test_copy_paste_copies_the_given_share_of_the_objects() -> None:
    """Four objects whose mirrors all land free: probability 0.5 copies round(0.5 * 4) = 2, 1.0 all 4."""
    img, labels, polys = _boxes_scene(
        60, 120, [[2, 2, 12, 12], [20, 20, 30, 30], [35, 5, 45, 15], [8, 40, 18, 50]]
    )
    for p, copies in ((0.5, 2), (1.0, 4)):
        _, new, segs = copy_paste(img.copy(), labels.copy(), list(polys), p, np.random.default_rng(1))
        assert len(new) == len(segs) == 4 + copies


def test_sample_objects_cuts_the_given_share_with_polygon_masks() -> None:
    """Half the objects by default; with a polygon the mask is the polygon inside the box (a right triangle
    here: the corner at its right angle is in, the opposite one out); a box clipped to nothing is skipped; the
    samples are copies, untouched when the image is drawn over later."""
    img, labels, _ = _boxes_scene(
        60, 120, [[2, 2, 12, 12], [20, 20, 30, 30], [35, 5, 45, 15], [8, 40, 18, 50]]
    )
    samples = sample_objects(img, labels, [], np.random.default_rng(0))
    assert len(samples) == 2
    for cls, pixels, mask in samples:
        assert pixels.shape == (10, 10, 3) and (pixels == PALETTE[int(cls)]).all() and (mask == 255).all()
    triangle = np.array([[40.0, 10], [70, 10], [40, 30]])  # right angle at the top left of its 30 x 20 box
    labels = np.array([[0.0, 40, 10, 70, 30], [1.0, 130, 10, 150, 30]])  # the second lies right of the image
    samples = sample_objects(img, labels, [triangle, np.zeros((0, 2))], np.random.default_rng(0), share=1.0)
    assert len(samples) == 1
    cls, pixels, mask = samples[0]
    assert mask.shape == pixels.shape[:2] == (20, 30) and mask[1, 1] == 255 and mask[-1, -1] == 0
    # the reference's cut-out: the object's own pixels inside the polygon, black outside it
    np.testing.assert_array_equal(pixels[mask > 0], img[10:30, 40:70][mask > 0])
    assert (pixels[mask == 0] == 0).all() and (img[10:30, 40:70][mask == 0] != 0).any()
    before = pixels.copy()
    img[:] = 0
    np.testing.assert_array_equal(pixels, before)


def test_paste_in_places_a_sample_in_a_drawn_spot_as_the_reference() -> None:
    """Scripted draws on an 80 x 120 image. Spot 1 (scale 3/4: height in [1, 60], width in [1, 90]): 40 x 60
    centred at (50, 30) -> x 20..80, y 10..50; the 20 x 30 sample scales by min(40 / 20, 60 / 30) = 2 and
    fills it. Spot 2: 15 rows (not over 20) -> skipped. Spot 3 (scale 1/2): 40 x 30 at (20, 60) -> x 5..35,
    y 40..80; the 6 x 60 sample scales by min(40 / 6, 30 / 60) = 0.5 to 30 x 3, not over 10 px high ->
    skipped. Then every other scale is skipped by its draw of 0.1 < 0.2."""
    img = np.full((80, 120, 3), BACKGROUND, np.uint8)
    samples = [(4.0, np.full((20, 30, 3), PALETTE[4], np.uint8), np.full((20, 30), 255, np.uint8)),
               (5.0, np.full((6, 60, 3), PALETTE[5], np.uint8), np.full((6, 60), 255, np.uint8))]  # fmt: skip
    rng = _Scripted(
        random=[0.5, 0.5, 0.5] + [0.1] * 17, integers=[40, 60, 50, 30, 0, 15, 40, 100, 70, 40, 30, 20, 60, 1]
    )
    labels = paste_in(img, np.zeros((0, 5), np.float32), samples, rng)
    np.testing.assert_array_equal(labels, [[4, 20, 10, 80, 50]])
    three_quarters, half = [(1, 61), (1, 91), (0, 121), (0, 81)], [(1, 41), (1, 61), (0, 121), (0, 81)]
    # per spot its height, width and centre; a sample index only for spots 1 and 3 (spot 2 is rejected before)
    assert rng.asked["integers"] == [*three_quarters, (2, None), *three_quarters, *half, (2, None)]
    assert len(PASTE_IN_SCALES) == 20 and not rng.queues["random"]
    expected = np.full((80, 120, 3), BACKGROUND, np.uint8)
    expected[10:50, 20:80] = PALETTE[4]
    np.testing.assert_array_equal(img, expected)


def test_paste_in_pastes_every_pixel_the_resized_mask_touches() -> None:
    """As the reference: the pasted pixels are those where the bilinearly resized mask is not 0, so the
    soft edge of a resized mask is pasted too. A 20 x 30 sample whose mask covers its left 15 columns,
    scaled by 2 into the spot of `test_paste_in_places_a_sample_in_a_drawn_spot_as_the_reference`."""
    img = np.full((80, 120, 3), BACKGROUND, np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[:, :15] = 255
    colour = np.array(PALETTE[4], np.uint8)
    pixels = np.where(mask[..., None] > 0, colour, 0).astype(np.uint8)  # the object on black
    rng = _Scripted(random=[0.5] + [0.1] * 19, integers=[40, 60, 50, 30, 0])
    labels = paste_in(img, np.zeros((0, 5), np.float32), [(4.0, pixels, mask)], rng)
    np.testing.assert_array_equal(labels, [[4, 20, 10, 80, 50]])
    resized = cv2.resize(mask, (60, 40))
    soft = (resized > 0) & (resized < 255)
    assert soft.any() and (resized[:, :29] == 255).all() and (resized[:, 31:] == 0).all()
    spot = img[10:50, 20:80]
    np.testing.assert_array_equal(
        spot[resized == 0], np.full(((resized == 0).sum(), 3), BACKGROUND, np.uint8)
    )
    assert (spot[resized > 0] != BACKGROUND).any(axis=1).all()  # the soft edge too, blended towards black
    np.testing.assert_array_equal(spot[resized == 255], np.broadcast_to(colour, ((resized == 255).sum(), 3)))


def test_box_candidates_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(2)
    before = np.concatenate([rng.uniform(0, 50, (200, 2)), rng.uniform(50, 100, (200, 2))], 1)
    after = before * rng.uniform(0.05, 1.5, (200, 1)) + rng.uniform(-3, 3, (200, 4))
    after[:20, 2] = after[:20, 0] + rng.uniform(0, 3, 20)  # some thin boxes
    keep = box_candidates(before.T, after.T)
    for i in range(200):
        w1, h1 = before[i, 2] - before[i, 0], before[i, 3] - before[i, 1]
        w2, h2 = after[i, 2] - after[i, 0], after[i, 3] - after[i, 1]
        ok = w2 > 2 and h2 > 2 and w2 * h2 / (w1 * h1) > 0.1 and max(w2 / h2, h2 / w2) < 20
        assert keep[i] == ok
    assert 10 < keep.sum() < 200


def test_hsv_gains_match_a_per_pixel_computation() -> None:
    img = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    out = img.copy()
    augment_hsv(out, 0.5, 0.7, 0.4, np.random.default_rng(9))
    gains = np.random.default_rng(9).uniform(-1, 1, 3) * [0.5, 0.7, 0.4] + 1
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float64)
    expected = np.empty_like(hsv)
    for (i, j), _ in np.ndenumerate(hsv[..., 0]):
        hh, ss, vv = hsv[i, j]
        expected[i, j] = (
            int(hh * gains[0]) % 180,
            min(int(ss * gains[1]), 255),
            min(int(vv * gains[2]), 255),
        )
    np.testing.assert_array_equal(out, cv2.cvtColor(expected.astype(np.uint8), cv2.COLOR_HSV2BGR))


def test_perspective_shears_about_the_image_centre() -> None:
    """Translation is applied last (translation @ shear @ rotation @ centring): with no translation the image
    centre stays put, so a box centred on it stays centred, whatever shear and scale are drawn."""
    for seed in range(6):
        _, out = random_perspective(
            np.zeros((200, 200, 3), np.uint8), np.array([[0.0, 70, 80, 130, 120]]), degrees=0, translate=0,
            scale=0.0, shear=15, perspective=0, rng=np.random.default_rng(seed),
        )  # fmt: skip
        assert len(out) == 1
        np.testing.assert_allclose(out[0, 1:3] + out[0, 3:5], [200.0, 200.0], atol=1e-6)  # centre (100, 100)


def test_a_box_shrunk_with_the_image_is_kept() -> None:
    """box_candidates compares a box's area with its area before the warp times the drawn scale squared, so
    zooming out never drops a box that is still a few pixels wide (only cropping or shearing does)."""
    sides = []
    for seed in range(40):
        _, out = random_perspective(
            np.zeros((200, 200, 3), np.uint8), np.array([[0.0, 60, 60, 140, 140]]), degrees=0, translate=0,
            scale=0.9, shear=0, perspective=0, rng=np.random.default_rng(seed),
        )  # fmt: skip
        assert len(out) == 1, seed
        sides.append(out[0, 3] - out[0, 1])
    assert min(sides) < 0.3 * 80  # some draws shrank the box below a tenth of its area


class _Scripted:
    """A stand-in for the numpy Generator that returns scripted numbers in turn (each checked against the
    range asked for) and records the ranges asked for: uniform(), random() and integers() have own queues."""

    def __init__(self, uniform=(), random=(), integers=()):
        self.queues = {"uniform": list(uniform), "random": list(random), "integers": list(integers)}
        self.asked: dict[str, list] = {"uniform": [], "integers": []}

    def uniform(self, low, high, size=None):
        self.asked["uniform"].append((low, high))
        value = self.queues["uniform"].pop(0)
        assert low <= value <= high, (value, low, high)
        return value

    def random(self):
        return self.queues["random"].pop(0)

    def integers(self, low, high=None):
        self.asked["integers"].append((low, high))
        value = self.queues["integers"].pop(0)
        assert (0 if high is None else low) <= value < (low if high is None else high), (value, low, high)
        return value


# perspective x and y, angle, scale, shear x and y, translation x and y (fractions of the output size)
IDENTITY_DRAWS = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.5)
WIDE_RANGES = {"degrees": 10.0, "translate": 0.1, "scale": 0.5, "shear": 5.0, "perspective": 0.001}


def test_identity_draws_leave_a_non_square_image_and_its_boxes_unchanged() -> None:
    """The warp centres the image (x by half its width, y by half its height) and translates by the drawn
    fraction of the output's width and height: draws of no change give back the image and boxes as they
    were."""
    img, labels = _scene(60, 100, [0, 1, 2], np.random.default_rng(6))
    out, new = random_perspective(img.copy(), labels.copy(), **WIDE_RANGES, rng=_Scripted(IDENTITY_DRAWS))
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(new, labels)


def test_random_perspective_draws_from_the_reference_ranges() -> None:
    """In the reference's order and ranges: perspective twice, angle, scale in [1 - scale, 1.1 + scale], shear
    twice, translation twice (what lets benchmarks/compare_official_augment.py replay the official draws)."""
    rng = _Scripted(IDENTITY_DRAWS)
    random_perspective(np.zeros((60, 100, 3), np.uint8), np.zeros((0, 5)), degrees=10.0, translate=0.2,
                       scale=0.5, shear=3.0, perspective=0.001, rng=rng)  # fmt: skip
    expected = [(-0.001, 0.001)] * 2 + [(-10.0, 10.0), (0.5, 1.6)] + [(-3.0, 3.0)] * 2 + [(0.3, 0.7)] * 2
    assert rng.asked["uniform"] == [pytest.approx(r, abs=1e-12) for r in expected]


def test_shear_is_applied_after_the_rotation() -> None:
    """M = translation @ shear @ rotation @ centring, the reference's order. A 20 x 10 box centred in a
    100 x 100 image, rotated by +90 degrees (OpenCV: (x, y) -> (y, -x) about the centre), then sheared by
    45 degrees along x ((x, y) -> (x + y, y)): corners (+-10, +-5) -> (+-5, -+10) -> x in [-15, 15],
    y in [-10, 10], i.e. the box [35, 40, 65, 60]. Shear first would give [45, 35, 55, 65]."""
    rng = _Scripted((0.0, 0.0, 90.0, 1.0, 45.0, 0.0, 0.5, 0.5))
    params = {"degrees": 90.0, "translate": 0.0, "scale": 0.0, "shear": 45.0, "perspective": 0.0}
    _, out = random_perspective(
        np.zeros((100, 100, 3), np.uint8), np.array([[0.0, 40, 45, 60, 55]]), **params, rng=rng
    )
    np.testing.assert_allclose(out, [[0.0, 35, 40, 65, 60]], atol=1e-9)


def test_polygon_boxes_are_clipped_to_the_image_and_kept_above_one_percent() -> None:
    """Identity draws on a 60 x 120 image. A polygon reaching below the bottom edge gets the box of its points
    inside (y2 = 60: not its own 80, nor the width 120). A box mostly left of the image keeps 10 x 40 of its
    210 x 40 px (4.8 %): kept with its polygon (threshold 1 %), dropped without one (10 %), as in the
    reference. Polygon points are 1000 along the perimeter: a clipped edge lies within 1 px of the border."""
    img = np.zeros((60, 120, 3), np.uint8)
    labels = np.array([[0.0, 10, 40, 30, 80], [1.0, -200, 10, 10, 50]])
    polys = [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]) for _, x1, y1, x2, y2 in labels]
    _, with_polys = random_perspective(
        img, labels.copy(), polys, **WIDE_RANGES, rng=_Scripted(IDENTITY_DRAWS)
    )
    np.testing.assert_allclose(with_polys, [[0.0, 10, 40, 30, 60], [1.0, 0, 10, 10, 50]], atol=1.0)
    _, boxes_only = random_perspective(img, labels.copy(), **WIDE_RANGES, rng=_Scripted(IDENTITY_DRAWS))
    np.testing.assert_array_equal(boxes_only, [[0.0, 10, 40, 30, 60]])


def test_a_rectangle_polygon_warps_to_the_box_of_its_warped_corners() -> None:
    """Under a perspective warp, a rectangle given as a polygon (1000 resampled points, each divided by its
    projective w) gets the same box as the rectangle given as a box (its 4 corners), up to point spacing."""
    compared = 0
    for seed in range(6):
        img, labels = _scene(80, 120, [0, 1, 2], np.random.default_rng(seed))
        polys = [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]) for _, x1, y1, x2, y2 in labels]
        params = {"degrees": 15.0, "translate": 0.05, "scale": 0.2, "shear": 5.0, "perspective": 0.002}
        _, a = random_perspective(img, labels.copy(), polys, **params, rng=np.random.default_rng(seed))
        _, b = random_perspective(img, labels.copy(), **params, rng=np.random.default_rng(seed))
        for row in b:
            inside = row[1] > 0 and row[2] > 0 and row[3] < 120 and row[4] < 80  # not clipped
            if inside and row[0] in a[:, 0]:
                np.testing.assert_allclose(a[a[:, 0] == row[0]][0], row, atol=0.5)
                compared += 1
    assert compared >= 8


def test_resample_polygon_spreads_points_over_every_edge_including_the_closing_one() -> None:
    """A 4 x 4 square, 9 points over its 4 edges (closing edge included): each half edge, back to start."""
    square = np.array([[0.0, 0], [4, 0], [4, 4], [0, 4]])
    expected = [[0, 0], [2, 0], [4, 0], [4, 2], [4, 4], [2, 4], [0, 4], [0, 2], [0, 0]]
    np.testing.assert_allclose(resample_polygon(square, 9), expected, atol=1e-12)


def test_box_candidates_thresholds_are_strict() -> None:
    """The reference's strict inequalities: exactly 2 px wide, exactly 10 % of the area, or an aspect ratio of
    exactly 20 drop a box; just past each limit keeps it."""
    before = np.array([[0, 0, 3, 3], [0, 0, 10, 10], [0, 0, 10, 10]] * 2, float).T
    after = np.array([[0, 0, 2, 3], [0, 0, 4, 2.5], [0, 0, 60, 3],  # each fails one test, by a hair
                      [0, 0, 2.01, 3], [0, 0, 4, 2.51], [0, 0, 59.9, 3]], float).T  # fmt: skip
    assert box_candidates(before, after).tolist() == [False, False, False, True, True, True]


def test_bbox_ioa_matches_a_plain_loop() -> None:
    """Intersection over the area of each of the boxes; zero for a box apart on one axis or both."""
    rng = np.random.default_rng(8)
    corners = rng.uniform(0, 100, (80, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 40, (80, 2))], 1)
    box = np.array([40.0, 50, 80, 70])
    for b, got in zip(boxes, bbox_ioa(box, boxes), strict=True):
        iw, ih = (
            max(0.0, min(box[2], b[2]) - max(box[0], b[0])),
            max(0.0, min(box[3], b[3]) - max(box[1], b[1])),
        )
        assert got == pytest.approx(iw * ih / ((b[2] - b[0]) * (b[3] - b[1])), rel=1e-9, abs=1e-12)
    apart = np.array([[0.0, 55, 10, 65], [45, 0, 55, 10], [90, 80, 100, 90]])  # apart in x, in y, in both
    assert bbox_ioa(box, apart).tolist() == [0.0, 0.0, 0.0]


def _flat_tiles(sizes: list[tuple[int, int]]):
    """A tile loader whose k-th call returns a (h, w) image of grey level 10 (k + 1) with one label covering
    it all (class k), so that every tile's pixels and label can be told apart on the canvas."""
    calls = iter(range(len(sizes)))

    def load(index: int):
        k = next(calls)
        h, w = sizes[k]
        return np.full((h, w, 3), 10 * (k + 1), np.uint8), np.array([[k, 0.5, 0.5, 1.0, 1.0]]), []

    return load


def test_mosaic9_tiles_of_unequal_sizes_neither_overlap_nor_leave_their_labels() -> None:
    """Each tile sits beside the one placed before it (its height and width, not the centre tile's): inside
    every label box on the returned canvas all pixels are that tile's."""
    s = 64
    sizes = [(30, 40), (20, 64), (64, 24), (50, 36), (28, 64), (40, 20), (64, 30), (36, 48), (22, 26)]
    for seed in range(8):
        canvas, labels, _ = mosaic9(_flat_tiles(sizes), 0, 9, s, np.random.default_rng(seed))
        assert canvas.shape == (2 * s, 2 * s, 3)
        for k, x1, y1, x2, y2 in labels:
            region = canvas[int(y1) : int(y2), int(x1) : int(x2), 0]
            assert (region == 10 * (k + 1)).all(), (seed, int(k))


def test_mosaic4_centre_lies_in_the_middle_half_of_the_canvas() -> None:
    """The reference draws the mosaic centre uniformly in [s/2, 3s/2) on each axis; the top-left tile ends
    there (its full-image label's bottom-right corner)."""
    s = 64
    centres = []
    for seed in range(60):
        _, labels, _ = mosaic4(_flat_tiles([(s, s)] * 4), 0, 4, s, np.random.default_rng(seed))
        centres += [labels[labels[:, 0] == 0][0, 3], labels[labels[:, 0] == 0][0, 4]]
    assert s / 2 <= min(centres) < s / 2 + s / 8 and 3 * s / 2 - s / 8 < max(centres) < 3 * s / 2


def test_mosaic4_tiles_fill_their_label_boxes_and_leave_the_rest_grey() -> None:
    """Tiles of unequal sizes around the random centre: inside every (clipped) label box all pixels are that
    tile's, up to the canvas edge, and every pixel outside the boxes is the grey padding (114)."""
    s = 64
    sizes = [(30, 40), (64, 64), (20, 64), (48, 36)]
    for seed in range(8):
        canvas, labels, _ = mosaic4(_flat_tiles(sizes), 0, 4, s, np.random.default_rng(seed))
        covered = np.zeros(canvas.shape[:2], bool)
        for k, x1, y1, x2, y2 in labels:
            assert (canvas[int(y1) : int(y2), int(x1) : int(x2)] == 10 * (k + 1)).all(), (seed, int(k))
            covered[int(y1) : int(y2), int(x1) : int(x2)] = True
        assert (canvas[~covered] == 114).all(), seed


def _polygon_tiles(sizes: list[tuple[int, int]], with_polygons: list[bool]):
    """Like `_flat_tiles`, with a label on the middle half of each tile (class k) and, where asked, its
    polygon (normalised, as the loader gives it)."""
    calls = iter(range(len(sizes)))
    square = np.array([[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]])

    def load(index: int):
        k = next(calls)
        h, w = sizes[k]
        polys = [square.copy()] if with_polygons[k] else []
        return np.full((h, w, 3), 10 * (k + 1), np.uint8), np.array([[k, 0.5, 0.5, 0.5, 0.5]]), polys

    return load


@pytest.mark.parametrize("build", [mosaic4, mosaic9])
def test_mosaic_polygons_follow_their_labels(build) -> None:
    """Tiles of unequal, non-square sizes, some with polygons: one polygon per label (a tile without polygons
    gives its boxes' rectangles), placed, shifted and clipped like the boxes, so each polygon's extent is its
    label's box."""
    s = 64
    sizes = [(30, 40), (64, 50), (20, 64), (48, 36), (28, 64), (40, 20), (64, 30), (36, 48), (22, 26)]
    with_polygons = [True, False, True, False, True, True, False, True, True]
    for seed in range(8):
        _, labels, segments = build(
            _polygon_tiles(sizes, with_polygons), 0, 9, s, np.random.default_rng(seed)
        )
        assert len(segments) == len(labels)
        for row, poly in zip(labels, segments, strict=True):
            np.testing.assert_allclose([*poly.min(0), *poly.max(0)], row[1:], atol=1e-4, err_msg=f"{seed}")
            x, y = poly[:, 0].astype(float), poly[:, 1].astype(float)
            area = (
                abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2
            )  # shoelace: a true rectangle
            assert area == pytest.approx((row[3] - row[1]) * (row[4] - row[2]), abs=1e-3), seed


def test_mosaic9_places_each_tile_beside_its_neighbours_as_the_reference() -> None:
    """The reference's layout on the 3s canvas, relative to the centre tile (x0, y0, w0 x h0): top at
    (x0, y0 - h1), top right right of it at x0 + w1, right at (x0 + w0, y0), bottom right under that at
    y0 + h3, bottom right-aligned with the centre at (x0 + w0 - w5, y0 + h0), bottom left left of it, left at
    (x0 - w7, y0 + h0 - h7), top left above that; then the random 2s window (read from the centre tile's
    label) and clipping to it."""
    s = 64
    sizes = [(30, 40), (20, 50), (24, 30), (50, 36), (28, 44), (40, 20), (26, 30), (36, 48), (22, 26)]
    (h0, w0), (h1, w1), (h2, _), (h3, _), _, (_, w5), (_, w6), (h7, w7), (h8, w8) = sizes
    offsets = []
    for seed in range(40):
        _, labels, _ = mosaic9(_flat_tiles(sizes), 0, 9, s, np.random.default_rng(seed))
        x0, y0 = labels[0, 1:3]
        offsets += [s - x0, s - y0]
        corners = [  # x1, y1 of each tile, clockwise from the centre
            (x0, y0), (x0, y0 - h1), (x0 + w1, y0 - h2), (x0 + w0, y0), (x0 + w0, y0 + h3),
            (x0 + w0 - w5, y0 + h0), (x0 + w0 - w5 - w6, y0 + h0), (x0 - w7, y0 + h0 - h7),
            (x0 - w8, y0 + h0 - h7 - h8),
        ]  # fmt: skip
        expected = [
            [k, x, y, x + w, y + h] for k, ((x, y), (h, w)) in enumerate(zip(corners, sizes, strict=True))
        ]
        expected = np.array(expected, float)
        expected[:, 1:] = expected[:, 1:].clip(0, 2 * s)
        np.testing.assert_array_equal(labels, expected, err_msg=f"seed {seed}")
    assert min(offsets) < s / 4 and max(offsets) > 3 * s / 4  # the window's corner spreads over [0, s)
