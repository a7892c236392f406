"""Every number of the paper, transcribed once: Tables 1-10, the quoted claims, the plotted figures.

Source: Wang, Bochkovskiy, Liao, "YOLOv7: Trainable bag-of-freebies sets new state-of-the-art for
real-time object detectors", arXiv:2207.02696 (July 2022).

Each table cell is written below exactly as the paper prints it (``"51.2%"``, ``"64.4M"``, ``"="``,
``"-"``) and parsed once into a typed :class:`Cell` (value in the column's unit, printed decimals, and a
flag where the printed text is not what the column says, e.g. ``"79.8G"`` in a #Param column). The
paper's own typos are kept as printed and flagged; :data:`KNOWN_INCONSISTENCIES` lists every place
where the paper disagrees with itself or with the official implementation.

Rows are addressed by a normalised key (``"YOLOv7-X"`` -> ``"yolov7x"``), which is the yolov7lib
registry name where the kit builds the model, plus a variant where one table holds the same model
twice (``"yolov7-tiny@416"``). Accessors: :func:`get_table`, :func:`table` (a pandas DataFrame),
:func:`row`, :func:`value`, :func:`rows_for_model`, :func:`model_key`.

Improvement rows follow the paper's arithmetic, checked against every improvement row of the
tables: for #Param and FLOPs the paper prints ``(candidate - baseline) / candidate`` in percent (the
change measured relative to the YOLOv7 model's own value), for AP the difference in points, and
``"="`` when the two are equal at the printed rounding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pandas is imported only when a DataFrame is asked for
    import pandas as pd

ColumnKind = Literal["architecture", "accuracy", "speed", "setting"]
ImprovementRule = Literal["relative", "points", "none"]
RowKind = Literal["model", "improvement"]
InconsistencyKind = Literal[
    "arithmetic", "typo", "convention", "counting", "overstatement", "unverifiable", "implementation"
]


# --------------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of the paper's tables: its unit, what kind of quantity it is, how improvements are
    computed on it (``relative``: percent change w.r.t. the candidate; ``points``: difference)."""

    name: str
    header: str
    unit: str
    kind: ColumnKind
    improvement: ImprovementRule


COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column("params", "#Param.", "M", "architecture", "relative"),
        Column("flops", "FLOPs", "G", "architecture", "relative"),
        Column("size", "Size", "px", "setting", "none"),
        Column("fps", "FPS", "fps", "speed", "none"),
        Column("ap_test", "AP test", "%", "accuracy", "points"),
        Column("ap_val", "AP val", "%", "accuracy", "points"),
        Column("ap50_test", "AP50 test", "%", "accuracy", "points"),
        Column("ap50_val", "AP50 val", "%", "accuracy", "points"),
        Column("ap75_test", "AP75 test", "%", "accuracy", "points"),
        Column("ap75_val", "AP75 val", "%", "accuracy", "points"),
        Column("aps_test", "AP_S test", "%", "accuracy", "points"),
        Column("aps_val", "AP_S val", "%", "accuracy", "points"),
        Column("apm_test", "AP_M test", "%", "accuracy", "points"),
        Column("apm_val", "AP_M val", "%", "accuracy", "points"),
        Column("apl_test", "AP_L test", "%", "accuracy", "points"),
        Column("apl_val", "AP_L val", "%", "accuracy", "points"),
        Column("precision", "Precision", "", "setting", "none"),
        Column("iou_threshold", "IoU threshold", "", "setting", "none"),
    )
}

# The models the kit builds (yolov7lib registry names). Only these rows get a `registry` name.
REGISTRY_NAMES: tuple[str, ...] = (
    "yolov7-tiny",
    "yolov7-tiny-silu",
    "yolov7",
    "yolov7x",
    "yolov7-w6",
    "yolov7-e6",
    "yolov7-d6",
    "yolov7-e6e",
    "yolor-csp",
    "yolor-csp-x",
    "yolov4-csp",
    "yolor-p6",
    "yolor-w6",
    "yolor-e6",
    "yolor-d6",
)


@dataclass(frozen=True)
class Cell:
    """One table cell: the text as printed, its value in the column's unit (None for "-" and for text
    settings), the number of decimals printed, a flag when the printed text contradicts the column
    (found by the parser), and a note on what the cell really reports (written with the transcription)."""

    printed: str
    value: float | None
    decimals: int
    flag: str = ""
    note: str = ""


@dataclass(frozen=True)
class Row:
    """One row of a table: a model (or ablation variant) row, or an ``improvement`` row that compares
    ``candidate`` with ``baseline`` (both row ids of the same table)."""

    table: int
    name: str
    key: str
    variant: str
    kind: RowKind
    columns: tuple[str, ...]
    cells: tuple[Cell, ...]
    ref: int | None = None
    registry: str | None = None
    group: str = ""
    note: str = ""
    candidate: str | None = None
    baseline: str | None = None

    @property
    def id(self) -> str:
        """The row id, unique within its table: the key, or ``key@variant``."""
        return f"{self.key}@{self.variant}" if self.variant else self.key

    def cell(self, column: str) -> Cell:
        """The cell of `column`; KeyError naming the table's columns if it has no such column."""
        try:
            return self.cells[self.columns.index(column)]
        except ValueError:
            raise KeyError(f"Table {self.table} has no column {column!r}; columns: {self.columns}") from None

    def __getitem__(self, column: str) -> float | None:
        return self.cell(column).value

    @property
    def size(self) -> int | None:
        """Input size in pixels where the table gives one."""
        if "size" not in self.columns or self["size"] is None:
            return None
        return int(self["size"])  # type: ignore[arg-type]


@dataclass(frozen=True)
class Table:
    """One table of the paper: number, caption, the section that discusses it, columns and rows, and
    the footnotes printed under it (with their marks, as printed)."""

    number: int
    title: str
    section: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    footnotes: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    @property
    def models(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.kind == "model")

    @property
    def improvements(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.kind == "improvement")

    def by_id(self, row_id: str) -> Row:
        for r in self.rows:
            if r.id == row_id:
                return r
        raise KeyError(f"Table {self.number} has no row {row_id!r}; rows: {[r.id for r in self.rows]}")

    def find(self, model: str, variant: str | None = None) -> Row:
        """The row of `model` (paper spelling, key, registry name or row id), disambiguated by
        `variant` where the table holds the model more than once."""
        if variant is None:  # a row id, improvement rows' included (``improvement@yolov7``)
            exact = [r for r in self.rows if r.id == model]
            if exact:
                return exact[0]
        if "@" in model and variant is None:
            model, variant = model.split("@", 1)
        key = model_key(model)
        matches = [r for r in self.rows if r.kind == "model" and (r.key == key or r.name == model)]
        if variant is not None:
            matches = [r for r in matches if r.variant == variant]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            known = ", ".join(r.id for r in self.models)
            raise KeyError(
                f"Table {self.number} has no row for {model!r} (variant {variant!r}); rows: {known}"
            )
        raise KeyError(
            f"Table {self.number} holds {model!r} {len(matches)} times; "
            f"pass variant= one of {[r.variant for r in matches]}"
        )


# --------------------------------------------------------------------------------------------------
# Parsing the printed cells
# --------------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"([+-]?\d+(?:\.(\d+))?)\s*(%|M|G)?(\s*\(default\))?")


def _slug(name: str) -> str:
    s = name.lower().replace("+", "-plus")
    return re.sub(r"[^a-z0-9.]+", "-", s).strip("-")


# Paper spellings whose key is not their slug: the model a typo stands for.
_KEY_ALIASES = {"YOLO-E6": "yolor-e6"}


def model_key(name: str) -> str:
    """Normalised key of a model name: ``"YOLOv7-X"`` -> ``"yolov7x"``, ``"YOLOv5-N (r6.1)"`` ->
    ``"yolov5-n-r6.1"``; registry names and keys map to themselves."""
    name = name.strip()
    if name in _KEY_ALIASES:
        return _KEY_ALIASES[name]
    slug = _slug(name)
    return "yolov7x" if slug == "yolov7-x" else slug  # the registry spells it without the hyphen


def _parse_cell(printed: str, column: Column, improvement: bool) -> Cell:
    text = printed.strip()
    if column.name == "precision":
        return Cell(text, None, 0)
    if text == "-":
        return Cell(text, None, 0)
    if text == "=" and improvement:
        return Cell(text, 0.0, 0)
    m = _NUMBER.fullmatch(text)
    if m is None:
        raise ValueError(f"cannot parse {printed!r} in column {column.name!r}")
    number, decimals, unit = m.group(1), m.group(2) or "", m.group(3) or ""
    if improvement:
        expected = "%" if column.improvement == "relative" else ""
    else:
        expected = column.unit if column.unit in ("%", "M", "G") else ""
    flag = ""
    if unit != expected:
        flag = (
            f"printed {text!r}: unit {unit or 'missing'} where the column is in {expected or 'plain numbers'}"
        )
    return Cell(text, float(number), len(decimals), flag)


