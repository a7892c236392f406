"""`yolov7 detect`: run a model on images, folders, globs or videos; draw, and write txt / json detections.

Each input is letterboxed to the minimum rectangle of `img` (sides multiples of the stride, as the
reference's detect.py does), passed through the deploy model, filtered by NMS (confidence 0.25, IoU
0.45 by default) and its boxes mapped back to the original pixels with the letterbox's own ratio and
padding (`ops.scale_boxes`). Results go to a new run folder: annotated images (same name) and videos
(`<stem>.mp4`, mp4v; MJPG `<stem>.avi` where OpenCV has no mp4v encoder), `labels/<stem>.txt` (YOLO
rows `class x y w h [conf]`, normalised; for videos `<stem>_<n>.txt`, frames counted from 1 as the
reference's detect.py does) and `predictions.json` (the same frame numbers); inputs in subfolders
of the source keep them (`labels/<sub>/<stem>.txt`), so that `train/x.png` and `valid/x.png` do not
share a name, and inputs whose outputs would share one take their suffix into it (`output_names`).
Unreadable or corrupt inputs are counted and reported, never fatal; an output that cannot be written
stops the run with an OSError (not a run that reports results it never wrote); nothing outside the
run folder is written, and no existing file is ever overwritten.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from yolov7lib.data.augment import letterbox
from yolov7lib.data.formats import IMG_FORMATS
from yolov7lib.engine.runs import create_run_dir, free_path
from yolov7lib.ops.boxes import scale_boxes, xyxy2xywhn
from yolov7lib.ops.nms import non_max_suppression

VID_FORMATS = ("mp4", "avi", "mov", "mkv", "m4v", "mpg", "mpeg", "wmv", "webm")
SKIPS_PRINTED = 20  # skipped inputs listed by the printed report (`--json` has them all)
VIDEO_WRITERS = (("mp4v", ".mp4"), ("MJPG", ".avi"))  # annotated videos: the first that opens

__all__ = ["DetectInterrupted", "DetectOptions", "DetectReport", "detect_frame", "list_sources",
           "output_names", "postprocess", "preprocess", "run_detect"]  # fmt: skip


@dataclass
class DetectOptions:
    """The options of `yolov7 detect` (defaults: the reference's detect.py)."""

    source: str
    weights: str | None = None
    model: str | None = None
    img: int = 640
    conf: float = 0.25
    iou: float = 0.45
    classes: list[int] | None = None
    agnostic: bool = False
    max_det: int = 300
    device: str = "cpu"
    project: str = "runs/detect"
    name: str = "exp"
    exist_ok: bool = False
    save_txt: bool = False
    save_conf: bool = False
    save_json: bool = False
    nosave: bool = False
    line_width: int = 2
    progress: bool = True


@dataclass
class DetectReport:
    """What a run did: counts, where results are, and each skipped input with its reason."""

    run_dir: str
    images: int = 0
    videos: int = 0
    frames: int = 0
    detections: int = 0
    per_class: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    predictions_json: str | None = None
    stopped_in: str | None = None  # the video that Ctrl-C stopped part-way (its frames so far are counted)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (`per_class` as a dict, `skipped` as [path, reason] pairs)."""
        return {**{k: getattr(self, k) for k in ("run_dir", "images", "videos", "frames", "detections")},
                "per_class": dict(self.per_class), "skipped": [list(s) for s in self.skipped],
                "predictions_json": self.predictions_json, "stopped_in": self.stopped_in}  # fmt: skip


class DetectInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_detect`: `report` counts the inputs finished, whose results (predictions.json
    included) are in the run folder."""

    def __init__(self, report: DetectReport) -> None:
        super().__init__()
        self.report = report


def _kind(path: Path) -> str | None:
    suffix = path.suffix[1:].lower()
    return "image" if suffix in IMG_FORMATS else "video" if suffix in VID_FORMATS else None


def list_sources(source: str | Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """(inputs as (path, 'image' | 'video'), skipped as (path, reason)) of a file, folder or glob.

    A folder is searched recursively; files of other types are skipped with a reason. A file or folder
    that exists is read as such, even with glob characters in its name. A source that matches nothing
    raises FileNotFoundError; a webcam index or a URL (which the reference's detect.py streams) that is
    not a local path raises ValueError saying that only local files are read.
    """
    text = str(source)
    if not text.strip():  # Path("") is the current folder: an unset `--source "$VIDEO"` would read all of it
        raise ValueError("source is empty: give an image, a video, a folder or a glob")
    if not Path(text).exists() and (text.isdigit() or "://" in text):
        supported = "an image, a video, a folder or a glob of local files (save a stream to a file first)"
        raise ValueError(f"source {text!r}: webcams, streams and URLs are not read; give {supported}")
    if Path(text).is_dir():  # before the glob: `clips [2023]` is a folder's name, not a pattern
        paths = sorted(p for p in Path(text).rglob("*") if p.is_file())
    elif Path(text).is_file():
        paths = [Path(text)]
    elif any(c in text for c in "*?["):
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    else:
        raise FileNotFoundError(f"source {text!r} does not exist (an image, a video, a folder or a glob)")
    if not paths:
        raise FileNotFoundError(f"source {text!r} matches no file")
    inputs, skipped = [], []
    for p in paths:
        kind = _kind(p)
        if kind is None:
            skipped.append((str(p), f"not an image or video suffix ({p.suffix or 'none'})"))
        else:
            inputs.append((p, kind))
    return inputs, skipped


def preprocess(
    img_bgr: np.ndarray, img_size: int, stride: int
) -> tuple[torch.Tensor, tuple[tuple[float, float], tuple[float, float]]]:
    """Letterbox a BGR image to the minimum rectangle of `img_size`; return the (1, 3, h, w) RGB float
    tensor in [0, 1] and `ratio_pad` ((ratio_h, ratio_w), (pad_w, pad_h)) for `postprocess`.

    The pad is where the image really starts: the letterbox reports half the total padding (5.5 for
    11 rows) but pads the top with the rounded-down half (5 rows); evaluation keeps the reference's
    half-padding convention, detection maps boxes back through the real offset (0.5 / ratio original
    pixels closer when the padding is odd).
    """
    boxed, (rw, rh), (dw, dh) = letterbox(img_bgr, img_size, stride=stride, auto=True)
    left, top = round(dw - 0.1), round(dh - 0.1)  # the letterbox's own split of the padding
    rgb = np.ascontiguousarray(boxed[:, :, ::-1].transpose(2, 0, 1))
    return torch.from_numpy(rgb).float().unsqueeze(0) / 255.0, ((rh, rw), (float(left), float(top)))


def postprocess(
    det: torch.Tensor,
    input_shape: tuple[int, int],
    original_shape: tuple[int, int],
    ratio_pad: tuple[tuple[float, float], tuple[float, float]],
) -> torch.Tensor:
    """Detections (n, 6) in letterboxed input pixels -> the same in original pixels (clipped)."""
    out = det.clone()
    out[:, :4] = scale_boxes(input_shape, det[:, :4], original_shape, ratio_pad)
    return out


@torch.no_grad()
def detect_frame(
    model: torch.nn.Module,
    img_bgr: np.ndarray,
    img_size: int = 640,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    max_det: int = 300,
) -> torch.Tensor:
    """Detections (n, 6) `[x1, y1, x2, y2, conf, class]` of one BGR image, in its own pixels.

    `img_size` is rounded up to a multiple of the largest stride, as the reference's check_img_size does.
    """
    param = next(model.parameters())
    stride = max(int(model.stride.max()), 32)
    img_size = math.ceil(img_size / stride) * stride
    x, ratio_pad = preprocess(img_bgr, img_size, stride)
    pred = model(x.to(param.device, param.dtype))[0]
    det = non_max_suppression(pred.float(), conf_thres, iou_thres, classes, agnostic, max_det=max_det)[0]
    return postprocess(det.cpu(), tuple(x.shape[2:]), img_bgr.shape[:2], ratio_pad)


def _color(c: int) -> tuple[int, int, int]:
    hue = (c * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(v) for v in bgr)


def draw_detections(
    img_bgr: np.ndarray, det: torch.Tensor, names: Sequence[str], width: int = 2
) -> np.ndarray:
    """A copy of the image with each detection's box and `name conf` label drawn."""
    out = img_bgr.copy()
    for x1, y1, x2, y2, conf, c in det.tolist():
        color = _color(int(c))
        p1, p2 = (round(x1), round(y1)), (round(x2), round(y2))
        cv2.rectangle(out, p1, p2, color, width, cv2.LINE_AA)
        label = f"{names[int(c)] if int(c) < len(names) else int(c)} {conf:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        top = max(p1[1], th + base)
        cv2.rectangle(out, (p1[0], top - th - base), (p1[0] + tw, top), color, -1)
        cv2.putText(out, label, (p1[0], top - base), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return out


class _Writer:
    """Writes a run's outputs; keeps the json records and the counts."""

    def __init__(self, run_dir: Path, names: Sequence[str], opts: DetectOptions, report: DetectReport):
        self.run_dir, self.names, self.opts, self.report = run_dir, list(names), opts, report
        self.records: list[dict[str, Any]] = []
        self.out_names: dict[Path, Path] = {}  # input -> its path relative to the run folder

    def add(self, source: Path, det: torch.Tensor, shape: tuple[int, int], frame: int | None = None) -> None:
        self.report.detections += len(det)
        self.report.per_class.update(self.names[int(c)] for c in det[:, 5].tolist())
        out = self.out_names[source]  # the input's path under the source folder
        base = (out.parent / out.stem).as_posix()
        stem = base if frame is None else f"{base}_{frame}"
        if self.opts.save_txt:
            h, w = shape
            xywh = xyxy2xywhn(det[:, :4], w=w, h=h)
            lines = []
            for (x, y, bw, bh), conf, c in zip(
                xywh.tolist(), det[:, 4].tolist(), det[:, 5].tolist(), strict=True
            ):
                tail = f" {conf:.5f}" if self.opts.save_conf else ""
                lines.append(f"{int(c)} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}{tail}\n")
            target = self.run_dir / "labels" / f"{stem}.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            free_path(target).write_text("".join(lines))
        if self.opts.save_json:
            for x1, y1, x2, y2, conf, c in det.tolist():
                self.records.append({
                    "file": str(source), "frame": frame, "class": int(c), "name": self.names[int(c)],
                    "score": round(conf, 5), "bbox_xyxy": [round(v, 2) for v in (x1, y1, x2, y2)],
                })  # fmt: skip

    def finish(self) -> None:
        if self.opts.save_json:
            path = free_path(self.run_dir / "predictions.json")
            path.write_text(json.dumps(self.records, indent=1))
            self.report.predictions_json = str(path)


def _frames(path: Path) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


def run_detect(options: DetectOptions, model: torch.nn.Module | None = None) -> DetectReport:
    """Detect on every input of `options.source`; return the report (see the module docstring)."""
    from yolov7lib.engine.distributed import select_device
    from yolov7lib.engine.weights import fit_img_size, load_model

    opts = options
    inputs, skipped = list_sources(opts.source)
    outputs = Path(opts.project).resolve()  # earlier runs' results are not inputs (`--source .`)
    skipped += [
        (str(p), "inside the output folder") for p, _ in inputs if p.resolve().is_relative_to(outputs)
    ]
    inputs = [(p, kind) for p, kind in inputs if not p.resolve().is_relative_to(outputs)]
    if model is None:
        model = load_model(opts.weights, opts.model, device=select_device(opts.device))
    names = list(model.names)
    if unknown := [c for c in opts.classes or () if not 0 <= c < len(names)]:
        listed = ", ".join(f"{i} {n}" for i, n in enumerate(names[:10])) + (
            ", ..." if len(names) > 10 else ""
        )
        raise ValueError(f"--classes {' '.join(map(str, unknown))}: not a class of the model ({listed})")
    img, _ = fit_img_size(opts.img, model)
    run_dir = create_run_dir(opts.project, opts.name, opts.exist_ok)
    report = DetectReport(str(run_dir), skipped=skipped)
    writer = _Writer(run_dir, names, opts, report)
    writer.out_names = output_names([p for p, _ in inputs])
    nms = {"img_size": img, "conf_thres": opts.conf, "iou_thres": opts.iou, "classes": opts.classes,
           "agnostic": opts.agnostic, "max_det": opts.max_det}  # fmt: skip
    try:
        _detect_all(inputs, model, nms, writer, run_dir, names, opts)
    except KeyboardInterrupt as interrupt:
        writer.finish()  # the json of the inputs finished so far
        raise DetectInterrupted(report) from interrupt
    writer.finish()
    return report


def _detect_all(
    inputs: Sequence[tuple[Path, str]], model: torch.nn.Module, nms: dict[str, Any], writer: _Writer,
    run_dir: Path, names: Sequence[str], opts: DetectOptions,
) -> None:  # fmt: skip
    report = writer.report
    for path, kind in tqdm(inputs, desc="detect", disable=not opts.progress):
        before = report.frames
        try:
            if kind == "image":
                img = cv2.imread(str(path))
                if img is None:
                    report.skipped.append((str(path), "unreadable or corrupt image"))
                    continue
                det = detect_frame(model, img, **nms)
                writer.add(path, det, img.shape[:2])
                report.images += 1
                if not opts.nosave:
                    annotated = draw_detections(img, det, names, opts.line_width)
                    target = _annotated_path(run_dir, writer.out_names[path])
                    if not cv2.imwrite(str(target), annotated):
                        raise OSError(f"cannot write {target} (is the folder writable?)")
            else:
                try:
                    n = _detect_video(path, model, nms, writer, run_dir, names, opts)
                except KeyboardInterrupt:
                    if report.frames > before:  # its outputs so far are kept: count them and say where
                        report.videos += 1
                        report.stopped_in = str(path)
                    raise
                if n == 0:
                    report.skipped.append((str(path), "unreadable video (no frame decoded)"))
                    continue
                report.videos += 1
        except cv2.error as err:  # a damaged file that OpenCV rejects mid-way
            reason = f"OpenCV error: {str(err).strip().splitlines()[-1]}"
            if report.frames > before:  # a video's frames before the damage are written and counted: so is it
                report.videos += 1
                reason += f" after {report.frames - before} frames (those are in the results)"
            report.skipped.append((str(path), reason))


def output_names(inputs: Sequence[Path]) -> dict[Path, Path]:
    """Each input's name in the run folder: its path below the inputs' deepest common folder (the file
    name alone for a flat folder, a glob in one folder or a single file).

    Inputs whose outputs would share names get their suffix in the stem (`a.avi` -> `a_avi.avi`, so
    `a_avi.mp4` and `labels/a_avi_1.txt`): two images or two videos of one stem (`a.jpg` and `a.png`,
    `a.avi` and `a.mp4`: annotated videos are all `.mp4`), and a video whose frame labels would be an
    image's (`a.mp4`'s `a_1.txt` beside `a_1.jpg`). An image and a video of one stem keep their names.
    """
    if not inputs:
        return {}
    parents = [os.path.abspath(p.parent) for p in inputs]
    base = os.path.commonpath(parents)
    names = {p: Path(os.path.relpath(os.path.abspath(p), base)) for p in inputs}
    kinds = {p: _kind(p) for p in inputs}
    stems = Counter((names[p].with_suffix(""), kinds[p]) for p in inputs)
    frame_like = {  # images named as a video's frame labels would be: stem_<n>
        names[p].with_name(m.group(1))
        for p in inputs
        if kinds[p] == "image" and (m := re.fullmatch(r"(.+)_\d+", names[p].stem))
    }

    def clashes(p: Path) -> bool:
        stem = names[p].with_suffix("")
        return stems[(stem, kinds[p])] > 1 or (kinds[p] == "video" and stem in frame_like)

    return {
        p: n.with_name(f"{n.stem}_{n.suffix[1:]}{n.suffix}") if clashes(p) else n for p, n in names.items()
    }


def _annotated_path(run_dir: Path, name: Path) -> Path:
    """Where the annotated copy of an image goes: `name` in the run folder (its path under the source), or
    `.jpg` where OpenCV cannot write that format (`.mpo`, for instance); never a taken name."""
    target = run_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.haveImageWriter(str(target)):
        target = target.with_suffix(".jpg")
    return free_path(target)


def _video_writer(target: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """An opened writer for the annotated copy of a video: mp4v in `.mp4` (the reference's codec), or MJPG
    in `.avi` where this OpenCV has no mp4v encoder; never a taken name. OSError if neither opens."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for fourcc, suffix in VIDEO_WRITERS:
        out = cv2.VideoWriter(str(free_path(target.with_suffix(suffix))), cv2.VideoWriter_fourcc(*fourcc),
                              fps, size)  # fmt: skip
        if out.isOpened():
            return out
        out.release()
    tried = " or ".join(f"{fourcc} {suffix}" for fourcc, suffix in VIDEO_WRITERS)
    raise OSError(f"cannot write {target.with_suffix('')}: no {tried} writer opens (is the folder writable?)")


def _detect_video(
    path: Path, model: torch.nn.Module, nms: dict[str, Any], writer: _Writer, run_dir: Path,
    names: Sequence[str], opts: DetectOptions,
) -> int:  # fmt: skip
    """Detect on each frame of a video; write the annotated video (`_video_writer`) unless `nosave`. A
    progress bar counts the frames against the number the file announces."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    out = None
    n = 0
    bar = tqdm(_frames(path), desc=path.name, total=total if total > 0 else None, unit="frame", leave=False,
               disable=not opts.progress)  # fmt: skip
    try:
        for n, frame in enumerate(bar, start=1):
            det = detect_frame(model, frame, **nms)
            writer.add(path, det, frame.shape[:2], frame=n)  # 1, 2, ...: the reference's numbering
            writer.report.frames += 1  # as it goes: a run stopped part-way counts what it wrote
            if opts.nosave:
                continue
            if out is None:
                h, w = frame.shape[:2]
                out = _video_writer(run_dir / writer.out_names[path], fps, (w, h))
            out.write(draw_detections(frame, det, names, opts.line_width))
    finally:
        bar.close()
        if out is not None:
            out.release()
    return n


def format_report(report: DetectReport) -> str:
    """A short summary: counts, classes found, skipped inputs with reasons (the first SKIPS_PRINTED),
    where results are."""
    lines = [
        f"{report.images} images, {report.videos} videos ({report.frames} frames): "
        f"{report.detections} detections"
        + (
            " (" + ", ".join(f"{n} {k}" for k, n in report.per_class.most_common()) + ")"
            if report.per_class
            else ""
        )
    ]
    if report.skipped:
        n = len(report.skipped)
        lines.append(f"{n} input{'s' * (n != 1)} skipped:")
        lines += [f"  {p}: {why}" for p, why in report.skipped[:SKIPS_PRINTED]]
        if n > SKIPS_PRINTED:  # a data set's folder holds a label file per image
            lines.append(f"  ... and {n - SKIPS_PRINTED} more (--json lists them all)")
    if report.stopped_in:
        lines.append(f"stopped part-way through {report.stopped_in} (its frames so far are in the results)")
    lines.append(f"results in {report.run_dir}")
    return "\n".join(lines)
