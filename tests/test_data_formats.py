"""Data set formats: data.yaml resolution, image lists, label paths, COCO json read directly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from yolov7lib.data import DetectionDataset, load_data_config, read_coco_json
from yolov7lib.data.formats import img2label_path, list_image_files


def _image(path: Path, h: int = 40, w: int = 60, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))
    return path


def _label(img: Path, rows: str) -> Path:
    lf = img2label_path(img)
    lf.parent.mkdir(parents=True, exist_ok=True)
    lf.write_text(rows)
    return lf


def test_label_path_replaces_the_last_images_folder() -> None:
    sep = os.sep
    p = Path(f"{sep}data{sep}images{sep}set{sep}images{sep}train{sep}a.b.jpg")
    assert img2label_path(p) == Path(f"{sep}data{sep}images{sep}set{sep}labels{sep}train{sep}a.b.txt")
    assert img2label_path(f"{sep}x{sep}pics{sep}a.png") == Path(f"{sep}x{sep}pics{sep}a.txt")


def test_image_sources_folder_list_file_and_lists(tmp_path: Path) -> None:
    a = _image(tmp_path / "images" / "train" / "a.jpg")
    b = _image(tmp_path / "images" / "train" / "sub" / "b.png")
    (tmp_path / "images" / "train" / "notes.md").write_text("not an image")
    files, skipped = list_image_files(tmp_path / "images" / "train")
    assert files == sorted([str(a), str(b)]) and skipped == 1
    listing = tmp_path / "train.txt"
    listing.write_text("./images/train/a.jpg\n\n" + str(b) + "\n")
    assert list_image_files(listing)[0] == sorted([str(a), str(b)])
    assert len(list_image_files([listing, tmp_path / "images" / "train"])[0]) == 4
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_image_files(tmp_path / "nowhere")


def test_reference_coco_yaml_layout_loads_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The reference's data/coco.yaml: list files relative to the working folder, images/ -> labels/."""
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    for split, names in (("train2017", ["1", "2"]), ("val2017", ["3"])):
        for n in names:
            img = _image(root / "coco" / "images" / split / f"{int(n):012d}.jpg")
            _label(img, f"{int(n) % 2} 0.5 0.5 0.2 0.3\n")
        lines = [f"./images/{split}/{int(n):012d}.jpg" for n in names]
        (root / "coco" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    names80 = ", ".join(f"'c{i}'" for i in range(80))
    (root / "data" / "coco.yaml").write_text(
        "download: bash ./scripts/get_coco.sh\n"
        "train: ./coco/train2017.txt  # 118287 images\nval: ./coco/val2017.txt  # 5000 images\n"
        f"test: ./coco/test-dev2017.txt\nnc: 80\nnames: [{names80}]\n"
    )
    monkeypatch.chdir(root)
    with caplog.at_level("INFO", logger="yolov7lib.data.formats"):
        cfg = load_data_config("data/coco.yaml")  # relative to the working folder, as in the reference
    # the tree is in place: the note on the absent test-dev list must not ask to put COCO in place
    assert "test-dev2017.txt" in caplog.text and "skipped" in caplog.text and "put COCO" not in caplog.text
    assert cfg.nc == 80 and cfg.names[79] == "c79" and "test" not in cfg.splits  # absent test list is skipped
    ds = DetectionDataset(cfg.splits["train"], img_size=64, nc=cfg.nc, progress=False)
    assert len(ds) == 2 and [lb[:, 0].tolist() for lb in ds.labels] == [[1.0], [0.0]]
    assert ds.report.labelled == 2 and (root / "coco" / "train2017.yolov7lib.cache").is_file()


def test_yaml_relative_paths_and_a_missing_folder_named(tmp_path: Path) -> None:
    _image(tmp_path / "set" / "images" / "train" / "a.jpg")
    (tmp_path / "set" / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a, b]\n")
    with pytest.raises(FileNotFoundError, match=r"images/val"):
        load_data_config(tmp_path / "set" / "data.yaml")
    (tmp_path / "set" / "data.yaml").write_text("train: images/train\nnames: [a, b]\nnc: 3\n")
    with pytest.raises(ValueError, match="nc is 3 but 2 names"):
        load_data_config(tmp_path / "set" / "data.yaml")
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_data_config(tmp_path / "nope.yaml")


def test_roboflow_export_yaml_with_parent_relative_splits_loads_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Roboflow's YOLO export: data.yaml inside the set names `../train/images`, meant as the set's own
    train/images (Ultralytics reads it so); from another working folder it must still be found."""
    root = tmp_path / "Shapes-1"
    for split in ("train", "valid"):
        _label(_image(root / split / "images" / "a_jpg.rf.1.jpg"), "0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\nnames: ['a', 'b']\n"
    )
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_data_config(os.path.relpath(root / "data.yaml"))
    assert [p.resolve() for p in cfg.splits["train"]] == [(root / "train" / "images").resolve()]
    assert [p.resolve() for p in cfg.splits["val"]] == [(root / "valid" / "images").resolve()]
    assert "test" not in cfg.splits  # no test/ folder in this export: the optional split is skipped
    # a real `../` path keeps its meaning: a sibling folder of the yaml's folder wins when it exists
    _image(tmp_path / "train" / "images" / "b.jpg")
    cfg = load_data_config(root / "data.yaml")
    assert [p.resolve() for p in cfg.splits["train"]] == [(tmp_path / "train" / "images").resolve()]
    (root / "data.yaml").write_text("train: ../nowhere/images\nnames: [a]\n")
    with pytest.raises(FileNotFoundError, match=r"\.\./nowhere/images"):
        load_data_config(root / "data.yaml")


def _coco_fixture(tmp_path: Path) -> Path:
    img_dir = tmp_path / "images" / "val"
    _image(img_dir / "a.jpg", 40, 80)
    _image(img_dir / "b.jpg", 60, 30)
    _image(img_dir / "c.jpg", 20, 20)
    doc = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 80, "height": 40},
            {"id": 3, "file_name": "b.jpg", "width": 30, "height": 60},
            {"id": 9, "file_name": "c.jpg", "width": 20, "height": 20},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 44, "bbox": [10, 5, 20, 10], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [0, 0, 80, 40], "area": 3200, "iscrowd": 0},
            {"id": 3, "image_id": 3, "category_id": 90, "bbox": [3, 6, 9, 12], "area": 108, "iscrowd": 0},
            {"id": 4, "image_id": 3, "category_id": 5, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 1},
            {"id": 5, "image_id": 3, "category_id": 12, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0},
        ],
        "categories": [{"id": i, "name": f"cat{i}"} for i in (90, 5, 44)],
    }
    (tmp_path / "annotations").mkdir()
    path = tmp_path / "annotations" / "instances_val.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_json_read_directly_with_the_category_mapping(tmp_path: Path) -> None:
    path = _coco_fixture(tmp_path)
    split = read_coco_json(path)  # images folder found as images/val
    ref = COCO(str(path))
    assert split.category_ids == sorted(ref.getCatIds()) == [5, 44, 90]
    assert split.names == [c["name"] for c in ref.loadCats(sorted(ref.getCatIds()))]
    ds = DetectionDataset(path, img_size=64, nc=3, progress=False)
    assert ds.image_ids == [7, 3, 9]  # sorted by file name: a, b, c
    assert ds.report.crowd == 1 and ds.report.empty == 1  # c.jpg has no annotation: a background
    assert ds.report.dropped_rows == {"class id not an integer in [0, 3)": 1}  # category 12 is unknown
    for image_id, labels in zip(ds.image_ids, ds.labels, strict=True):
        anns = [
            a for a in ref.loadAnns(ref.getAnnIds(imgIds=image_id, iscrowd=False)) if a["category_id"] != 12
        ]
        img = ref.loadImgs(image_id)[0]
        assert sorted(split.category_ids[int(c)] for c in labels[:, 0]) == sorted(
            a["category_id"] for a in anns
        )
        for c, x, y, w, h in labels:
            ann = next(a for a in anns if a["category_id"] == split.category_ids[int(c)])
            iw, ih = img["width"], img["height"]
            corner_size = [(x - w / 2) * iw, (y - h / 2) * ih, w * iw, h * ih]
            np.testing.assert_allclose(corner_size, ann["bbox"], atol=1e-4)


def test_data_yaml_with_a_coco_json_split(tmp_path: Path) -> None:
    _coco_fixture(tmp_path)
    (tmp_path / "data.yaml").write_text("val: annotations/instances_val.json\n")
    cfg = load_data_config(tmp_path / "data.yaml")
    assert cfg.nc == 3 and cfg.names == ["cat5", "cat44", "cat90"] and cfg.category_ids == [5, 44, 90]
    assert cfg.json["val"] == tmp_path / "annotations" / "instances_val.json"
    assert [cfg.category_id(i) for i in range(3)] == [5, 44, 90]


def test_data_yaml_reads_its_categories_from_the_smallest_coco_json(tmp_path: Path, monkeypatch) -> None:
    """A data.yaml whose train split is COCO's 448 MB instances_train2017.json: `yolov7 val`, `data check`
    and the manifest parsed all of it for the category list alone (before: 12.6 s and 1.1 GB more peak
    memory for a 275 MB json), which the val json holds as well."""
    from yolov7lib.data import formats

    val = _coco_fixture(tmp_path)
    train = val.with_name("instances_train.json")
    doc = json.loads(val.read_text())
    doc["annotations"] *= 50  # a bigger json with the same categories
    train.write_text(json.dumps(doc))
    (tmp_path / "data.yaml").write_text(f"train: {train}\nval: {val}\n")
    parsed: list[Path] = []
    read = formats._read_json
    monkeypatch.setattr(formats, "_read_json", lambda p: parsed.append(Path(p)) or read(p))
    cfg = load_data_config(tmp_path / "data.yaml")
    assert parsed == [val]
    assert cfg.category_ids == [5, 44, 90] and cfg.names == ["cat5", "cat44", "cat90"]
    assert cfg.json == {"train": train, "val": val}


def test_coco_export_with_images_beside_the_json_loads(tmp_path: Path) -> None:
    """Roboflow's COCO export: train/_annotations.coco.json with the images in train/ itself."""
    doc = json.loads(_coco_fixture(tmp_path / "ref").read_text())
    split = tmp_path / "Set-1" / "train"
    for im in doc["images"]:
        _image(split / im["file_name"], im["height"], im["width"])
    (split / "_annotations.coco.json").write_text(json.dumps(doc))
    (tmp_path / "Set-1" / "data.yaml").write_text("train: train/_annotations.coco.json\n")
    cfg = load_data_config(tmp_path / "Set-1" / "data.yaml")
    ds = DetectionDataset(cfg.splits["train"][0], img_size=64, nc=cfg.nc, progress=False)
    ref = DetectionDataset(tmp_path / "ref" / "annotations" / "instances_val.json", img_size=64, nc=3,
                           progress=False)  # fmt: skip
    assert [Path(f).parent for f in ds.img_files] == [split] * 3 and ds.report.usable == 3
    assert ds.image_ids == ref.image_ids and all(
        np.array_equal(a, b) for a, b in zip(ds.labels, ref.labels, strict=True)
    )
    (split / "a.jpg").unlink()  # the first image missing: none of the folders holds it, the old error
    for im in ("b.jpg", "c.jpg"):
        (split / im).unlink()
    with pytest.raises(FileNotFoundError, match="image folder of"):
        read_coco_json(split / "_annotations.coco.json")


def test_coco_images_folder_is_the_one_that_holds_the_jsons_images(tmp_path: Path) -> None:
    """A json not named after its folder (annotations/image_info_test.json, images in images/test2017) is
    refused naming the folders tried, rather than read from images/ where every image is 'missing or
    corrupt'; where the json's first image alone is missing, the folder of the others is still found."""
    json_path = _coco_fixture(tmp_path)
    doc = json.loads(json_path.read_text())
    (tmp_path / "images" / "val").rename(tmp_path / "images" / "test2017")
    other = tmp_path / "annotations" / "image_info_test.json"
    other.write_text(json.dumps(doc))
    with pytest.raises(FileNotFoundError, match=r"image folder of .*image_info_test.json.*'a.jpg'"):
        read_coco_json(other)
    (tmp_path / "images" / "test2017").rename(tmp_path / "images" / "val")
    (tmp_path / "images" / "val" / "a.jpg").unlink()
    assert Path(read_coco_json(json_path).img_files[1]).parent == tmp_path / "images" / "val"


def test_names_as_a_mapping_are_listed_by_class_index(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "train" / "a.jpg")
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: {2: bird, 0: cat, 1: dog}\n")
    cfg = load_data_config(tmp_path / "data.yaml")
    assert cfg.nc == 3 and cfg.names == ["cat", "dog", "bird"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: [unclosed\n", "not valid YAML"),
        ("train: images/train\nnames: circle\n", "names must be a list"),
        ("train: images/train\nnames: {a: x, 1: y}\n", "keys 0..1"),
        ("train: images/train\nnames: {0: x, 2: y}\n", "keys 0..1"),
        ("train: images/train\nnames: {'0': x, '1': y}\n", "keys 0..1"),
        ("train: images/train\nnc: abc\n", "nc must be a whole number"),
        ("train: images/train\nnc: 0\nnames: []\n", "nc must be at least 1"),
        ("train: images/train\nnc: 2.5\nnames: [a, b]\n", "nc must be a whole number"),  # was read as 2
        ("train: images/train\nnc: true\n", "nc must be a whole number"),  # was read as 1
        (
            b"\xff\xd8\xff\xe0 a JPEG given as the data.yaml",
            "not a UTF-8 text file",
        ),  # was a bare decode error
    ],
)
def test_a_malformed_data_yaml_is_named_with_what_is_wrong(
    tmp_path: Path, text: str | bytes, message: str
) -> None:
    _image(tmp_path / "images" / "train" / "a.jpg")
    if isinstance(text, bytes):
        (tmp_path / "data.yaml").write_bytes(text)
    else:
        (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_data_config(tmp_path / "data.yaml")
    assert str(tmp_path / "data.yaml") in str(err.value)


def test_malformed_coco_annotations_are_counted_not_a_crash(tmp_path: Path, caplog) -> None:
    path = _coco_fixture(tmp_path)
    doc = json.loads(path.read_text())
    del doc["images"][2]["width"]  # c.jpg: no size, so its boxes cannot be normalised
    doc["annotations"] += [
        {"id": 6, "image_id": 7, "category_id": 5, "bbox": [1, 2, 3], "iscrowd": 0},  # three numbers
        {"id": 7, "image_id": 7, "category_id": 5, "iscrowd": 0},  # no bbox
        {"id": 8, "image_id": 9, "category_id": 5, "bbox": [1, 1, 5, 5], "iscrowd": 0},  # on c.jpg
        {"id": 9, "image_id": 1234, "category_id": 5, "bbox": [1, 1, 5, 5], "iscrowd": 0},  # no such image
    ]
    path.write_text(json.dumps(doc))
    with caplog.at_level("WARNING", logger="yolov7lib.data"):
        ds = DetectionDataset(path, img_size=64, nc=3, progress=False)
    assert sum(len(lab) for lab in ds.labels) == 3  # the fixture's three good boxes stay
    assert sum(ds.report.dropped_rows.values()) == 1 + 3  # category 12, then the three bad boxes
    assert any("1 annotations name an image id not in 'images'" in r.getMessage() for r in caplog.records)
    doc["images"] = {"a.jpg": 7}
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="no 'images' list"):
        read_coco_json(path)
