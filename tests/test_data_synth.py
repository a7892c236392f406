"""The generated default data set: determinism, formats that agree, tight boxes, a COCO-like size mix."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO

from yolov7lib.cli import main
from yolov7lib.data import dataset_manifest, load_data_config, synth, synthesize
from yolov7lib.data.formats import img2label_path
from yolov7lib.data.synth import CATEGORY_IDS, CLASS_NAMES, MIN_VISIBLE, render_image


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    synthesize(out, n_train=12, n_val=4, img_size=128, seed=3, workers=2, progress=False)
    return out


def test_same_seed_same_bytes_whatever_the_process_count(synth_set: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthesize(again, n_train=12, n_val=4, img_size=128, seed=3, workers=1, progress=False)
    a, b = _tree_digest(synth_set), _tree_digest(again)
    assert len(a) == 12 + 4 + 12 + 4 + 2 + 1  # images, labels, 2 json, data.yaml
    assert a == b
    other = tmp_path / "other"
    synthesize(other, n_train=12, n_val=4, img_size=128, seed=4, workers=1, progress=False)
    c = _tree_digest(other)
    assert sum(a[k] != c[k] for k in a if k.endswith(".jpg")) == 16  # another seed, other images


def test_yolo_labels_and_coco_json_agree(synth_set: Path) -> None:
    for split, n in (("train", 12), ("val", 4)):
        coco = COCO(str(synth_set / "annotations" / f"instances_{split}.json"))  # independent reader
        assert sorted(coco.getCatIds()) == sorted(CATEGORY_IDS) and len(CLASS_NAMES) >= 6
        assert sorted(CATEGORY_IDS) != list(range(len(CATEGORY_IDS)))  # the id mapping is exercised
        assert len(coco.getImgIds()) == n
        for img in coco.loadImgs(coco.getImgIds()):
            rows = np.loadtxt(
                synth_set / "labels" / split / Path(img["file_name"]).with_suffix(".txt"), ndmin=2
            )
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
            assert len(rows) == len(anns)
            w, h = img["width"], img["height"]
            for row, ann in zip(rows.reshape(-1, 5), anns, strict=True):
                x, y, bw, bh = ann["bbox"]
                assert CATEGORY_IDS[int(row[0])] == ann["category_id"]
                np.testing.assert_allclose(
                    row[1:], [(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h], atol=1e-6
                )
                assert 0 < ann["area"] <= bw * bh and ann["iscrowd"] == 0


def test_data_yaml_is_the_reference_format_and_loads(synth_set: Path) -> None:
    doc = yaml.safe_load((synth_set / "data.yaml").read_text())
    assert {"train", "val", "nc", "names"} <= doc.keys()
    assert doc["nc"] == len(doc["names"]) == len(CLASS_NAMES)
    cfg = load_data_config(synth_set / "data.yaml")
    assert cfg.splits["train"] == [synth_set / "images" / "train"]
    assert cfg.category_ids == list(CATEGORY_IDS)
    assert [cfg.category_id(c) for c in range(cfg.nc)] == list(CATEGORY_IDS)


def test_every_box_is_the_tight_box_of_the_visible_object() -> None:
    """Rendering without object k changes exactly the pixels where k is visible: their box is k's box."""
    checked = 0
    for index in range(6):
        img, objects = render_image(11, "train", index, 160)
        for k, obj in enumerate(objects):
            hidden, _ = render_image(11, "train", index, 160, hide=k)
            ys, xs = np.nonzero((img != hidden).any(2))
            box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            # equal up to pixels whose painted value happens to equal what lies below (saturation)
            assert np.abs(np.subtract(box, obj.box)).max() <= 1, (index, k, box, obj.box)
            assert len(xs) <= obj.area
            checked += 1
    assert checked >= 12


def test_ids_count_from_1_as_coco_evaluation_needs(synth_set: Path) -> None:
    """Image ids 1..n in file order and annotation ids 1..m: COCOeval stores the id of the matched ground
    truth in an array of zeros, so an annotation with id 0 would count as never matched."""
    doc = json.loads((synth_set / "annotations" / "instances_train.json").read_text())
    assert [im["id"] for im in doc["images"]] == list(range(1, 13))
    assert [im["file_name"] for im in doc["images"]] == [f"{i:06d}.jpg" for i in range(12)]
    assert [a["id"] for a in doc["annotations"]] == list(range(1, len(doc["annotations"]) + 1))


