"""Loaders: the same seed gives the same batches with any worker count; DDP split; rect batches; drawing."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yolov7lib.data import SeededSampler, create_dataloader, plot_batch, synthesize
from yolov7lib.data.dataset import DetectionDataset
from yolov7lib.data.plot import PALETTE
from yolov7lib.ops.boxes import scale_boxes, xywhn2xyxy


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("loader") / "set"
    synthesize(out, n_train=10, n_val=7, img_size=96, seed=1, workers=1, progress=False)
    return out


def _batches(loader, n: int) -> list[tuple[torch.Tensor, torch.Tensor, tuple]]:
    out = []
    for i, (imgs, targets, paths, _) in enumerate(loader):
        out.append((imgs, targets, paths))
        if i + 1 == n:
            break
    return out


def _same(a, b) -> bool:
    return all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and x[2] == y[2]
        for x, y in zip(a, b, strict=True)
    )


def test_same_seed_same_batches_with_0_or_2_workers(small_set: Path) -> None:
    kwargs = {"hyp": "p5", "augment": True, "shuffle": True, "seed": 7, "progress": False}
    train = small_set / "images" / "train"
    serial, _ = create_dataloader(train, 96, 4, 32, workers=0, **kwargs)
    parallel, _ = create_dataloader(train, 96, 4, 32, workers=2, **kwargs)
    assert parallel.num_workers == min(2, os.cpu_count() or 1)
    first = _batches(serial, 3)
    assert _same(first, _batches(parallel, 3))  # batch i is the same whichever worker built it
    second_epoch = _batches(serial, 3)
    assert not _same(first, second_epoch)  # the next pass is the next epoch: new order and augmentation
    assert _same(second_epoch, _batches(parallel, 3))
    other, _ = create_dataloader(train, 96, 4, 32, workers=0, **(kwargs | {"seed": 8}))
    assert not _same(first, _batches(other, 3))
    serial.sampler.set_epoch(0)
    assert _same(first, _batches(serial, 3))  # set_epoch replays an epoch


@pytest.fixture
def opencv_threads():
    """Put OpenCV's process-wide thread count back after a test that changes it."""
    before = cv2.getNumThreads()
    yield
    cv2.setNumThreads(before)


def test_loaders_with_workers_switch_opencv_threads_off(small_set: Path, opencv_threads) -> None:
    """OpenCV's thread pool does not survive fork(): before its workers fork, a loader with workers
    makes OpenCV single-threaded (0 reads back as 1); a loader without workers leaves it alone."""
    train = small_set / "images" / "train"
    cv2.setNumThreads(2)
    create_dataloader(train, 96, 4, 32, workers=0, progress=False)
    assert cv2.getNumThreads() == 2
    loader, _ = create_dataloader(train, 96, 4, 32, workers=2, progress=False)
    assert loader.num_workers == min(2, os.cpu_count() or 1)
    assert cv2.getNumThreads() == (1 if loader.num_workers else 2)


def test_opencv_thread_count_does_not_change_the_batches(small_set: Path, opencv_threads) -> None:
    """Switching OpenCV's threads off changes no pixel: the same augmented batches (mosaic, affine
    warp, HSV at 320 px, large enough for OpenCV to split its work) with 2 threads and with none."""
    kwargs = {"hyp": "p5", "augment": True, "shuffle": True, "seed": 3, "progress": False}
    train = small_set / "images" / "train"
    runs = []
    for threads in (2, 0):
        cv2.setNumThreads(threads)
        loader, _ = create_dataloader(train, 320, 4, 32, workers=0, **kwargs)
        runs.append(_batches(loader, 2))
    assert _same(*runs)


