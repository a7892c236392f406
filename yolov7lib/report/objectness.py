"""Figure 8: the objectness maps of the lead and auxiliary heads (Section 5.4.3).

Takes the raw training-mode outputs of a model (CONTRIBUTING.md: a list of (B, na, H, W, 5 + nc)
maps, lead levels first, then auxiliary levels for a model with auxiliary heads) and one input
image, and draws for every method (a row) and every level the map ``max over anchors of
sigmoid(objectness)`` of the auxiliary head and of the lead head side by side over the image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from yolov7lib.report.plotting import house_style

PANEL = 2.2  # inches per map
LABEL_W = 0.35  # inches for the row labels
COLORBAR_W = 0.8  # inches for the colour bar
TITLE_H = 0.7  # inches for the title
HEADER_H = 0.3  # inches for the column headers
FOOT_H = 0.3  # inches for the note under the maps
CMAP = "jet"
ALPHA = 0.55


def objectness_map(level: torch.Tensor, index: int = 0) -> np.ndarray:
    """The objectness of one output level for image `index` of the batch: the sigmoid of channel 4,
    maximum over the anchors, as an (H, W) float array in [0, 1]."""
    _check_level(level, "level")
    if not 0 <= index < level.shape[0]:
        raise IndexError(f"image index {index} out of range for a batch of {level.shape[0]}")
    return torch.sigmoid(level[index, ..., 4].detach().float()).amax(dim=0).cpu().numpy()


def _check_level(level: object, what: str) -> None:
    if not isinstance(level, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(level).__name__}")
    if level.dim() != 5 or level.shape[-1] < 5:
        raise ValueError(f"{what}: expected a (B, na, H, W, 5 + nc) map, got shape {tuple(level.shape)}")


def split_lead_aux(
    outputs: Sequence[torch.Tensor], nl: int | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The lead and auxiliary levels of a model's raw training outputs (lead levels first).

    `nl` is the number of lead levels (``model.head.nl``). Without it, the outputs count as
    lead + auxiliary when they are an even number of maps whose second half has the grid sizes of
    the first half (an auxiliary head predicts at the lead head's strides), else as lead only."""
    outputs = list(outputs)
    if not outputs:
        raise ValueError("no output maps")
    for i, t in enumerate(outputs):
        _check_level(t, f"output {i}")
    b, na, no = outputs[0].shape[0], outputs[0].shape[1], outputs[0].shape[-1]
    for i, t in enumerate(outputs):
        if (t.shape[0], t.shape[1], t.shape[-1]) != (b, na, no):
            raise ValueError(
                f"output {i} has shape {tuple(t.shape)}; every level must share the batch size {b}, "
                f"the {na} anchors and the {no} channels of output 0"
            )
    if nl is None:
        half = len(outputs) // 2
        grids = [tuple(t.shape[2:4]) for t in outputs]
        nl = half if len(outputs) % 2 == 0 and grids[:half] == grids[half:] else len(outputs)
    if not 1 <= nl <= len(outputs) or len(outputs) not in (nl, 2 * nl):
        raise ValueError(f"{len(outputs)} output maps cannot be {nl} lead levels (+ as many auxiliary)")
    lead, aux = outputs[:nl], outputs[nl:]
    for j, (a, lv) in enumerate(zip(aux, lead, strict=False)):
        if a.shape[2:4] != lv.shape[2:4]:
            raise ValueError(
                f"auxiliary level {j} has a {tuple(a.shape[2:4])} grid, lead level {j} {tuple(lv.shape[2:4])}"
            )
    return lead, aux


