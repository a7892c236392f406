"""Data set formats: data.yaml, image lists, YOLO label files and COCO json annotations.

YOLO layout (the reference's): a split is a folder of images, a text file listing image paths (one a
line, `./` meaning the list's own folder) or a list of either; the label file of `.../images/.../x.jpg`
is `.../labels/.../x.txt` (the last `/images/` replaced), one row per object, `class x y w h` normalised
to [0, 1], or `class x1 y1 x2 y2 ...` for a polygon (its box is used).
COCO layout: an `instances_*.json` whose `file_name`s are relative to an images folder (images/<split>,
<split> or images beside annotations/, or the json's own folder as in Roboflow's exports); category ids
are mapped to contiguous classes 0..nc-1 in increasing id order, and back for evaluation.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

logger = logging.getLogger(__name__)

IMG_FORMATS = ("bmp", "jpg", "jpeg", "png", "tif", "tiff", "dng", "webp", "mpo")
SPLITS = ("train", "val", "test")
COCO_LAYOUT = (
    "COCO 2017 in the reference's layout: images/{train2017,val2017}, labels/{train2017,val2017} (YOLO txt), "
    "train2017.txt, val2017.txt and annotations/instances_val2017.json in one folder, which the data.yaml's "
    "relative paths (the official coco.yaml's ./coco/...) reach from the yaml's folder or the working folder"
)
"""What to put where for COCO: nothing is downloaded (README, Paper scale)."""


LABEL_LAYOUT = "the labels/ folder beside images/ (images/train/a.jpg -> labels/train/a.txt)"
"""Where a YOLO image's label file is (`img2label_path`), in words for error messages."""


def img2label_path(img_path: str | Path) -> Path:
    """The YOLO label file of an image: the last `/images/` becomes `/labels/`, the suffix `.txt`.

    A relative path that starts with `images/` (a data.yaml read from inside the data set's folder)
    counts as well: `images/train/a.jpg` -> `labels/train/a.txt`.
    """
    p = os.sep + str(img_path)  # the leading separator lets a leading `images/` match
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head, sep, tail = p.rpartition(sa)
    if sep:
        p = head + sb + tail
    return Path(p[1:]).with_suffix(".txt")


def is_image_file(path: str | Path) -> bool:
    """True if the suffix is one of the readable image formats."""
    return Path(path).suffix[1:].lower() in IMG_FORMATS


def list_image_files(source: str | Path | list[str | Path]) -> tuple[list[str], int]:
    """Image paths of a folder (recursive), a list file or a list of either, sorted.

    Returns (image paths, number of other files skipped for their suffix). A path that does not exist
    raises FileNotFoundError naming it.
    """
    sources = source if isinstance(source, list | tuple) else [source]
    files: list[str] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            files += [str(f) for f in p.rglob("*") if f.is_file()]
        elif p.is_file():
            parent = str(p.parent) + os.sep
            for line in p.read_text(encoding="utf-8-sig").splitlines():  # without a BOM
                line = line.strip()
                if line:
                    files.append(parent + line[2:] if line.startswith("./") else line)
        else:
            raise FileNotFoundError(
                f"image source {str(p)!r} does not exist (a folder or a list file is expected)"
            )
    images = sorted(f for f in files if is_image_file(f))
    return images, len(files) - len(images)


# -- YOLO label rows ------------------------------------------------------------------------------------


@dataclass
class LabelParse:
    """The rows kept from one label file and the reasons of the rows dropped."""

    labels: np.ndarray  # (n, 5) float32: class, x, y, w, h normalised
    segments: list[np.ndarray]  # per kept row, an (k, 2) polygon normalised, or empty if the file has none
    dropped: Counter = field(default_factory=Counter)  # reason -> count