@dataclass(frozen=True)
class _Spec:
    name: str
    printed: tuple[str, ...]
    ref: int | None = None
    variant: str = ""
    registry: str | None = None
    group: str = ""
    note: str = ""
    candidate: str | None = None
    baseline: str | None = None
    cell_notes: tuple[tuple[str, str], ...] = ()


def _cells(printed: str) -> tuple[str, ...]:
    """Split one row of printed cells: on " | " where a cell holds spaces, else on whitespace."""
    return tuple(c.strip() for c in printed.split(" | ")) if " | " in printed else tuple(printed.split())


def _m(
    name: str,
    printed: str,
    *,
    ref: int | None = None,
    variant: str = "",
    registry: str | None = None,
    group: str = "",
    note: str = "",
    notes: dict[str, str] | None = None,
) -> _Spec:
    """A model row: the paper's name (citation number apart) and its cells as printed, in one string;
    `note` is about the row, `notes` about single cells (by column)."""
    cell_notes = tuple((notes or {}).items())
    return _Spec(name, _cells(printed), ref, variant, registry, group, note, cell_notes=cell_notes)


def _imp(
    candidate: str, baseline: str, printed: str, note: str = "", notes: dict[str, str] | None = None
) -> _Spec:
    """An improvement row: `candidate` compared with `baseline` (row ids), cells as printed."""
    cell_notes = tuple((notes or {}).items())
    return _Spec("improvement", _cells(printed), note=note, candidate=candidate, baseline=baseline,
                 cell_notes=cell_notes)  # fmt: skip


def _table(
    number: int,
    title: str,
    section: str,
    columns: tuple[str, ...],
    *specs: _Spec,
    footnotes: tuple[str, ...] = (),
) -> Table:
    rows: list[Row] = []
    for spec in specs:
        if len(spec.printed) != len(columns):
            raise ValueError(
                f"Table {number}, {spec.name}: {len(spec.printed)} cells for {len(columns)} columns"
            )
        improvement = spec.candidate is not None
        cells = tuple(
            _parse_cell(p, COLUMNS[c], improvement) for p, c in zip(spec.printed, columns, strict=True)
        )
        for column, note in spec.cell_notes:
            i = columns.index(column)
            cells = (*cells[:i], replace(cells[i], note=note), *cells[i + 1 :])
        if improvement:
            key, variant, registry = "improvement", spec.candidate or "", None
        else:
            key = model_key(spec.name)
            variant = spec.variant
            registry = (
                spec.registry if spec.registry is not None else (key if key in REGISTRY_NAMES else None)
            )
        rows.append(
            Row(
                table=number,
                name=spec.name,
                key=key,
                variant=variant,
                kind="improvement" if improvement else "model",
                columns=columns,
                cells=cells,
                ref=spec.ref,
                registry=registry or None,
                group=spec.group,
                note=spec.note,
                candidate=spec.candidate,
                baseline=spec.baseline,
            )
        )
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"Table {number}: duplicate row ids {ids}")
    for r in rows:
        for other in (r.candidate, r.baseline):
            if other is not None and other not in ids:
                raise ValueError(f"Table {number}: improvement row names unknown row {other!r}")
    return Table(number, title, section, columns, tuple(rows), footnotes)


# --------------------------------------------------------------------------------------------------
# The tables, cells as printed
# --------------------------------------------------------------------------------------------------

_D6 = (
    "154.7M and 806.8G count the training graph with auxiliary heads (official implementation: 154.7M, "
    "806.1 GFLOPs); every other P6 row counts the deploy graph, where YOLOv7-D6 has 133.8M parameters "
    "and 701.7 GFLOPs"
)
_D6_NOTES = {"params": _D6, "flops": _D6}
_W6_NOTES = {"params": "the unit is M: 79.8M parameters (official count 79.83M fused)"}
_LEAKY = "LeakyReLU activation (Section 5.1)"

_T1_COLS = ("params", "flops", "size", "ap_val", "ap50_val", "ap75_val", "aps_val", "apm_val", "apl_val")
TABLE_1 = _table(
    1,
    "Comparison of baseline object detectors.",
    "5.2",
    _T1_COLS,
    _m("YOLOv4", "64.4M 142.8G 640 49.7% 68.2% 54.3% 32.9% 54.8% 63.7%", ref=3),
    _m("YOLOR-u5 (r6.1)", "46.5M 109.1G 640 50.2% 68.7% 54.6% 33.2% 55.5% 63.7%", ref=81),
    _m("YOLOv4-CSP", "52.9M 120.4G 640 50.3% 68.6% 54.9% 34.2% 55.6% 65.1%", ref=79),
    _m("YOLOR-CSP", "52.9M 120.4G 640 50.8% 69.5% 55.3% 33.7% 56.0% 65.4%", ref=81),
    _m("YOLOv7", "36.9M 104.7G 640 51.2% 69.7% 55.5% 35.2% 56.0% 66.7%"),
    _imp("yolov7", "yolor-csp", "-43% -15% - +0.4 +0.2 +0.2 +1.5 = +1.3"),
    _m("YOLOR-CSP-X", "96.9M 226.8G 640 52.7% 71.3% 57.4% 36.3% 57.5% 68.3%", ref=81),
    _m("YOLOv7-X", "71.3M 189.9G 640 52.9% 71.1% 57.5% 36.9% 57.7% 68.6%"),
    _imp("yolov7x", "yolor-csp-x", "-36% -19% - +0.2 -0.2 +0.1 +0.6 +0.2 +0.3"),
    _m("YOLOv4-tiny", "6.1 6.9 416 24.9% 42.1% 25.7% 8.7% 28.4% 39.2%", ref=79),
    _m(
        "YOLOv7-tiny",
        "6.2 5.8 416 35.2% 52.8% 37.3% 15.7% 38.0% 53.4%",
        variant="416",
        note=_LEAKY,
    ),
    _imp("yolov7-tiny@416", "yolov4-tiny", "+2% -19% - +10.3 +10.7 +11.6 +7.0 +9.6 +14.2"),
    _m("YOLOv4-tiny-3l", "8.7 5.2 320 30.8% 47.3% 32.2% 10.9% 31.9% 51.5%", ref=79),
    _m(
        "YOLOv7-tiny",
        "6.2 3.5 320 30.8% 47.3% 32.2% 10.0% 31.9% 52.2%",
        variant="320",
        note=_LEAKY,
    ),
    _imp(
        "yolov7-tiny@320",
        "yolov4-tiny-3l",
        "-39% -49% - = = = -0.9 = +0.7",
        notes={"params": "the rounded rows give (6.2 - 8.7) / 6.2 = -40.3%; the paper prints -39%"},
    ),
    _m("YOLOR-E6", "115.8M 683.2G 1280 55.7% 73.2% 60.7% 40.1% 60.4% 69.2%", ref=81),
    _m("YOLOv7-E6", "97.2M 515.2G 1280 55.9% 73.5% 61.1% 40.6% 60.3% 70.0%"),
    _imp("yolov7-e6", "yolor-e6", "-19% -33% - +0.2 +0.3 +0.4 +0.5 -0.1 +0.8"),
    _m("YOLOR-D6", "151.7M 935.6G 1280 56.1% 73.9% 61.2% 42.4% 60.5% 69.9%", ref=81),
    _m("YOLOv7-D6", "154.7M 806.8G 1280 56.3% 73.8% 61.4% 41.3% 60.6% 70.1%", notes=_D6_NOTES),
    _m(
        "YOLOv7-E6E",
        "151.7M 843.2G 1280 56.8% 74.4% 62.1% 40.8% 62.1% 70.6%",
        notes={"apm_val": "equal to the row's AP_75^val (62.1%); the improvement row (+1.6) agrees with it"},
    ),
    _imp(
        "yolov7-e6e",
        "yolor-d6",
        "= -11% - +0.7 +0.5 +0.9 -1.6 +1.6 +0.7",
        note="compares YOLOv7-E6E (not YOLOv7-D6) with YOLOR-D6",
    ),
)

