"""Bad input, one test each: counted, reported once, never a crash mid-epoch, inputs never modified."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from yolov7lib.cli import main
from yolov7lib.data import create_dataloader, load_data_config
from yolov7lib.data import scan as scan_module
from yolov7lib.data.augment import letterbox
from yolov7lib.data.dataset import DetectionDataset
from yolov7lib.data.formats import img2label_path, parse_label_text, read_coco_json
from yolov7lib.data.scan import CACHE_SUFFIX, scan_source, verify_image

HYP = {  # every augmentation on, small geometric ranges, so an epoch exercises every path
    "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4, "degrees": 5.0, "translate": 0.1, "scale": 0.3,
    "shear": 2.0, "perspective": 0.0, "flipud": 0.5, "fliplr": 0.5, "mosaic": 0.7, "mixup": 0.5,
    "paste_in": 0.5, "copy_paste": 0.0,
}  # fmt: skip


def _digest(root: Path) -> dict[str, str]:
    """Content hashes of the user's files (our own label caches are not user files)."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(CACHE_SUFFIX)
    }


def _good_set(root: Path, n: int = 3) -> Path:
    """n small images with one labelled square each; returns the image folder."""
    img_dir = root / "images" / "train"
    img_dir.mkdir(parents=True)
    for i in range(n):
        img = np.full((48, 64, 3), 90, np.uint8)
        img[10:30, 20:40] = (40 * i, 200, 30)
        cv2.imwrite(str(img_dir / f"good{i}.png"), img)
        lf = img2label_path(img_dir / f"good{i}.png")
        lf.parent.mkdir(parents=True, exist_ok=True)
        lf.write_text("0 0.46875 0.416667 0.3125 0.416667\n")
    return img_dir


def _run_epochs(img_dir: Path, epochs: int = 2, workers: int = 0, nc: int = 2):
    loader, ds = create_dataloader(
        img_dir, 64, 2, 32, hyp=HYP, augment=True, workers=workers, nc=nc, shuffle=True, progress=False
    )
    seen = []
    for _ in range(epochs):
        for imgs, targets, paths, _ in loader:
            assert imgs.dtype == torch.uint8 and imgs.shape[1:] == (3, 64, 64)
            assert targets.shape[1] == 6 and bool(((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1)).all())
            seen += paths
    return ds, seen


def _jpeg_bytes() -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


