"""The paper's numbers (`yolov7lib.paper`): transcription cross-checks.

Every check compares two things the paper states independently: an improvement row with the rows
above it, a row repeated in two tables, a number quoted in the text with the table cells it comes
from, a #Param with the official implementation's measured count. Where the paper's own arithmetic
is off, the test asserts that it is off (and `paper.KNOWN_INCONSISTENCIES` says so).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from yolov7lib import paper as P
from yolov7lib.paper import row, value

PAPER_TEXT = Path(os.environ.get("YOLOV7LIB_PAPER_MD", "/work/shared/paper/yolov7-paper.md"))


def agrees(computed: float, printed: float, decimals: int) -> bool:
    """`computed` rounds to `printed` at the printed number of decimals (either rounding of a half)."""
    return abs(computed - printed) <= 0.5 * 10.0**-decimals + 1e-9


def v(table: int, model: str, column: str, variant: str | None = None) -> float:
    x = value(table, model, column, variant)
    assert x is not None, (table, model, column)
    return x


ARITHMETIC = [i for i in P.KNOWN_INCONSISTENCIES if i.kind == "arithmetic"]
WRONG_CELLS = {c for i in ARITHMETIC for c in i.cells}
WRONG_CLAIMS = {c for i in ARITHMETIC for c in i.claims}


# --------------------------------------------------------------------------------------------------
# Transcription against the paper's text (where the text is on this machine)
# --------------------------------------------------------------------------------------------------


def _tables_in_text(text: str, keep_refs: bool = False) -> dict[int, list[tuple[str, ...]]]:
    """Rows of every 'Table N:' block of the paper's markdown: tab-separated lines after the caption,
    header lines dropped, citation numbers stripped, 'test / val' cells split in two; with
    `keep_refs`, (name, citation number or "") per row instead."""
    lines = text.splitlines()
    tables: dict[int, list[tuple[str, ...]]] = {}
    for i, line in enumerate(lines):
        m = re.match(r"Table (\d+): ", line)
        if not m:
            continue
        rows: list[tuple[str, ...]] = []
        for nxt in lines[i + 1 :]:
            if "\t" not in nxt:
                if rows and nxt.strip():
                    break
                continue
            cells = nxt.split("\t")
            if cells[0] == "Model":
                continue
            name = re.sub(r"\s*\[\d+\]$", "", cells[0].strip())
            if keep_refs:
                ref = re.search(r"\[(\d+)\]$", cells[0].strip())
                rows.append((name, ref.group(1) if ref else ""))
                continue
            split = [part.strip() for c in cells[1:] for part in c.split(" / ")]
            rows.append((name, *split))
        tables[int(m.group(1))] = rows
    return tables


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason=f"paper text not found at {PAPER_TEXT}")
def test_every_cell_matches_the_paper_text() -> None:
    text_tables = _tables_in_text(PAPER_TEXT.read_text(encoding="utf-8"))
    assert sorted(text_tables) == list(range(1, 11))
    for number, text_rows in text_tables.items():
        ours = [(r.name, *(c.printed for c in r.cells)) for r in P.get_table(number)]
        assert ours == text_rows, f"Table {number}"


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason=f"paper text not found at {PAPER_TEXT}")
def test_every_row_cites_the_reference_the_paper_text_gives() -> None:
    """The citation number after a row's name in the paper's tables ("YOLOR-CSP [81]") is the row's
    `ref`; rows the paper prints without one (YOLOv7, improvement rows) have none."""
    text = PAPER_TEXT.read_text(encoding="utf-8")
    for number, text_rows in _tables_in_text(text, keep_refs=True).items():
        ours = [(r.name, r.ref) for r in P.get_table(number)]
        assert ours == [(name, int(ref) if ref else None) for name, ref in text_rows], f"Table {number}"


def test_row_counts_of_every_table() -> None:
    counts = {n: (len(t.models), len(t.improvements)) for n, t in P.TABLES.items()}
    assert counts == {
        1: (16, 6),
        2: (31, 0),
        3: (4, 1),
        4: (6, 0),
        5: (6, 0),
        6: (4, 1),
        7: (3, 1),
        8: (3, 1),
        9: (47, 0),
        10: (4, 1),
    }


def test_every_row_id_of_the_dataframe_is_found_by_row_and_value() -> None:
    """`row()` takes a row id (its docstring); before, the ids of improvement rows, which `table()` lists in
    its `row` column, raised KeyError ("Table 1 has no row for 'improvement' (variant 'yolov7')")."""
    for number in P.TABLES:
        df = P.table(number)
        for row_id in df["row"]:
            assert row(number, row_id).id == row_id
        imp = df[df["kind"] == "improvement"]
        for _, rec in imp.iterrows():
            columns = P.get_table(number).columns
            numbers = [c for c in columns if isinstance(rec[c], float) and not math.isnan(rec[c])]
            assert numbers and all(value(number, rec["row"], c) == rec[c] for c in numbers)
    assert len(P.table(1).query("kind == 'improvement'")) == 6  # the loop above checked something


# --------------------------------------------------------------------------------------------------
# Improvement rows against the rows above them
# --------------------------------------------------------------------------------------------------

IMPROVEMENT_CELLS = [
    (t.number, r.id, col)
    for t in P.TABLES.values()
    for r in t.improvements
    for col, cell in zip(r.columns, r.cells, strict=True)
    if cell.value is not None
]


@pytest.mark.parametrize(("table_no", "row_id", "column"), IMPROVEMENT_CELLS)
def test_improvement_row_follows_from_the_rows_it_compares(table_no: int, row_id: str, column: str) -> None:
    t = P.get_table(table_no)
    imp = t.by_id(row_id)
    assert imp.candidate and imp.baseline
    cand, base = t.by_id(imp.candidate)[column], t.by_id(imp.baseline)[column]
    assert cand is not None and base is not None
    if column in ("params", "flops"):  # percent, relative to the candidate's own value
        computed = 100.0 * (cand - base) / cand
    else:  # AP points
        computed = cand - base
    cell = imp.cell(column)
    assert cell.value is not None
    holds = agrees(computed, cell.value, cell.decimals)
    if (table_no, row_id, column) in WRONG_CELLS:
        assert not holds, f"listed as a paper inconsistency but {cell.printed} = {computed:.3f}"
    else:
        assert holds, f"Table {table_no} {row_id} {column}: printed {cell.printed}, rows give {computed:.3f}"


def test_equal_sign_means_equal_at_printed_rounding() -> None:
    eq = [
        (t.number, r, c)
        for t in P.TABLES.values()
        for r in t.improvements
        for c in r.columns
        if r.cell(c).printed == "="
    ]
    assert len(eq) == 6  # Table 1: AP_M (YOLOv7), AP/AP50/AP75/AP_M (tiny 320), #Param (E6E)
    for number, r, c in eq:
        t = P.get_table(number)
        assert t.by_id(r.candidate)[c] == t.by_id(r.baseline)[c]


def test_improvement_convention_is_relative_to_the_candidate() -> None:
    # The other reading, relative to the baseline, would print -30% for YOLOv7 vs YOLOR-CSP.
    baseline, candidate = row(1, "YOLOR-CSP")["params"], row(1, "YOLOv7")["params"]
    assert baseline is not None and candidate is not None
    assert P.get_table(1).by_id("improvement@yolov7")["params"] == -43
    assert agrees(100 * (candidate - baseline) / candidate, -43, 0)
    assert not agrees(100 * (candidate - baseline) / baseline, -43, 0)


# --------------------------------------------------------------------------------------------------
# Rows repeated across tables
# --------------------------------------------------------------------------------------------------


def test_every_table_2_row_is_in_table_9_with_the_same_cells() -> None:
    t9 = P.get_table(9)
    for r2 in P.get_table(2).models:
        r9 = t9.find(r2.key)
        for col in t9.columns:
            assert r9.cell(col).printed == r2.cell(col).printed, (r2.name, col)


def test_table_9_adds_only_non_real_time_detectors() -> None:
    t2_keys = {r.key for r in P.get_table(2).models}
    extra = [r for r in P.get_table(9).models if r.key not in t2_keys]
    assert len(extra) == 47 - 31
    assert all(r["fps"] < 30 for r in extra)


@pytest.mark.parametrize("group", ["V100", "A100"])
def test_table_9_is_sorted_by_frame_rate(group: str) -> None:
    fps = [r["fps"] for r in P.get_table(9).models if r.group == group]
    assert fps == sorted(fps, reverse=True) and len(fps) == {"V100": 40, "A100": 7}[group]


SHARED_T1_T2 = [
    "YOLOR-CSP",
    "YOLOR-CSP-X",
    "YOLOv7",
    "YOLOv7-X",
    "YOLOR-E6",
    "YOLOv7-E6",
    "YOLOR-D6",
    "YOLOv7-D6",
    "YOLOv7-E6E",
]


@pytest.mark.parametrize("model", SHARED_T1_T2)
def test_table_1_and_table_2_agree(model: str) -> None:
    for col in ("params", "flops", "size", "ap_val"):
        assert row(1, model).cell(col).printed == row(2, model).cell(col).printed, col


@pytest.mark.parametrize(
    ("a", "b", "columns"),
    [
        (
            (3, "compound (v7-X)"),
            (1, "YOLOv7-X"),
            ("params", "flops", "size", "ap_val", "ap50_val", "ap75_val"),
        ),
        ((6, "coarse-to-fine lead guided"), (1, "YOLOv7-E6"), ("size", "ap_val", "ap50_val", "ap75_val")),
        ((7, "aux with constraint"), (6, "coarse-to-fine lead guided"), ("ap_val", "ap50_val", "ap75_val")),
        ((7, "aux without constraint"), (6, "lead guided"), ("ap_val", "ap50_val", "ap75_val")),
        ((7, "base (v7-E6)"), (6, "base (v7-E6)"), ("ap_val", "ap50_val", "ap75_val")),
        ((8, "partial aux"), (1, "YOLOv7-E6E"), ("size", "ap_val", "ap50_val", "ap75_val")),
        ((10, "YOLOv7-X@fp16-iou0.65"), (1, "YOLOv7-X"), ("ap_val",)),
    ],
)
def test_ablation_rows_repeat_the_main_tables(
    a: tuple[int, str], b: tuple[int, str], columns: tuple[str]
) -> None:
    for col in columns:
        assert row(*a)[col] == row(*b)[col], col


@pytest.mark.parametrize(
    ("t5_row", "other", "columns"),
    [
        ("base (YOLOR-CSP)", (1, "YOLOR-CSP"), P.get_table(5).columns),
        ("base (YOLOR-W6)", (2, "YOLOR-W6"), ("ap_val",)),
    ],
)
def test_table_5_bases_round_to_the_main_tables(
    t5_row: str, other: tuple[int, str], columns: tuple[str]
) -> None:
    # Table 5 prints two decimals; the main tables print one.
    for col in columns:
        two, one = row(5, t5_row)[col], row(*other)[col]
        assert two is not None and one is not None
        assert agrees(two, one, 1), (col, two, one)


def test_flops_of_yolov7_tiny_scale_with_the_input_area() -> None:
    at_640 = v(2, "YOLOv7-tiny-SiLU", "flops")  # SiLU and LeakyReLU have the same FLOPs
    for size in (416, 320):
        cell = row(1, "YOLOv7-tiny", str(size)).cell("flops")
        assert cell.value is not None
        assert agrees(at_640 * (size / 640) ** 2, cell.value, cell.decimals), size


# --------------------------------------------------------------------------------------------------
# Claims of the text against the tables
# --------------------------------------------------------------------------------------------------


# Each claim computed by hand from the tables (paper spellings), independently of Claim.evaluate.
def diff(t: int, a: str, b: str, col: str) -> float:
    return v(t, a, col) - v(t, b, col)


def less(t: int, ours: str, other: str, col: str) -> float:
    """The paper's 'x% less': the difference relative to the YOLOv7 model's own value."""
    return 100 * (v(t, other, col) - v(t, ours, col)) / v(t, ours, col)


def more(t: int, ours: str, other: str, col: str) -> float:
    """'x% more / faster': relative to the other model."""
    return 100 * (v(t, ours, col) / v(t, other, col) - 1)


E6, SWIN_L, CNX_XL = "YOLOv7-E6", "Swin-L (C-M-RCNN)", "ConvNeXt-XL (C-M-RCNN)"
TINY320, TINY416, V5N, V5L, V5X, V5X6 = (
    "YOLOv7-tiny@320",
    "YOLOv7-tiny@416",
    "YOLOv5-N (r6.1)",
    "YOLOv5-L (r6.1)",
    "YOLOv5-X (r6.1)",
    "YOLOv5-X6 (r6.1)",
)
COMPOUND, WIDTH, DEPTH = "compound (v7-X)", "width only (1.25 w)", "depth only (2.0 d)"

HAND: dict[str, Callable[[], float]] = {
    "abstract-highest-ap": lambda: v(9, "YOLOv7-E6E", "ap_test"),
    "abstract-e6-fps": lambda: v(9, E6, "fps"),
    "abstract-e6-ap": lambda: v(9, E6, "ap_val"),
    "abstract-swin-l-fps": lambda: v(9, SWIN_L, "fps"),
    "abstract-swin-l-ap": lambda: v(9, SWIN_L, "ap_val"),
    "abstract-swin-l-speed": lambda: more(9, E6, SWIN_L, "fps"),
    "abstract-swin-l-accuracy": lambda: diff(9, E6, SWIN_L, "ap_val"),
    "abstract-convnext-fps": lambda: v(9, CNX_XL, "fps"),
    "abstract-convnext-ap": lambda: v(9, CNX_XL, "ap_val"),
    "abstract-convnext-speed": lambda: more(9, E6, CNX_XL, "fps"),
    "abstract-convnext-accuracy": lambda: diff(9, E6, CNX_XL, "ap_val"),
    "section8-e6e-test": lambda: v(9, "YOLOv7-E6E", "ap_test"),
    "section8-e6e-val": lambda: v(9, "YOLOv7-E6E", "ap_val"),
    "s5.2-yolov4-params": lambda: less(1, "YOLOv7", "YOLOv4", "params"),
    "s5.2-yolov4-flops": lambda: less(1, "YOLOv7", "YOLOv4", "flops"),
    "s5.2-yolov4-ap": lambda: diff(1, "YOLOv7", "YOLOv4", "ap_val"),
    "s5.2-yolor-csp-params": lambda: less(1, "YOLOv7", "YOLOR-CSP", "params"),
    "s5.2-yolor-csp-flops": lambda: less(1, "YOLOv7", "YOLOR-CSP", "flops"),
    "s5.2-yolor-csp-ap": lambda: diff(1, "YOLOv7", "YOLOR-CSP", "ap_val"),
    "s5.2-tiny-params": lambda: less(1, TINY320, "YOLOv4-tiny-3l", "params"),
    "s5.2-tiny-flops": lambda: less(1, TINY320, "YOLOv4-tiny-3l", "flops"),
    "s5.2-tiny-ap": lambda: diff(1, TINY320, "YOLOv4-tiny-3l", "ap_val"),
    "s5.2-cloud-params": lambda: less(1, E6, "YOLOR-E6", "params"),
    "s5.2-cloud-flops": lambda: less(1, E6, "YOLOR-E6", "flops"),
    "s5.3-tiny-fps": lambda: diff(2, "YOLOv7-tiny-SiLU", V5N, "fps"),
    "s5.3-tiny-ap": lambda: diff(2, "YOLOv7-tiny-SiLU", V5N, "ap_val"),
    "s5.3-yolov7-ap": lambda: v(2, "YOLOv7", "ap_test"),
    "s5.3-yolov7-fps": lambda: v(2, "YOLOv7", "fps"),
    "s5.3-ppyoloe-same-ap": lambda: diff(2, "PPYOLOE-L", "YOLOv7", "ap_test"),
    "s5.3-ppyoloe-fps": lambda: v(2, "PPYOLOE-L", "fps"),
    "s5.3-ppyoloe-params": lambda: less(2, "YOLOv7", "PPYOLOE-L", "params"),
    "s5.3-x-fps": lambda: v(2, "YOLOv7-X", "fps"),
    "s5.3-yolov5-l-fps": lambda: v(2, V5L, "fps"),
    "s5.3-x-vs-l-ap": lambda: diff(2, "YOLOv7-X", V5L, "ap_val"),
    "s5.3-x-vs-x-fps": lambda: diff(2, "YOLOv7-X", V5X, "fps"),
    "s5.3-x-vs-x-params": lambda: less(2, "YOLOv7-X", V5X, "params"),
    "s5.3-x-vs-x-flops": lambda: less(2, "YOLOv7-X", V5X, "flops"),
    "s5.3-x-vs-x-ap": lambda: diff(2, "YOLOv7-X", V5X, "ap_val"),
    "s5.3-w6-fps": lambda: diff(2, "YOLOv7-W6", "YOLOR-P6", "fps"),
    "s5.3-w6-ap": lambda: diff(2, "YOLOv7-W6", "YOLOR-P6", "ap_test"),
    "s5.3-e6-ap": lambda: diff(2, E6, V5X6, "ap_val"),
    "s5.3-e6-params": lambda: less(2, E6, V5X6, "params"),
    "s5.3-e6-flops": lambda: less(2, E6, V5X6, "flops"),
    "s5.3-e6-speed": lambda: more(2, E6, V5X6, "fps"),
    "s5.3-d6-ap": lambda: diff(2, "YOLOv7-D6", "YOLOR-E6", "ap_test"),
    "s5.3-e6e-ap": lambda: diff(2, "YOLOv7-E6E", "YOLOR-D6", "ap_test"),
    "s5.4.1-width-ap": lambda: diff(3, COMPOUND, WIDTH, "ap_val"),
    "s5.4.1-depth-params": lambda: more(3, COMPOUND, DEPTH, "params"),
    "s5.4.1-depth-flops": lambda: more(3, COMPOUND, DEPTH, "flops"),
    "s5.4.1-depth-ap": lambda: diff(3, COMPOUND, DEPTH, "ap_val"),
    "s8-e6e-vs-yolov6-s": lambda: v(2, "YOLOv7-E6E", "ap_val") - 43.1,
    "s8-tiny-ap": lambda: v(1, TINY416, "ap_val"),
    "s8-tiny-vs-yolov6-n-ap": lambda: v(1, TINY416, "ap_val") - 35.0,
    "s8-tiny-vs-yolov6-n-speed": lambda: 100 * (0.5 / 0.4 - 1),
}


def _best(table_no: int, rows: list[str], column: str) -> set[str]:
    """Names of the rows holding the maximum of `column` (ties included)."""
    vals = {name: v(table_no, name, column) for name in rows}
    top = max(vals.values())
    return {n for n, x in vals.items() if x == top}


def _highest_ap_at_30_fps() -> None:
    fast = [r for r in P.get_table(9).models if r.group == "V100" and r["fps"] >= 30]
    for col in ("ap_test", "ap_val"):
        best = max(fast, key=lambda r: r[col] if r[col] is not None else -1)
        assert best.key == "yolov7-e6e" and best[col] == 56.8


def _yolov7_curve_beats_5_to_160_fps() -> None:
    t9 = P.get_table(9)
    ours = sorted((r for r in t9.models if r.key.startswith("yolov7")), key=lambda r: r["fps"])
    others = [r for r in t9.models if not r.key.startswith("yolov7") and 5 <= r["fps"] <= 160]
    for col in ("ap_val", "ap_test"):
        fps, ap = [r["fps"] for r in ours], [r[col] for r in ours]
        for r in others:
            if r[col] is not None:
                assert np.interp(r["fps"], fps, ap) >= r[col], (r.name, col)
    # model by model it fails once (KNOWN_INCONSISTENCIES "abstract-dominance-pointwise")
    not_beaten = {
        r.key
        for r in others
        for col in ("ap_val", "ap_test")
        if r[col] is not None and not any(o["fps"] >= r["fps"] and o[col] >= r[col] for o in ours)
    }
    assert not_beaten == {"yolor-w6"}


def _width_only_costs_more() -> None:
    for col in ("params", "flops"):
        assert v(3, "compound (v7-X)", col) < v(3, "width only (1.25 w)", col)


def _table_4_best_is_a_planned_variant() -> None:
    names = [r.name for r in P.get_table(4).models]
    for col in P.get_table(4).columns:
        assert "base (3-S ELAN)" not in _best(4, names, col), col


def _table_5_reversed_block_best() -> None:
    assert _best(5, ["base (YOLOR-W6)", "RepCSP", "RCSP", "RepRCSP@yolor-w6"], "ap_val") == {
        "RepRCSP@yolor-w6"
    }
    assert v(5, "RepRCSP", "ap_val", "yolor-csp") > v(5, "base (YOLOR-CSP)", "ap_val")


def _any_aux_beats_base() -> None:
    for name in ("independent", "lead guided", "coarse-to-fine lead guided"):
        for col in ("ap_val", "ap50_val", "ap75_val"):
            assert v(6, name, col) > v(6, "base (v7-E6)", col)


def _lead_beats_independent() -> None:
    for col in ("ap_val", "ap50_val", "ap75_val"):
        assert v(6, "lead guided", col) > v(6, "independent", col)


def _coarse_to_fine_best_with_ties() -> None:
    names = [r.name for r in P.get_table(6).models]
    for col in ("ap_val", "ap50_val", "ap75_val"):
        assert "coarse-to-fine lead guided" in _best(6, names, col)
    assert _best(6, names, "ap_val") == {"lead guided", "coarse-to-fine lead guided"}  # a tie


def _constraint_ahead_only_on_ap75() -> None:
    gap = {
        c: diff(7, "aux with constraint", "aux without constraint", c)
        for c in ("ap_val", "ap50_val", "ap75_val")
    }
    assert [c for c, d in gap.items() if d > 0] == ["ap75_val"]
    assert [c for c, d in gap.items() if d == 0] == ["ap_val", "ap50_val"]


def _partial_beats_aux() -> None:
    for col in ("ap_val", "ap75_val"):
        assert v(8, "partial aux", col) > v(8, "aux", col)


def _higher_iou_threshold_higher_ap() -> None:
    for precision in ("fp16", "fp32"):
        assert diff(10, f"YOLOv7-X@{precision}-iou0.70", f"YOLOv7-X@{precision}-iou0.65", "ap_val") > 0


def _intro_claim_fits_three_pairs() -> None:
    # Pairs (YOLOv7 model, other model at the same size) with 35-45% fewer parameters and 45-55% less
    # computation, under either convention; the claim names none of them.
    fits = set()
    for number in (1, 2):
        rows = P.get_table(number).models
        for a in (r for r in rows if r.key.startswith("yolov7")):
            for b in (r for r in rows if not r.key.startswith("yolov7") and r.size == a.size):
                for convention, denom in (("paper", a), ("usual", b)):
                    p = 100 * (b["params"] - a["params"]) / denom["params"]
                    f = 100 * (b["flops"] - a["flops"]) / denom["flops"]
                    if 35 <= p <= 45 and 45 <= f <= 55:
                        fits.add((a.id, b.id, convention))
    assert fits == {
        ("yolov7-tiny@320", "yolov4-tiny-3l", "paper"),
        ("yolov7x", "yolox-x", "paper"),
        ("yolov7-w6", "yolor-e6", "usual"),
    }


QUALITATIVE: dict[str, Callable[[], None]] = {
    "abstract-best-5-160-fps": _yolov7_curve_beats_5_to_160_fps,
    "intro-40-50": _intro_claim_fits_three_pairs,
    "s5.4.1-width-cost": _width_only_costs_more,
    "s5.4.2-table4": _table_4_best_is_a_planned_variant,
    "s5.4.2-table5": _table_5_reversed_block_best,
    "s5.4.3-any-aux": _any_aux_beats_base,
    "s5.4.3-lead-vs-independent": _lead_beats_independent,
    "s5.4.3-coarse-to-fine-best": _coarse_to_fine_best_with_ties,
    "s5.4.3-constraint": _constraint_ahead_only_on_ap75,
    "s5.4.3-partial": _partial_beats_aux,
    "s8-iou-threshold": _higher_iou_threshold_higher_ap,
}


def test_every_claim_is_checked_once() -> None:
    ids = [c.id for c in P.CLAIMS]
    assert len(ids) == len(set(ids))
    quantitative = {c.id for c in P.CLAIMS if c.formula is not None}
    assert quantitative == set(HAND)
    assert {c.id for c in P.CLAIMS if c.formula is None} == set(QUALITATIVE)


@pytest.mark.parametrize("claim", [c for c in P.CLAIMS if c.formula is not None], ids=lambda c: c.id)
def test_claim_follows_from_the_tables(claim: P.Claim) -> None:
    computed = HAND[claim.id]()
    assert claim.value is not None
    holds = agrees(abs(computed), claim.value, claim.decimals)
    if claim.id in WRONG_CLAIMS:
        assert not holds, f"listed as a paper inconsistency but {claim.printed} = {computed:.3f}"
    else:
        assert holds, f"{claim.where}: '{claim.quote}' -> tables give {computed:.3f}"
    evaluated = claim.evaluate()
    assert evaluated is not None and math.isclose(abs(evaluated), abs(computed), rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("claim_id", sorted(QUALITATIVE))
def test_qualitative_claim(claim_id: str) -> None:
    QUALITATIVE[claim_id]()


def test_claim_evaluate_reads_reproduced_values_first() -> None:
    claim = next(c for c in P.CLAIMS if c.id == "s5.3-tiny-fps")
    assert isinstance(claim.a, tuple)
    assert claim.evaluate({claim.a: 300.0}) == 300.0 - v(2, "YOLOv5-N (r6.1)", "fps")


def test_reduction_claims_need_the_papers_convention() -> None:
    convention = next(i for i in P.KNOWN_INCONSISTENCIES if i.id == "reduction-convention")
    usual_differs = 0
    for claim in (c for c in P.CLAIMS if c.id in convention.claims):
        assert claim.formula == "(b - a) / a"
        a, b = (v(*ref) for ref in (claim.a, claim.b))  # type: ignore[misc]
        usual = 100 * (b - a) / b
        usual_differs += not agrees(usual, claim.value or 0, claim.decimals)
    assert usual_differs == len(convention.claims) - 1  # only "8% of computation" survives both readings


# --------------------------------------------------------------------------------------------------
# Typos and flags
# --------------------------------------------------------------------------------------------------


def test_flagged_cells_are_exactly_the_known_misprints() -> None:
    flagged = {
        (t.number, r.id, c)
        for t in P.TABLES.values()
        for r in t.rows
        for c, cell in zip(r.columns, r.cells, strict=True)
        if cell.flag
    }
    tiny = {
        (1, r, c)
        for r in ("yolov4-tiny", "yolov7-tiny@416", "yolov4-tiny-3l", "yolov7-tiny@320")
        for c in ("params", "flops")
    }
    expected = tiny | {
        (2, "yolor-w6", "params"),
        (9, "yolor-w6", "params"),
        (10, "improvement@yolov7x@fp32-iou0.70", "ap_val"),
    }
    assert flagged == expected
    assert row(2, "YOLOR-W6")["params"] == 79.8  # value kept, unit flagged


def test_cell_notes_sit_on_the_cells_they_explain() -> None:
    for number in (1, 2, 9):
        d6 = row(number, "YOLOv7-D6")
        noted = {c for c in d6.columns if d6.cell(c).note}
        assert noted == {"params", "flops"} and "training graph" in d6.cell("params").note
    assert "79.8M" in row(9, "YOLOR-W6").cell("params").note
    frame = P.table(1).set_index("row")
    assert frame.loc["yolov7-e6e", "note"].startswith("apm_val: ")
    assert frame.loc["yolov7-tiny@416", "note"] == "LeakyReLU activation (Section 5.1)"


def test_typo_rows_resolve_to_the_intended_model() -> None:
    r = row(9, "YOLO-E6")
    assert r.key == "yolor-e6" and r.registry == "yolor-e6" and r.name == "YOLO-E6" and "YOLOR-E6" in r.note
    for column in P.get_table(9).columns:
        assert r[column] == row(2, "YOLOR-E6")[column]


def test_inconsistencies_name_existing_claims_and_cells() -> None:
    claim_ids = {c.id for c in P.CLAIMS}
    for inc in P.KNOWN_INCONSISTENCIES:
        assert set(inc.claims) <= claim_ids, inc.id
        for table_no, row_id, column in inc.cells:
            P.get_table(table_no).by_id(row_id).cell(column)


def _pct(x: float) -> str:
    return f"{x:.1f}%"


def test_numbers_in_the_inconsistency_explanations_follow_from_the_tables() -> None:
    """Every one-decimal percentage in the explanations is recomputed from the table cells (and the
    official count) it talks about, in the order the text gives them."""

    def usual(t: int, ours: str, other: str, c: str) -> float:  # relative to the model compared against
        return 100 * (v(t, other, c) - v(t, ours, c)) / v(t, other, c)

    def papers(t: int, ours: str, other: str, c: str) -> float:  # relative to the YOLOv7 model's own value
        return 100 * (v(t, other, c) - v(t, ours, c)) / v(t, ours, c)

    tiny, tiny_3l = v(1, "yolov7-tiny@320", "params"), v(1, "yolov4-tiny-3l", "params")
    official_tiny = P.OFFICIAL_COUNTS["yolov7-tiny"].deploy_fused / 1e6
    w6, e6 = row(9, "yolov7-w6"), row(9, "yolov7-e6")
    assert w6["fps"] and e6["fps"] and w6["ap_test"] and e6["ap_test"]
    at_66 = w6["ap_test"] + (w6["fps"] - 66) / (w6["fps"] - e6["fps"]) * (e6["ap_test"] - w6["ap_test"])
    expected = {
        "tiny-3l-params-rounding": [
            -100 * (tiny_3l - tiny) / tiny,  # (6.2 - 8.7) / 6.2
            -100 * (tiny_3l - official_tiny) / official_tiny,
        ],
        "reduction-convention": [
            usual(1, "yolov7", "yolor-csp", "params"),
            usual(1, "yolov7", "yolov4", "params"),
            usual(2, "yolov7-e6", "yolov5-x6-r6.1", "params"),
            usual(2, "yolov7-e6", "yolov5-x6-r6.1", "flops"),
            -usual(3, "compound-v7-x", "depth-only-2.0-d", "params"),  # Section 5.4.1's 2.9%
        ],
        "constraint-ties": [v(7, "aux-with-constraint", c) for c in ("ap_val", "ap50_val", "ap75_val")]
                           + [v(7, "aux-without-constraint", "ap75_val")],
        "intro-claim-unnamed": [
            papers(1, "yolov7-tiny@320", "yolov4-tiny-3l", "params"),
            papers(1, "yolov7-tiny@320", "yolov4-tiny-3l", "flops"),
            papers(2, "yolov7x", "yolox-x", "params"),
            papers(2, "yolov7x", "yolox-x", "flops"),
            usual(2, "yolov7-w6", "yolor-e6", "params"),
            usual(2, "yolov7-w6", "yolor-e6", "flops"),
        ],
        "abstract-dominance-pointwise": [v(9, "yolor-w6", "ap_test"), v(9, "yolor-w6", "ap_val"),
                                         w6["ap_test"], w6["ap_val"], at_66],
    }  # fmt: skip
    for inc in P.KNOWN_INCONSISTENCIES:
        printed = re.findall(r"-?\d+\.\d%", inc.explanation)
        assert printed == [_pct(x) for x in expected.get(inc.id, [])], inc.id
    note = P.get_table(1).by_id("improvement@yolov7-tiny@320").cell("params").note
    assert re.findall(r"-?\d+\.\d%", note) == [_pct(expected["tiny-3l-params-rounding"][0])]


def test_tiny_3l_rounding_bounds_follow_from_the_printed_row_and_the_official_count() -> None:
    """The YOLOv4-tiny-3l counts for which the official YOLOv7-tiny count gives the printed -39%: at
    least 8.65M (the printed 8.7M rounded) and below the count where the reduction reaches 39.5%."""
    inc = next(i for i in P.KNOWN_INCONSISTENCIES if i.id == "tiny-3l-params-rounding")
    official_tiny = P.OFFICIAL_COUNTS["yolov7-tiny"].deploy_fused / 1e6
    cell = P.get_table(1).by_id("yolov4-tiny-3l").cell("params")
    low = cell.value - 0.5 * 10.0**-cell.decimals  # 8.65: the smallest count printed as 8.7
    high = official_tiny * (1 + 0.395)  # from here on the reduction rounds to 40%
    assert (
        round(-100 * (low - official_tiny) / official_tiny)
        == -39
        == round(-100 * (high - 1e-6 - official_tiny) / official_tiny)
    )
    assert re.findall(r"\d+\.\d\dM", inc.explanation) == [
        f"{official_tiny:.2f}M",
        f"{low:.2f}M",
        f"{high:.2f}M",
    ]


def test_e_elan_note_states_how_the_e6e_model_is_built() -> None:
    """The E-ELAN note describes the model the kit builds (whose counts are the official ones): no
    grouped convolution, and as many E-ELANs of as many copies, merged by summation, as it says."""
    import torch
    from torch import nn

    from yolov7lib.models import create_model

    inc = next(i for i in P.KNOWN_INCONSISTENCIES if i.id == "e-elan-official-form")
    with torch.device("meta"):
        model = create_model("yolov7-e6e")
    assert all(m.groups == 1 for m in model.modules() if isinstance(m, nn.Conv2d))
    e_elans = [g for g in model.cfg["groups"] if g["kind"] == "E-ELAN"]
    copies = {g["cardinality"] for g in e_elans}
    assert len(copies) == 1
    assert f"each of its {len(e_elans)} E-ELANs is {copies.pop()} ELAN copies" in inc.explanation
    rows = [*model.cfg["backbone"], *model.cfg["head"]]
    assert sum(row[2] == "Shortcut" for row in rows) == len(e_elans)  # one summation per E-ELAN


def test_figure_11_points_are_the_numbers_quoted_beside_it() -> None:
    """Figure 11's points, transcribed apart from the claims of Section 8, agree with them: the
    milliseconds and AP quoted for YOLOv6-n/-s, and the tables' AP of YOLOv7-tiny and YOLOv7-E6E."""
    claims = {c.id: c for c in P.CLAIMS}
    points = {name: (x, y) for s in P.FIGURES[11].series for name, x, y in s.points}
    assert points == {
        "YOLOv7-tiny": (claims["s8-tiny-vs-yolov6-n-speed"].b, claims["s8-tiny-ap"].evaluate()),
        "YOLOv6-n": (claims["s8-tiny-vs-yolov6-n-speed"].a, claims["s8-tiny-vs-yolov6-n-ap"].b),
        "YOLOv7-E6E": (None, v(9, "yolov7-e6e", "ap_test")),
        "YOLOv6-s": (None, claims["s8-e6e-vs-yolov6-s"].b),
    }