_T2_COLS = (
    "params",
    "flops",
    "size",
    "fps",
    "ap_test",
    "ap_val",
    "ap50_test",
    "ap75_test",
    "aps_test",
    "apm_test",
    "apl_test",
)
TABLE_2 = _table(
    2,
    "Comparison of state-of-the-art real-time object detectors.",
    "5.3",
    _T2_COLS,
    _m("YOLOX-S", "9.0M 26.8G 640 102 40.5% 40.5% - - - - -", ref=21),
    _m("YOLOX-M", "25.3M 73.8G 640 81 47.2% 46.9% - - - - -", ref=21),
    _m("YOLOX-L", "54.2M 155.6G 640 69 50.1% 49.7% - - - - -", ref=21),
    _m("YOLOX-X", "99.1M 281.9G 640 58 51.5% 51.1% - - - - -", ref=21),
    _m("PPYOLOE-S", "7.9M 17.4G 640 208 43.1% 42.7% 60.5% 46.6% 23.2% 46.4% 56.9%", ref=85),
    _m("PPYOLOE-M", "23.4M 49.9G 640 123 48.9% 48.6% 66.5% 53.0% 28.6% 52.9% 63.8%", ref=85),
    _m("PPYOLOE-L", "52.2M 110.1G 640 78 51.4% 50.9% 68.9% 55.6% 31.4% 55.3% 66.1%", ref=85),
    _m("PPYOLOE-X", "98.4M 206.6G 640 45 52.2% 51.9% 69.9% 56.5% 33.3% 56.3% 66.4%", ref=85),
    _m("YOLOv5-N (r6.1)", "1.9M 4.5G 640 159 - 28.0% - - - - -", ref=23),
    _m("YOLOv5-S (r6.1)", "7.2M 16.5G 640 156 - 37.4% - - - - -", ref=23),
    _m("YOLOv5-M (r6.1)", "21.2M 49.0G 640 122 - 45.4% - - - - -", ref=23),
    _m("YOLOv5-L (r6.1)", "46.5M 109.1G 640 99 - 49.0% - - - - -", ref=23),
    _m("YOLOv5-X (r6.1)", "86.7M 205.7G 640 83 - 50.7% - - - - -", ref=23),
    _m("YOLOR-CSP", "52.9M 120.4G 640 106 51.1% 50.8% 69.6% 55.7% 31.7% 55.3% 64.7%", ref=81),
    _m("YOLOR-CSP-X", "96.9M 226.8G 640 87 53.0% 52.7% 71.4% 57.9% 33.7% 57.1% 66.8%", ref=81),
    _m("YOLOv7-tiny-SiLU", "6.2M 13.8G 640 286 38.7% 38.7% 56.7% 41.7% 18.8% 42.4% 51.9%"),
    _m("YOLOv7", "36.9M 104.7G 640 161 51.4% 51.2% 69.7% 55.9% 31.8% 55.5% 65.0%"),
    _m("YOLOv7-X", "71.3M 189.9G 640 114 53.1% 52.9% 71.2% 57.8% 33.8% 57.1% 67.4%"),
    _m("YOLOv5-N6 (r6.1)", "3.2M 18.4G 1280 123 - 36.0% - - - - -", ref=23),
    _m("YOLOv5-S6 (r6.1)", "12.6M 67.2G 1280 122 - 44.8% - - - - -", ref=23),
    _m("YOLOv5-M6 (r6.1)", "35.7M 200.0G 1280 90 - 51.3% - - - - -", ref=23),
    _m("YOLOv5-L6 (r6.1)", "76.8M 445.6G 1280 63 - 53.7% - - - - -", ref=23),
    _m("YOLOv5-X6 (r6.1)", "140.7M 839.2G 1280 38 - 55.0% - - - - -", ref=23),
    _m("YOLOR-P6", "37.2M 325.6G 1280 76 53.9% 53.5% 71.4% 58.9% 36.1% 57.7% 65.6%", ref=81),
    _m("YOLOR-W6", "79.8G 453.2G 1280 66 55.2% 54.8% 72.7% 60.5% 37.7% 59.1% 67.1%", ref=81, notes=_W6_NOTES),
    _m("YOLOR-E6", "115.8M 683.2G 1280 45 55.8% 55.7% 73.4% 61.1% 38.4% 59.7% 67.7%", ref=81),
    _m("YOLOR-D6", "151.7M 935.6G 1280 34 56.5% 56.1% 74.1% 61.9% 38.9% 60.4% 68.7%", ref=81),
    _m("YOLOv7-W6", "70.4M 360.0G 1280 84 54.9% 54.6% 72.6% 60.1% 37.3% 58.7% 67.1%"),
    _m("YOLOv7-E6", "97.2M 515.2G 1280 56 56.0% 55.9% 73.5% 61.2% 38.0% 59.9% 68.4%"),
    _m("YOLOv7-D6", "154.7M 806.8G 1280 44 56.6% 56.3% 74.0% 61.8% 38.8% 60.1% 69.5%", notes=_D6_NOTES),
    _m("YOLOv7-E6E", "151.7M 843.2G 1280 36 56.8% 56.8% 74.4% 62.1% 39.3% 60.5% 69.0%"),
    footnotes=(
        "¹ Our FLOPs is calculated by rectangle input resolution like 640×640 or 1280×1280.",
        "² Our inference time is estimated by using letterbox resize input image to make its long side "
        "equals to 640 or 1280.",
    ),
)

_T3_COLS = ("params", "flops", "size", "ap_val", "ap50_val", "ap75_val")
TABLE_3 = _table(
    3,
    "Ablation study on proposed model scaling.",
    "5.4.1",
    _T3_COLS,
    _m("base (v7-X light)", "47.0M 125.5G 640 51.7% 70.1% 56.0%"),
    _m("width only (1.25 w)", "73.4M 195.5G 640 52.4% 70.9% 57.1%"),
    _m("depth only (2.0 d)", "69.3M 187.6G 640 52.7% 70.8% 57.3%"),
    _m("compound (v7-X)", "71.3M 189.9G 640 52.9% 71.1% 57.5%", registry="yolov7x"),
    _imp("compound-v7-x", "base-v7-x-light", "- - - +1.2 +1.0 +1.5"),
)

_AP6 = ("ap_val", "ap50_val", "ap75_val", "aps_val", "apm_val", "apl_val")
TABLE_4 = _table(
    4,
    "Ablation study on planned RepConcatenation model.",
    "5.4.2",
    _AP6,
    _m("base (3-S ELAN)", "52.26% 70.41% 56.77% 35.81% 57.00% 67.59%"),
    _m("Figure 6 (a)", "52.18% 70.34% 56.90% 35.71% 56.83% 67.51%"),
    _m("Figure 6 (b)", "52.30% 70.30% 56.92% 35.76% 56.95% 67.74%"),
    _m("Figure 6 (c)", "52.33% 70.56% 56.91% 35.90% 57.06% 67.50%"),
    _m("Figure 6 (d)", "52.17% 70.32% 56.82% 35.33% 57.06% 68.09%"),
    _m("Figure 6 (e)", "52.23% 70.20% 56.81% 35.34% 56.97% 66.88%"),
)

TABLE_5 = _table(
    5,
    "Ablation study on planned RepResidual model.",
    "5.4.2",
    _AP6,
    _m("base (YOLOR-W6)", "54.82% 72.39% 59.95% 39.68% 59.38% 68.30%", group="YOLOR-W6", registry="yolor-w6"),
    _m("RepCSP", "54.67% 72.50% 59.58% 40.22% 59.61% 67.87%", group="YOLOR-W6"),
    _m("RCSP", "54.36% 71.95% 59.54% 40.15% 59.02% 67.44%", group="YOLOR-W6"),
    _m("RepRCSP", "54.85% 72.51% 60.08% 40.53% 59.52% 68.06%", group="YOLOR-W6", variant="yolor-w6"),
    _m(
        "base (YOLOR-CSP)",
        "50.81% 69.47% 55.28% 33.74% 56.01% 65.38%",
        group="YOLOR-CSP",
        registry="yolor-csp",
    ),
    _m("RepRCSP", "50.91% 69.54% 55.55% 34.44% 55.74% 65.46%", group="YOLOR-CSP", variant="yolor-csp"),
)

_T6_COLS = ("size", "ap_val", "ap50_val", "ap75_val")
TABLE_6 = _table(
    6,
    "Ablation study on proposed auxiliary head.",
    "5.4.3",
    _T6_COLS,
    _m("base (v7-E6)", "1280 55.6% 73.2% 60.7%", note="YOLOv7-E6 trained without an auxiliary head"),
    _m("independent", "1280 55.8% 73.4% 60.9%"),
    _m("lead guided", "1280 55.9% 73.5% 61.0%"),
    _m("coarse-to-fine lead guided", "1280 55.9% 73.5% 61.1%", registry="yolov7-e6"),
    _imp("coarse-to-fine-lead-guided", "base-v7-e6", "- +0.3 +0.3 +0.4"),
)

TABLE_7 = _table(
    7,
    "Ablation study on constrained auxiliary head.",
    "5.4.3",
    _T6_COLS,
    _m("base (v7-E6)", "1280 55.6% 73.2% 60.7%", note="YOLOv7-E6 trained without an auxiliary head"),
    _m("aux without constraint", "1280 55.9% 73.5% 61.0%"),
    _m("aux with constraint", "1280 55.9% 73.5% 61.1%", registry="yolov7-e6"),
    _imp("aux-with-constraint", "base-v7-e6", "- +0.3 +0.3 +0.4"),
)

