"""Matplotlib conventions of the report: one fixed style, and PNG files that are byte-identical for
identical inputs, written atomically.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no global figure
registry, no GUI backend); their size in inches times their dpi is the PNG's size in pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from matplotlib import rcParams, style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


@contextmanager
def house_style() -> Iterator[None]:
    """Matplotlib's default style whatever the user's matplotlibrc says, with text kept as text and
    no hash salt, so that a figure looks the same (and its PNG has the same bytes) on every machine
    with the pinned matplotlib."""
    with style.context("default"):
        rcParams["svg.hashsalt"] = "yolov7lib"
        rcParams["path.simplify"] = True
        yield


def save_png(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write `fig` as a PNG at its own size and dpi (no cropping), without the metadata that would
    vary between runs, to a temporary file renamed over `path` (a reader never sees half a file)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are written as .png files, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with house_style():
            FigureCanvasAgg(fig)
            fig.savefig(tmp, format="png", dpi=fig.dpi, metadata={"Software": None})
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