def test_distributed_split_covers_the_epoch_once() -> None:
    n, world = 11, 3
    full = list(SeededSampler(n, seed=5, shuffle=True))
    parts = [list(SeededSampler(n, seed=5, shuffle=True, rank=r, world_size=world)) for r in range(world)]
    assert all(len(p) == math.ceil(n / world) for p in parts)
    merged = [item for group in zip(*parts, strict=True) for item in group]
    assert merged[:n] == full  # the same order and per-sample seeds as one process, dealt round-robin
    assert merged[n:] == full[: len(merged) - n]  # padded by repeating the head
    with pytest.raises(ValueError, match="rank 3"):
        SeededSampler(n, rank=3, world_size=3)


def test_rect_batch_shapes_match_a_naive_rule_and_letterbox_inverts(small_set: Path) -> None:
    loader, ds = create_dataloader(
        small_set / "images" / "val", 96, 3, 32, rect=True, pad=0.5, progress=False
    )
    ratios = ds.shapes[:, 1] / ds.shapes[:, 0]
    assert (np.diff(ratios) >= 0).all()  # sorted by aspect ratio
    for b in range(math.ceil(len(ds) / 3)):
        r = ratios[b * 3 : b * 3 + 3]
        hw = [r.max(), 1.0] if r.max() < 1 else [1.0, 1 / r.min()] if r.min() > 1 else [1.0, 1.0]
        assert list(ds.batch_shapes[b]) == [math.ceil(v * 96 / 32 + 0.5) * 32 for v in hw]
    for b, (imgs, targets, paths, shapes) in enumerate(loader):
        assert tuple(imgs.shape[2:]) == tuple(ds.batch_shapes[b])
        for i, (path, (hw0, ratio_pad)) in enumerate(zip(paths, shapes, strict=True)):
            k = ds.img_files.index(path)
            h0, w0 = hw0
            assert (w0, h0) == tuple(ds.shapes[k])
            rows = targets[targets[:, 0] == i]
            boxes = xywhn2xyxy(rows[:, 2:].double(), w=imgs.shape[3], h=imgs.shape[2])
            back = scale_boxes(tuple(imgs.shape[2:]), boxes, (h0, w0), ratio_pad)
            expected = xywhn2xyxy(torch.from_numpy(ds.labels[k][:, 1:]).double(), w=w0, h=h0)
            torch.testing.assert_close(back, expected, atol=0.05, rtol=0)  # float32 labels
    with pytest.raises(ValueError, match="one process"):
        create_dataloader(small_set / "images" / "val", 96, 3, 32, rect=True, rank=0, world_size=2)


def test_batches_are_rgb_uint8_with_image_indices(tmp_path: Path) -> None:
    img_dir = tmp_path / "images" / "train"
    img_dir.mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    for i in range(3):
        img = np.zeros((32, 32, 3), np.uint8)
        img[..., 2] = 250  # red in OpenCV's BGR order
        cv2.imwrite(str(img_dir / f"{i}.png"), img)
        rows = ["0 0.5 0.5 0.5 0.5"] + [f"1 0.2 {0.2 + 0.1 * j:.1f} 0.1 0.1" for j in range(i)]
        (tmp_path / "labels" / "train" / f"{i}.txt").write_text("\n".join(rows) + "\n")
    loader, _ = create_dataloader(img_dir, 32, 3, 32, progress=False)
    imgs, targets, paths, shapes = next(iter(loader))
    assert imgs.dtype == torch.uint8 and imgs.shape == (3, 3, 32, 32)
    assert int(imgs[:, 0].min()) == 250 and int(imgs[:, 1:].max()) == 0  # channel 0 is red: RGB
    assert targets[:, 0].tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    assert [Path(p).name for p in paths] == ["0.png", "1.png", "2.png"]
    assert shapes[0] == ((32, 32), ((1.0, 1.0), (0.0, 0.0)))