TABLE_8 = _table(
    8,
    "Ablation study on partial auxiliary head.",
    "5.4.3",
    _T6_COLS,
    _m("base (v7-E6E)", "1280 56.3% 74.0% 61.5%", note="YOLOv7-E6E trained without an auxiliary head"),
    _m("aux", "1280 56.5% 74.0% 61.6%"),
    _m("partial aux", "1280 56.8% 74.4% 62.1%", registry="yolov7-e6e"),
    _imp("partial-aux", "base-v7-e6e", "- +0.5 +0.4 +0.6"),
)

_T9_COLS = ("params", "flops", "size", "fps", "ap_test", "ap_val", "ap50_test", "ap75_test")
_V, _A = "V100", "A100"
TABLE_9 = _table(
    9,
    "More comparison (batch=1, no-TRT, without extra object detection training data)",
    "8",
    _T9_COLS,
    _m("YOLOv7-tiny-SiLU", "6.2M 13.8G 640 286 38.7% 38.7% 56.7% 41.7%", group=_V),
    _m("PPYOLOE-S", "7.9M 17.4G 640 208 43.1% 42.7% 60.5% 46.6%", ref=85, group=_V),
    _m("YOLOv7", "36.9M 104.7G 640 161 51.4% 51.2% 69.7% 55.9%", group=_V),
    _m("YOLOv5-N (r6.1)", "1.9M 4.5G 640 159 - 28.0% - -", ref=23, group=_V),
    _m("YOLOv5-S (r6.1)", "7.2M 16.5G 640 156 - 37.4% - -", ref=23, group=_V),
    _m("PPYOLOE-M", "23.4M 49.9G 640 123 48.9% 48.6% 66.5% 53.0%", ref=85, group=_V),
    _m("YOLOv5-N6 (r6.1)", "3.2M 18.4G 1280 123 - 36.0% - -", ref=23, group=_V),
    _m("YOLOv5-S6 (r6.1)", "12.6M 67.2G 1280 122 - 44.8% - -", ref=23, group=_V),
    _m("YOLOv5-M (r6.1)", "21.2M 49.0G 640 122 - 45.4% - -", ref=23, group=_V),
    _m("YOLOv7-X", "71.3M 189.9G 640 114 53.1% 52.9% 71.2% 57.8%", group=_V),
    _m("YOLOR-CSP", "52.9M 120.4G 640 106 51.1% 50.8% 69.6% 55.7%", ref=81, group=_V),
    _m("YOLOX-S", "9.0M 26.8G 640 102 40.5% 40.5% - -", ref=21, group=_V),
    _m("YOLOv5-L (r6.1)", "46.5M 109.1G 640 99 - 49.0% - -", ref=23, group=_V),
    _m("YOLOv5-M6 (r6.1)", "35.7M 200.0G 1280 90 - 51.3% - -", ref=23, group=_V),
    _m("YOLOR-CSP-X", "96.9M 226.8G 640 87 53.0% 52.7% 71.4% 57.9%", ref=81, group=_V),
    _m("YOLOv7-W6", "70.4M 360.0G 1280 84 54.9% 54.6% 72.6% 60.1%", group=_V),
    _m("YOLOv5-X (r6.1)", "86.7M 205.7G 640 83 - 50.7% - -", ref=23, group=_V),
    _m("YOLOX-M", "25.3M 73.8G 640 81 47.2% 46.9% - -", ref=21, group=_V),
    _m("PPYOLOE-L", "52.2M 110.1G 640 78 51.4% 50.9% 68.9% 55.6%", ref=85, group=_V),
    _m("YOLOR-P6", "37.2M 325.6G 1280 76 53.9% 53.5% 71.4% 58.9%", ref=81, group=_V),
    _m("YOLOX-L", "54.2M 155.6G 640 69 50.1% 49.7% - -", ref=21, group=_V),
    _m("YOLOR-W6", "79.8G 453.2G 1280 66 55.2% 54.8% 72.7% 60.5%", ref=81, group=_V, notes=_W6_NOTES),
    _m("YOLOv5-L6 (r6.1)", "76.8M 445.6G 1280 63 - 53.7% - -", ref=23, group=_V),
    _m("YOLOX-X", "99.1M 281.9G 640 58 51.5% 51.1% - -", ref=21, group=_V),
    _m("YOLOv7-E6", "97.2M 515.2G 1280 56 56.0% 55.9% 73.5% 61.2%", group=_V),
    _m(
        "YOLO-E6",
        "115.8M 683.2G 1280 45 55.8% 55.7% 73.4% 61.1%",
        ref=81,
        group=_V,
        note="printed 'YOLO-E6': the row is YOLOR-E6 (reference [81], the numbers of Table 2's YOLOR-E6)",
    ),
    _m("PPYOLOE-X", "98.4M 206.6G 640 45 52.2% 51.9% 69.9% 56.5%", ref=85, group=_V),
    _m("YOLOv7-D6", "154.7M 806.8G 1280 44 56.6% 56.3% 74.0% 61.8%", group=_V, notes=_D6_NOTES),
    _m("YOLOv5-X6 (r6.1)", "140.7M 839.2G 1280 38 - 55.0% - -", ref=23, group=_V),
    _m("YOLOv7-E6E", "151.7M 843.2G 1280 36 56.8% 56.8% 74.4% 62.1%", group=_V),
    _m("YOLOR-D6", "151.7M 935.6G 1280 34 56.5% 56.1% 74.1% 61.9%", ref=81, group=_V),
    _m("F-RCNN-R101-FPN+", "60.0M 246.0G 1333 20 - 44.0% - -", ref=5, group=_V),
    _m("Deformable DETR", "40.0M 173.0G - 19 - 46.2% - -", ref=100, group=_V),
    _m("Swin-B (C-M-RCNN)", "145.0M 982.0G 1333 11.6 - 51.9% - -", ref=52, group=_V, variant="v100"),
    _m("DETR DC5-R101", "60.0M 253.0G 1333 10 - 44.9% - -", ref=5, group=_V),
    _m("EfficientDet-D7x", "77.0M 410.0G 1536 6.5 55.1% 54.4% 72.4% 58.4%", ref=74, group=_V),
    _m("Dual-Swin-T (C-M-RCNN)", "113.8M 836.0G 1333 6.5 - 53.6% - -", ref=47, group=_V),
    _m("ViT-Adapter-B", "122.0M 997.0G - 4.4 - 50.8% - -", ref=7, group=_V),
    _m("Dual-Swin-B (HTC)", "235.0M - 1600 2.5 58.7% 58.4% - -", ref=47, group=_V),
    _m("Dual-Swin-L (HTC)", "453.0M - 1600 1.5 59.4% 59.1% - -", ref=47, group=_V),
    _m("DN-Deformable-DETR", "48.0M 265.0G 1333 23.0 - 48.6% - -", ref=41, group=_A),
    _m("ConvNeXt-B (C-M-RCNN)", "- 964.0G 1280 11.5 - 54.0% 73.1% 58.8%", ref=53, group=_A),
    _m("Swin-B (C-M-RCNN)", "- 982.0G 1280 10.7 - 53.0% 71.8% 57.5%", ref=52, group=_A, variant="a100"),
    _m("DINO-5scale (R50)", "47.0M 860.0G 1333 10.0 - 51.0% - -", ref=89, group=_A),
    _m("ConvNeXt-L (C-M-RCNN)", "- 1354.0G 1280 10.0 - 54.8% 73.8% 59.8%", ref=53, group=_A),
    _m("Swin-L (C-M-RCNN)", "- 1382.0G 1280 9.2 - 53.9% 72.4% 58.8%", ref=52, group=_A),
    _m("ConvNeXt-XL (C-M-RCNN)", "- 1898.0G 1280 8.6 - 55.2% 74.2% 59.9%", ref=53, group=_A),
)

_T10_COLS = ("precision", "iou_threshold", "ap_val")
TABLE_10 = _table(
    10,
    "Comparison of different setting.",
    "8",
    _T10_COLS,
    _m("YOLOv7-X", "FP16 (default) | 0.65 (default) | 52.9%", variant="fp16-iou0.65"),
    _m("YOLOv7-X", "FP32 0.65 53.0%", variant="fp32-iou0.65", registry=""),
    _m("YOLOv7-X", "FP16 0.70 53.0%", variant="fp16-iou0.70", registry=""),
    _m("YOLOv7-X", "FP32 0.70 53.1%", variant="fp32-iou0.70", registry=""),
    _imp("yolov7x@fp32-iou0.70", "yolov7x@fp16-iou0.65", "- - +0.2%"),
    footnotes=(
        "* Similar to meituan/YOLOv6 and PPYOLOE, our model could get higher AP when set higher IoU "
        "threshold.",
    ),
)

