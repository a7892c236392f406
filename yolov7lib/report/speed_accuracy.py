"""The speed/accuracy plots of the paper (Figures 1, 9, 10, 11), redrawn from its numbers, with this
kit's measured points added.

The paper's points come from :data:`yolov7lib.paper.FIGURES` (which table, which rows, which series)
and the table cells of :mod:`yolov7lib.paper`; a :class:`View` says how a figure shows them. Each
family (YOLOv7, YOLOR, YOLOv5, ...) is a line with markers, one segment per input size (640 and 1280
px models are separate curves, as in the paper's Figure 1); detectors outside the families are
single labelled points. Measured points (from a :class:`~yolov7lib.report.Reproductions` or a plain
list) are drawn as stars, one legend entry per scale they were measured at.

Figure 1 is drawn as the paper draws it (checked against the official repository's
``figure/performance.png``, the same chart): AP test-dev, or AP val where the table has no test-dev
value (YOLOv5), against V100 batch-1 inference time in ms, i.e. 1000 / FPS, P5 and P6 models as
separate curves. Two differences remain: the paper's chart draws YOLOX at its AP val (51.1, 49.7)
although Table 2 gives test-dev values (51.5, 50.1), which are drawn here; and it has a
Scaled-YOLOv4 curve whose numbers are in no table, so it is not drawn. The other figures have no
picture to check against in the sources at hand; they follow the FIGURES specs (AP val against FPS;
Figure 11 in ms per image at batch 32).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from matplotlib.figure import Figure
from matplotlib.textpath import TextPath

from yolov7lib import paper
from yolov7lib.report.plotting import house_style
from yolov7lib.report.reproduced import Reproduced, Reproductions


@dataclass(frozen=True)
class View:
    """How a speed/accuracy figure shows its data: `x` the plotted quantity (``"fps"``, or ``"ms"``
    = 1000 / FPS when the spec's column is FPS), `y_columns` the AP columns to use, the first one a
    row has, and the axis labels."""

    x: Literal["fps", "ms"]
    x_label: str
    y_columns: tuple[str, ...]
    y_label: str


VIEWS: dict[int, View] = {
    1: View(
        "ms",
        "V100 batch 1 inference time (ms)",
        ("ap_test", "ap_val"),
        "AP (%), test-dev (val where the table has none)",
    ),
    9: View("fps", "FPS at batch 1 (V100; A100 where marked)", ("ap_val",), "AP val (%)"),
    10: View("fps", "V100 batch 1 FPS", ("ap_val",), "AP val (%)"),
    11: View("ms", "V100 batch 32 inference time per image (ms)", ("ap_val",), "AP val (%)"),
}

# Colours of the families (the paper's Figure 1 palette, roughly); other series cycle through PALETTE.
FAMILY_COLORS = {
    "YOLOv7 (ours)": "#7030a0",
    "YOLOR": "#ed7d31",
    "YOLOv5 (r6.1)": "#8c8c8c",
    "YOLOX": "#5b9bd5",
    "PPYOLOE": "#1f4e79",
    "other detectors": "#548235",
    "meituan/YOLOv6": "#c00000",
}
PALETTE = ("#2ca02c", "#d62728", "#17becf", "#bcbd22", "#8c564b", "#e377c2")
MEASURED_STYLES = (("*", "#ffd700"), ("D", "#00b050"), ("P", "#00b0f0"), ("X", "#ff66cc"), ("s", "#ffffff"))
LOG_X_RATIO = 20.0  # a log x axis when the plotted x values span more than this factor


@dataclass(frozen=True)
class PaperPoint:
    """One point of the paper: its series, the model as printed, the row id ('' for a point quoted in
    the text), x in the spec's unit (FPS, or ms for Figure 11), y in % AP and the column it came from,
    the input size and the table group (``V100`` / ``A100`` in Table 9)."""

    series: str
    name: str
    row: str
    x: float
    y: float
    y_column: str
    size: int | None = None
    group: str = ""


@dataclass(frozen=True)
class MeasuredPoint:
    """One point this kit measured, in the spec's units (FPS, or ms for Figure 11; AP in %), with
    the scale it was measured at (the legend says it) and optional spreads (standard deviations)."""

    label: str
    x: float
    y: float
    scale: str
    xerr: float | None = None
    yerr: float | None = None


def figure_spec(number: int) -> paper.FigureSpec:
    """The FIGURES spec of a speed/accuracy figure; ValueError naming the ones that exist."""
    if number not in paper.FIGURES:
        raise ValueError(
            f"Figure {number!r} is not a speed/accuracy figure; those are {sorted(paper.FIGURES)}"
        )
    return paper.FIGURES[number]


def _x_unit(spec: paper.FigureSpec) -> str:
    return "fps" if spec.x == "fps" else "ms"


def to_display(number: int, x: float, view: View | None = None) -> float:
    """An x value of Figure `number` in the spec's unit, as plotted (1000 / FPS where the view shows
    milliseconds and the spec gives FPS)."""
    view = view or VIEWS[number]
    if _x_unit(figure_spec(number)) == "fps" and view.x == "ms":
        if x <= 0:
            raise ValueError(f"Figure {number}: cannot show {x!r} FPS as an inference time")
        return 1000.0 / x
    return x


def _allowed_rows(spec: paper.FigureSpec) -> set[str] | None:
    if spec.table is None or not spec.row_filter:
        return None
    frame = paper.table(spec.table)
    return set(frame[frame["kind"] == "model"].query(spec.row_filter)["row"])


def paper_points(number: int, view: View | None = None) -> tuple[list[PaperPoint], list[str]]:
    """The paper's points of Figure `number`, and the names of those it cannot place (a value the
    paper does not give), in series order."""
    spec, view = figure_spec(number), view or VIEWS[number]
    points: list[PaperPoint] = []
    missing: list[str] = []
    allowed = _allowed_rows(spec)
    for s in spec.series:
        for name, x, y in s.points:
            if x is None:
                missing.append(f"{name} ({y}% AP, quoted without a time)")
            else:
                points.append(PaperPoint(s.label, name, "", float(x), float(y), spec.y))
        if spec.table is None:
            continue
        t = paper.get_table(spec.table)
        for row_id in s.rows:
            if allowed is not None and row_id not in allowed:
                continue
            r = t.by_id(row_id)
            x = r[spec.x]
            y_column = next((c for c in view.y_columns if c in r.columns and r[c] is not None), "")
            if x is None or not y_column:
                missing.append(
                    f"{r.name} (the table gives no {spec.x if x is None else ' or '.join(view.y_columns)})"
                )
                continue
            points.append(
                PaperPoint(s.label, r.name, r.id, float(x), float(r[y_column]), y_column, r.size, r.group)
            )
    return points, missing


def _finite(x: object, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise ValueError(f"{what} must be a finite number, got {x!r}")
    return float(x)


def _scale_text(x: Reproduced, y: Reproduced, x_name: str) -> str:
    return x.scale if x.scale == y.scale else f"{x_name}: {x.scale}; AP: {y.scale}"


def measured_points(
    number: int,
    measured: Reproductions | Iterable[MeasuredPoint | tuple[str, float, float]] | None,
    scale: str | None = None,
    view: View | None = None,
) -> tuple[list[MeasuredPoint], list[str]]:
    """This kit's points for Figure `number`, and the rows left out because only one of their two
    coordinates was measured.

    From a :class:`Reproductions`: every row the figure plots whose x cell and one of its AP cells
    (in the view's order) were reproduced; the row's name labels the point. From a list: each item a
    :class:`MeasuredPoint` or a ``(label, x, y)`` tuple measured at `scale`, in the spec's units."""
    if measured is None:
        return [], []
    spec, view = figure_spec(number), view or VIEWS[number]
    if isinstance(measured, Reproductions):
        if spec.table is None:
            return [], []
        allowed = _allowed_rows(spec)
        t = paper.get_table(spec.table)
        out, incomplete = [], []
        for s in spec.series:
            for row_id in s.rows:
                if allowed is not None and row_id not in allowed:
                    continue
                r = t.by_id(row_id)
                xr = measured.get((t.number, row_id, spec.x))
                yr = next(
                    (
                        measured[(t.number, row_id, c)]
                        for c in view.y_columns
                        if (t.number, row_id, c) in measured
                    ),
                    None,
                )
                if xr is None and yr is None:
                    continue
                if xr is None or yr is None:
                    what = spec.x if xr is None else "AP"
                    incomplete.append(f"{r.name} (no measured {what})")
                    continue
                out.append(
                    MeasuredPoint(
                        r.name, xr.value, yr.value, _scale_text(xr, yr, "speed"), xr.spread, yr.spread
                    )
                )
        return out, incomplete
    out = []
    for i, item in enumerate(measured):
        if isinstance(item, MeasuredPoint):
            p = item
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 3:
            if not scale or not isinstance(scale, str):
                raise ValueError(
                    "measured points given as (label, x, y) need a scale, e.g. 'yolov7lib, CPU 2 cores'"
                )
            p = MeasuredPoint(str(item[0]), item[1], item[2], scale)
        else:
            raise ValueError(f"measured point {i}: expected a MeasuredPoint or (label, x, y), got {item!r}")
        if not p.scale or not isinstance(p.scale, str):
            raise ValueError(f"measured point {i} ({p.label!r}): every measured point needs a scale")
        for what in ("x", "y"):
            _finite(getattr(p, what), f"measured point {i} ({p.label!r}) {what}")
        for what in ("xerr", "yerr"):
            err = getattr(p, what)
            if err is not None and _finite(err, f"measured point {i} ({p.label!r}) {what}") < 0:
                raise ValueError(f"measured point {i} ({p.label!r}): {what} must be >= 0")
        out.append(p)
    return out, []


def _color(label: str, i: int) -> str:
    return FAMILY_COLORS.get(label, PALETTE[i % len(PALETTE)])


@dataclass(frozen=True)
class _Label:
    x: float
    y: float
    text: str
    size: float
    bold: bool = False
    gid: str | None = None


def speed_accuracy_figure(
    number: int,
    measured: Reproductions | Iterable[MeasuredPoint | tuple[str, float, float]] | None = None,
    *,
    measured_scale: str | None = None,
    view: View | None = None,
    figsize: tuple[float, float] = (11.0, 6.5),
    dpi: int = 100,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Figure `number` (1, 9, 10 or 11) of the paper redrawn from its numbers, with the measured
    points (see :func:`measured_points`) added as stars. Returns the matplotlib Figure; lines carry
    gids ``paper:<series>:<size or group>`` and ``measured:<scale>`` so that their data can be read
    back (:func:`series_lines`), and a measured point's label has the gid ``measured-label:<label>``."""
    spec, view = figure_spec(number), view or VIEWS[number]
    points, missing = paper_points(number, view)
    mine, incomplete = measured_points(number, measured, measured_scale, view)
    labels: list[_Label] = []
    with house_style():
        fig = Figure(figsize=figsize, dpi=dpi)
        ax = fig.add_axes((0.08, 0.2, 0.6, 0.68))
        for i, s in enumerate(spec.series):
            pts = [p for p in points if p.series == s.label]
            if s.label == "other detectors":  # single detectors: labelled points, no line
                labels += _draw_singles(ax, number, view, s.label, _color(s.label, i), pts)
            else:
                _draw_family(ax, number, view, s.label, _color(s.label, i), pts)
        for j, scale in enumerate(dict.fromkeys(p.scale for p in mine)):
            group = [p for p in mine if p.scale == scale]
            labels += _draw_measured(
                ax, number, view, scale, MEASURED_STYLES[j % len(MEASURED_STYLES)], group
            )
        xs = [x for line in ax.get_lines() for x in line.get_xdata() if x > 0]
        if xs and max(xs) / min(xs) > LOG_X_RATIO:
            ax.set_xscale("log")
        ax.margins(x=0.06, y=0.06)
        ax.autoscale_view()
        if xlim is not None:
            ax.set_xlim(*xlim)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_xlabel(view.x_label + ("; measured points: see the legend" if mine else ""))
        ax.set_ylabel(view.y_label)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
        _place_labels(fig, ax, labels)
        title = textwrap.fill(f"Figure {number}: {spec.caption}", 100)
        fig.text(0.5, 0.975, title, ha="center", va="top", fontsize=11)
        note = _footnote(spec, view, points, missing, incomplete)
        fig.text(0.02, 0.02, note, ha="left", va="bottom", fontsize=7, color="#333333")
    return fig


def _draw_family(ax: Any, number: int, view: View, label: str, color: str, pts: Sequence[PaperPoint]) -> None:
    """A family as lines with markers, one line per input size (in order of x)."""
    sizes = sorted({p.size for p in pts}, key=lambda v: -1 if v is None else v)
    for k, size in enumerate(sizes):
        seg = sorted((to_display(number, p.x, view), p.y) for p in pts if p.size == size)
        ax.plot(
            [x for x, _ in seg],
            [y for _, y in seg],
            marker="o",
            markersize=5,
            linewidth=1.8,
            color=color,
            label=label if k == 0 else "_nolegend_",
            gid=f"paper:{label}:{'' if size is None else size}",
        )


def _draw_singles(
    ax: Any, number: int, view: View, label: str, color: str, pts: Sequence[PaperPoint]
) -> list[_Label]:
    """Detectors outside the families: one marker each, hollow for A100 frame rates, and a label."""
    out = []
    for group in dict.fromkeys(p.group for p in pts):
        gp = [p for p in pts if p.group == group]
        xs = [to_display(number, p.x, view) for p in gp]
        hollow = group == "A100"
        ax.plot(
            xs,
            [p.y for p in gp],
            linestyle="none",
            marker="o" if hollow else "s",
            markersize=5,
            color=color,
            markerfacecolor="white" if hollow else color,
            label=f"{label} ({group} FPS)" if group else label,
            gid=f"paper:{label}:{group}",
        )
        out += [_Label(x, p.y, p.name, 6.0) for p, x in zip(gp, xs, strict=True)]
    return out


def _draw_measured(
    ax: Any, number: int, view: View, scale: str, style: tuple[str, str], group: Sequence[MeasuredPoint]
) -> list[_Label]:
    """Measured points of one scale: large outlined markers, error bars where a spread is known."""
    marker, face = style
    xs = [to_display(number, p.x, view) for p in group]
    ys = [p.y for p in group]
    ax.plot(
        xs,
        ys,
        linestyle="none",
        marker=marker,
        markersize=13,
        markerfacecolor=face,
        markeredgecolor="black",
        markeredgewidth=1.0,
        zorder=5,
        label=textwrap.fill(measured_legend(scale), 42),
        gid=f"measured:{scale}",
    )
    xerr = [_display_err(number, p.x, p.xerr, view) for p in group]
    yerr = [p.yerr or 0.0 for p in group]
    if any(xerr) or any(yerr):
        ax.errorbar(
            xs, ys, xerr=xerr, yerr=yerr, fmt="none", ecolor="black", elinewidth=0.8, capsize=2, zorder=4
        )
    return [
        _Label(x, p.y, p.label, 8.0, True, f"measured-label:{p.label}")
        for p, x in zip(group, xs, strict=True)
    ]


def measured_legend(scale: str) -> str:
    """The legend entry of points measured at `scale`: the scale, said to be this kit's."""
    return scale if scale.lower().startswith("yolov7lib") else f"yolov7lib, {scale}"


def _place_labels(fig: Figure, ax: Any, labels: Sequence[_Label]) -> None:
    """Annotate points so that labels overlap neither each other nor the markers: each label takes
    the first free place among right / left of its point, moving away line by line (greedy, in
    display pixels, deterministic); one that finds no free place goes right of its point."""
    ax.set_xlim(ax.get_xlim())  # freeze the limits: the pixel positions below must stay valid
    ax.set_ylim(ax.get_ylim())
    px_per_pt = fig.dpi / 72.0
    to_px = ax.transData.transform
    x0, y0, x1, y1 = ax.bbox.extents
    taken = []
    for line in ax.get_lines():
        r = line.get_markersize() * px_per_pt / 2
        for x, y in to_px(line.get_xydata()):
            taken.append((x - r, y - r, x + r, y + r))

    def free(box: tuple[float, float, float, float]) -> bool:
        inside = box[0] >= x0 and box[2] <= x1 and box[1] >= y0 and box[3] <= y1
        return inside and not any(
            box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken
        )

    for lab in sorted(labels, key=lambda lab: (-lab.y, lab.x, lab.text)):
        w = (
            TextPath((0, 0), lab.text, size=lab.size).get_extents().width
            * px_per_pt
            * (1.08 if lab.bold else 1.0)
        )
        h = lab.size * 1.25 * px_per_pt
        px, py = to_px((lab.x, lab.y))
        gap = 4.0 + (8.0 if lab.bold else 2.0)
        choice = (gap, 0.0, "left")
        for step in (0, 1, -1, 2, -2, 3, -3, 4, -4):
            found = False
            for side in (1, -1):
                dx, dy = side * gap, step * lab.size * 1.2
                left = px + dx * px_per_pt - (w if side < 0 else 0.0)
                bottom = py + dy * px_per_pt - h / 2
                box = (left, bottom, left + w, bottom + h)
                if free(box):
                    choice, found = (dx, dy, "left" if side > 0 else "right"), True
                    taken.append(box)
                    break
            if found:
                break
        dx, dy, ha = choice
        ax.annotate(
            lab.text,
            (lab.x, lab.y),
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            va="center",
            fontsize=lab.size,
            fontweight="bold" if lab.bold else "normal",
            color="black" if lab.bold else "#333333",
            arrowprops={"arrowstyle": "-", "linewidth": 0.4, "color": "#888888"} if dy else None,
            gid=lab.gid,
        )


def _display_err(number: int, x: float, err: float | None, view: View) -> float:
    """A spread of x in the plotted unit (propagated through 1000 / x to first order for ms)."""
    if not err:
        return 0.0
    if to_display(number, 1.0, view) != 1.0:  # FPS shown as ms: d(1000/x) = 1000 dx / x^2
        return 1000.0 * err / (x * x)
    return err


def _footnote(
    spec: paper.FigureSpec,
    view: View,
    points: Sequence[PaperPoint],
    missing: Sequence[str],
    incomplete: Sequence[str],
) -> str:
    src = f"Table {spec.table} as printed" if spec.table is not None else "the numbers quoted in Section 8"
    lines = [f"Paper points: {src}."]
    fallback = sorted({p.series for p in points if p.y_column != view.y_columns[0]})
    if fallback:
        lines.append(
            f"{paper.COLUMNS[view.y_columns[0]].header} not in the table, "
            f"{' / '.join(paper.COLUMNS[c].header for c in view.y_columns[1:])} used: {', '.join(fallback)}."
        )
    if missing:
        lines.append("Not drawn: " + "; ".join(missing) + ".")
    if incomplete:
        lines.append("Measured but not drawn (one coordinate only): " + "; ".join(incomplete) + ".")
    return "\n".join(textwrap.fill(line, 170) for line in lines)


def series_lines(fig: Figure) -> Mapping[str, list[tuple[float, float]]]:
    """The plotted points of a figure made by :func:`speed_accuracy_figure`, by line gid (for tests
    and notebooks that check what was drawn)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            gid = line.get_gid()
            if gid:
                out.setdefault(gid, []).extend((float(x), float(y)) for x, y in line.get_xydata())
    return out