def test_boxes_and_areas_are_exact_and_contrast_with_the_background() -> None:
    """Sharper than the test above: the pixels that object k changes lie inside its box, their box is its
    box and their count its area (here without exception, foreground lines crossing objects included; one
    pixel whose paint equals what lies below is allowed for). On a light background (mean level over 150)
    an object is painted dark: its brightest channel is below the background's."""
    checked = exact = 0
    on_light = []
    for index in range(10):
        img, objects = render_image(0, "train", index, 96)
        for k, obj in enumerate(objects):
            hidden, _ = render_image(0, "train", index, 96, hide=k)
            changed = (img != hidden).any(2)
            x1, y1, x2, y2 = obj.box
            assert changed[y1:y2, x1:x2].sum() == changed.sum(), (index, k)
            ys, xs = np.nonzero(changed)
            exact += (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == obj.box and len(xs) == obj.area
            checked += 1
            if hidden[changed].mean() > 150:
                on_light.append(img[changed].max(1).mean() < hidden[changed].max(1).mean())
    assert checked >= 30 and exact >= checked - 1
    assert len(on_light) >= 3 and all(on_light)


def test_every_object_keeps_at_least_65_percent_of_its_area_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """The full area of each placed object is its rasterised mask (recorded from the rasteriser: the last mask
    drawn before the object is painted); its visible area in the labels is never under 65 % of it, whatever
    covers it (later objects, foreground lines, the image border)."""
    masks, totals = [], []
    object_mask, paint_object = synth._object_mask, synth._paint_object

    def record_mask(*args):
        out = object_mask(*args)
        masks.append(int(out[0].sum()))
        return out

    def record_paint(*args, **kwargs):
        totals.append(masks[-1])
        return paint_object(*args, **kwargs)

    monkeypatch.setattr(synth, "_object_mask", record_mask)
    monkeypatch.setattr(synth, "_paint_object", record_paint)
    ratios = []
    for index in range(30):
        totals.clear()
        _, objects = render_image(0, "train", index, 128)
        assert len(objects) == len(totals)
        ratios += [o.area / t for o, t in zip(objects, totals, strict=True)]
    assert len(ratios) > 60 and min(ratios) >= MIN_VISIBLE and min(ratios) < 0.8, min(ratios)


def test_images_have_the_long_side_asked_for_in_both_orientations() -> None:
    """The long side is img_size; the short one 0.6 to 1 of it; portrait about 30 % of the time."""
    shapes = [render_image(2, "val", i, 64)[0].shape[:2] for i in range(40)]
    assert all(max(h, w) == 64 and min(h, w) >= 0.6 * 64 for h, w in shapes)
    assert 4 <= sum(h > w for h, w in shapes) <= 24


def test_sizes_span_coco_small_medium_large_and_objects_occlude() -> None:
    areas, overlaps = [], 0
    for index in range(80):
        _, objects = render_image(0, "train", index, 320)
        areas += [o.area for o in objects]
        boxes = np.array([o.box for o in objects]).reshape(-1, 4)
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                iw = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
                ih = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
                overlaps += iw > 0 and ih > 0
    a = np.array(areas)
    small, large = (a < 32**2).mean(), (a > 96**2).mean()
    assert small > 0.25 and large > 0.08 and 1 - small - large > 0.25, (small, large)
    assert overlaps > 20  # partial occlusion is common


def test_cli_synth_refuses_a_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    assert main(["data", "synth", "--out", str(out), "--train", "2", "--val", "0", "--img-size", "64"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    fresh = tmp_path / "fresh"
    assert main(["data", "synth", "--out", str(fresh), "--train", "2", "--val", "1", "--img-size", "64"]) == 0
    assert json.loads((fresh / "annotations" / "instances_val.json").read_text())["images"][0]["width"] <= 64


def test_synth_writes_only_the_splits_asked_for_and_refuses_an_empty_set(tmp_path: Path) -> None:
    """--val 0 writes no val split at all (no folder, no json, no key in data.yaml); no image at all is
    refused before anything is written."""
    data = synthesize(tmp_path / "trainonly", n_train=2, n_val=0, img_size=64, workers=1, progress=False)
    doc = yaml.safe_load(data.read_text())
    assert "train" in doc and "val" not in doc and "val_json" not in doc
    assert not (tmp_path / "trainonly" / "images" / "val").exists()
    assert sorted(p.name for p in (tmp_path / "trainonly" / "annotations").iterdir()) == [
        "instances_train.json"
    ]
    with pytest.raises(ValueError, match="at least one image"):
        synthesize(tmp_path / "none", n_train=0, n_val=0, img_size=64, workers=1, progress=False)
    assert not (tmp_path / "none").exists()


# -- the manifest the training stages depend on (yolov7lib/data/manifest.py) ---------------------------


def test_the_manifest_sees_labels_annotations_and_names_but_not_image_bytes(
    synth_set: Path, tmp_path: Path
) -> None:
    """Each change below is made to a fresh copy of the set: what changes the data a model is trained on
    (a label row, the annotation json, an image's name, an image missing, data.yaml) changes the digest;
    redrawn pixels, a label cache, modification times and the folder's location do not."""
    reference = dataset_manifest(synth_set / "data.yaml")
    assert reference["images"] == reference["labels"] == 16
    assert reference["files"] == 1 + 16 + 16 + 2  # data.yaml, images, labels, two COCO json

    def changed(edit) -> bool:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(synth_set, copy)
        edit(copy)
        return dataset_manifest(copy / "data.yaml") != reference

    image = Path("images/train/000000.jpg")
    label = Path("labels/train/000000.txt")

    def redraw(root: Path) -> None:
        pixels = cv2.imread(str(root / image))
        pixels[:8, :8] = 255 - pixels[:8, :8]
        assert cv2.imwrite(str(root / image), pixels)

    def edit_label(root: Path) -> None:
        rows = (root / label).read_text().splitlines()
        rows[0] = rows[0].replace(rows[0].split()[1], "0.5", 1)
        (root / label).write_text("\n".join(rows) + "\n")

    def touch_all(root: Path) -> None:
        for p in root.rglob("*"):
            os.utime(p, (1, 1))

    assert not changed(redraw)
    assert not changed(touch_all)
    assert not changed(lambda root: (root / "labels" / "train.yolov7lib.cache").write_bytes(b"cache"))
    assert changed(edit_label)
    assert changed(lambda root: (root / label).unlink())  # now an image without objects

    def move_a_box(root: Path) -> None:  # an edited annotation json (a corrupt one stops load_data_config)
        path = root / "annotations" / "instances_val.json"
        doc = json.loads(path.read_text())
        doc["annotations"][0]["bbox"][0] += 1
        path.write_text(json.dumps(doc))

    assert changed(move_a_box)
    assert changed(lambda root: (root / image).rename(root / image.with_name("000099.jpg")))

    def rename_with_label(root: Path) -> None:  # the same content under a name that sorts in place
        (root / image).rename(root / image.with_name("000000a.jpg"))
        (root / label).rename(root / label.with_name("000000a.txt"))

    assert changed(rename_with_label)
    assert changed(lambda root: (root / image).unlink())
    assert changed(lambda root: (root / "data.yaml").write_text((root / "data.yaml").read_text() + "# x\n"))


def test_the_manifest_of_a_list_file_split_covers_the_listed_images_and_their_labels(
    synth_set: Path, tmp_path: Path
) -> None:
    """COCO's layout (the paper profile): splits are list files of ./images/... lines. The manifest
    follows the lists: a label of a listed image counts, a label of an unlisted one does not."""
    root = tmp_path / "coco"
    shutil.copytree(synth_set, root)
    listed = sorted(p.relative_to(root).as_posix() for p in (root / "images" / "train").glob("*.jpg"))[:5]
    (root / "train2017.txt").write_text("".join(f"./{p}\n" for p in listed))
    config = {"train": "train2017.txt", "val": "train2017.txt", "nc": 8, "names": list(CLASS_NAMES)}
    (root / "coco.yaml").write_text(yaml.safe_dump(config))
    reference = dataset_manifest(root / "coco.yaml")
    assert reference["images"] == 2 * 5  # train and val list the same five
    assert reference["files"] == 1 + 1 + 5 + 5  # coco.yaml, the list, images, labels
    unlisted = root / "labels" / "train" / "000011.txt"
    unlisted.write_text("0 0.5 0.5 0.1 0.1\n")
    assert dataset_manifest(root / "coco.yaml") == reference
    listed_label = root / img2label_path(listed[0])
    listed_label.write_text("0 0.5 0.5 0.1 0.1\n")
    assert dataset_manifest(root / "coco.yaml") != reference
    with pytest.raises(FileNotFoundError):
        dataset_manifest(tmp_path / "absent.yaml")


@pytest.mark.slow
def test_the_manifest_is_the_same_when_opencv_and_numpy_round_differently(tmp_path: Path) -> None:
    """What another CPU model does to the generated set, imitated by switching off the vector code of
    OpenCV and NumPy in a second process: some images change by a few pixel levels, the labels, the
    annotations and so the manifest must not."""
    settings = ["--train", "40", "--val", "10", "--img-size", "160", "--seed", "0"]
    here = tmp_path / "here"
    synthesize(here, n_train=40, n_val=10, img_size=160, seed=0, workers=1, progress=False)
    scalar = tmp_path / "scalar"
    env = {
        **os.environ,
        "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX2,FP16,AVX",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL X86_V3",
    }
    cmd = [sys.executable, "-m", "yolov7lib", "data", "synth", "--out", str(scalar), *settings]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    a, b = _tree_digest(here), _tree_digest(scalar)
    assert a.keys() == b.keys()
    differ = sorted(name for name in a if a[name] != b[name])
    assert all(name.startswith("images/") for name in differ), differ  # labels and annotations agree
    if not differ:
        pytest.skip("switching off the vector code changed no image on this CPU: nothing to compare")
    assert dataset_manifest(here / "data.yaml") == dataset_manifest(scalar / "data.yaml")