def parse_label_text(text: str, nc: int | None = None) -> LabelParse:
    """Parse a YOLO label file; keep the valid rows, count every dropped row by reason.

    A row is dropped for: the wrong number of columns, a non-number, NaN or infinity, a class that is
    not an integer in [0, nc), a coordinate outside [0, 1], a zero or negative width or height, or
    repeating an earlier row. Polygon rows (class + 3 or more x y pairs) are turned into their box.
    """
    dropped: Counter = Counter()
    rows: list[list[float]] = []
    polys: list[np.ndarray] = []
    seen: set[tuple[float, ...]] = set()
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5 and (len(parts) < 7 or len(parts) % 2 == 0):
            dropped["wrong number of columns"] += 1
            continue
        try:
            values = [float(v) for v in parts]
        except ValueError:
            dropped["not a number"] += 1
            continue
        if not all(math.isfinite(v) for v in values):
            dropped["NaN or infinite value"] += 1
            continue
        cls = values[0]
        if cls != int(cls) or cls < 0 or (nc is not None and cls >= nc):
            dropped[f"class id not an integer in [0, {nc})" if nc is not None else "invalid class id"] += 1
            continue
        coords = values[1:]
        if len(coords) == 4 and (coords[2] <= 0 or coords[3] <= 0):
            dropped["zero or negative size"] += 1
            continue
        if any(v < 0 or v > 1 for v in coords):
            dropped["coordinate outside [0, 1]"] += 1
            continue
        if len(coords) == 4:
            x, y, w, h = coords
            poly = np.zeros((0, 2), np.float32)
        else:
            poly = np.array(coords, np.float32).reshape(-1, 2)
            (x1, y1), (x2, y2) = poly.min(0), poly.max(0)
            x, y, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            if w <= 0 or h <= 0:
                dropped["zero or negative size"] += 1
                continue
        key = tuple(values)
        if key in seen:
            dropped["duplicate row"] += 1
            continue
        seen.add(key)
        rows.append([cls, x, y, w, h])
        polys.append(poly)
    labels = np.array(rows, np.float32).reshape(-1, 5)
    if not any(len(p) for p in polys):
        return LabelParse(labels, [], dropped)
    for i, (_, x, y, w, h) in enumerate(labels):  # a box row among polygon rows: its rectangle
        if not len(polys[i]):
            polys[i] = np.array([[x - w / 2, y - h / 2], [x + w / 2, y - h / 2], [x + w / 2, y + h / 2],
                                 [x - w / 2, y + h / 2]], np.float32)  # fmt: skip
    return LabelParse(labels, polys, dropped)


# -- data.yaml ------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """A data set description: image sources per split, classes, and optional COCO json per split."""

    path: Path  # the data.yaml file (or the json) it was read from
    splits: dict[str, list[Path]]  # split -> image sources (folders, list files) or one COCO json
    nc: int
    names: list[str]
    json: dict[str, Path] = field(default_factory=dict)  # split -> COCO annotations of the same images
    category_ids: list[int] | None = None  # class index -> COCO category id, when known

    def category_id(self, cls: int) -> int:
        """The COCO category id of a contiguous class index (the index itself if no mapping is known)."""
        return self.category_ids[cls] if self.category_ids is not None else cls


def _resolve(entry: str, bases: list[Path], key: str, origin: Path, own: tuple[Path, ...] = ()) -> Path:
    p = Path(entry).expanduser()
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [b / p for b in bases]
        if p.parts[:1] == ("..",):  # Roboflow's `../train/images`: the set's own train/images, last
            candidates += [b / Path(*p.parts[1:]) for b in own]
    for c in candidates:
        if c.exists():
            return c
    tried = ", ".join(repr(str(c)) for c in candidates)
    # the COCO split names; not for the test split, which is optional and not part of that layout
    hint = f"; put {COCO_LAYOUT}" if "2017" in Path(entry).name and key != "test" else ""
    raise FileNotFoundError(f"{origin}: {key} path {entry!r} does not exist (tried {tried}){hint}")