TABLES: dict[int, Table] = {
    t.number: t
    for t in (TABLE_1, TABLE_2, TABLE_3, TABLE_4, TABLE_5, TABLE_6, TABLE_7, TABLE_8, TABLE_9, TABLE_10)
}


# --------------------------------------------------------------------------------------------------
# Accessors
# --------------------------------------------------------------------------------------------------


def get_table(number: int) -> Table:
    """Table `number` (1-10) as typed rows."""
    try:
        return TABLES[number]
    except KeyError:
        raise KeyError(f"the paper has Tables 1-10, not {number!r}") from None


def row(table: int, model: str, variant: str | None = None) -> Row:
    """The row of `model` in Table `table` (paper spelling, key, registry name or row id)."""
    return get_table(table).find(model, variant)


def value(table: int, model: str, column: str, variant: str | None = None) -> float | None:
    """The paper's value of one cell, in the column's unit (None where the paper prints "-")."""
    return row(table, model, variant)[column]


def rows_for_model(registry: str) -> list[Row]:
    """Every row, over all tables, that reports the kit model `registry` at its default settings."""
    if registry not in REGISTRY_NAMES:
        raise KeyError(f"{registry!r} is not a kit model; kit models: {', '.join(REGISTRY_NAMES)}")
    return [r for t in TABLES.values() for r in t.rows if r.registry == registry]


def table(number: int, printed: bool = False) -> pd.DataFrame:
    """Table `number` as a DataFrame: one line per row, identifying columns (``model`` as printed,
    ``row`` id, ``key``, ``variant``, ``group``, ``kind``, ``registry``, ``ref``), then one column per
    table column (floats in the column's unit, NaN for "-"; the printed text if `printed`), ``note``."""
    import pandas as pd

    t = get_table(number)
    records = []
    for r in t.rows:
        rec: dict[str, object] = {
            "model": r.name,
            "row": r.id,
            "key": r.key,
            "variant": r.variant,
            "group": r.group,
            "kind": r.kind,
            "registry": r.registry,
            "ref": r.ref,
        }
        for c, cell in zip(t.columns, r.cells, strict=True):
            if printed or c == "precision":
                rec[c] = cell.printed
            else:
                rec[c] = math.nan if cell.value is None else cell.value
        cell_notes = [f"{c}: {cell.note}" for c, cell in zip(t.columns, r.cells, strict=True) if cell.note]
        rec["note"] = "; ".join([r.note, *cell_notes] if r.note else cell_notes)
        records.append(rec)
    return pd.DataFrame.from_records(records)


# --------------------------------------------------------------------------------------------------
# Claims quoted in the text
# --------------------------------------------------------------------------------------------------

CellRef = tuple[int, str, str]  # (table, row id, column)
Formula = Literal["a", "a - b", "(b - a) / a", "(a - b) / b", "a / b - 1"]


@dataclass(frozen=True)
class Claim:
    """A number the text states, and the table cells it follows from.

    `a` and `b` are cells ``(table, row id, column)`` or numbers quoted only in the text; `formula`
    says how the claim's number follows from them ("(b - a) / a" is the paper's "x% less" relative to
    the YOLOv7 model's own value; relative formulas are in percent). `formula` None marks a qualitative
    claim (an ordering or a maximum) that the tests check case by case.
    """

    id: str
    where: str
    quote: str
    printed: str = ""
    a: CellRef | float | None = None
    b: CellRef | float | None = None
    formula: Formula | None = None

    @property
    def value(self) -> float | None:
        """The number the text states (sign dropped: "43% fewer" is 43)."""
        m = re.search(r"\d+(?:\.\d+)?", self.printed)
        return float(m.group()) if m else None

    @property
    def decimals(self) -> int:
        m = re.search(r"\d+(?:\.(\d+))?", self.printed)
        return len(m.group(1) or "") if m else 0

    def cells(self) -> list[CellRef]:
        """The table cells this claim reads."""
        return [x for x in (self.a, self.b) if isinstance(x, tuple)]

    def evaluate(self, lookup: dict[CellRef, float] | None = None) -> float | None:
        """The claim's number computed from the tables (or from `lookup`, e.g. reproduced values,
        falling back to the paper); None for a qualitative claim or a missing cell."""
        if self.formula is None:
            return None

        def get(x: CellRef | float | None) -> float | None:
            if isinstance(x, tuple):
                if lookup is not None and x in lookup:
                    return lookup[x]
                return get_table(x[0]).by_id(x[1])[x[2]]
            return x

        a, b = get(self.a), get(self.b)
        if a is None or (self.formula != "a" and b is None):
            return None
        formulas = {
            "a": lambda: a,
            "a - b": lambda: a - b,
            "(b - a) / a": lambda: 100.0 * (b - a) / a,
            "(a - b) / b": lambda: 100.0 * (a - b) / b,
            "a / b - 1": lambda: 100.0 * (a / b - 1.0),
        }
        return float(formulas[self.formula]())


def _ref(x: str | float | None) -> CellRef | float | None:
    if isinstance(x, str):
        t, row_id, column = x.split(":")
        return (int(t), row_id, column)
    return x


def _q(
    id: str,
    where: str,
    printed: str,
    formula: Formula | None,
    a: str | float | None,
    b: str | float | None,
    quote: str,
) -> Claim:
    return Claim(id, where, quote, printed, _ref(a), _ref(b), formula)


