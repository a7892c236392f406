"""Scanning a data set: verify every image, read every label, count and report each problem once.

The result is cached in a `.yolov7lib.cache` file next to the labels (or in the user cache folder when
that folder is not writable), keyed by a hash of the files' paths, sizes, modification and change times
and inode numbers, so a changed, added or removed file triggers a new scan, also one whose modification
time was put back (`touch -r`, `cp -p`, an unzip over the set: the change time moves all the same).
A COCO json's cache also keeps the images the json lists, so that while the json file is unchanged a
cached scan checks those images without parsing the json again.
The cache is a plain numpy archive read without pickle; a file in the way that is not such a cache is
never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from yolov7lib.data.formats import (
    IMG_FORMATS,
    LABEL_LAYOUT,
    coco_images_dir_candidates,
    img2label_path,
    list_image_files,
    parse_label_text,
    read_coco_json,
)

logger = logging.getLogger(__name__)

CACHE_VERSION = 6  # 2: non-JPEG images checked and sized by OpenCV, the loader's decoder; 3: `emptied`;
# 4: label files read without a UTF-8 byte order mark (scans of such files dropped their first row);
# 5: a folder in a label file's place is an unreadable label file (was counted as a background), and
# label files read for several images (a.jpg and a.png) are reported; 6: a COCO json's cache holds the
# json's own key and every image it lists, so a cached scan does not parse the json
CACHE_SUFFIX = ".yolov7lib.cache"
MIN_IMAGE_SIDE = 10
EXIF_ORIENTATION = 0x0112


@dataclass
class ScanReport:
    """What a scan found: the counts of the reference's scan line plus every problem with its reason."""

    source: str
    images: int = 0  # image files found (usable or not)
    labelled: int = 0  # label files found
    missing: int = 0  # images without a label file: backgrounds
    empty: int = 0  # label files without any row: backgrounds
    emptied: int = 0  # label files whose every row was dropped: backgrounds as well
    non_images: int = 0  # other files skipped for their suffix
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (image, reason): image skipped
    dropped_rows: Counter = field(default_factory=Counter)  # reason -> rows dropped
    row_problems: list[tuple[str, str]] = field(default_factory=list)  # (label file, what was dropped)
    crowd: int = 0  # COCO crowd annotations left out
    shared_labels: list[tuple[str, str]] = field(default_factory=list)  # (label file, its images) read twice

    @property
    def usable(self) -> int:
        """Images kept for training or evaluation."""
        return self.images - len(self.corrupt)

    @property
    def backgrounds(self) -> int:
        """Usable images that train without a box: no label file, an empty one, or every row dropped."""
        return self.missing + self.empty + self.emptied

    @property
    def duplicate_files(self) -> int:
        """Label files with at least one repeated row."""
        return sum("duplicate row" in what for _, what in self.row_problems)

    def line(self) -> str:
        """The one-line summary, in the reference's words plus the rows dropped."""
        text = (
            f"Scanning '{self.source}' images and labels... {self.labelled} found, {self.missing} missing, "
            f"{self.empty} empty, {len(self.corrupt)} corrupted"
        )
        n_rows = sum(self.dropped_rows.values())
        if n_rows:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.dropped_rows.items()))
            text += f", {n_rows} label rows dropped ({reasons})"
        if self.non_images:
            text += f", {self.non_images} non-image files ignored"
        if self.crowd:
            text += f", {self.crowd} crowd annotations left out"
        if self.shared_labels:
            text += f", {len(self.shared_labels)} label files read for several images"
        return text

    def details(self) -> list[str]:
        """One line per skipped image and per label file with dropped rows."""
        lines = []
        if self.usable and not self.labelled and self.missing:  # more likely a wrong folder than backgrounds
            lines.append(
                f"no label file for any of the {self.missing} images: YOLO labels are read from "
                + LABEL_LAYOUT
            )
        lines += [f"corrupt image skipped: {path}: {reason}" for path, reason in self.corrupt]
        lines += [f"label rows dropped: {path}: {what}" for path, what in self.row_problems]
        lines += [
            f"one label file for several images (same name, other suffix): {path}: {images}"
            for path, images in self.shared_labels
        ]
        return lines

    def to_json(self) -> str:
        d = dict(self.__dict__)
        d["dropped_rows"] = dict(self.dropped_rows)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> ScanReport:
        d = json.loads(text)
        d["dropped_rows"] = Counter(d["dropped_rows"])
        d["corrupt"] = [tuple(x) for x in d["corrupt"]]
        d["row_problems"] = [tuple(x) for x in d["row_problems"]]
        d["shared_labels"] = [tuple(x) for x in d["shared_labels"]]
        return cls(**d)


