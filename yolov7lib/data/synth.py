"""The generated default data set: shapes on cluttered, textured backgrounds.

The kit trains and evaluates on this set when COCO is not at hand. Eight classes differ in shape (their
colours are drawn at random per object, so colour carries no class information); backgrounds mix smooth
colour fields, stripes, grids and noise with distractor lines, arcs and irregular blobs; objects occlude
each other and are crossed by thin foreground lines; their sizes spread over COCO's small (< 32² px),
medium and large (> 96² px) area ranges at the default 320 px, so that AP_S, AP_M and AP_L mean something.
Every box is the tight box of the object's *visible* pixels and every COCO `area` is their count.

Each image is drawn from its own random stream, seeded by (seed, split, index), so the output is the
same bytes whatever the number of processes.
"""

from __future__ import annotations

import ctypes
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from yolov7lib.ops.boxes import xyxy2xywhn

CLASS_NAMES = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "crescent")
# COCO category ids of the classes: deliberately neither 0..nc-1 nor 1..nc, so that every consumer
# exercises the category id <-> contiguous class mapping, as COCO's 80 classes over ids 1..90 do.
CATEGORY_IDS = (2, 3, 5, 7, 11, 13, 17, 19)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

MIN_VISIBLE = 0.65  # an object keeps at least 65 % of its area visible (occlusion and image border)
SIDE_RANGE = (0.045, 0.9)  # object diameter as a fraction of the long image side, log-uniform
JPEG_QUALITY = 90


def _polygon(k: int, radius: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    t = phase + np.arange(k) * 2 * math.pi / k
    return np.stack([np.cos(t), np.sin(t)], 1) * radius


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _polygon(2 * points)
    outer[1::2] *= inner
    return outer


def _cross(arm: float = 0.32) -> np.ndarray:
    a = arm
    return np.array([
        [-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
        [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a],
    ])  # fmt: skip


# Unit outlines (radius about 1, centred): (filled polygon, hole polygons cut out of it).
SHAPES: dict[str, tuple[np.ndarray, tuple[np.ndarray, ...]]] = {
    "circle": (_polygon(48), ()),
    "square": (np.array([[-0.82, -0.82], [0.82, -0.82], [0.82, 0.82], [-0.82, 0.82]]), ()),
    "triangle": (_polygon(3) + np.array([0.0, 0.25]), ()),
    "star": (_star(), ()),
    "cross": (_cross(), ()),
    "ring": (_polygon(48), (_polygon(40, 0.55),)),
    "hexagon": (_polygon(6, phase=0.0), ()),
    "crescent": (_polygon(48), (_polygon(48, 0.86) + np.array([0.42, -0.12]),)),
}


@dataclass(frozen=True)
class SynthObject:
    """One labelled object of a generated image: class, visible box (pixel corners), visible area."""

    cls: int
    box: tuple[int, int, int, int]
    area: int


# -- backgrounds ----------------------------------------------------------------------------------------


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int, channels: int) -> np.ndarray:
    """Random values on a coarse grid, upsampled: a smooth random field in [0, 1], float32."""
    gh, gw = max(2, round(cells * h / max(h, w))), max(2, round(cells * w / max(h, w)))
    grid = rng.random((gh, gw, channels), dtype=np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return field.reshape(h, w, channels)


def _grey3(x: np.ndarray) -> np.ndarray:
    """A single-channel float image repeated over three channels (faster than numpy broadcasting)."""
    return cv2.merge([x, x, x])


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured background: a muted smooth colour field plus one or two texture layers, float32 BGR."""
    lo, hi = rng.uniform(30, 110), rng.uniform(150, 230)
    img = lo + (hi - lo) * _smooth_field(rng, h, w, int(rng.integers(2, 6)), 3)
    grey = _grey3(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    keep = rng.uniform(0.2, 0.9)  # muted colours; the objects carry the strong ones
    img = cv2.addWeighted(img, keep, grey, 1.0 - keep, 0.0)
    texture = np.zeros((h, w), np.float32)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    for kind in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
        amp = rng.uniform(10, 35)
        if kind == 0:  # fine value noise
            texture += amp * 2 * (_smooth_field(rng, h, w, int(rng.integers(16, 48)), 1)[..., 0] - 0.5)
        elif kind == 1:  # stripes
            theta, period = rng.uniform(0, math.pi), rng.uniform(6, 40)
            texture += amp * np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * (2 * math.pi / period))
        elif kind == 2:  # grid of lines
            step = int(rng.integers(12, 48))
            tone = rng.uniform(-1, 1) * amp * 2
            texture[::step, :] += tone
            texture[:, ::step] += tone
        else:  # tiles
            step = int(rng.integers(16, 64))
            checker = (np.arange(h)[:, None] // step + np.arange(w)[None, :] // step) % 2
            texture += amp * (checker.astype(np.float32) - 0.5)
    img += _grey3(texture)
    return img


def _random_colour(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(lo, hi, 3))


def _clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    """Distractors that belong to no class: lines, arcs and irregular many-sided blobs, drawn in place."""
    h, w = img.shape[:2]
    side = max(h, w)
    for _ in range(int(rng.integers(4, 16))):
        colour = _random_colour(rng, 20, 235)
        kind = rng.integers(3)
        if kind == 0:
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p1, p2, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        elif kind == 1:
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(5, side // 4)), int(rng.integers(5, side // 4)))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(
                img, centre, axes, float(rng.uniform(0, 180)), start, start + float(rng.uniform(60, 200)),
                colour, int(rng.integers(1, 3)), cv2.LINE_AA,
            )  # fmt: skip
        else:  # irregular blob: many vertices with strongly jittered radii, unlike any class outline
            k = int(rng.integers(9, 16))
            radii = rng.uniform(0.35, 1.0, k) * rng.uniform(0.02, 0.12) * side
            t = np.sort(rng.uniform(0, 2 * math.pi, k))
            centre = rng.uniform(0, 1, 2) * (w, h)
            pts = centre + np.stack([np.cos(t), np.sin(t)], 1) * radii[:, None]
            cv2.fillPoly(img, [np.round(pts).astype(np.int32)], colour, cv2.LINE_AA)


# -- objects --------------------------------------------------------------------------------------------


def _object_mask(cls: int, centre: np.ndarray, radius: float, angle: float, aspect: float):
    """Rasterise one object: (mask uint8 of its bounding rectangle, x0, y0) in image pixel coordinates."""
    outline, holes = SHAPES[CLASS_NAMES[cls]]
    c, s = math.cos(angle), math.sin(angle)
    m = np.array([[c, -s], [s, c]]) @ np.diag([radius, radius * aspect])

    def place(poly: np.ndarray) -> np.ndarray:
        return poly @ m.T + centre

    body = place(outline)
    x0, y0 = np.floor(body.min(0)).astype(int)
    x1, y1 = np.ceil(body.max(0)).astype(int) + 1
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shift = 4  # sub-pixel vertex precision

    def raster(poly: np.ndarray) -> np.ndarray:
        return np.round((place(poly) - (x0, y0)) * (1 << shift)).astype(np.int32)

    cv2.fillPoly(mask, [raster(outline)], 1, cv2.LINE_8, shift)
    for hole in holes:
        cv2.fillPoly(mask, [raster(hole)], 0, cv2.LINE_8, shift)
    return mask, int(x0), int(y0)


def _clip_to_image(mask: np.ndarray, x0: int, y0: int, h: int, w: int):
    """The part of an object's mask inside the image: (mask, ix0, iy0, ix1, iy1) or None if outside."""
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + mask.shape[1], w), min(y0 + mask.shape[0], h)
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    return mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0], ix0, iy0, ix1, iy1