def test_only_the_default_setting_of_table_10_is_the_kit_model() -> None:
    """rows_for_model gives the rows at the model's default settings: Table 10's FP16 / 0.65 row, not
    the other precisions and thresholds."""
    assert [r.id for r in P.rows_for_model("yolov7x") if r.table == 10] == ["yolov7x@fp16-iou0.65"]


# --------------------------------------------------------------------------------------------------
# #Param and FLOPs against the official implementation's counts (official-figures.md)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("registry", P.REGISTRY_NAMES)
def test_paper_param_count_is_the_fused_official_count(registry: str) -> None:
    official = P.OFFICIAL_COUNTS[registry]
    rows = [r for r in P.rows_for_model(registry) if "params" in r.columns]
    assert rows, registry
    for r in rows:
        assert agrees(official.paper_params / 1e6, r["params"], 1), (r.table, r.id)
    if registry == "yolov7-d6":  # the flagged row: the deploy graph does not give 154.7M
        assert not agrees(official.deploy_fused / 1e6, rows[0]["params"], 1)


def test_unfused_counts_would_not_give_the_papers_numbers() -> None:
    # Why OfficialCount.paper_params uses the fused count: unfused, these rows would print otherwise.
    off = [
        m
        for m in ("yolov7", "yolor-p6", "yolor-w6", "yolor-e6", "yolor-d6")
        if not agrees(P.OFFICIAL_COUNTS[m].deploy_params / 1e6, v(2, m, "params"), 1)
    ]
    assert off == ["yolov7", "yolor-p6", "yolor-w6", "yolor-e6", "yolor-d6"]


