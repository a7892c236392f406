"""A table of the paper beside the reproduced values, as a DataFrame, markdown and CSV.

One line per result cell of the paper's table (settings such as Size are shown with the row, not
compared): the paper's value as printed and as a number, the reproduced value, their difference
(reproduced - paper, in the column's unit), whether they agree at the paper's rounding, the scale at
which the value was reproduced, and for a cell with no reproduced value a marker saying what it would
take (:mod:`yolov7lib.report.markers`). Improvement rows are derived from the reproduced rows they
compare, with the paper's convention (:mod:`yolov7lib.paper`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from yolov7lib import paper
from yolov7lib.report.markers import Commands, what_it_takes
from yolov7lib.report.render import fmt, markdown_table, write_text_atomic
from yolov7lib.report.reproduced import Reproductions

if TYPE_CHECKING:
    import pandas as pd

# Columns of the comparison frame and of the CSV files, with their dtypes.
FRAME_DTYPES: dict[str, str] = {
    "table": "int64",
    "row": "object",
    "model": "object",
    "setting": "object",
    "column": "object",
    "header": "object",
    "unit": "object",
    "paper": "float64",
    "paper_printed": "object",
    "reproduced": "float64",
    "spread": "float64",
    "seeds": "Int64",
    "difference": "float64",
    "agrees": "object",
    "scale": "object",
    "status": "object",
    "how": "object",
    "note": "object",
}
NUMERIC = ("paper", "reproduced", "spread", "difference")

STATUS_REPRODUCED = "reproduced"
STATUS_DERIVED = "derived"
STATUS_MISSING = "not reproduced"
STATUS_NO_PAPER_VALUE = "paper prints -"


def agrees_at_rounding(reproduced: float, printed: float, decimals: int) -> bool:
    """`reproduced` rounds to the paper's `printed` value at the paper's number of decimals."""
    return abs(reproduced - printed) <= 0.5 * 10.0**-decimals + 1e-9


def improvement(rule: paper.ImprovementRule, candidate: float, baseline: float) -> float:
    """An improvement cell the paper's way: #Param/FLOPs in percent relative to the candidate's own
    value, AP as a difference in points."""
    if rule == "relative":
        return 100.0 * (candidate - baseline) / candidate
    return candidate - baseline


def improvement_spread(
    rule: paper.ImprovementRule,
    candidate: float,
    baseline: float,
    candidate_spread: float | None,
    baseline_spread: float | None,
) -> float | None:
    """The spread of an improvement cell from the spreads over seeds of its two rows, taken as independent:
    first-order propagation through `improvement` (exact for the AP difference). None if neither has one."""
    if candidate_spread is None and baseline_spread is None:
        return None
    sc, sb = candidate_spread or 0.0, baseline_spread or 0.0
    if rule == "relative":  # d/dc and d/db of 100 (c - b) / c
        return 100.0 * math.hypot(baseline / candidate**2 * sc, sb / candidate)
    return math.hypot(sc, sb)


def _setting(r: paper.Row) -> str:
    parts = []
    for c in r.columns:
        if paper.COLUMNS[c].kind == "setting":
            printed = r.cell(c).printed
            if c == "size":
                parts.append(f"{printed} px" if printed != "-" else "size -")
            else:
                parts.append(f"{paper.COLUMNS[c].header} {printed}")
    if r.group == "A100":
        parts.append("FPS on A100")
    elif r.group and r.table != 9:
        parts.append(r.group)
    if r.kind == "improvement":
        parts.append(f"{r.candidate} vs {r.baseline}")
    return "; ".join(parts)


def _notes(r: paper.Row, column: str) -> str:
    cell = r.cell(column)
    notes = [n for n in (cell.flag, cell.note) if n]
    key = (r.table, r.id, column)
    notes += [f"paper inconsistency: {i.id}" for i in paper.KNOWN_INCONSISTENCIES if key in i.cells]
    if r.note:
        notes.append(f"row: {r.note}")
    return "; ".join(notes)


def compare_table(
    number: int, reproductions: Reproductions | None = None, commands: Commands | None = None
) -> pd.DataFrame:
    """Table `number` of the paper beside `reproductions`: one line per (row, result column), in the
    paper's order, columns :data:`FRAME_DTYPES`."""
    import pandas as pd

    t = paper.get_table(number)
    reps = reproductions if reproductions is not None else Reproductions()
    records = []
    for r in t.rows:
        for column in t.columns:
            col = paper.COLUMNS[column]
            if col.kind == "setting":
                continue
            cell = r.cell(column)
            rec: dict[str, object] = dict.fromkeys(("agrees", "scale", "status", "how"), "")
            rec.update(
                table=number,
                row=r.id,
                model=r.name,
                setting=_setting(r),
                column=column,
                header=col.header,
                unit=col.unit,
                paper=math.nan if cell.value is None else cell.value,
                paper_printed=cell.printed,
                reproduced=math.nan,
                spread=math.nan,
                seeds=pd.NA,
                difference=math.nan,
                note=_notes(r, column),
            )
            if r.kind == "improvement":
                assert r.candidate is not None and r.baseline is not None
                cand, base = reps.get((number, r.candidate, column)), reps.get((number, r.baseline, column))
                if cand is not None and base is not None and col.improvement != "none":
                    rec["reproduced"] = improvement(col.improvement, cand.value, base.value)
                    rec["scale"] = "; ".join(dict.fromkeys((cand.scale, base.scale)))
                    rec["status"] = STATUS_DERIVED
                    spread = improvement_spread(
                        col.improvement, cand.value, base.value, cand.spread, base.spread
                    )
                    if spread is not None:
                        rec["spread"] = spread
                        seeds = [n for n in (cand.seeds, base.seeds) if n is not None]
                        rec["seeds"] = min(seeds) if seeds else pd.NA
            else:
                rep = reps.get((number, r.id, column))
                if rep is not None:
                    rec.update(reproduced=rep.value, scale=rep.scale, status=STATUS_REPRODUCED)
                    rec["spread"] = math.nan if rep.spread is None else rep.spread
                    rec["seeds"] = pd.NA if rep.seeds is None else rep.seeds
                    if rep.source:
                        rec["how"] = f"source: {rep.source}"
            if not rec["status"]:
                if cell.value is None:
                    rec["status"] = STATUS_NO_PAPER_VALUE
                else:
                    rec["status"] = STATUS_MISSING
                    rec["how"] = what_it_takes(r, column, commands)
            reproduced = float(rec["reproduced"])  # type: ignore[arg-type]
            if cell.value is not None and not math.isnan(reproduced):
                rec["difference"] = reproduced - cell.value
                rec["agrees"] = "yes" if agrees_at_rounding(reproduced, cell.value, cell.decimals) else "no"
            records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=list(FRAME_DTYPES))
    return frame.astype(FRAME_DTYPES)