def _paint_object(
    rng: np.random.Generator, img: np.ndarray, base: np.ndarray, roi: tuple, mask: np.ndarray, paint: bool
) -> None:
    """Fill an object's pixels with a colour contrasting with the background `base` under it, a soft
    shading and (often) a darker rim; with `paint=False` draw the same random numbers but write nothing."""
    ix0, iy0, ix1, iy1 = roi
    patch = img[iy0:iy1, ix0:ix1]
    sel = mask.astype(bool)
    local = sum(cv2.mean(base[iy0:iy1, ix0:ix1], mask)[:3]) / 3  # mean background brightness under it
    hue = rng.uniform(0, 180)
    sat = rng.uniform(120, 255)
    val = rng.uniform(185, 255) if local < 128 else rng.uniform(25, 75)
    hsv = np.array([[[hue, sat, val]]], np.uint8)
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    hh, ww = mask.shape
    theta = rng.uniform(0, 2 * math.pi)
    yy = np.arange(hh, dtype=np.float32)[:, None] * math.sin(theta)
    xx = np.arange(ww, dtype=np.float32)[None, :] * math.cos(theta)
    ramp = (xx + yy) / max(hh, ww, 1)
    shade = 1.0 + rng.uniform(0.0, 0.35) * (ramp - ramp.mean())
    if rng.random() < 0.6 and min(hh, ww) > 8:  # darker rim: the mask minus its erosion
        shade[(mask - cv2.erode(mask, np.ones((3, 3), np.uint8))).astype(bool)] *= 0.45
    fill = cv2.merge([shade * float(c) for c in colour])
    if paint:
        np.copyto(patch, fill, where=sel[..., None])