@pytest.mark.parametrize("registry", [m for m, c in P.OFFICIAL_COUNTS.items() if c.gflops is not None])
def test_paper_flops_agree_with_official_gflops(registry: str) -> None:
    official = P.OFFICIAL_COUNTS[registry]
    assert official.gflops is not None
    for r in P.rows_for_model(registry):
        if "flops" not in r.columns or r.size != official.size:
            continue
        # thop (paper) and FlopCounterMode (official-figures.md) differ by up to 0.2 %, plus the rounding
        # of both one-decimal figures
        close = abs(official.gflops - r["flops"]) <= 0.002 * official.gflops + 0.1 + 1e-9
        assert close == (registry != "yolov7-d6"), (r.table, r.id, official.gflops, r["flops"])
        if registry == "yolov7-d6":  # the paper's D6 FLOPs are the training graph's, like its #Param
            assert official.training_gflops is not None
            assert abs(official.training_gflops - r["flops"]) <= 0.002 * official.training_gflops + 0.1


def _count(module: object) -> int:
    return sum(p.numel() for p in module.parameters())  # type: ignore[attr-defined]


def _check_kit_model(registry: str) -> None:
    """The kit's fused deploy model rounds to the paper's #Param (D6: the paper counts its training graph).

    The exact counts of every graph are tested in test_models.py; this checks the paper's rounding.
    """
    import torch

    from yolov7lib.models import create_model, reparameterize

    official = P.OFFICIAL_COUNTS[registry]
    with torch.device("meta"):
        training = create_model(registry, nc=80)
    if not registry.startswith("yolov7"):  # baselines: the official count keeps the implicit vectors
        fused = _count(reparameterize(training, drop_aux=False, fold_implicit=False))
    else:
        fused = _count(reparameterize(training))
    assert fused == official.deploy_fused, registry
    for r in P.rows_for_model(registry):
        if "params" in r.columns:
            assert agrees(fused / 1e6, r["params"], 1) == (registry != "yolov7-d6"), r.id
    if registry == "yolov7-d6":
        assert agrees(_count(training) / 1e6, P.row(2, "YOLOv7-D6")["params"], 1)