def render_markdown(number: int, frame: pd.DataFrame) -> str:
    """The comparison frame of Table `number` as a markdown document: title, legend, summary, table."""
    import pandas as pd

    t = paper.get_table(number)
    decimals = {(r.id, c): t.by_id(r.id).cell(c).decimals for r in t.rows for c in t.columns}
    rows = []
    for rec in frame.itertuples(index=False):
        d = decimals.get((rec.row, rec.column), 1) + 1
        reproduced = fmt(rec.reproduced, d)
        if reproduced and not math.isnan(rec.spread):
            seeds = "" if pd.isna(rec.seeds) else f", {rec.seeds} seeds"
            reproduced += f" ± {fmt(rec.spread, d)}{seeds}"
        difference = fmt(rec.difference, d, signed=True)
        rows.append(
            (rec.model, rec.setting, rec.header, rec.paper_printed, reproduced, difference, rec.agrees,
             rec.scale, rec.status, rec.how, rec.note)
        )  # fmt: skip
    compared = frame["paper"].notna() & frame["reproduced"].notna()
    n_rep = int(frame["reproduced"].notna().sum())
    summary = (
        f"{n_rep} of {len(frame)} cells reproduced; {int((frame['agrees'] == 'yes').sum())} of "
        f"{int(compared.sum())} compared cells agree with the paper at its rounding."
    )
    head = (
        f"# Table {number}: {t.title}\n\n"
        f"The paper's Table {number} (Section {t.section}) beside this kit's reproduced values. Units: "
        "#Param. in M, FLOPs in G, AP in %, FPS in frames per second; improvement rows as the paper "
        "computes them (#Param and FLOPs in % of the YOLOv7 model's own value, AP in points), with the "
        "two rows' spreads over seeds combined as independent (±). Difference = reproduced - paper; "
        "*agrees* compares at the paper's rounding; *scale* says at what scale a value was reproduced.\n\n"
        f"{summary}\n\n"
    )
    if t.footnotes:
        head += "Footnotes of the paper's table, as printed: " + " ".join(t.footnotes) + "\n\n"
    headers = ("model", "setting", "column", "paper", "reproduced", "difference", "agrees", "scale", "status",
               "how", "note")  # fmt: skip
    return head + markdown_table(headers, rows)


def write_table(
    number: int,
    reproductions: Reproductions | None,
    out_dir: str | os.PathLike[str],
    commands: Commands | None = None,
) -> tuple[Path, Path]:
    """Write ``table<number>.md`` and ``table<number>.csv`` under `out_dir`; return their paths."""
    frame = compare_table(number, reproductions, commands)
    out = Path(out_dir)
    md = write_text_atomic(out / f"table{number}.md", render_markdown(number, frame))
    csv = write_text_atomic(out / f"table{number}.csv", frame.to_csv(index=False))
    return md, csv


def write_tables(
    reproductions: Reproductions | None, out_dir: str | os.PathLike[str], commands: Commands | None = None
) -> list[Path]:
    """Write Tables 1-10 (markdown and CSV) under `out_dir`; return the paths written."""
    return [p for n in paper.TABLES for p in write_table(n, reproductions, out_dir, commands)]


def read_table_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV written by :func:`write_table` back into the comparison frame (same dtypes)."""
    import pandas as pd

    frame = pd.read_csv(
        path,
        dtype={c: "string" for c, d in FRAME_DTYPES.items() if d == "object"},
        keep_default_na=False,
        na_values={c: [""] for c in (*NUMERIC, "seeds")},
    )
    missing = set(FRAME_DTYPES) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: not a table comparison CSV (missing columns {sorted(missing)})")
    frame = frame[list(FRAME_DTYPES)]
    return frame.astype(FRAME_DTYPES)