# fmt: off
CLAIMS: tuple[Claim, ...] = (
    # _q(id, where, number as printed, formula, a, b, quote); a, b: "table:row id:column" or a number
    # Abstract
    _q("abstract-highest-ap", "Abstract", "56.8%", "a", "9:yolov7-e6e:ap_test", None,
       "has the highest accuracy 56.8% AP among all known real-time object detectors with 30 FPS or higher "
       "on GPU V100"),
    _q("abstract-best-5-160-fps", "Abstract", "", None, None, None,
       "YOLOv7 surpasses all known object detectors in both speed and accuracy in the range from 5 FPS to "
       "160 FPS"),
    _q("abstract-e6-fps", "Abstract", "56", "a", "9:yolov7-e6:fps", None,
       "YOLOv7-E6 object detector (56 FPS V100, 55.9% AP)"),
    _q("abstract-e6-ap", "Abstract", "55.9%", "a", "9:yolov7-e6:ap_val", None,
       "YOLOv7-E6 object detector (56 FPS V100, 55.9% AP)"),
    _q("abstract-swin-l-fps", "Abstract", "9.2", "a", "9:swin-l-c-m-rcnn:fps", None,
       "SWIN-L Cascade-Mask R-CNN (9.2 FPS A100, 53.9% AP)"),
    _q("abstract-swin-l-ap", "Abstract", "53.9%", "a", "9:swin-l-c-m-rcnn:ap_val", None,
       "SWIN-L Cascade-Mask R-CNN (9.2 FPS A100, 53.9% AP)"),
    _q("abstract-swin-l-speed", "Abstract", "509%", "a / b - 1", "9:yolov7-e6:fps", "9:swin-l-c-m-rcnn:fps",
       "outperforms ... SWIN-L Cascade-Mask R-CNN ... by 509% in speed"),
    _q("abstract-swin-l-accuracy", "Abstract", "2%", "a - b",
       "9:yolov7-e6:ap_val", "9:swin-l-c-m-rcnn:ap_val",
       "... and 2% in accuracy"),
    _q("abstract-convnext-fps", "Abstract", "8.6", "a", "9:convnext-xl-c-m-rcnn:fps", None,
       "ConvNeXt-XL Cascade-Mask R-CNN (8.6 FPS A100, 55.2% AP)"),
    _q("abstract-convnext-ap", "Abstract", "55.2%", "a", "9:convnext-xl-c-m-rcnn:ap_val", None,
       "ConvNeXt-XL Cascade-Mask R-CNN (8.6 FPS A100, 55.2% AP)"),
    _q("abstract-convnext-speed", "Abstract", "551%", "a / b - 1",
       "9:yolov7-e6:fps", "9:convnext-xl-c-m-rcnn:fps",
       "ConvNeXt-XL Cascade-Mask R-CNN ... by 551% in speed"),
    _q("abstract-convnext-accuracy", "Abstract", "0.7%", "a - b",
       "9:yolov7-e6:ap_val", "9:convnext-xl-c-m-rcnn:ap_val",
       "... and 0.7% AP in accuracy"),
    # Section 1
    _q("intro-40-50", "Section 1", "", None, None, None,
       "the method we proposed can effectively reduce about 40% parameters and 50% computation of "
       "state-of-the-art real-time object detector"),
    # Section 8
    _q("section8-e6e-test", "Section 8", "56.8%", "a", "9:yolov7-e6e:ap_test", None,
       "the highest accuracy 56.8% AP test-dev / 56.8% AP min-val"),
    _q("section8-e6e-val", "Section 8", "56.8%", "a", "9:yolov7-e6e:ap_val", None,
       "the highest accuracy 56.8% AP test-dev / 56.8% AP min-val"),
    # Section 5.2
    _q("s5.2-yolov4-params", "Section 5.2", "75%", "(b - a) / a", "1:yolov7:params", "1:yolov4:params",
       "compared with YOLOv4, YOLOv7 has 75% less parameters"),
    _q("s5.2-yolov4-flops", "Section 5.2", "36%", "(b - a) / a", "1:yolov7:flops", "1:yolov4:flops",
       "compared with YOLOv4, YOLOv7 has ... 36% less computation"),
    _q("s5.2-yolov4-ap", "Section 5.2", "1.5%", "a - b", "1:yolov7:ap_val", "1:yolov4:ap_val",
       "compared with YOLOv4, YOLOv7 ... brings 1.5% higher AP"),
    _q("s5.2-yolor-csp-params", "Section 5.2", "43%", "(b - a) / a", "1:yolov7:params", "1:yolor-csp:params",
       "compared with state-of-the-art YOLOR-CSP, YOLOv7 has 43% fewer parameters"),
    _q("s5.2-yolor-csp-flops", "Section 5.2", "15%", "(b - a) / a", "1:yolov7:flops", "1:yolor-csp:flops",
       "compared with YOLOR-CSP, YOLOv7 has ... 15% less computation"),
    _q("s5.2-yolor-csp-ap", "Section 5.2", "0.4%", "a - b", "1:yolov7:ap_val", "1:yolor-csp:ap_val",
       "compared with YOLOR-CSP, YOLOv7 has ... 0.4% higher AP"),
    _q("s5.2-tiny-params", "Section 5.2", "39%", "(b - a) / a",
       "1:yolov7-tiny@320:params", "1:yolov4-tiny-3l:params",
       "compared with YOLOv4-tiny-31, YOLOv7-tiny reduces the number of parameters by 39%"),
    _q("s5.2-tiny-flops", "Section 5.2", "49%", "(b - a) / a",
       "1:yolov7-tiny@320:flops", "1:yolov4-tiny-3l:flops",
       "... and the amount of computation by 49%"),
    _q("s5.2-tiny-ap", "Section 5.2", "0", "a - b", "1:yolov7-tiny@320:ap_val", "1:yolov4-tiny-3l:ap_val",
       "... but maintains the same AP"),
    _q("s5.2-cloud-params", "Section 5.2", "19%", "(b - a) / a", "1:yolov7-e6:params", "1:yolor-e6:params",
       "On the cloud GPU model, our model can still have a higher AP while reducing the number of "
       "parameters by 19%"),
    _q("s5.2-cloud-flops", "Section 5.2", "33%", "(b - a) / a", "1:yolov7-e6:flops", "1:yolor-e6:flops",
       "... and the amount of computation by 33%"),
    # Section 5.3
    _q("s5.3-tiny-fps", "Section 5.3", "127", "a - b", "2:yolov7-tiny-silu:fps", "2:yolov5-n-r6.1:fps",
       "YOLOv7-tiny-SiLU with YOLOv5-N (r6.1), our method is 127 fps faster"),
    _q("s5.3-tiny-ap", "Section 5.3", "10.7%", "a - b", "2:yolov7-tiny-silu:ap_val", "2:yolov5-n-r6.1:ap_val",
       "... and 10.7% more accurate on AP"),
    _q("s5.3-yolov7-ap", "Section 5.3", "51.4%", "a", "2:yolov7:ap_test", None,
       "YOLOv7 has 51.4% AP at frame rate of 161 fps"),
    _q("s5.3-yolov7-fps", "Section 5.3", "161", "a", "2:yolov7:fps", None,
       "YOLOv7 has 51.4% AP at frame rate of 161 fps"),
    _q("s5.3-ppyoloe-same-ap", "Section 5.3", "0", "a - b", "2:ppyoloe-l:ap_test", "2:yolov7:ap_test",
       "PPYOLOE-L with the same AP"),
    _q("s5.3-ppyoloe-fps", "Section 5.3", "78", "a", "2:ppyoloe-l:fps", None,
       "PPYOLOE-L ... has only 78 fps frame rate"),
    _q("s5.3-ppyoloe-params", "Section 5.3", "41%", "(b - a) / a", "2:yolov7:params", "2:ppyoloe-l:params",
       "In terms of parameter usage, YOLOv7 is 41% less than PPYOLOE-L"),
    _q("s5.3-x-fps", "Section 5.3", "114", "a", "2:yolov7x:fps", None,
       "YOLOv7-X with 114 fps inference speed"),
    _q("s5.3-yolov5-l-fps", "Section 5.3", "99", "a", "2:yolov5-l-r6.1:fps", None,
       "YOLOv5-L (r6.1) with 99 fps inference speed"),
    _q("s5.3-x-vs-l-ap", "Section 5.3", "3.9%", "a - b", "2:yolov7x:ap_val", "2:yolov5-l-r6.1:ap_val",
       "YOLOv7-X can improve AP by 3.9%"),
    _q("s5.3-x-vs-x-fps", "Section 5.3", "31", "a - b", "2:yolov7x:fps", "2:yolov5-x-r6.1:fps",
       "the inference speed of YOLOv7-X is 31 fps faster"),
    _q("s5.3-x-vs-x-params", "Section 5.3", "22%", "(b - a) / a",
       "2:yolov7x:params", "2:yolov5-x-r6.1:params",
       "YOLOv7-X reduces 22% of parameters ... compared to YOLOv5-X"),
    _q("s5.3-x-vs-x-flops", "Section 5.3", "8%", "(b - a) / a", "2:yolov7x:flops", "2:yolov5-x-r6.1:flops",
       "... and 8% of computation compared to YOLOv5-X (r6.1)"),
    _q("s5.3-x-vs-x-ap", "Section 5.3", "2.2%", "a - b", "2:yolov7x:ap_val", "2:yolov5-x-r6.1:ap_val",
       "... but improves AP by 2.2%"),
    _q("s5.3-w6-fps", "Section 5.3", "8", "a - b", "2:yolov7-w6:fps", "2:yolor-p6:fps",
       "the inference speed of YOLOv7-W6 is 8 fps faster than that of YOLOR-P6"),
    _q("s5.3-w6-ap", "Section 5.3", "1%", "a - b", "2:yolov7-w6:ap_test", "2:yolor-p6:ap_test",
       "... and the detection rate is also increased by 1% AP"),
    _q("s5.3-e6-ap", "Section 5.3", "0.9%", "a - b", "2:yolov7-e6:ap_val", "2:yolov5-x6-r6.1:ap_val",
       "YOLOv7-E6 ... has 0.9% AP gain than [YOLOv5-X6 (r6.1)]"),
    _q("s5.3-e6-params", "Section 5.3", "45%", "(b - a) / a", "2:yolov7-e6:params", "2:yolov5-x6-r6.1:params",
       "... 45% less parameters"),
    _q("s5.3-e6-flops", "Section 5.3", "63%", "(b - a) / a", "2:yolov7-e6:flops", "2:yolov5-x6-r6.1:flops",
       "... and 63% less computation"),
    _q("s5.3-e6-speed", "Section 5.3", "47%", "a / b - 1", "2:yolov7-e6:fps", "2:yolov5-x6-r6.1:fps",
       "... and the inference speed is increased by 47%"),
    _q("s5.3-d6-ap", "Section 5.3", "0.8%", "a - b", "2:yolov7-d6:ap_test", "2:yolor-e6:ap_test",
       "YOLOv7-D6 has close inference speed to YOLOR-E6, but improves AP by 0.8%"),
    _q("s5.3-e6e-ap", "Section 5.3", "0.3%", "a - b", "2:yolov7-e6e:ap_test", "2:yolor-d6:ap_test",
       "YOLOv7-E6E has close inference speed to YOLOR-D6, but improves AP by 0.3%"),
    # Section 5.4.1
    _q("s5.4.1-width-ap", "Section 5.4.1", "0.5%", "a - b",
       "3:compound-v7-x:ap_val", "3:width-only-1.25-w:ap_val",
       "compared with the method that only scaled up the width, our method can improve the AP by 0.5%"),
    _q("s5.4.1-width-cost", "Section 5.4.1", "", None, None, None,
       "... with less parameters and amount of computation"),
    _q("s5.4.1-depth-params", "Section 5.4.1", "2.9%", "(a - b) / b",
       "3:compound-v7-x:params", "3:depth-only-2.0-d:params",
       "compared with the method that only scales up the depth, our method only needs to increase the "
       "number of parameters by 2.9%"),
    _q("s5.4.1-depth-flops", "Section 5.4.1", "1.2%", "(a - b) / b",
       "3:compound-v7-x:flops", "3:depth-only-2.0-d:flops",
       "... and the amount of computation by 1.2%"),
    _q("s5.4.1-depth-ap", "Section 5.4.1", "0.2%", "a - b",
       "3:compound-v7-x:ap_val", "3:depth-only-2.0-d:ap_val",
       "... which can improve the AP by 0.2%"),
    # Section 5.4.2
    _q("s5.4.2-table4", "Section 5.4.2", "", None, None, None,
       "From the results shown in Table 4 we see that all higher AP values are present on our proposed "
       "planned re-parameterized model"),
    _q("s5.4.2-table5", "Section 5.4.2", "", None, None, None,
       "The experiment results illustrated in Table 5 fully confirm that the proposed planned "
       "re-parameterized model is equally effective on residual-based model"),
    # Section 5.4.3
    _q("s5.4.3-any-aux", "Section 5.4.3", "", None, None, None,
       "any model that increases assistant loss can significantly improve the overall performance"),
    _q("s5.4.3-lead-vs-independent", "Section 5.4.3", "", None, None, None,
       "our proposed lead guided label assignment strategy receives better performance than the general "
       "independent label assignment strategy in AP, AP50, and AP75"),
    _q("s5.4.3-coarse-to-fine-best", "Section 5.4.3", "", None, None, None,
       "coarse for assistant and fine for lead label assignment strategy, it results in best results in "
       "all cases"),
    _q("s5.4.3-constraint", "Section 5.4.3", "", None, None, None,
       "the method of constraining the upper bound of objectness by the distance from the center of the "
       "object can achieve better performance"),
    _q("s5.4.3-partial", "Section 5.4.3", "", None, None, None,
       "the partial coarse-to-fine lead guided method has a better auxiliary effect"),
    # Section 8
    _q("s8-iou-threshold", "Section 8", "", None, None, None,
       "our model could get higher AP when set higher IoU threshold"),
    _q("s8-e6e-vs-yolov6-s", "Section 8", "13.7%", "a - b", "9:yolov7-e6e:ap_test", 43.1,
       "YOLOv7-E6E (56.8% AP) real-time model is +13.7% AP higher than the current most accurate "
       "meituan/YOLOv6-s model (43.1% AP)"),
    _q("s8-tiny-ap", "Section 8", "35.2%", "a", "1:yolov7-tiny@416:ap_val", None,
       "Our YOLOv7-tiny (35.2% AP, 0.4 ms) model"),
    _q("s8-tiny-vs-yolov6-n-ap", "Section 8", "0.2%", "a - b", "1:yolov7-tiny@416:ap_val", 35.0,
       "YOLOv7-tiny ... +0.2% AP higher than meituan/YOLOv6-n (35.0% AP, 0.5 ms)"),
    _q("s8-tiny-vs-yolov6-n-speed", "Section 8", "25%", "a / b - 1", 0.5, 0.4,
       "YOLOv7-tiny (0.4 ms) ... is +25% faster than meituan/YOLOv6-n (0.5 ms) ... with batch=32"),
)
# fmt: on