@pytest.mark.parametrize("registry", [m for m, c in P.OFFICIAL_COUNTS.items() if c.size == 640])
def test_kit_p5_model_matches_the_official_counts(registry: str) -> None:
    _check_kit_model(registry)


@pytest.mark.slow
@pytest.mark.parametrize("registry", [m for m, c in P.OFFICIAL_COUNTS.items() if c.size == 1280])
def test_kit_p6_model_matches_the_official_counts(registry: str) -> None:
    _check_kit_model(registry)


# --------------------------------------------------------------------------------------------------
# Accessors, keys, figures
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("YOLOv7-X", "yolov7x"),
        ("YOLOv7-tiny-SiLU", "yolov7-tiny-silu"),
        ("YOLOR-CSP-X", "yolor-csp-x"),
        ("YOLOv5-N (r6.1)", "yolov5-n-r6.1"),
        ("F-RCNN-R101-FPN+", "f-rcnn-r101-fpn-plus"),
        ("YOLO-E6", "yolor-e6"),
        ("yolov7x", "yolov7x"),
        ("base (v7-X light)", "base-v7-x-light"),
    ],
)
def test_model_key(name: str, key: str) -> None:
    assert P.model_key(name) == key


def test_every_kit_model_appears_in_a_table() -> None:
    for registry in P.REGISTRY_NAMES:
        assert P.rows_for_model(registry), registry
    assert {r.table for r in P.rows_for_model("yolov7x")} == {1, 2, 3, 9, 10}
    with pytest.raises(KeyError, match="not a kit model"):
        P.rows_for_model("yolox-s")