BAD_IMAGES = {
    "truncated.jpg": (lambda: _jpeg_bytes()[: len(_jpeg_bytes()) // 2], "truncated"),
    "corrupt.jpg": (lambda: _jpeg_bytes()[:2] + bytes(range(40)) + _jpeg_bytes()[42:], "not an image"),
    "zero.jpg": (lambda: b"", "zero-byte file"),
    "text_named.png": (lambda: b"these are notes, not pixels\n" * 20, "not an image"),
    "tiny.png": (
        lambda: cv2.imencode(".png", np.zeros((5, 40, 3), np.uint8))[1].tobytes(),
        "under 10 pixels",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_corrupt_image_is_skipped_counted_and_reported_once(
    tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    img_dir = _good_set(tmp_path)
    make, reason = BAD_IMAGES[name]
    (img_dir / name).write_bytes(make())
    img2label_path(img_dir / name).write_text("0 0.5 0.5 0.2 0.2\n")
    before = _digest(tmp_path)
    with caplog.at_level(logging.INFO, logger="yolov7lib.data"):
        ds, seen = _run_epochs(img_dir)
    assert [Path(p).name for p, _ in ds.report.corrupt] == [name]
    assert reason in ds.report.corrupt[0][1]
    assert ds.report.usable == 3 and len(ds) == 3 and str(img_dir / name) not in seen and len(seen) == 6
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Scanning" in m and "1 corrupted" in m for m in messages) == 1
    assert sum(name in m for m in messages) == 1  # reported once, not once per epoch
    assert _digest(tmp_path) == before


def test_non_image_files_in_the_image_folder_are_counted(tmp_path: Path) -> None:
    img_dir = _good_set(tmp_path)
    (img_dir / "notes.txt").write_text("a note")
    (img_dir / "README").write_text("no suffix")
    before = _digest(tmp_path)
    ds, seen = _run_epochs(img_dir, epochs=1)
    assert ds.report.non_images == 2 and "2 non-image files ignored" in ds.report.line()
    assert len(seen) == 3 and _digest(tmp_path) == before


def _coloured_block(h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[4:16, 30:50] = (0, 0, 255)  # a red block (BGR) at x 30..50, y 4..16
    return img


def _write_variant(path: Path, kind: str) -> None:
    img = _coloured_block(40, 64)
    if kind == "gray":
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    elif kind == "rgba":
        cv2.imwrite(str(path), np.dstack([img, np.full((40, 64), 128, np.uint8)]))
    elif kind == "png16":
        cv2.imwrite(str(path), img.astype(np.uint16) * 257)
    elif kind == "exif_rotated":  # pixels stored turned, EXIF orientation 6 turns them back for display
        stored = cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(stored[:, :, ::-1]).save(path, quality=95, exif=exif.tobytes())


@pytest.mark.parametrize(("kind", "name"), [("gray", "g.png"), ("rgba", "a.png"), ("png16", "d.png"),
                                            ("exif_rotated", "e.jpg")])  # fmt: skip
def test_image_variants_load_as_displayed_3_channel_uint8(tmp_path: Path, kind: str, name: str) -> None:
    img_dir = tmp_path / "images" / "train"
    img_dir.mkdir(parents=True)
    path = img_dir / name
    _write_variant(path, kind)
    lf = img2label_path(path)
    lf.parent.mkdir(parents=True)
    lf.write_text(f"0 {40 / 64} {10 / 40} {20 / 64} {12 / 40}\n")  # the block, in displayed coordinates
    before = _digest(tmp_path)
    loader, ds = create_dataloader(img_dir, 64, 1, 32, progress=False)
    assert ds.report.usable == 1 and tuple(ds.shapes[0]) == (64, 40)  # displayed width, height
    imgs, targets, _, shapes = next(iter(loader))
    assert imgs.dtype == torch.uint8 and imgs.shape == (1, 3, 64, 64)
    (h0, w0), (_, (_, padh)) = shapes[0]
    assert (h0, w0) == (40, 64)
    x, y, w, h = targets[0, 2:].numpy() * 64
    x1, y1, x2, y2 = round(x - w / 2), round(y - h / 2), round(x + w / 2), round(y + h / 2)
    block = imgs[0, :, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].float().mean((1, 2)).numpy()
    outside = imgs[0, :, y2 + 2 : round(64 - padh) - 1, :].float().mean((1, 2)).numpy()  # below it, no pad
    if kind == "gray":
        assert block[0] == block[1] == block[2] and block[0] > outside[0] + 40  # grey, brighter than around
    else:
        assert block[0] > 200 and block[1] < 60 and block[2] < 60, block  # red, in RGB order
    assert _digest(tmp_path) == before


ROW_CASES = {
    "wrong number of columns": "0 0.5 0.5 0.2",
    "not a number": "0 0.5 abc 0.2 0.2",
    "NaN or infinite value": "0 nan 0.5 0.2 0.2",
    "coordinate outside [0, 1]": "1 1.5 0.5 0.2 0.2",
    "zero or negative size": "0 0.5 0.5 -0.1 0.2",
    "class id not an integer in [0, 2)": "7 0.5 0.5 0.2 0.2",
    "duplicate row": "0 0.46875 0.416667 0.3125 0.416667",  # repeats the good row of _good_set
}
ROW_CASES_EXTRA = {"zero size": ("0 0.5 0.5 0 0.2", "zero or negative size"), "fractional class": (
    "0.5 0.5 0.5 0.2 0.2", "class id not an integer in [0, 2)")}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ROW_CASES) + sorted(ROW_CASES_EXTRA))
def test_bad_label_row_is_dropped_counted_and_the_rest_kept(tmp_path: Path, case: str) -> None:
    row, reason = (ROW_CASES[case], case) if case in ROW_CASES else ROW_CASES_EXTRA[case]
    img_dir = _good_set(tmp_path)
    lf = img2label_path(img_dir / "good1.png")
    lf.write_text(lf.read_text() + row + "\n")
    before = _digest(tmp_path)
    ds, seen = _run_epochs(img_dir, epochs=1)
    assert ds.report.dropped_rows == {reason: 1}
    assert ds.report.row_problems == [(str(lf), f"dropped 1 row (1 {reason})")]
    assert [len(lb) for lb in ds.labels] == [1, 1, 1]  # the good row of the file is kept
    assert ds.report.duplicate_files == (reason == "duplicate row")
    assert len(seen) == 3 and _digest(tmp_path) == before


def test_parse_label_text_reads_polygons_as_their_box() -> None:
    parsed = parse_label_text("2 0.1 0.2 0.5 0.2 0.3 0.6\n0 0.5 0.5 0.2 0.2\n", nc=3)
    np.testing.assert_allclose(parsed.labels[0], [2, 0.3, 0.4, 0.4, 0.4], atol=1e-6)
    assert len(parsed.segments) == 2 and parsed.segments[1].shape == (4, 2)  # the box row as a rectangle


def test_missing_label_file_is_a_background(tmp_path: Path) -> None:
    img_dir = _good_set(tmp_path)
    img2label_path(img_dir / "good2.png").unlink()
    before = _digest(tmp_path)
    loader, ds = create_dataloader(img_dir, 64, 3, 32, progress=False)
    _, targets, paths, _ = next(iter(loader))
    assert ds.report.missing == 1 and ds.report.labelled == 2 and "1 missing" in ds.report.line()
    assert paths[2].endswith("good2.png") and (targets[:, 0] == 2).sum() == 0
    assert _digest(tmp_path) == before


def test_a_folder_where_the_label_file_should_be_skips_its_image_with_the_reason(tmp_path: Path) -> None:
    """labels/train/good2.txt/ a directory: its image's labels cannot be read, so the image is skipped and
    reported like an unreadable label file (before: counted as a background and trained without boxes)."""
    img_dir = _good_set(tmp_path)
    label = img2label_path(img_dir / "good2.png")
    label.unlink()
    label.mkdir()
    res = scan_source(img_dir, nc=2, cache=False, progress=False)
    assert res.report.missing == 0 and res.report.usable == 2
    assert [(Path(p).name, "unreadable label file" in why) for p, why in res.report.corrupt] == [
        ("good2.png", True)
    ]
    assert str(label) in res.report.corrupt[0][1] and "directory" in res.report.corrupt[0][1].lower()


def test_images_that_share_a_label_file_are_reported(tmp_path: Path, capsys) -> None:
    """good0.png and good0.jpg both read labels/train/good0.txt, right for at most one of them (before:
    nothing said so; `yolov7 data check` listed both as labelled)."""
    img_dir = _good_set(tmp_path)
    cv2.imwrite(str(img_dir / "good0.jpg"), np.zeros((48, 64, 3), np.uint8))
    (tmp_path / "data.yaml").write_text(f"train: {img_dir}\nnc: 2\n")
    assert main(["data", "check", str(tmp_path / "data.yaml")]) == 0
    out = capsys.readouterr().out
    assert "1 label files read for several images" in out
    assert f"{img2label_path(img_dir / 'good0.png')}: good0.jpg, good0.png" in out
    cached = scan_source(img_dir, nc=2, progress=False)
    again = scan_source(img_dir, nc=2, progress=False)  # from the cache written just before
    assert cached.cache_file is not None and again.report.shared_labels == cached.report.shared_labels != []


def test_missing_image_folder_is_a_clear_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "images" / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        create_dataloader(missing, 64, 2, 32, progress=False)
    (tmp_path / "data.yaml").write_text("train: images/nowhere\nval: images/nowhere\nnc: 1\n")
    with pytest.raises(FileNotFoundError, match="images/nowhere"):
        load_data_config(tmp_path / "data.yaml")


def test_a_data_set_folder_given_for_its_data_yaml_names_the_file_to_give(tmp_path: Path) -> None:
    """`yolov7 data check data/shapes` said "data config 'data/shapes' not found" of a folder that exists."""
    with pytest.raises(FileNotFoundError, match=r"is a folder, not a data\.yaml, and holds no data\.yaml"):
        load_data_config(tmp_path)
    (tmp_path / "data.yaml").write_text("train: images\nval: images\nnc: 1\n")
    with pytest.raises(FileNotFoundError, match=re.escape(f"give {str(tmp_path / 'data.yaml')!r}")):
        load_data_config(tmp_path)


def test_a_data_yaml_given_as_an_image_source_points_to_its_splits(tmp_path: Path) -> None:
    """create_dataloader takes one split; a data.yaml read as a list file found no images, and the error
    said only that ('no images found in .../data.yaml'). Its splits load."""
    img_dir = _good_set(tmp_path)
    data = tmp_path / "data.yaml"
    data.write_text("train: images/train\nval: images/train\nnc: 1\n")
    with pytest.raises(FileNotFoundError, match=r"pass one of its splits, e\.g\. .*load_data_config"):
        create_dataloader(data, 64, 2, 32, progress=False)
    loader, _ = create_dataloader(load_data_config(data).splits["train"], 64, 2, 32, progress=False)
    assert len(loader.dataset) == 3 and img_dir.is_dir()


def test_image_that_breaks_after_the_scan_is_replaced_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    img_dir = _good_set(tmp_path, 4)
    img2label_path(img_dir / "good2.png").write_text("0 0.5 0.5 0.25 0.25\n1 0.2 0.2 0.1 0.1\n")
    loader, _ = create_dataloader(img_dir, 64, 2, 32, hyp=HYP, augment=True, progress=False)
    rect_loader, rect_ds = create_dataloader(img_dir, 64, 4, 32, rect=True, progress=False)
    (img_dir / "good1.png").write_bytes(b"")  # the file breaks after the scan (the test's own file)
    with caplog.at_level(logging.WARNING, logger="yolov7lib.data"):
        for _ in range(2):
            for imgs, _, _, _ in loader:
                assert imgs.shape[0] == 2
        imgs, targets, paths, _ = next(iter(rect_loader))
    assert sum("no longer readable" in r.getMessage() for r in caplog.records) == 2  # once per data set
    k = rect_ds.img_files.index(str(img_dir / "good1.png"))
    assert paths[k].endswith("good2.png") and (targets[:, 0] == k).sum() == 2  # good2's image, its labels
    assert torch.equal(imgs[k], imgs[k + 1])


def test_label_cache_is_reused_and_invalidated_by_a_changed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    img_dir = _good_set(tmp_path)
    first = scan_source(img_dir, nc=2, progress=False)
    assert first.cache_file == tmp_path / "labels" / f"train{CACHE_SUFFIX}"

    def no_scan(path: str):
        raise AssertionError("scanned again although nothing changed")

    monkeypatch.setattr(scan_module, "verify_image", no_scan)
    again = scan_source(img_dir, nc=2, progress=False)  # read from the cache: no image is opened
    assert [lb.tolist() for lb in again.labels] == [lb.tolist() for lb in first.labels]
    assert again.img_files == first.img_files and (again.shapes == first.shapes).all()
    monkeypatch.undo()
    img2label_path(img_dir / "good0.png").write_text("1 0.5 0.5 0.25 0.25\n1 0.2 0.2 0.1 0.1\n")
    changed = scan_source(img_dir, nc=2, progress=False)
    assert changed.labels[0][:, 0].tolist() == [1.0, 1.0]
    # an edit that keeps the file's size (class 1 -> 0) is seen through its modification time
    label = img2label_path(img_dir / "good0.png")
    stamp = label.stat().st_mtime_ns
    label.write_text("0 0.5 0.5 0.25 0.25\n0 0.2 0.2 0.1 0.1\n")
    os.utime(label, ns=(stamp + 10**9, stamp + 10**9))
    assert scan_source(img_dir, nc=2, progress=False).labels[0][:, 0].tolist() == [0.0, 0.0]
    # the class count is part of the key: rows of class 1 are dropped when the data set has one class
    label.write_text("1 0.5 0.5 0.25 0.25\n0 0.2 0.2 0.1 0.1\n")
    assert scan_source(img_dir, nc=2, progress=False).labels[0][:, 0].tolist() == [1.0, 0.0]
    assert scan_source(img_dir, nc=1, progress=False).labels[0][:, 0].tolist() == [0.0]


def test_a_cached_coco_json_scan_does_not_parse_the_json_until_it_or_an_image_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the json was parsed and turned into label rows before the cache was looked at, so a cached
    scan of a 275 MB json (20,000 images) still took 19.6 s of the uncached 31.6 s (COCO's is 448 MB)."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 32} for i in range(3)]
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [4, 4, 10, 10], "area": 100, "iscrowd": 0}]
    path = _coco(tmp_path, images, anns)
    img_dir = tmp_path / "images" / "val"
    img_dir.mkdir(parents=True)
    for im in images:
        cv2.imwrite(str(img_dir / im["file_name"]), np.full((32, 32, 3), 60, np.uint8))
    parsed: list[Path] = []
    read = scan_module.read_coco_json
    monkeypatch.setattr(scan_module, "read_coco_json", lambda p, d=None: parsed.append(p) or read(p, d))
    first = scan_source(path, nc=1, progress=False)
    again = scan_source(path, nc=1, progress=False)
    assert len(parsed) == 1 and again.cache_file == first.cache_file
    assert again.img_files == first.img_files and again.image_ids == first.image_ids == [0, 1, 2]
    assert [lb.tolist() for lb in again.labels] == [lb.tolist() for lb in first.labels]
    cv2.imwrite(str(img_dir / "2.png"), np.full((40, 32, 3), 60, np.uint8))  # an image changes
    assert scan_source(path, nc=1, progress=False).shapes[2].tolist() == [32, 40] and len(parsed) == 2
    anns[0]["bbox"] = [0, 0, 16, 16]  # the json changes
    _coco(tmp_path, images, anns)
    assert scan_source(path, nc=1, progress=False).labels[1][0, 3] == pytest.approx(0.5)
    assert len(parsed) == 3
    assert len(scan_source(path, nc=1, progress=False).labels[1]) == 1 and len(parsed) == 3


def test_label_cache_sees_an_edit_that_keeps_size_and_modification_time(tmp_path: Path) -> None:
    # `touch -r old new`, `cp -p`, `rsync -t` or an unzip over the set restore a modification time: the
    # inode's change time, which no user tool sets, still tells the cached scan from the files
    img_dir = _good_set(tmp_path)
    label = img2label_path(img_dir / "good0.png")
    label.write_text("0 0.5 0.5 0.25 0.25\n")
    assert scan_source(img_dir, nc=2, progress=False).labels[0][:, 0].tolist() == [0.0]
    stat = label.stat()
    label.write_text("1 0.5 0.5 0.25 0.25\n")  # class 0 -> 1, same size
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # touch -r: the old time back
    assert label.stat().st_size == stat.st_size and label.stat().st_mtime_ns == stat.st_mtime_ns
    truth = scan_source(img_dir, nc=2, cache=False, progress=False).labels[0][:, 0].tolist()
    assert truth == [1.0]
    assert scan_source(img_dir, nc=2, progress=False).labels[0][:, 0].tolist() == truth


def test_cache_never_overwrites_a_user_file_nor_needs_a_writable_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YOLOV7LIB_CACHE_DIR", str(tmp_path / "user_cache"))
    data = tmp_path / "data"
    img_dir = _good_set(data)
    foreign = data / "labels" / f"train{CACHE_SUFFIX}"
    foreign.write_text("a user's own file that happens to have this name")
    before = _digest(data) | {str(foreign): hashlib.sha256(foreign.read_bytes()).hexdigest()}
    res = scan_source(img_dir, progress=False)
    assert res.cache_file is not None and res.cache_file.parent == tmp_path / "user_cache"
    assert foreign.read_text().startswith("a user's own file")
    foreign.unlink()

    real_mkstemp = scan_module.tempfile.mkstemp

    def read_only_data(*args, dir=None, **kwargs):  # the data folder refuses new files
        if Path(dir).is_relative_to(data):
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(scan_module.tempfile, "mkstemp", read_only_data)
    img2label_path(img_dir / "good0.png").write_text("0 0.5 0.5 0.5 0.5\n")  # force a new scan
    res = scan_source(img_dir, progress=False)
    assert res.cache_file is not None and res.cache_file.parent == tmp_path / "user_cache"
    assert not any(p.name.endswith(CACHE_SUFFIX) for p in data.rglob("*"))
    assert all(hashlib.sha256(Path(p).read_bytes()).hexdigest() == h for p, h in before.items()
               if Path(p).exists() and "good0" not in p)  # fmt: skip


def test_data_check_cli_reports_and_exits_by_what_is_usable(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    img_dir = _good_set(tmp_path)
    (img_dir / "zero.jpg").write_bytes(b"")
    img2label_path(img_dir / "good0.png").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n")
    img2label_path(img_dir / "good2.png").unlink()
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/train\nnc: 1\nnames: [block]\n")
    before = _digest(tmp_path)
    assert main(["data", "check", str(tmp_path / "data.yaml")]) == 0
    out = capsys.readouterr().out
    assert "2 found, 1 missing, 0 empty, 1 corrupted" in out
    assert f"{img_dir / 'zero.jpg'}: zero-byte file" in out
    assert "1 label files with duplicate rows" in out and "1 duplicate row" in out
    assert _digest(tmp_path) == before and not list(
        tmp_path.rglob(f"*{CACHE_SUFFIX}")
    )  # check writes nothing
    for p in img_dir.glob("good*.png"):
        p.write_bytes(b"broken")
    assert main(["data", "check", str(tmp_path / "data.yaml")]) == 1
    assert "no usable image" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"no usable image in {re.escape(str(img_dir))}: ") as err:
        DetectionDataset([img_dir], img_size=64, cache_labels=False)  # a list of folders, named as paths
    assert "PosixPath" not in str(err.value)
    (tmp_path / "data.yaml").write_text("train: images/gone\nnc: 1\n")
    assert main(["data", "check", str(tmp_path / "data.yaml")]) == 1
    assert "images/gone" in capsys.readouterr().err


def test_data_check_names_the_label_files_that_no_image_reads(tmp_path: Path, capsys) -> None:
    """An image renamed after labelling trains as a background and its label file is read by nothing;
    before, `data check` said nothing of it. Label files of another split's images, a labelling tool's
    classes.txt, and other files beside images in a folder without images/ are not reported."""
    from yolov7lib.data.check import orphan_label_files

    img_dir = _good_set(tmp_path, n=4)
    val_dir = tmp_path / "images" / "val"
    val_dir.mkdir()
    (img_dir / "good3.png").rename(val_dir / "good3.png")  # its label stays in labels/train: orphaned
    (img_dir / "good1.png").rename(img_dir / "renamed1.png")
    img2label_path(img_dir / "classes.txt").write_text("block\n")
    flat = tmp_path / "flat"  # labels beside images (no images/ folder): notes.txt is not a label
    flat.mkdir()
    cv2.imwrite(str(flat / "a.png"), np.full((32, 32, 3), 90, np.uint8))
    (flat / "notes.txt").write_text("not a label\n")
    data = tmp_path / "data.yaml"
    data.write_text("train: [images/train, flat]\nval: images/val\nnc: 1\nnames: [block]\n")
    labels = tmp_path / "labels" / "train"
    assert orphan_label_files(data) == [labels / "good1.txt", labels / "good3.txt"]
    assert main(["data", "check", str(data)]) == 0
    out = capsys.readouterr().out
    assert "2 label files belong to no image of the data set" in out and f"  {labels / 'good1.txt'}" in out
    img2label_path(val_dir / "good3.png").parent.mkdir(parents=True)
    (labels / "good3.txt").rename(img2label_path(val_dir / "good3.png"))
    (labels / "good1.txt").rename(labels / "renamed1.txt")
    assert orphan_label_files(data) == []
    assert main(["data", "check", str(data)]) == 0
    assert "belong to no image" not in capsys.readouterr().out


def test_check_dataset_scans_a_json_split_and_counts_each_kind_of_background(tmp_path: Path) -> None:
    """A folder split and a COCO json split: per split, the counts line names images, usable, backgrounds by
    kind (here train: good2 without a label file, good1 with an empty one; val: a.png without annotations),
    files with duplicate rows (good0) and corrupt images, then one line per problem."""
    from yolov7lib.data.check import check_dataset, format_reports

    img_dir = _good_set(tmp_path, n=4)
    img2label_path(img_dir / "good0.png").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n")
    img2label_path(img_dir / "good1.png").write_text("")
    img2label_path(img_dir / "good2.png").unlink()
    (tmp_path / "images" / "val").mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / "images" / "val" / name), np.full((32, 48, 3), 120, np.uint8))
    images = [
        {"id": i + 1, "file_name": n, "width": 48, "height": 32} for i, n in enumerate(("a.png", "b.png"))
    ]
    _coco(
        tmp_path, images, [{"id": 1, "image_id": 2, "category_id": 3, "bbox": [12, 8, 24, 16], "iscrowd": 0}]
    )
    (tmp_path / "data.yaml").write_text("train: images/train\nval: annotations/instances_val.json\nnc: 1\n")
    lines = format_reports(check_dataset(tmp_path / "data.yaml"))
    assert lines[1] == (
        "train: 4 images, 4 usable, 2 backgrounds (1 without label file, 1 with an empty one, 0 with every "
        "row dropped), 1 label files with duplicate rows, 0 corrupt"
    )
    duplicates = img2label_path(img_dir / "good0.png")
    assert lines[2] == f"train:   label rows dropped: {duplicates}: dropped 1 row (1 duplicate row)"
    assert lines[3].startswith("val: Scanning") and "instances_val.json" in lines[3]
    assert lines[4:] == [
        "val: 2 images, 2 usable, 1 backgrounds (0 without label file, 1 with an empty one, 0 with every "
        "row dropped), 0 label files with duplicate rows, 0 corrupt"
    ]


def test_labels_are_found_from_a_relative_path_inside_the_data_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data.yaml used from inside its own folder gives paths like images/train/a.png: same labels."""
    _good_set(tmp_path)
    assert img2label_path(Path("images", "train", "a.png")) == Path("labels", "train", "a.txt")
    assert img2label_path(Path("my_images", "a.png")) == Path("my_images", "a.txt")  # not a component
    outside = scan_source(tmp_path / "images" / "train", nc=2, cache=False, progress=False)
    monkeypatch.chdir(tmp_path)
    inside = scan_source(Path("images", "train"), nc=2, cache=False, progress=False)
    assert inside.report.labelled == outside.report.labelled == 3 and inside.report.missing == 0
    assert all(np.array_equal(a, b) for a, b in zip(inside.labels, outside.labels, strict=True))


def test_a_set_without_any_label_file_is_a_warning_that_names_the_labels_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    img_dir = _good_set(tmp_path)
    for lf in (tmp_path / "labels").rglob("*.txt"):
        lf.unlink()
    with caplog.at_level(logging.INFO, logger="yolov7lib.data"):
        result = scan_source(img_dir, nc=2, cache=False, progress=False)
    assert result.report.missing == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no label file for any of the 3 images" in m and "labels/" in m for m in warnings)


def test_the_scan_judges_and_sizes_images_as_the_loader_reads_them(tmp_path: Path) -> None:
    """A PNG with an EXIF rotation and a PNG cut before its end: the scan keeps an image exactly when
    OpenCV (the loader) decodes it, with the size OpenCV gives it, whatever this OpenCV version does."""
    img_dir = _good_set(tmp_path)
    rotated = img_dir / "rotated.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(rotated, exif=exif)
    cut = img_dir / "cut.png"
    cut.write_bytes((img_dir / "good0.png").read_bytes()[:-12])  # IEND chunk missing
    for path in (rotated, cut):
        img2label_path(path).write_text("0 0.5 0.5 0.25 0.25\n")
    result = scan_source(img_dir, nc=2, cache=False, progress=False)
    kept = dict(zip(result.img_files, result.shapes.tolist(), strict=True))
    for path in (rotated, cut):
        decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert (str(path) in kept) == (decoded is not None)
        if decoded is not None:
            assert kept[str(path)] == [decoded.shape[1], decoded.shape[0]]  # width, height
    assert str(rotated) in kept  # a valid PNG, rotated or not


def test_a_training_set_without_any_label_file_is_refused_but_evaluation_may_run(tmp_path: Path) -> None:
    """As the reference: with no label file at all (labels/ missing or misplaced), nothing to train on."""
    img_dir = _good_set(tmp_path)
    for label in (tmp_path / "labels").rglob("*.txt"):
        label.unlink()
    with pytest.raises(
        ValueError, match=r"no label file for any of the 3 images in .*images/train: training"
    ):
        create_dataloader(img_dir, 64, 2, 32, hyp=HYP, augment=True, progress=False)
    _, ds = create_dataloader(img_dir, 64, 2, 32, progress=False)
    assert len(ds) == 3 and ds.report.missing == 3  # backgrounds, to evaluate a detector's false positives


def test_a_training_set_without_any_object_is_refused_naming_why(tmp_path: Path) -> None:
    """Label files whose every row is dropped (here 1-based class ids in a one-class set) or that are all
    empty leave nothing to learn: refused with the scan's counts, not trained on backgrounds alone."""
    img_dir = _good_set(tmp_path)
    labels = sorted((tmp_path / "labels").rglob("*.txt"))
    for label in labels:
        label.write_text(label.read_text().replace("0 ", "1 ", 1))  # classes 1.. where nc is 1
    with pytest.raises(ValueError, match=r"no object .* 3 label rows dropped \(3 class id not an integer"):
        create_dataloader(img_dir, 64, 2, 32, hyp=HYP, augment=True, nc=1, progress=False)
    for label in labels:
        label.write_text("")
    with pytest.raises(ValueError, match=r"no object in the 3 images of .*images/train.* 3 empty"):
        create_dataloader(img_dir, 64, 2, 32, hyp=HYP, augment=True, nc=1, progress=False)
    _, ds = create_dataloader(img_dir, 64, 2, 32, nc=1, progress=False)  # evaluation may still run
    assert len(ds) == 3 and ds.report.backgrounds == 3


def test_a_very_thin_image_loads_at_a_small_size_with_its_box_in_place(tmp_path: Path) -> None:
    """12 x 1000 pixels at img 64 is 0.77 pixels high once resized: at least one row is kept (OpenCV's
    resize refuses a zero side), in the loader and in the letterbox of `yolov7 detect`."""
    img_dir = tmp_path / "images" / "train"
    img_dir.mkdir(parents=True)
    for name, (h, w) in {"strip": (12, 1000), "square": (64, 64)}.items():
        cv2.imwrite(str(img_dir / f"{name}.png"), np.full((h, w, 3), 90, np.uint8))
        lf = img2label_path(img_dir / f"{name}.png")
        lf.parent.mkdir(parents=True, exist_ok=True)
        lf.write_text("0 0.25 0.5 0.1 0.5\n")
    ds = DetectionDataset(img_dir, img_size=64, nc=1, progress=False)  # evaluation: square letterbox
    img, targets, _, shapes = ds[ds.img_files.index(str(img_dir / "strip.png"))]
    assert tuple(img.shape) == (3, 64, 64) and shapes[0] == (12, 1000)
    np.testing.assert_allclose(targets[0, 1:4].numpy(), [0, 0.25, 0.5], atol=1e-6)  # x, y as labelled
    train = DetectionDataset(img_dir, img_size=64, augment=True, hyp=HYP, nc=1, progress=False)
    assert all(tuple(train[(i, s)][0].shape) == (3, 64, 64) for i in range(2) for s in range(4))
    boxed, _, _ = letterbox(np.zeros((10, 2000, 3), np.uint8), 64, auto=False)  # 0.32 rows: one
    assert boxed.shape == (64, 64, 3)


def test_label_and_list_files_saved_with_a_byte_order_mark_read_as_without(tmp_path: Path) -> None:
    """Windows editors save UTF-8 with a BOM: it is not part of the first row or the first path."""
    img_dir = _good_set(tmp_path)
    plain = DetectionDataset(img_dir, img_size=64, nc=1, cache_labels=False, progress=False)
    for label in (tmp_path / "labels").rglob("*.txt"):
        label.write_bytes(b"\xef\xbb\xbf" + label.read_bytes().replace(b"\n", b"\r\n"))
    listing = tmp_path / "train.txt"
    listing.write_bytes("\ufeff" .encode() + "".join(f"./images/train/{p.name}\r\n" for p in
                        sorted(img_dir.iterdir())).encode())  # fmt: skip
    for source in (img_dir, listing):
        ds = DetectionDataset(source, img_size=64, nc=1, cache_labels=False, progress=False)
        assert not ds.report.dropped_rows and not ds.report.corrupt and ds.report.labelled == 3
        assert [Path(f).name for f in ds.img_files] == [Path(f).name for f in plain.img_files]
        assert all(np.array_equal(a, b) for a, b in zip(ds.labels, plain.labels, strict=True))


def test_a_missing_coco_tree_is_named_with_its_layout(tmp_path: Path) -> None:
    """Nothing is downloaded: a data.yaml naming COCO's absent split lists says what goes where."""
    (tmp_path / "coco.yaml").write_text("train: ./coco/train2017.txt\nval: ./coco/val2017.txt\nnc: 80\n")
    with pytest.raises(FileNotFoundError, match=r"train path './coco/train2017.txt' does not exist") as err:
        load_data_config(tmp_path / "coco.yaml")
    assert "labels/{train2017,val2017}" in str(err.value) and "annotations/instances_val2017.json" in str(
        err.value
    )
    (tmp_path / "mine.yaml").write_text("train: images/mine\nnc: 1\n")
    with pytest.raises(FileNotFoundError) as err:
        load_data_config(tmp_path / "mine.yaml")
    assert "COCO" not in str(err.value)  # other data sets are not told about COCO


def test_polygon_box_takes_its_height_from_the_y_extent() -> None:
    """A polygon wider than tall: its box spans its x and y extents (0.6 wide, 0.2 tall), centred on them."""
    parsed = parse_label_text("1 0.1 0.3 0.7 0.3 0.7 0.5 0.1 0.5\n", nc=2)
    np.testing.assert_allclose(parsed.labels, [[1, 0.4, 0.4, 0.6, 0.2]], atol=1e-6)


def test_a_box_row_among_polygons_becomes_its_own_rectangle() -> None:
    """The rectangle of a box row (x 0.5, y 0.5, w 0.4, h 0.2) is its four corners (top left, top right,
    bottom right, bottom left), so the box of that polygon is the row itself."""
    parsed = parse_label_text("0 0.1 0.1 0.3 0.1 0.2 0.3\n1 0.5 0.5 0.4 0.2\n", nc=2)
    rect = parsed.segments[1]
    np.testing.assert_allclose(rect, [[0.3, 0.4], [0.7, 0.4], [0.7, 0.6], [0.3, 0.6]], atol=1e-6)
    (x1, y1), (x2, y2) = rect.min(0), rect.max(0)
    np.testing.assert_allclose(
        [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], parsed.labels[1, 1:], atol=1e-6
    )


def test_two_classes_on_the_same_box_are_both_kept() -> None:
    """Only a repeated row (class included) is a duplicate; another class on the same box is an object."""
    parsed = parse_label_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n", nc=2)
    assert parsed.labels[:, 0].tolist() == [0.0, 1.0]
    assert dict(parsed.dropped) == {"duplicate row": 1}


def _image_with_label(img_dir: Path, name: str, label: str, h: int = 40, w: int = 48) -> Path:
    img_dir.mkdir(parents=True, exist_ok=True)
    path = img_dir / name
    cv2.imwrite(str(path), np.full((h, w, 3), 120, np.uint8))
    lf = img2label_path(path)
    lf.parent.mkdir(parents=True, exist_ok=True)
    lf.write_text(label)
    return path


def test_blank_line_label_file_is_counted_as_empty(tmp_path: Path) -> None:
    """A label file holding only blank lines has no row: an empty label file, a background."""
    img_dir = tmp_path / "images" / "train"
    _image_with_label(img_dir, "a.png", "\n\n")
    _image_with_label(img_dir, "b.png", "0 0.5 0.5 0.2 0.2\n")
    report = scan_source(img_dir, nc=1, cache=False, progress=False).report
    assert (report.labelled, report.empty, report.missing, report.emptied) == (2, 1, 0, 0)
    assert report.backgrounds == 1


def test_polygons_survive_the_label_cache(tmp_path: Path) -> None:
    """A box-only image before a polygon image: the cached polygons come back on the right image and row."""
    img_dir = tmp_path / "images" / "train"
    _image_with_label(img_dir, "a.png", "0 0.5 0.5 0.2 0.2\n0 0.3 0.3 0.1 0.1\n")
    _image_with_label(img_dir, "b.png", "1 0.1 0.1 0.5 0.1 0.3 0.4\n0 0.6 0.6 0.2 0.2\n")
    first = scan_source(img_dir, nc=2, progress=False)
    assert first.cache_file is not None and first.cache_file.is_file()
    again = scan_source(img_dir, nc=2, progress=False)
    assert again.cache_file == first.cache_file  # read back from the cache
    assert again.segments[0] == [] and len(again.segments[1]) == 2
    for got, want in zip(again.segments[1], first.segments[1], strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(again.segments[1][0], [[0.1, 0.1], [0.5, 0.1], [0.3, 0.4]], atol=1e-6)


def test_the_label_cache_splits_polygon_points_only_for_images_with_polygons(
    tmp_path: Path, monkeypatch
) -> None:
    """Reading the cache made one empty polygon array per box of images without polygons and threw it
    away (before: 1.5M of them for 20,000 images of 75 boxes, 3 of the 4 s of a cached scan)."""
    img_dir = tmp_path / "images" / "train"
    for i in range(5):
        _image_with_label(img_dir, f"a{i}.png", "0 0.5 0.5 0.2 0.2\n" + "0 0.3 0.3 0.1 0.1\n" * (i > 0))
    _image_with_label(img_dir, "b.png", "1 0.1 0.1 0.5 0.1 0.3 0.4\n0 0.6 0.6 0.2 0.2\n")
    first = scan_source(img_dir, nc=2, progress=False)
    pieces: list[int] = []
    split = np.split
    monkeypatch.setattr(np, "split", lambda a, at, *r: pieces.append(len(at) + 1) or split(a, at, *r))
    again = scan_source(img_dir, nc=2, progress=False)
    assert again.cache_file == first.cache_file
    assert pieces == [6, 2]  # label rows per image (6 images), polygon points per row of b.png (2 rows)
    assert [len(s) for s in again.segments] == [0, 0, 0, 0, 0, 2]
    for got, want in zip(again.segments[5], first.segments[5], strict=True):
        np.testing.assert_array_equal(got, want)


def test_jpeg_sizes_follow_every_exif_rotation_as_the_loader_decodes_it(tmp_path: Path) -> None:
    """EXIF orientations 5-8 turn the image by 90 degrees (with or without a mirror): the displayed size,
    which OpenCV's decoder (the loader's) also gives, has its sides swapped; 1-4 keep them."""
    stored = np.random.default_rng(0).integers(0, 255, (40, 64, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}.jpg"
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(stored).save(path, quality=90, exif=exif.tobytes())
        decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert verify_image(str(path)) == (decoded.shape[1], decoded.shape[0]), orientation
        assert verify_image(str(path)) == ((40, 64) if orientation >= 5 else (64, 40)), orientation


def _coco(tmp_path: Path, images: list[dict], annotations: list[dict]) -> Path:
    doc = {"images": images, "annotations": annotations, "categories": [{"id": 3, "name": "box"}]}
    path = tmp_path / "annotations" / "instances_val.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_coco_image_without_a_height_has_its_boxes_counted_not_a_crash(tmp_path: Path) -> None:
    """An image entry with a width but no height: its box cannot be normalised, so it is dropped and counted
    by the row rules; the other image's box is normalised by its own width and height."""
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 64},
        {"id": 2, "file_name": "b.jpg", "width": 64, "height": 32},
    ]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 8, 8], "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 3, "bbox": [8, 4, 16, 8], "iscrowd": 0},
    ]
    split = read_coco_json(_coco(tmp_path, images, anns), images_dir=tmp_path)
    parsed = [parse_label_text(t, nc=1) for t in split.label_texts]
    assert len(parsed[0].labels) == 0 and sum(parsed[0].dropped.values()) == 1
    np.testing.assert_allclose(parsed[1].labels, [[0, 16 / 64, 8 / 32, 16 / 64, 8 / 32]], atol=1e-6)


def test_coco_image_ids_stay_with_their_images_when_one_is_corrupt(tmp_path: Path) -> None:
    """The first image (by file name) is unreadable and skipped: the kept images keep their own COCO ids."""
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    (img_dir / "a.png").write_bytes(b"")
    for name in ("b.png", "c.png"):
        cv2.imwrite(str(img_dir / name), np.full((32, 48, 3), 120, np.uint8))
    images = [{"id": i, "file_name": n, "width": 48, "height": 32} for i, n in ((10, "a.png"), (20, "b.png"),
                                                                                (30, "c.png"))]  # fmt: skip
    anns = [{"id": 1, "image_id": 30, "category_id": 3, "bbox": [12, 8, 24, 16], "iscrowd": 0}]
    res = scan_source(_coco(tmp_path, images, anns), nc=1, cache=False, images_dir=img_dir, progress=False)
    assert [Path(f).name for f in res.img_files] == ["b.png", "c.png"]
    assert res.image_ids == [20, 30]
    assert [len(lb) for lb in res.labels] == [0, 1]  # c.png's box is on c.png, id 30