def test_plot_batch_draws_boxes_where_the_targets_are(tmp_path: Path) -> None:
    imgs = torch.zeros((2, 3, 64, 64), dtype=torch.uint8)
    targets = torch.tensor([[0, 3, 0.5, 0.5, 0.5, 0.5], [1, 1, 0.25, 0.25, 0.25, 0.25]])
    out = plot_batch(imgs, targets, ["a.jpg", "b.jpg"], ["w", "x", "y", "z"], tmp_path / "batch.png")
    assert out.shape == (128, 128, 3) and (tmp_path / "batch.png").is_file()
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "batch.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(written, out)
    assert (out[48, 20:44] == PALETTE[3]).all(axis=1).sum() >= 20  # bottom edge of box 0 (y = 48)
    assert (out[20:44, 16] == PALETTE[3]).all(axis=1).sum() >= 20  # its left edge (x = 16)
    assert (out[14:23, 64 + 8] == PALETTE[1]).all(axis=1).sum() >= 7  # box 1's left edge, in the second tile
    assert (out[70:120, 10:50] == 255).all()  # the grid's unused cells stay white
    preds = torch.tensor([[0, 0, 0.5, 0.5, 0.5, 0.5, 0.1]])  # a low-confidence prediction is not drawn
    blank = plot_batch(imgs[:1], preds, fname=tmp_path / "preds.jpg")
    assert blank.max() == 255 and (blank[10:54, 10:54] == 0).all()


def test_plot_batch_scales_non_square_images_and_pixel_boxes_like_normalised_ones() -> None:
    """Two 40 x 100 images at max_size 100: a 2 x 2 grid of 20 x 50 tiles (scale 100 / (2 * 100), from the
    long side). A box given in pixels lands where the same box normalised does; float images in [0, 1] look as
    their uint8 version."""
    imgs = np.zeros((2, 3, 40, 100), np.uint8)
    imgs[:, :, 10:30, 20:80] = 255
    normalised = np.array([[0, 2, 0.5, 0.5, 0.6, 0.5], [1, 2, 0.25, 0.5, 0.3, 0.5]])
    pixels = normalised * [1, 1, 100, 40, 100, 40]
    out = plot_batch(imgs, normalised, max_size=100)
    assert out.shape == (40, 100, 3)
    np.testing.assert_array_equal(plot_batch(imgs, pixels, max_size=100), out)
    np.testing.assert_array_equal(plot_batch(imgs.astype(np.float32) / 255, normalised, max_size=100), out)
    assert (out[5, 15:35] == PALETTE[2]).all(axis=1).sum() >= 15  # box 0's top edge: y 0.25 * 20, x 10..40


def test_plot_batch_colours_and_names_classes_beyond_the_lists() -> None:
    """Class 13 takes palette colour 13 % 10 = 3; class 13 with names for 0..12 is written as its number
    (the same drawing as without names); a prediction at exactly conf_thres is drawn; file names are written
    on tiles."""
    imgs = np.zeros((1, 3, 64, 64), np.uint8)
    targets = np.array([[0, 13, 0.5, 0.5, 0.5, 0.5, 0.25]])
    out = plot_batch(imgs, targets, names=[f"n{i}" for i in range(13)], conf_thres=0.25)  # names of 0..12
    assert (out[48, 20:44] == PALETTE[3]).all(axis=1).sum() >= 20  # bottom edge (y = 48)
    np.testing.assert_array_equal(plot_batch(imgs, targets, conf_thres=0.25), out)
    assert (plot_batch(imgs, targets, conf_thres=0.26)[40:60, 10:54] == 0).all()
    assert (plot_batch(imgs, targets[:0], paths=["a_file.jpg"])[2:16, 2:60] > 0).any()


@pytest.mark.parametrize(
    ("wh", "expected"),
    [
        ([[320, 640], [256, 640]], [672, 352]),  # tall: the least tall image (h/w 2) sets the width
        ([[640, 320], [640, 256]], [352, 672]),  # wide: the least wide one (h/w 0.5) sets the height
        ([[300, 400], [400, 300]], [672, 672]),  # mixed: square
    ],
)
def test_rect_batch_shape_follows_the_least_extreme_image_of_the_batch(wh: list, expected: list) -> None:
    """640 px, stride 32, pad 0.5: ceil(side x 640 / 32 + 0.5) x 32, side 1 or the ratio bound."""
    from yolov7lib.data.dataset import rect_batch_shapes

    assert rect_batch_shapes(np.array(wh, float), 2, 640, 32, 0.5).tolist() == [expected]