@dataclass
class ScanResult:
    """The usable images of a source with their labels, sizes and (optional) polygons."""

    img_files: list[str]
    labels: list[np.ndarray]  # per image (n, 5) float32: class, x, y, w, h normalised
    shapes: np.ndarray  # (n_images, 2) int: width, height as displayed (EXIF orientation applied)
    segments: list[list[np.ndarray]]  # per image, per label row an (k, 2) normalised polygon, or []
    report: ScanReport
    image_ids: list[int] | None = None  # COCO image ids, when read from a json
    cache_file: Path | None = None


# -- one image, one label file --------------------------------------------------------------------------


def verify_image(path: str) -> tuple[int, int]:
    """Check that an image decodes; return its displayed (width, height) or raise ValueError(reason).

    JPEGs are decoded at 1/8 scale (every compressed byte is still read, which is what catches
    truncation and corruption). Other formats are decoded in full by OpenCV, the loader's decoder: an
    image the loader could not read would otherwise be replaced by another one mid-epoch, and whether
    an EXIF orientation is applied to a PNG, WebP or TIFF depends on the OpenCV version.
    """
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ValueError(f"cannot read file ({e.strerror})") from e
    if size == 0:
        raise ValueError("zero-byte file")
    try:
        with Image.open(path) as im:
            fmt = (im.format or "").lower()
            if fmt not in IMG_FORMATS:
                raise ValueError(f"unsupported image format {im.format}")
            w, h = im.size
            if w < MIN_IMAGE_SIDE or h < MIN_IMAGE_SIDE:
                raise ValueError(f"image size {w}x{h} is under {MIN_IMAGE_SIDE} pixels")
            if fmt in ("jpeg", "mpo"):
                orientation = im.getexif().get(EXIF_ORIENTATION, 1)
                im.draft("RGB", (max(1, w // 8), max(1, h // 8)))
                im.load()
    except UnidentifiedImageError as e:
        raise ValueError("not an image (unknown format)") from e
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"corrupt image: {e}") from e
    if fmt not in ("jpeg", "mpo"):
        img = cv2.imread(path, cv2.IMREAD_COLOR)  # exactly as the loader reads it
        if img is None:
            raise ValueError(f"corrupt image: OpenCV cannot decode this {fmt.upper()} file")
        h, w = img.shape[:2]
        return w, h
    if orientation in (5, 6, 7, 8):  # EXIF rotations by 90 degrees: displayed sides swapped
        w, h = h, w
    return w, h


def _problem_text(dropped: Counter) -> str:
    n = sum(dropped.values())
    return (
        f"dropped {n} row{'s' * (n != 1)} (" + ", ".join(f"{c} {r}" for r, c in sorted(dropped.items())) + ")"
    )


def _scan_one(img_file: str, label_text: str | None, label_name: str, nc: int | None):
    """(kind, payload) for one image: ('ok', (label parse, shape, has_label, empty)) or ('bad', reason)."""
    try:
        shape = verify_image(img_file)
    except ValueError as e:
        return "bad", str(e)
    if label_text is None:
        lf = Path(label_name)
        if not lf.exists():  # a folder of that name is no background: reading it fails below, reported
            return "ok", (parse_label_text(""), shape, False, False)
        try:
            label_text = lf.read_text(encoding="utf-8-sig")  # a BOM is not part of the first row
        except (OSError, UnicodeDecodeError) as e:
            return "bad", f"unreadable label file {label_name}: {e}"
    parsed = parse_label_text(label_text, nc)
    return "ok", (parsed, shape, True, not label_text.strip())


# -- cache ----------------------------------------------------------------------------------------------


def user_cache_dir() -> Path:
    """Where caches go when the data folder is not writable: $YOLOV7LIB_CACHE_DIR or ~/.cache/yolov7lib."""
    env = os.environ.get("YOLOV7LIB_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "yolov7lib"


def files_hash(files: list[str], nc: int | None, extra: str = "") -> str:
    """A hash of the paths, sizes, modification and change times and inodes of `files` (absent ones too).

    The change time (ctime) is set by the system on every write, rename or metadata change and by no
    user tool, so an edit that keeps the size and puts the modification time back is still seen; the
    reference hashes paths and sizes only.
    """
    h = hashlib.sha256(f"v{CACHE_VERSION}|nc={nc}|{extra}".encode())
    for f in files:
        try:
            st = os.stat(f)
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}\n".encode())
        except OSError:
            h.update(f"{f}|absent\n".encode())
    return h.hexdigest()


def _default_cache_path(source: list[Path], first_label: Path) -> Path:
    """Next to a list file (train2017.txt -> train2017.yolov7lib.cache), else beside the label folder."""
    last = source[-1]
    if last.is_file():
        return last.with_name(last.stem + CACHE_SUFFIX)
    return first_label.parent.with_name(first_label.parent.name + CACHE_SUFFIX)


def _fallback_cache_path(default: Path) -> Path:
    key = hashlib.sha256(str(default.resolve()).encode()).hexdigest()[:20]
    return user_cache_dir() / f"{key}{CACHE_SUFFIX}"


def _is_our_cache(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return "yolov7lib_cache" in z.files
    except Exception:  # any file that is not a readable numpy archive of ours
        return False


def _json_key(json_path: Path, nc: int | None, images_dir: str | Path | None) -> str:
    """What fixes the images a COCO json lists: its file (by `files_hash`), the images folder given, and
    which of the folders that `coco_images_dir` would pick from exist."""
    folders = (
        [str(c) for c in coco_images_dir_candidates(json_path) if c.is_dir()] if images_dir is None else []
    )
    return files_hash([str(json_path)], nc, f"coco|{images_dir}|{folders}")


def _holds(z: np.lib.npyio.NpzFile, field: str, value: str) -> bool:
    """Whether the opened archive `z` is a cache of ours, of this version, whose `field` is `value`."""
    return (
        "yolov7lib_cache" in z.files
        and field in z.files
        and int(z["version"]) == CACHE_VERSION
        and str(z[field]) == value
    )


def _cached_json_files(path: Path, json_key: str) -> list[str] | None:
    """The images that the COCO json of a cache listed when it was written, if the json is unchanged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return [str(f) for f in z["listed"]] if _holds(z, "json_key", json_key) else None
    except Exception:  # unreadable or foreign: the json is read
        return None


def _read_cache(path: Path, key: str) -> ScanResult | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if not _holds(z, "hash", key):
                return None
            files = [str(f) for f in z["files"]]
            counts = z["label_counts"]
            labels = np.split(z["labels"], np.cumsum(counts)[:-1]) if len(counts) else []
            # split the points over the rows of images with polygons only: the other rows have none, and
            # one empty array per box of a detection set (1.5M for 20k images) took most of the read
            has_segments = z["has_segments"]
            seg_counts = z["seg_counts"][np.repeat(has_segments, counts)]
            points = np.split(z["seg_points"], np.cumsum(seg_counts)[:-1]) if len(seg_counts) else []
            segments, k = [], 0
            for n, has in zip(counts, has_segments, strict=True):
                segments.append(list(points[k : k + n]) if has else [])
                k += n * has
            image_ids = [int(i) for i in z["image_ids"]] if z["image_ids"].size else None
            report = ScanReport.from_json(str(z["report"]))
            return ScanResult(files, list(labels), z["shapes"], segments, report, image_ids, path)
    except Exception as e:  # unreadable or foreign: scan again
        logger.debug("cache %s not usable: %s", path, e)
        return None


def _from_cache(
    candidates: list[Path], key_of: Callable[[Path], str | None], prefix: str
) -> ScanResult | None:
    """The scan held by the first of the `candidates` cache files whose key is `key_of(file)` (None: that
    file cannot hold it), its report logged; None when none does."""
    for c in candidates:
        key = key_of(c) if c.is_file() else None
        res = _read_cache(c, key) if key is not None else None
        if res is not None:
            _log_report(res.report, prefix, cached=c)
            return res
    return None


def _write_cache(path: Path, key: str, res: ScanResult, extra: dict[str, np.ndarray] | None = None) -> bool:
    counts = np.array([len(lb) for lb in res.labels], np.int64)
    seg_counts, seg_points = [], []
    for lb, segs in zip(res.labels, res.segments, strict=True):
        seg_counts += [len(s) for s in segs] if segs else [0] * len(lb)
        seg_points += list(segs)
    arrays = {
        "yolov7lib_cache": np.array(1),
        "version": np.array(CACHE_VERSION),
        "hash": np.array(key),
        "files": np.array(res.img_files, dtype=str),
        "labels": np.concatenate(res.labels, 0) if res.labels else np.zeros((0, 5), np.float32),
        "label_counts": counts,
        "shapes": np.asarray(res.shapes, np.int64).reshape(-1, 2),
        "has_segments": np.array([bool(s) for s in res.segments], bool),
        "seg_counts": np.array(seg_counts, np.int64),
        "seg_points": np.concatenate(seg_points, 0) if seg_points else np.zeros((0, 2), np.float32),
        "image_ids": np.array(res.image_ids or [], np.int64),
        "report": np.array(res.report.to_json()),
        **(extra or {}),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=CACHE_SUFFIX, dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return True
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return False


# -- the scan -------------------------------------------------------------------------------------------


def scan_source(
    source: str | Path | list[str | Path],
    nc: int | None = None,
    cache: bool = True,
    images_dir: str | Path | None = None,
    progress: bool = True,
    prefix: str = "",
) -> ScanResult:
    """Scan a YOLO source (folder, list file, list of them) or a COCO json; use or refresh the cache.

    Corrupt images and unreadable label files are skipped, malformed label rows dropped; each is counted
    in the report, which is logged once (a warning when something was skipped). Input files are only read.
    """
    sources = [Path(s) for s in (source if isinstance(source, list | tuple) else [source])]
    coco = None
    json_key = None
    if len(sources) == 1 and sources[0].suffix == ".json":
        json_key = _json_key(sources[0], nc, images_dir)
        default_cache = sources[0].with_name(sources[0].stem + CACHE_SUFFIX)
        if cache:  # the json unchanged, its images by their stats: COCO's 448 MB json is not parsed again

            def listed_key(c: Path) -> str | None:
                listed = _cached_json_files(c, json_key)
                return None if listed is None else files_hash([str(sources[0]), *listed], nc)

            res = _from_cache([default_cache, _fallback_cache_path(default_cache)], listed_key, prefix)
            if res is not None:
                return res
        coco = read_coco_json(sources[0], images_dir)
        img_files, label_texts, n_other = coco.img_files, list(coco.label_texts), 0
        label_files = [f"{sources[0]} [{Path(f).name}]" for f in img_files]
        hash_files = [str(sources[0]), *img_files]
    else:
        img_files, n_other = list_image_files(sources)
        label_texts = [None] * len(img_files)
        label_files = [str(img2label_path(f)) for f in img_files]
        hash_files = img_files + label_files
        if not img_files:
            yaml_given = any(s.suffix in (".yaml", ".yml") for s in sources)
            hint = (
                " (a data.yaml describes the data set; pass one of its splits, "
                "e.g. yolov7lib.data.load_data_config(path).splits['train'])"
                if yaml_given
                else ""
            )
            raise FileNotFoundError(f"{prefix}no images found in {', '.join(map(str, sources))}{hint}")
        default_cache = _default_cache_path(sources, Path(label_files[0]))
    if not img_files:
        raise FileNotFoundError(f"{prefix}no images listed in {sources[0]}")

    key = files_hash(hash_files, nc)
    cache_candidates = [default_cache, _fallback_cache_path(default_cache)]
    if cache and (res := _from_cache(cache_candidates, lambda c: key, prefix)) is not None:
        return res

    report = ScanReport(source=", ".join(map(str, sources)), images=len(img_files), non_images=n_other)
    if coco is None:  # a.jpg and a.png both read labels/a.txt: right for at most one of them
        readers: dict[str, list[str]] = {}
        for img, lf in zip(img_files, label_files, strict=True):
            readers.setdefault(lf, []).append(Path(img).name)
        report.shared_labels = [(lf, ", ".join(imgs)) for lf, imgs in readers.items() if len(imgs) > 1]
    report.crowd = coco.n_crowd if coco else 0
    kept_files, labels, shapes, segments, ids = [], [], [], [], []
    jobs = zip(img_files, label_texts, label_files, [nc] * len(img_files), strict=True)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda a: _scan_one(*a), jobs)
        bar = tqdm(results, total=len(img_files), desc=f"{prefix}Scanning", disable=not progress, leave=False)
        for i, (kind, payload) in enumerate(bar):
            if kind == "bad":
                report.corrupt.append((img_files[i], payload))
                continue
            parsed, shape, has_label, empty = payload
            report.labelled += has_label
            report.missing += not has_label
            report.empty += empty
            if parsed.dropped:
                report.emptied += not len(parsed.labels)
                report.dropped_rows.update(parsed.dropped)
                report.row_problems.append((label_files[i], _problem_text(parsed.dropped)))
            kept_files.append(img_files[i])
            labels.append(parsed.labels)
            shapes.append(shape)
            segments.append(parsed.segments)
            if coco:
                ids.append(coco.image_ids[i])
    result = ScanResult(
        kept_files, labels, np.array(shapes, np.int64).reshape(-1, 2), segments, report, ids if coco else None
    )
    _log_report(report, prefix)
    if cache:
        extra = {"json_key": np.array(json_key), "listed": np.array(img_files, dtype=str)} if coco else None
        for c in cache_candidates:
            if (not c.exists() or _is_our_cache(c)) and _write_cache(c, key, result, extra):
                result.cache_file = c
                break
        else:
            logger.warning("%slabel cache not written (no writable place for it)", prefix)
    return result


def _log_report(report: ScanReport, prefix: str, cached: Path | None = None) -> None:
    problems = report.details()
    level = logging.WARNING if problems or report.usable == 0 else logging.INFO
    origin = f" (from cache {cached})" if cached else ""
    logger.log(level, "%s%s%s", prefix, report.line(), origin)
    for line in problems[:20]:
        logger.log(level, "%s  %s", prefix, line)
    if len(problems) > 20:
        logger.log(level, "%s  ... and %d more (run `yolov7 data check` for all)", prefix, len(problems) - 20)
