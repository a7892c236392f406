"""What the figures take from other pipeline stages: measured speed/accuracy points and checkpoints.

- :func:`measured_speed_points`: this kit's points for Figures 1, 9, 10 and 11 from the speed stage's
  ``speed.json`` (``{"device", "peak_gflops", "rows": [{model, backend, batch, img, ms_per_image,
  images_per_s, ...}]}``) and the evaluation stage's ``eval.json`` (``{"model", "scale", "coco":
  {"ap", "ap50", ...}}``). A point needs both: the speed of a model and its AP. Missing files give no
  points and a line saying why, so the figures stage works before those stages exist.
- :func:`objectness_outputs`: the raw training-mode outputs of models with an auxiliary head on one
  image, for Figure 8: trained checkpoints of this kit, or a randomly initialised small model.
- :func:`figure8_inputs`: Figure 8's maps and the image they belong to, from the maps the ablation runs
  saved, else from checkpoints, else from the random model; :func:`figure8_scale` says which of these
  it drew and at what scale the models were trained, for the figure's label.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolov7lib.report.speed_accuracy import MeasuredPoint

__all__ = [
    "demo_aux_model",
    "figure8_inputs",
    "figure8_scale",
    "load_trained_model",
    "measured_speed_points",
    "objectness_outputs",
    "sample_image",
]

SAVED_MAPS_IMAGE_SEED = 0  # the data seed of the image notebook 02 computes the saved maps on
BATCH1_FIGURES = (1, 9, 10)  # x = batch-1 frame rate
BATCH_FIGURE = 11  # x = ms per image at the largest batch measured (the paper: batch 32)


def _read_json(path: str | os.PathLike[str] | None, what: str) -> tuple[Any, str]:
    if not path:
        return None, f"no {what} file given"
    p = Path(path)
    if not p.is_file():
        return None, f"{what} {p} not found (its stage has not run)"
    try:
        return json.loads(p.read_text(encoding="utf-8")), ""
    except json.JSONDecodeError as err:
        raise ValueError(f"{p}: not valid JSON ({err})") from None


def _ap_percent(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{path}: coco.ap must be a number, got {value!r}")
    return float(value) * 100.0 if value <= 1.0 else float(value)  # a fraction or already percent


def measured_speed_points(
    speed_json: str | os.PathLike[str] | None, eval_json: str | os.PathLike[str] | None
) -> tuple[dict[int, list[MeasuredPoint]], list[str]]:
    """Points per figure number (1, 9, 10, 11) and notes on what is missing. Figures 1, 9, 10 take a
    model's batch-1 frame rate (images per second), Figure 11 its ms per image at the largest batch;
    the AP (%) is ``coco.ap`` of ``eval.json`` (a fraction in [0, 1] is read as one)."""
    speed, why_speed = _read_json(speed_json, "speed")
    evaluation, why_eval = _read_json(eval_json, "evaluation")
    notes = [w for w in (why_speed, why_eval) if w]
    points: dict[int, list[MeasuredPoint]] = {n: [] for n in (*BATCH1_FIGURES, BATCH_FIGURE)}
    if speed is None or evaluation is None:
        return points, notes
    try:
        model, scale, ap = evaluation["model"], evaluation["scale"], evaluation["coco"]["ap"]
        rows, device = speed["rows"], speed["device"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{speed_json} / {eval_json}: missing key {err}") from None
    ap = _ap_percent(ap, str(eval_json))
    mine = [r for r in rows if r.get("model") == model]
    if not mine:
        notes.append(f"speed.json has no row for the evaluated model {model!r}")
        return points, notes
    scale_text = f"speed: {device}; AP: {scale}"
    for backend in dict.fromkeys(r.get("backend", "") for r in mine):
        by_batch = {int(r["batch"]): r for r in mine if r.get("backend", "") == backend}
        label = f"{model} ({backend})" if backend else model
        if 1 in by_batch:
            for n in BATCH1_FIGURES:
                points[n].append(MeasuredPoint(label, float(by_batch[1]["images_per_s"]), ap, scale_text))
        else:
            notes.append(f"{label}: no batch-1 row for Figures 1, 9, 10")
        largest = max(by_batch)
        points[BATCH_FIGURE].append(
            MeasuredPoint(
                f"{label}, batch {largest}", float(by_batch[largest]["ms_per_image"]), ap, scale_text
            )
        )
    return points, notes


def sample_image(img_size: int = 128, seed: int = 0) -> torch.Tensor:
    """One image of the generated data set (validation split, index 0), letterboxed to a square
    ``img_size``, as a (1, 3, H, W) float tensor in [0, 1] (RGB)."""
    from yolov7lib.data.augment import letterbox
    from yolov7lib.data.synth import render_image

    bgr, _ = render_image(seed, "val", 0, img_size)
    img, _, _ = letterbox(bgr, img_size, auto=False)
    rgb = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))
    return torch.from_numpy(rgb).float().div(255.0)[None]


def demo_aux_model(width: float = 0.25, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised YOLOv7-W6 at ``width`` x its widths (lead and auxiliary heads): the
    smoke-test stand-in for a trained model in Figure 8."""
    from yolov7lib.models import create_model, model_spec

    torch.manual_seed(seed)
    return create_model({**model_spec("yolov7-w6"), "width_multiple": width})