def _image_folder(root: Path, sizes: list[tuple[int, int]]) -> Path:
    """One image per (w, h), each a different flat colour with one labelled box; returns the image folder."""
    img_dir, lbl_dir = root / "images" / "val", root / "labels" / "val"
    img_dir.mkdir(parents=True)
    lbl_dir.mkdir(parents=True)
    for i, (w, h) in enumerate(sizes):
        cv2.imwrite(str(img_dir / f"{i}.png"), np.full((h, w, 3), (30 * i, 200 - 20 * i, 90), np.uint8))
        (lbl_dir / f"{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.4 0.3\n")
    return img_dir


def test_rect_loader_turns_shuffle_off_and_keeps_each_batch_its_shape(tmp_path: Path, caplog) -> None:
    """Rect batches are built from images sorted by aspect ratio: shuffling would mix shapes in a batch."""
    img_dir = _image_folder(tmp_path, [(64, 32), (32, 64), (60, 40), (40, 60), (64, 64), (50, 30)])
    with caplog.at_level(logging.WARNING):
        shuffled, ds = create_dataloader(img_dir, 64, 2, 32, rect=True, pad=0.5, shuffle=True, progress=False)
    assert "shuffle turned off" in caplog.text
    ordered, _ = create_dataloader(img_dir, 64, 2, 32, rect=True, pad=0.5, progress=False)
    for k, (a, b) in enumerate(zip(shuffled, ordered, strict=True)):
        assert tuple(a[0].shape[2:]) == tuple(ds.batch_shapes[k])
        assert a[2] == b[2] and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_cached_images_are_each_samples_own_and_served_from_memory(tmp_path: Path) -> None:
    img_dir = _image_folder(tmp_path, [(64, 32), (40, 60), (50, 50), (30, 20)])
    plain = DetectionDataset(img_dir, 64, 2, progress=False)
    cached = DetectionDataset(img_dir, 64, 2, cache_images=True, progress=False)
    before = [cached[i] for i in range(len(cached))]
    for i in range(len(plain)):
        img, targets, path, shapes = plain[i]
        assert torch.equal(before[i][0], img) and torch.equal(before[i][1], targets)
        assert before[i][2:] == (path, shapes)
    for p in img_dir.iterdir():  # the cache is what is read: the files are not needed any more
        p.unlink()
    for i, item in enumerate(before):
        assert torch.equal(cached[i][0], item[0]) and cached[i][2] == item[2]


def test_eval_sample_reports_each_axis_own_resize_ratio(tmp_path: Path) -> None:
    """shapes = ((h0, w0), ((h / h0, w / w0), pad)) as the reference's loader: per-axis ratios of the
    integer resize (here 61 x 97 -> 40 x 64, so they differ), then the letterbox padding."""
    img_dir = _image_folder(tmp_path, [(97, 61)])
    ds = DetectionDataset(img_dir, 64, 1, progress=False)
    img, _, _, shapes = ds[0]
    _, (h0, w0), (h, w), _ = ds.load_image(0)
    assert (h0, w0) == cv2.imread(str(img_dir / "0.png")).shape[:2] == (61, 97)
    assert h / h0 != w / w0  # the case that tells the two ratios apart
    assert shapes[0] == (h0, w0) and shapes[1][0] == (h / h0, w / w0)
    pad_w, pad_h = shapes[1][1]
    assert tuple(img.shape[1:]) == (64, 64) and (pad_w, pad_h) == ((64 - w) / 2, (64 - h) / 2)