def load_data_config(path: str | Path) -> DataConfig:
    """Read a data.yaml (the reference's format: train, val, [test], nc, names).

    Each split is a folder, a list file, a list of those, or a COCO json (`instances_*.json`). Relative
    paths are resolved against the `path:` key if present, else the yaml's folder, else the working
    folder (where the reference resolves them), whichever exists; a `../x` found nowhere is last tried
    as `x` in the data set's own folder (Roboflow's exports write `train: ../train/images` in a
    data.yaml beside train/, which Ultralytics reads so). `<split>_json` keys name COCO
    annotations of the YOLO images (for pycocotools evaluation and the class <-> category mapping).
    """
    path = Path(path)
    if path.is_dir():  # the data set's folder given for its data.yaml
        inside = path / "data.yaml"
        hint = f": give {str(inside)!r}" if inside.is_file() else ", and holds no data.yaml"
        raise FileNotFoundError(f"data config {str(path)!r} is a folder, not a data.yaml{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"data config {str(path)!r} not found")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from e
    except UnicodeDecodeError as e:  # an image or an archive given for the data.yaml
        raise ValueError(
            f"{path}: not a UTF-8 text file, so not a data.yaml ({e.reason} at byte {e.start})"
        ) from e
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping with train, val, nc and names")
    root = doc.get("path")
    bases = [Path(root).expanduser()] if root else []
    if root and not Path(root).is_absolute():
        bases = [path.parent / root, Path.cwd() / root]
    own = (bases[0] if root else path.parent,)  # the data set's own folder: `path:`, else the yaml's
    bases += [path.parent, Path.cwd()]

    splits: dict[str, list[Path]] = {}
    json_paths: dict[str, Path] = {}
    for split in SPLITS:
        entry = doc.get(split)
        if entry:
            entries = entry if isinstance(entry, list) else [entry]
            try:
                splits[split] = [_resolve(str(e), bases, split, path, own) for e in entries]
            except FileNotFoundError as e:
                if split != "test":
                    raise
                logger.info("%s; the test split is optional: skipped", e)  # coco.yaml's test-dev list
                continue
            if len(splits[split]) == 1 and splits[split][0].suffix == ".json":
                json_paths[split] = splits[split][0]
        if doc.get(f"{split}_json"):
            json_paths[split] = _resolve(str(doc[f"{split}_json"]), bases, f"{split}_json", path, own)
    if "train" not in splits and "val" not in splits:
        raise ValueError(f"{path}: needs at least a train or a val entry")

    names = doc.get("names")
    nc = doc.get("nc")
    category_ids = None
    if json_paths:
        # the splits' jsons list the same categories: read the smallest (COCO's train json is 448 MB)
        cats = read_coco_categories(min(json_paths.values(), key=lambda p: p.stat().st_size))
        category_ids = [c["id"] for c in cats]
        names = names or [c["name"] for c in cats]
    if isinstance(names, dict):  # {0: name, 1: name}
        if set(names) != set(range(len(names))):
            raise ValueError(
                f"{path}: names as a mapping needs the keys 0..{len(names) - 1}, got {list(names)}"
            )
        names = [names[k] for k in sorted(names)]
    if names is not None and not isinstance(names, list):
        raise ValueError(f"{path}: names must be a list (or a mapping 0: name, ...), got {names!r}")
    if nc is None and names is None:
        raise ValueError(f"{path}: needs nc or names")
    try:
        if isinstance(nc, bool) or (isinstance(nc, float) and not nc.is_integer()):
            raise ValueError(nc)  # int() would read true as 1 and 2.5 as 2
        nc = int(nc if nc is not None else len(names))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: nc must be a whole number of classes, got {nc!r}") from e
    if nc < 1:
        raise ValueError(f"{path}: nc must be at least 1, got {nc}")
    names = [str(n) for n in names] if names is not None else [f"class{i}" for i in range(nc)]
    if len(names) != nc:
        raise ValueError(f"{path}: nc is {nc} but {len(names)} names are given")
    if category_ids is not None and len(category_ids) != nc:
        raise ValueError(f"{path}: nc is {nc} but the COCO json has {len(category_ids)} categories")
    return DataConfig(path, splits, nc, names, json_paths, category_ids)


# -- COCO json ------------------------------------------------------------------------------------------


def read_coco_categories(json_path: str | Path) -> list[dict[str, Any]]:
    """The categories of a COCO json sorted by id (their order defines the contiguous classes)."""
    doc = _read_json(json_path)
    return sorted(doc.get("categories", []), key=lambda c: c["id"])


def _read_json(json_path: str | Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(json_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read COCO json {str(json_path)!r}: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise ValueError(f"{json_path}: not a COCO annotation file (no 'images' list)")
    bad = [im for im in doc["images"] if not isinstance(im, dict) or "id" not in im or "file_name" not in im]
    if bad:
        raise ValueError(f"{json_path}: {len(bad)} 'images' entries lack an id or file_name, e.g. {bad[0]!r}")
    return doc


@dataclass
class CocoSplit:
    """COCO annotations turned into the YOLO convention, image by image."""

    img_files: list[str]
    label_texts: list[str]  # one YOLO label text per image (class x y w h normalised)
    image_ids: list[int]
    category_ids: list[int]  # class -> category id
    names: list[str]
    n_crowd: int  # crowd annotations left out (the reference's convention for training)


def coco_images_dir_candidates(json_path: Path) -> list[Path]:
    """The folders `coco_images_dir` looks in first, in order: images/<split>, <split>, images."""
    split = json_path.stem.removeprefix("instances_")
    root = json_path.parent.parent
    return [root / "images" / split, root / split, root / "images"]


def coco_images_dir(json_path: Path, first_file: str | list[str] | None = None) -> Path:
    """Guess the images folder of `annotations/instances_<split>.json`: images/<split>, <split> or images,
    or the json's own folder (Roboflow's `train/_annotations.coco.json`). Given the json's first file
    names (`first_file`, one or a list), the first folder that holds one of them wins, and none holding
    any raises FileNotFoundError; without names, the first of the three that exists."""
    candidates = coco_images_dir_candidates(json_path)
    names = [first_file] if isinstance(first_file, str) else list(first_file or [])
    if names:
        for c in [*candidates, json_path.parent]:
            if any((c / name).is_file() for name in names):
                return c
    for c in candidates:
        if c.is_dir() and not names:
            return c
    tried = ", ".join(repr(str(c)) for c in [*candidates, *([json_path.parent] if names else [])])
    held = f" holds its images (e.g. {names[0]!r})" if names else " exists"
    raise FileNotFoundError(f"image folder of {str(json_path)!r} not found: none of {tried}{held}")


def read_coco_json(json_path: str | Path, images_dir: str | Path | None = None) -> CocoSplit:
    """Read COCO detection annotations; boxes become normalised YOLO rows of contiguous classes.

    Boxes are written with full float precision and checked later by the same row rules as YOLO
    files, so a bad annotation is counted and reported in the same way.
    """
    json_path = Path(json_path)
    doc = _read_json(json_path)
    # the first 20 file names, so that a missing first image alone still finds the folder
    first = [im["file_name"] for im in doc["images"][:20]]
    img_dir = Path(images_dir) if images_dir is not None else coco_images_dir(json_path, first)
    cats = sorted(doc.get("categories", []), key=lambda c: c["id"])
    cat_to_cls = {c["id"]: i for i, c in enumerate(cats)}
    by_image: dict[int, list[str]] = {}
    n_crowd = n_orphans = 0
    sizes = {im["id"]: (im.get("width"), im.get("height")) for im in doc["images"]}
    for a in doc.get("annotations", []):
        if a.get("iscrowd", 0):
            n_crowd += 1
            continue
        if a.get("image_id") not in sizes:
            n_orphans += 1
            continue
        w_img, h_img = sizes[a["image_id"]]
        box = a.get("bbox")
        cls = cat_to_cls.get(a.get("category_id"), -1)
        if not w_img or not h_img or not isinstance(box, list) or len(box) != 4:
            row = f"{cls} nan nan nan nan"  # dropped and counted by the row rules, like a bad YOLO row
        else:
            x, y, w, h = box
            row = f"{cls} {(x + w / 2) / w_img!r} {(y + h / 2) / h_img!r} {w / w_img!r} {h / h_img!r}"
        by_image.setdefault(a["image_id"], []).append(row)
    if n_orphans:
        logger.warning("%s: %d annotations name an image id not in 'images'; left out", json_path, n_orphans)
    images = sorted(doc["images"], key=lambda im: im["file_name"])
    return CocoSplit(
        img_files=[str(img_dir / im["file_name"]) for im in images],
        label_texts=["\n".join(by_image.get(im["id"], [])) for im in images],
        image_ids=[im["id"] for im in images],
        category_ids=[c["id"] for c in cats],
        names=[c["name"] for c in cats],
        n_crowd=n_crowd,
    )