def load_trained_model(path: str | os.PathLike[str]) -> torch.nn.Module:
    """A model of this kit from its checkpoint (the EMA weights where present)."""
    from yolov7lib.engine.checkpoint import load_checkpoint
    from yolov7lib.models import create_model

    ckpt = load_checkpoint(path)
    if "model_cfg" not in ckpt:
        raise ValueError(f"{path}: not a yolov7lib checkpoint (no 'model_cfg')")
    model = create_model(ckpt["model_cfg"])
    state = (ckpt.get("ema") or {}).get("model") or ckpt.get("model")
    if state is None:
        raise ValueError(f"{path}: the checkpoint holds no weights ('ema' or 'model')")
    model.load_state_dict(state)
    return model


@torch.no_grad()
def objectness_outputs(
    models: Sequence[tuple[str, torch.nn.Module]], image: torch.Tensor
) -> dict[str, list[torch.Tensor]]:
    """Raw training-mode outputs (lead levels, then auxiliary levels) of each model on `image`,
    BatchNorm in eval mode (running statistics): the input of
    :func:`~yolov7lib.report.figures.write_objectness_figure`."""
    out = {}
    for label, model in models:
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        out[label] = [t.float() for t in model(image.to(next(model.parameters()).dtype))]
        model.eval()
    return out


def _saved_maps(maps_files: Sequence[tuple[str, str | os.PathLike[str]]]) -> list[tuple[str, dict]]:
    """The (label, saved maps) of the ablation runs, or [] when there are none or one run was skipped:
    the rule by which Figure 8 draws the saved maps (`figure8_inputs`) and says so (`figure8_scale`)."""
    saved = [(label, torch.load(path, weights_only=True)) for label, path in maps_files]
    return [] if any(m.get("skipped") for _, m in saved) else saved


def figure8_inputs(
    maps_files: Sequence[tuple[str, str | os.PathLike[str]]],
    checkpoints: Sequence[tuple[str, str | os.PathLike[str]]],
    img_size: int,
    seed: int = 0,
) -> tuple[dict[str, list[torch.Tensor]], torch.Tensor, int]:
    """Figure 8's (outputs by label, the image they belong to, number of lead levels).

    The maps the ablation runs saved (`maps_files`, (label, path) pairs) come first: they were computed
    on the image of data seed `SAVED_MAPS_IMAGE_SEED`, so that image is drawn whatever `seed` is. Else
    the `checkpoints` ((label, path) pairs), else a random model (`demo_aux_model`), run on the image of
    data seed `seed`.
    """
    saved = _saved_maps(maps_files)
    if saved:
        if not all(m["img"] == img_size for _, m in saved):
            raise ValueError(f"the saved maps were computed at another image size than {img_size}")
        outputs = {label: [t.float() for t in m["outputs"]] for label, m in saved}
        return outputs, sample_image(img_size, SAVED_MAPS_IMAGE_SEED), int(saved[0][1]["nl"])
    if checkpoints:
        models = [(label, load_trained_model(path)) for label, path in checkpoints]
    else:
        models = [("random YOLOv7-W6 x0.25 (untrained)", demo_aux_model(0.25, seed))]
    nl = models[0][1].head.nl
    if not all(m.head.nl == nl for _, m in models):
        raise ValueError("Figure 8 compares models with the same number of levels")
    image = sample_image(img_size, seed)
    return objectness_outputs(models, image), image, nl


def figure8_scale(
    maps_files: Sequence[tuple[str, str | os.PathLike[str]]],
    checkpoints: Sequence[tuple[str, str | os.PathLike[str]]],
) -> str:
    """What Figure 8 shows, in the order :func:`figure8_inputs` picks its source: the models and the
    scale the saved maps record (their ``model``, ``name`` and ``scale``), else the checkpoints, else the
    random untrained model."""
    saved = [m for _, m in _saved_maps(maps_files)]
    if saved:
        models = ", ".join(dict.fromkeys(str(m.get("model", "?")) for m in saved))
        runs = ", ".join(str(m.get("name", "?")) for m in saved)
        scales = "; ".join(dict.fromkeys(str(m.get("scale", "scale not recorded")) for m in saved))
        return f"trained {models} ({runs}): {scales}"
    if checkpoints:
        return "trained checkpoints " + ", ".join(str(path) for _, path in checkpoints)
    return "a randomly initialised YOLOv7-W6 x0.25, untrained (no trained maps or checkpoints given)"