def test_row_lookup_errors_are_clear() -> None:
    with pytest.raises(KeyError, match="pass variant="):
        row(1, "YOLOv7-tiny")
    with pytest.raises(KeyError, match="no row for"):
        row(1, "YOLOv8")
    with pytest.raises(KeyError, match="Tables 1-10"):
        P.get_table(11)
    with pytest.raises(KeyError, match="no column"):
        row(4, "Figure 6 (a)").cell("fps")
    assert row(1, "yolov7-tiny@320") is row(1, "YOLOv7-tiny", "320")


def test_table_frame_holds_every_row_and_value() -> None:
    for number, t in P.TABLES.items():
        frame = P.table(number)
        assert list(frame["row"]) == [r.id for r in t.rows]
        for r, (_, rec) in zip(t.rows, frame.iterrows(), strict=True):
            for c in t.columns:
                x = r[c]
                if c == "precision":
                    assert rec[c] == r.cell(c).printed
                elif x is None:
                    assert math.isnan(rec[c])
                else:
                    assert rec[c] == x
    assert P.table(2, printed=True).loc[24, "params"] == "79.8G"


def test_figures_plot_existing_rows() -> None:
    assert sorted(P.FIGURES) == [1, 9, 10, 11]
    for fig in P.FIGURES.values():
        if fig.table is None:
            assert all(s.points for s in fig.series)
            continue
        t = P.get_table(fig.table)
        assert fig.x in t.columns and fig.y in t.columns
        ids = [i for s in fig.series for i in s.rows]
        assert sorted(ids) == sorted(r.id for r in t.models)  # every row once
    fast = P.table(9).query(P.FIGURES[10].row_filter)
    assert len(fast) == 31 and fast["fps"].min() >= 30