# --------------------------------------------------------------------------------------------------
# Where the paper disagrees with itself or with the official implementation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inconsistency:
    """A known inconsistency of the paper: where it is, what is printed, what follows instead.

    `kind`: ``arithmetic`` (the printed number does not follow from the printed table rows; the tests
    assert that it does not), ``typo`` (a misprint kept as printed), ``convention`` (the number follows,
    but not under the usual reading), ``counting`` (the paper counts differently from its other rows),
    ``overstatement`` (the words claim more than the numbers show), ``unverifiable``, ``implementation``
    (the official code builds it otherwise than the paper describes).
    `claims` and `cells` name what it affects (claim ids; ``(table, row id, column)``)."""

    id: str
    kind: InconsistencyKind
    where: str
    printed: str
    explanation: str
    claims: tuple[str, ...] = ()
    cells: tuple[CellRef, ...] = ()


KNOWN_INCONSISTENCIES: tuple[Inconsistency, ...] = (
    Inconsistency(
        "tiny-3l-params-rounding",
        "arithmetic",
        "Table 1 improvement row (YOLOv7-tiny 320 vs YOLOv4-tiny-3l); Section 5.2",
        "-39% / 'reduces the number of parameters by 39%'",
        "From the printed rows, (6.2 - 8.7) / 6.2 = -40.3%, i.e. -40%. The official YOLOv7-tiny count "
        "(6.22M) gives -39.9%; with it, -39% needs YOLOv4-tiny-3l between 8.65M (the least count printed as "
        "8.7) and 8.68M, i.e. unrounded figures the paper does not print.",
        claims=("s5.2-tiny-params",),
        cells=((1, "improvement@yolov7-tiny@320", "params"),),
    ),
    Inconsistency(
        "reduction-convention",
        "convention",
        "Table 1 improvement rows; Sections 5.2 and 5.3 ('x% less/fewer')",
        "-43%, -15%, 75%, 36%, 41%, 22%, 45%, 63% ...",
        "The paper's 'x% less' divides the difference by the YOLOv7 model's own value: (other - v7) / v7. "
        "Read the usual way, relative to the model compared against, the reductions are smaller: 43% fewer "
        "parameters than YOLOR-CSP is 30.2%, 75% less than YOLOv4 is 42.7%, 45% less than YOLOv5-X6 is "
        "30.9%, 63% less computation is 38.6%. Section 5.4.1 uses the usual convention ('increase the "
        "number of parameters by 2.9%' = (71.3 - 69.3) / 69.3).",
        claims=(
            "s5.2-yolov4-params",
            "s5.2-yolov4-flops",
            "s5.2-yolor-csp-params",
            "s5.2-yolor-csp-flops",
            "s5.2-tiny-params",
            "s5.2-tiny-flops",
            "s5.2-cloud-params",
            "s5.2-cloud-flops",
            "s5.3-ppyoloe-params",
            "s5.3-x-vs-x-params",
            "s5.3-x-vs-x-flops",
            "s5.3-e6-params",
            "s5.3-e6-flops",
        ),
    ),
    Inconsistency(
        "d6-params-training-graph",
        "counting",
        "Tables 1, 2, 9, row YOLOv7-D6",
        "154.7M / 806.8G",
        "The official implementation's YOLOv7-D6 has 154.7M parameters and 806.1 GFLOPs only as the "
        "training graph (with auxiliary heads); its deploy graph, the one every other P6 row reports, has "
        "133.8M parameters and 701.7 GFLOPs. The printed D6 row is therefore not comparable with its "
        "neighbours.",
        cells=(
            (1, "yolov7-d6", "params"),
            (2, "yolov7-d6", "params"),
            (9, "yolov7-d6", "params"),
            (1, "yolov7-d6", "flops"),
            (2, "yolov7-d6", "flops"),
            (9, "yolov7-d6", "flops"),
        ),
    ),
    Inconsistency(
        "e-elan-official-form",
        "implementation",
        "Section 3.1, Figure 2 (d)",
        "'use group convolution to expand the channel and cardinality ... shuffled into g groups ... add g "
        "groups of feature maps'",
        "The official YOLOv7-E6E (cfg/training/yolov7-e6e.yaml) has no group convolution and no shuffle: "
        "each of its 11 E-ELANs is 2 ELAN copies reading the same input, each with its own 1x1 transition, "
        "summed by a Shortcut layer. The first author calls the two forms equivalent (ResNeXt's argument; "
        "WongKinYiu/yolov7 issue #762); this kit builds the official form, whose counts are the paper's E6E "
        "row, and draws it in Figure 2 (d).",
    ),
    Inconsistency(
        "yolor-w6-params-unit",
        "typo",
        "Tables 2 and 9, row YOLOR-W6",
        "79.8G",
        "The #Param cell carries the FLOPs unit; the model has 79.8M parameters (official: 79.83M fused).",
        cells=((2, "yolor-w6", "params"), (9, "yolor-w6", "params")),
    ),
    Inconsistency(
        "yolo-e6-name",
        "typo",
        "Table 9",
        "YOLO-E6 [81]",
        "The row is YOLOR-E6 (reference [81]; its numbers are Table 2's YOLOR-E6).",
    ),
    Inconsistency(
        "tiny-units",
        "typo",
        "Table 1, rows YOLOv4-tiny, YOLOv7-tiny, YOLOv4-tiny-3l",
        "6.1, 6.9, 6.2, 5.8 ...",
        "#Param and FLOPs of the tiny rows are printed without their units (M, G).",
    ),
    Inconsistency(
        "tiny-3l-spelling",
        "typo",
        "Section 5.2",
        "YOLOv4-tiny-31",
        "The model is YOLOv4-tiny-3l (Table 1).",
        claims=("s5.2-tiny-params",),
    ),
    Inconsistency(
        "table10-spelling",
        "typo",
        "Table 10 header",
        "Presicion",
        "Precision.",
    ),
    Inconsistency(
        "constraint-ties",
        "overstatement",
        "Section 5.4.3, Table 7",
        "'can achieve better performance'",
        "With and without the constraint tie on AP (55.9%) and AP50 (73.5%); the constrained decoder is "
        "ahead only on AP75 (61.1% vs 61.0%). Likewise coarse-to-fine ties lead guided on AP and AP50 in "
        "Table 6.",
        claims=("s5.4.3-constraint", "s5.4.3-coarse-to-fine-best"),
    ),
    Inconsistency(
        "intro-claim-unnamed",
        "unverifiable",
        "Section 1",
        "about 40% parameters and 50% computation",
        "The text does not name the detector compared against, so the claim cannot be pinned to a row "
        "pair. Three pairs of Tables 1-2 fit 'about 40% and 50%' (35-45% fewer parameters, 45-55% less "
        "computation): YOLOv7-tiny vs YOLOv4-tiny-3l at 320 px (40.3% / 48.6%, the paper's convention), "
        "YOLOv7-X vs YOLOX-X (39.0% / 48.4%, the paper's convention) and YOLOv7-W6 vs YOLOR-E6 (39.2% / "
        "47.3%, the usual convention).",
        claims=("intro-40-50",),
    ),
    Inconsistency(
        "abstract-dominance-pointwise",
        "overstatement",
        "Abstract, Section 8",
        "'surpasses all known object detectors in both speed and accuracy in the range from 5 FPS to "
        "160 FPS'",
        "Model by model it does not hold in Table 9: YOLOR-W6 (66 FPS, 55.2% test / 54.8% val) is more "
        "accurate than every YOLOv7 model at least as fast (YOLOv7-W6: 84 FPS, 54.9% / 54.6%). It holds for "
        "the YOLOv7 speed/accuracy curve: linear interpolation between YOLOv7-W6 and YOLOv7-E6 gives 55.6% "
        "test at 66 FPS, and every other detector from 5 to 160 FPS lies on or below the curve.",
        claims=("abstract-best-5-160-fps",),
    ),
    Inconsistency(
        "abstract-mixed-gpus",
        "convention",
        "Abstract, Section 8",
        "56 FPS V100 vs 9.2 FPS A100",
        "The 509% and 551% speed claims compare a V100 frame rate with A100 frame rates (as the text says); "
        "they are not measured on one device.",
        claims=("abstract-swin-l-speed", "abstract-convnext-speed"),
    ),
)