def _image_array(image: torch.Tensor | np.ndarray, index: int) -> np.ndarray:
    """An (H, W, 3) float array in [0, 1] from a torch (B, 3, H, W) / (3, H, W) / (H, W) tensor or a
    numpy (H, W, 3) / (H, W) array, uint8 or float in [0, 1]."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4:
            if not 0 <= index < t.shape[0]:
                raise IndexError(f"image index {index} out of range for a batch of {t.shape[0]} images")
            t = t[index]
        if t.dim() == 3:
            if t.shape[0] not in (1, 3):
                raise ValueError(f"a torch image is (3, H, W) or (1, H, W), got {tuple(t.shape)}")
            t = t.permute(1, 2, 0)
        arr = t.numpy()
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise TypeError(f"image: expected a torch.Tensor or numpy array, got {type(image).__name__}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"image: expected (H, W, 3) or (H, W) pixels, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
        if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
            raise ValueError("image: float pixels must lie in [0, 1] (pass uint8 for 0-255 pixels)")
    else:
        raise ValueError(f"image: expected uint8 or float pixels, got {arr.dtype}")
    return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr


def _level_name(image_hw: tuple[int, int], grid_hw: tuple[int, int], j: int) -> str:
    """``P3 (stride 8)`` from the image and grid sizes; ``level j`` if the stride is not a power of 2."""
    stride = image_hw[0] / grid_hw[0]
    if stride.is_integer() and stride >= 1 and math.log2(stride).is_integer():
        return f"P{int(math.log2(stride))} (stride {int(stride)})"
    return f"level {j}"


def objectness_figure(
    outputs: Mapping[str, Sequence[torch.Tensor]] | Sequence[torch.Tensor],
    image: torch.Tensor | np.ndarray,
    *,
    nl: int | None = None,
    index: int = 0,
    title: str = "Figure 8: Objectness map predicted by different methods at auxiliary head and lead head.",
    dpi: int = 100,
    vmax: float | None = 1.0,
    scale: str = "",
) -> Figure:
    """Draw Figure 8 for image `index`: one row per method (`outputs` maps a method name to the raw
    training outputs of its model; a single list is one row), the input image first, then for every
    level the auxiliary head's map and the lead head's map over the image (``no auxiliary head``
    where a model has none). `image` is the network input the outputs were computed from (a batch
    is indexed with `index`); its size must be the grids' size times the stride. All maps share one
    colour scale, 0 to `vmax` (None: the largest value over all maps, for models that are still
    unsure everywhere, as after a short training run). `scale` (what the models are and how they were
    trained) is printed under the maps. Map images carry gids
    ``objectness:<method>:<lead|aux>:<level>``."""
    if not isinstance(outputs, Mapping):
        outputs = {"": outputs}
    if not outputs:
        raise ValueError("no method to draw")
    img = _image_array(image, index)
    h_img, w_img = img.shape[:2]
    rows = {}
    for name, outs in outputs.items():
        try:
            lead, aux = split_lead_aux(outs, nl)
        except (ValueError, TypeError) as err:
            raise type(err)(f"method {name!r}: {err}") from None
        for t in lead:
            gh, gw = t.shape[2:4]
            if abs(h_img * gw - w_img * gh) > 0 or h_img < gh:
                raise ValueError(
                    f"method {name!r}: a {gh}x{gw} grid does not tile the {h_img}x{w_img} image at one stride"
                )
        rows[name] = (
            [objectness_map(t, index) for t in lead],
            [objectness_map(t, index) for t in aux],
            [tuple(t.shape[2:4]) for t in lead],
        )
    if vmax is None:
        vmax = max(float(m.max()) for lead, aux, _ in rows.values() for m in (*lead, *aux))
    n_levels = max(len(lead) for lead, _, _ in rows.values())
    n_cols = 1 + 2 * n_levels
    aspect = h_img / w_img
    panel_h = PANEL * aspect
    width = LABEL_W + n_cols * PANEL + COLORBAR_W
    height = TITLE_H + HEADER_H + len(rows) * (panel_h + 0.1) + FOOT_H
    width, height = math.ceil(width * dpi) / dpi, math.ceil(height * dpi) / dpi
    with house_style():
        fig = Figure(figsize=(width, height), dpi=dpi)
        gray = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        extent = (0.0, float(w_img), float(h_img), 0.0)
        mappable = None
        for r, (name, (lead, aux, grids)) in enumerate(rows.items()):
            bottom = height - TITLE_H - HEADER_H - (r + 1) * (panel_h + 0.1)
            for c in range(n_cols):
                left = LABEL_W + c * PANEL
                ax = fig.add_axes(
                    ((left + 0.05) / width, bottom / height, (PANEL - 0.1) / width, panel_h / height)
                )
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.imshow(img, extent=extent, interpolation="nearest", gid=f"image:{name}")
                    ax.set_ylabel(name, fontsize=10)
                    if r == 0:
                        ax.set_title("input", fontsize=9)
                    continue
                j, head = (c - 1) // 2, ("aux", "lead")[(c - 1) % 2]
                maps = aux if head == "aux" else lead
                if r == 0 or j >= len(lead):
                    level = _level_name((h_img, w_img), grids[j], j) if j < len(grids) else f"level {j}"
                    ax.set_title(f"{'auxiliary' if head == 'aux' else 'lead'} head, {level}", fontsize=8)
                if j >= len(maps):
                    ax.text(
                        0.5,
                        0.5,
                        f"no {'auxiliary' if head == 'aux' else 'lead'} head\nat this level",
                        ha="center",
                        va="center",
                        fontsize=8,
                        transform=ax.transAxes,
                    )
                    ax.set_facecolor("#eeeeee")
                    continue
                ax.imshow(gray, cmap="gray", vmin=0.0, vmax=1.0, extent=extent, interpolation="nearest")
                mappable = ax.imshow(
                    maps[j],
                    cmap=CMAP,
                    vmin=0.0,
                    vmax=vmax,
                    alpha=ALPHA,
                    extent=extent,
                    interpolation="nearest",
                    gid=f"objectness:{name}:{head}:{j}",
                )
        if mappable is not None:
            cax = fig.add_axes(
                (
                    (LABEL_W + n_cols * PANEL + 0.15) / width,
                    (height - TITLE_H - HEADER_H - len(rows) * (panel_h + 0.1)) / height,
                    0.15 / width,
                    len(rows) * (panel_h + 0.1) / height,
                )
            )
            fig.colorbar(mappable, cax=cax, label="objectness")
        fig.text(0.5, 1 - 0.15 / height, title, ha="center", va="top", fontsize=11)
        fig.text(
            0.01,
            0.05 / height,
            f"max over anchors of sigmoid(objectness), image {index} of the batch, "
            f"{h_img}x{w_img} px; maps drawn at their grid resolution over the image; colour scale 0 to "
            f"{vmax:.3g}." + (f"\nModels: {scale}." if scale else ""),
            ha="left",
            va="bottom",
            fontsize=7,
            color="#333333",
        )
    return fig
