"""The paper's figures as PNG files (issue 8): one function per kind of figure, each taking data and
writing one PNG, returning its path.

- Figures 1, 9, 10, 11, the speed/accuracy plots: :func:`write_speed_accuracy_figure` (one) and
  :func:`write_speed_accuracy_figures` (all four as ``figure<N>.png``), from the paper's numbers
  (:mod:`yolov7lib.report.speed_accuracy`) with this kit's measured points.
- Figures 2-7, architecture diagrams: :func:`write_diagram`, from node lists
  (:mod:`yolov7lib.report.diagram`).
- Figure 8, objectness maps of the lead and auxiliary heads: :func:`write_objectness_figure`, from raw
  training outputs and an image (:mod:`yolov7lib.report.objectness`).

The builders (``speed_accuracy_figure``, ``diagram_figure``, ``objectness_figure``) return the
matplotlib Figure for notebooks and tests; the writers save it with :func:`save_png`: Agg, the
default style whatever the user's matplotlibrc, no varying metadata, so identical inputs give
byte-identical files, written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from yolov7lib.report.diagram import DiagramError, Node, diagram_figure, layout
from yolov7lib.report.plotting import save_png
from yolov7lib.report.reproduced import Reproductions
from yolov7lib.report.speed_accuracy import (
    VIEWS,
    MeasuredPoint,
    View,
    measured_points,
    paper_points,
    speed_accuracy_figure,
)

__all__ = [
    "SPEED_ACCURACY_FIGURES",
    "DiagramError",
    "MeasuredPoint",
    "Node",
    "View",
    "diagram_figure",
    "layout",
    "measured_points",
    "paper_points",
    "save_png",
    "speed_accuracy_figure",
    "write_diagram",
    "write_objectness_figure",
    "write_speed_accuracy_figure",
    "write_speed_accuracy_figures",
]

SPEED_ACCURACY_FIGURES: tuple[int, ...] = tuple(sorted(VIEWS))

Points = Reproductions | Iterable[MeasuredPoint | tuple[str, float, float]] | None


def write_speed_accuracy_figure(
    number: int, path: str | os.PathLike[str], measured: Points = None, **kwargs: Any
) -> Path:
    """Write Figure `number` (1, 9, 10 or 11) to `path` (.png); `measured` and the keyword arguments
    as for :func:`~yolov7lib.report.speed_accuracy.speed_accuracy_figure`."""
    return save_png(speed_accuracy_figure(number, measured, **kwargs), path)


def write_speed_accuracy_figures(
    out_dir: str | os.PathLike[str],
    measured: Reproductions | Mapping[int, Points] | None = None,
    measured_scale: str | None = None,
) -> dict[int, Path]:
    """Write ``figure1.png``, ``figure9.png``, ``figure10.png`` and ``figure11.png`` into `out_dir`.
    `measured` is a :class:`Reproductions` (used by every figure drawn from a table) or a mapping
    figure number -> points for that figure (tuples measured at `measured_scale`)."""
    out = {}
    for number in SPEED_ACCURACY_FIGURES:
        points = measured
        if isinstance(measured, Mapping) and not isinstance(measured, Reproductions):
            points = measured.get(number)
        out[number] = write_speed_accuracy_figure(
            number, Path(out_dir) / f"figure{number}.png", points, measured_scale=measured_scale
        )
    return out


def write_diagram(
    panels: Sequence[Node | Mapping[str, Any]] | Mapping[str, Sequence[Node | Mapping[str, Any]]],
    path: str | os.PathLike[str],
    **kwargs: Any,
) -> Path:
    """Write an architecture diagram (one node list, or panel title -> node list) to `path`;
    keyword arguments as for :func:`~yolov7lib.report.diagram.diagram_figure`."""
    return save_png(diagram_figure(panels, **kwargs), path)


def write_objectness_figure(
    outputs: Mapping[str, Sequence[Any]] | Sequence[Any],
    image: Any,
    path: str | os.PathLike[str],
    **kwargs: Any,
) -> Path:
    """Write Figure 8 (objectness maps of the auxiliary and lead heads) to `path`; arguments as for
    :func:`~yolov7lib.report.objectness.objectness_figure` (torch is imported only here)."""
    from yolov7lib.report.objectness import objectness_figure

    return save_png(objectness_figure(outputs, image, **kwargs), path)