# --------------------------------------------------------------------------------------------------
# Figures 1, 9, 10, 11: speed/accuracy plots of table numbers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureSeries:
    """One plotted series: a label and table rows (ids of `table`), or points quoted in the text."""

    label: str
    rows: tuple[str, ...] = ()
    points: tuple[tuple[str, float | None, float], ...] = ()  # (name, x, y) as quoted in the text


@dataclass(frozen=True)
class FigureSpec:
    """What a speed/accuracy figure plots. `basis` says how much of it the paper's text states; the
    paper gives only captions for these figures, so series membership is this kit's reading."""

    number: int
    caption: str
    table: int | None
    x: str
    y: str
    series: tuple[FigureSeries, ...]
    basis: str
    row_filter: str = ""


def _family(table_no: int, prefix: str) -> tuple[str, ...]:
    return tuple(r.id for r in get_table(table_no).models if r.key.startswith(prefix))


def _series(table_no: int) -> tuple[FigureSeries, ...]:
    families = (
        FigureSeries("YOLOv7 (ours)", _family(table_no, "yolov7")),
        FigureSeries("YOLOR", _family(table_no, "yolor")),
        FigureSeries("YOLOv5 (r6.1)", _family(table_no, "yolov5")),
        FigureSeries("YOLOX", _family(table_no, "yolox")),
        FigureSeries("PPYOLOE", _family(table_no, "ppyoloe")),
    )
    named = {i for s in families for i in s.rows}
    others = tuple(r.id for r in get_table(table_no).models if r.id not in named)
    return (*families, FigureSeries("other detectors", others)) if others else families


FIGURES: dict[int, FigureSpec] = {
    1: FigureSpec(
        1,
        "Comparison with other real-time object detectors, our proposed methods achieve state-of-the-arts "
        "performance.",
        2,
        "fps",
        "ap_val",
        _series(2),
        "Caption only. Section 5.3 compares the Table 2 families; the kit plots every Table 2 row by family, "
        "AP val (given for every row) against V100 batch-1 FPS.",
    ),
    9: FigureSpec(
        9,
        "Comparison with other object detectors.",
        9,
        "fps",
        "ap_val",
        _series(9),
        "Caption only. Table 9 is the paper's 'more comparison' (Section 8); the kit plots all its rows "
        "(V100 and A100 frame rates as printed, A100 rows marked by their group), AP val against FPS.",
    ),
    10: FigureSpec(
        10,
        "Comparison with other real-time object detectors.",
        9,
        "fps",
        "ap_val",
        _series(9),
        "Caption only. Real-time is '30 FPS or higher on GPU V100' (Abstract); the kit plots the Table 9 "
        "V100 rows at 30 FPS or more.",
        row_filter="group == 'V100' and fps >= 30",
    ),
    11: FigureSpec(
        11,
        "Comparison with other real-time object detectors.",
        None,
        "ms (V100, batch 32)",
        "ap_val",
        (
            FigureSeries("YOLOv7 (ours)", points=(("YOLOv7-tiny", 0.4, 35.2), ("YOLOv7-E6E", None, 56.8))),
            FigureSeries("meituan/YOLOv6", points=(("YOLOv6-n", 0.5, 35.0), ("YOLOv6-s", None, 43.1))),
        ),
        "Caption only; the text beside it (Section 8) quotes these points at batch 32 on a V100. Points "
        "without a time are quoted without one; the figure's other points are not in the text.",
    ),
}


# --------------------------------------------------------------------------------------------------
# Counts measured from the official implementation (the specification the kit's models must match)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfficialCount:
    """Parameter counts of the official implementation (nc=80), unfused and with BatchNorm, RepConv and
    implicit knowledge folded ("fused"); GFLOPs of the fused deploy graph at `size`. Baselines have one
    graph (deploy fields), P5/P6 YOLOv7 models a training graph and a deploy graph.

    Source: official-figures.md, the parameter counts and FLOPs measured from WongKinYiu/yolov7 that
    this project was given as its specification (it is not in the repository; "official-figures.md"
    elsewhere in the code and the reports means these numbers, transcribed here once). `training_gflops`
    (YOLOv7-D6 only, to explain the paper's 806.8G) was counted with
    `torch.utils.flop_counter.FlopCounterMode` on the official training graph at 1280 px, unfused (the
    same count of its deploy graph gives the 701.7 above)."""

    registry: str
    size: int
    deploy_params: int
    deploy_fused: int
    training_params: int | None = None
    training_fused: int | None = None
    gflops: float | None = None
    training_gflops: float | None = None

    @property
    def paper_params(self) -> int:
        """The count the paper's #Param reports: the fused deploy graph, except YOLOv7-D6 (training)."""
        if self.registry == "yolov7-d6":
            assert self.training_fused is not None
            return self.training_fused
        return self.deploy_fused


OFFICIAL_COUNTS: dict[str, OfficialCount] = {
    c.registry: c
    for c in (
        OfficialCount("yolov7-tiny", 640, 6_227_101, 6_219_709, 6_228_762, 6_221_370, 13.7),
        OfficialCount("yolov7-tiny-silu", 640, 6_227_101, 6_219_709, None, None, 13.7),
        OfficialCount("yolov7", 640, 37_620_125, 36_905_341, 37_622_682, 36_907_898, 104.5),
        OfficialCount("yolov7x", 640, 71_344_389, 71_311_741, 71_347_394, 71_314_746, 189.7),
        OfficialCount("yolov7-w6", 1280, 70_426_236, 70_394_300, 82_312_436, 82_277_300, 359.7),
        OfficialCount("yolov7-e6", 1280, 97_246_652, 97_202_940, 111_898_292, 111_851_380, 514.4),
        OfficialCount("yolov7-d6", 1280, 133_810_044, 133_757_052, 154_709_364, 154_652_532, 701.7, 806.1),
        OfficialCount("yolov7-e6e", 1280, 151_757_244, 151_687_420, 166_408_884, 166_335_860, 842.2),
        OfficialCount("yolor-csp", 640, 52_923_994, 52_891_610),
        OfficialCount("yolor-csp-x", 640, 96_943_410, 96_895_730),
        OfficialCount("yolov4-csp", 640, 52_921_437, 52_889_053),
        OfficialCount("yolor-p6", 1280, 37_265_016, 37_232_824),
        OfficialCount("yolor-w6", 1280, 79_873_400, 79_828_024),
        OfficialCount("yolor-e6", 1280, 115_899_960, 115_840_120),
        OfficialCount("yolor-d6", 1280, 151_773_240, 151_696_760),
    )
}