def _foreground_line(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A thin occluding line over the whole image, as a boolean mask."""
    line = np.zeros((h, w), np.uint8)
    p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    cv2.line(line, p1, p2, 1, int(rng.integers(1, 4)))
    return line.astype(bool)


def render_image(
    seed: int, split: str, index: int, img_size: int = 320, hide: int | None = None
) -> tuple[np.ndarray, list[SynthObject]]:
    """Draw one image of the generated set and its labels; a pure function of its arguments.

    Returns the BGR uint8 image and its objects, each with the tight box of its visible pixels and the
    number of those pixels. Objects never lose more than 35 % of their area to occlusion or the border.
    `hide=k` leaves object k unpainted and changes nothing else, so the pixels that differ from the
    full image are exactly those where object k is visible (how the tests check the boxes).
    """
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    long_side = img_size
    short = round(long_side * rng.uniform(0.6, 1.0))
    h, w = (long_side, short) if rng.random() < 0.3 else (short, long_side)

    img = _background(rng, h, w)
    _clutter(rng, img)
    base = img.copy()  # object colours contrast with this, whatever objects lie below them

    owner = np.full((h, w), -1, np.int16)  # index of the object that owns each pixel, -1 = none
    classes: list[int] = []
    full_area: list[int] = []
    visible: list[int] = []
    rois: list[tuple[int, int, int, int]] = []
    n_target = 0 if rng.random() < 0.03 else int(rng.integers(1, 9))
    lo, hi = (math.log(f * long_side) for f in SIDE_RANGE)
    radii = np.sort(np.exp(rng.uniform(lo, hi, n_target)) / 2)[::-1]  # large first: fewer rejections
    for radius in radii:
        cls = int(rng.integers(len(CLASS_NAMES)))
        angle = math.radians(rng.uniform(-25, 25))
        aspect = rng.uniform(0.8, 1.25)
        for _attempt in range(12):
            centre = rng.uniform(0, 1, 2) * (w, h)
            mask, x0, y0 = _object_mask(cls, centre, radius, angle, aspect)
            total = int(mask.sum())
            clipped = _clip_to_image(mask, x0, y0, h, w)
            if clipped is None or total == 0:
                continue
            m, ix0, iy0, ix1, iy1 = clipped
            inside = int(m.sum())
            if inside < MIN_VISIBLE * total:
                continue
            sel = m.astype(bool)
            covered = np.bincount(owner[iy0:iy1, ix0:ix1][sel] + 1, minlength=len(classes) + 1)[1:]
            if any(visible[j] - covered[j] < MIN_VISIBLE * full_area[j] for j in range(len(classes))):
                continue
            k = len(classes)
            owner[iy0:iy1, ix0:ix1][sel] = k
            for j in np.nonzero(covered)[0]:
                visible[j] -= int(covered[j])
            classes.append(cls)
            full_area.append(total)
            visible.append(inside)
            rois.append((ix0, iy0, ix1, iy1))
            _paint_object(rng, img, base, (ix0, iy0, ix1, iy1), m, paint=k != hide)
            break

    for _ in range(int(rng.integers(0, 4))):  # thin lines in front of the objects: partial occlusion
        line = _foreground_line(rng, h, w)
        covered = np.bincount(owner[line] + 1, minlength=len(classes) + 1)[1:]
        if any(visible[j] - covered[j] < MIN_VISIBLE * full_area[j] for j in range(len(classes))):
            continue
        img[line] = _random_colour(rng, 20, 235)
        owner[line] = -1
        for j in np.nonzero(covered)[0]:
            visible[j] -= int(covered[j])

    img += _grey3(rng.standard_normal((h, w), dtype=np.float32) * rng.uniform(2, 7))  # sensor-like noise
    out = cv2.convertScaleAbs(img)  # saturating float -> uint8

    objects = []
    for k, (cls, (ix0, iy0, ix1, iy1)) in enumerate(zip(classes, rois, strict=True)):
        ys, xs = np.nonzero(owner[iy0:iy1, ix0:ix1] == k)
        if len(xs) == 0:
            continue
        box = (ix0 + int(xs.min()), iy0 + int(ys.min()), ix0 + int(xs.max()) + 1, iy0 + int(ys.max()) + 1)
        objects.append(SynthObject(cls, box, len(xs)))
    return out, objects


# -- writing the data set -------------------------------------------------------------------------------


def _init_worker() -> None:
    """A synth worker process: OpenCV single-threaded (the processes are the parallelism), and glibc
    told to keep freed memory instead of unmapping it, which removes a page-fault storm on the
    megabyte-sized temporaries of every image (about 3 ms of system time per image, a quarter of it)."""
    cv2.setNumThreads(1)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
        except OSError:  # not glibc: keep the defaults
            pass


def _render_and_write(job: tuple[int, str, int, int, str]) -> tuple[int, int, list[SynthObject]]:
    seed, split, index, img_size, path = job
    img, objects = render_image(seed, split, index, img_size)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    Path(path).write_bytes(buf.tobytes())
    return img.shape[0], img.shape[1], objects


def _label_lines(objects: list[SynthObject], h: int, w: int) -> str:
    if not objects:
        return ""
    xyxy = np.array([o.box for o in objects], np.float64)
    xywhn = xyxy2xywhn(xyxy, w=w, h=h)
    return "".join(
        f"{o.cls} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n"
        for o, (x, y, bw, bh) in zip(objects, xywhn, strict=True)
    )


def _coco_json(split: str, records: list[tuple[str, int, int, list[SynthObject]]], seed: int) -> str:
    images, annotations = [], []
    for image_id, (name, h, w, objects) in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for o in objects:
            x1, y1, x2, y2 = o.box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": CATEGORY_IDS[o.cls],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": o.area,
                    "iscrowd": 0,
                }
            )
    doc = {
        "info": {"description": f"yolov7lib generated shapes, {split} split, seed {seed}", "version": "1"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": cid, "name": name, "supercategory": "shape"}
            for cid, name in zip(CATEGORY_IDS, CLASS_NAMES, strict=True)
        ],
    }
    return json.dumps(doc, separators=(",", ":"))


GENERATED_HEADER = "# Generated by `yolov7 data synth`"
"""How the data.yaml of a generated set begins (`pipeline.is_generated_set` recognises sets by it)."""


def _data_yaml(seed: int, counts: dict[str, int], img_size: int) -> str:
    names = ", ".join(f"'{n}'" for n in CLASS_NAMES)
    lines = [
        f"{GENERATED_HEADER}: seed {seed}, long image side {img_size} px, "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + " images.",
        "# Relative paths are resolved against this file's folder.",
        *(f"{split}: images/{split}" for split in counts),
        "",
        f"nc: {len(CLASS_NAMES)}",
        f"names: [{names}]",
        "",
        "# COCO-format annotations of the same images (category ids are not 0..nc-1).",
        *(f"{split}_json: annotations/instances_{split}.json" for split in counts),
        "",
    ]
    return "\n".join(lines)


def _jobs(seed: int, split: str, n: int, img_size: int, img_dir: Path) -> Iterator[tuple]:
    for i in range(n):
        yield seed, split, i, img_size, str(img_dir / f"{i:06d}.jpg")


def synthesize(
    out: str | Path,
    n_train: int = 2000,
    n_val: int = 500,
    img_size: int = 320,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the generated data set to `out` (which must not exist or be empty); return its data.yaml.

    Layout: images/{train,val}/*.jpg, labels/{train,val}/*.txt (YOLO: class x y w h, normalised),
    annotations/instances_{train,val}.json (COCO) and data.yaml (train, val, nc, names). The set is built
    in a temporary sibling folder and moved into place at the end, so an interrupted run leaves nothing
    half-written under `out`. Same arguments, same bytes, whatever `workers` is.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; choose a new output folder")
    if n_train < 0 or n_val < 0 or n_train + n_val == 0:
        raise ValueError("need at least one image: --train and --val must be >= 0 and not both 0")
    if img_size < 64:
        raise ValueError(f"--img-size {img_size} is too small; use at least 64 px")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        counts = {s: n for s, n in (("train", n_train), ("val", n_val)) if n > 0}
        workers = min(os.cpu_count() or 1, 8) if workers is None else max(1, workers)
        bar = tqdm(total=sum(counts.values()), desc=f"synth {out}", disable=not progress, unit="img")
        pool = None
        if workers > 1:  # fresh worker processes: forking a process whose OpenCV threads run can hang
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
            pool = ProcessPoolExecutor(workers, ctx, initializer=_init_worker)
        try:
            for split, n in counts.items():
                img_dir, lbl_dir = tmp / "images" / split, tmp / "labels" / split
                img_dir.mkdir(parents=True)
                lbl_dir.mkdir(parents=True)
                jobs = _jobs(seed, split, n, img_size, img_dir)
                results = (
                    pool.map(_render_and_write, jobs, chunksize=16) if pool else map(_render_and_write, jobs)
                )
                records = []
                for i, (h, w, objects) in enumerate(results):
                    (lbl_dir / f"{i:06d}.txt").write_text(_label_lines(objects, h, w))
                    records.append((f"{i:06d}.jpg", h, w, objects))
                    bar.update()
                (tmp / "annotations").mkdir(exist_ok=True)
                (tmp / "annotations" / f"instances_{split}.json").write_text(_coco_json(split, records, seed))
        finally:
            bar.close()
            if pool:
                pool.shutdown()
        (tmp / "data.yaml").write_text(_data_yaml(seed, counts, img_size))
        tmp.chmod(0o755)
        os.replace(tmp, out)  # an empty `out` is replaced atomically
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "data.yaml"
