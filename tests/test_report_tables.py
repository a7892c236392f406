"""The report renderer (`yolov7lib.report`): tables and claims beside reproduced values, as markdown
and CSV. Differences and improvement rows are recomputed here from the paper's DataFrame."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from yolov7lib import paper
from yolov7lib.report import (
    Commands,
    Reproductions,
    compare_claims,
    compare_table,
    read_table_csv,
    render_markdown,
    write_claims,
    write_table,
    write_tables,
)
from yolov7lib.report.markers import is_cited, what_it_takes
from yolov7lib.report.render import fmt, markdown_table, write_text_atomic

ARCH = "exact (architecture)"
SMALL = 'generated data, 320 px, 30 epochs, CPU; "quoted" | piped'


def _some_values(seed: int = 0) -> Reproductions:
    """Reproduced values for a spread of cells: architecture counts, noisy AP with seeds, one FPS."""
    rng = np.random.default_rng(seed)
    reps = Reproductions()
    for model in ("yolov7", "yolor-csp", "yolov7x", "yolov7-d6", "yolov7-tiny"):
        reps.add_model(model, "params", float(rng.uniform(5, 160)), ARCH, source="count | fused")
    reps.add_model("yolov7", "flops", 104.5, ARCH)
    for row in ("yolov7", "yolor-csp", "yolov4"):  # YOLOv4 is not built, but a value may still be fed
        reps.add(1, row, "ap_val", float(rng.uniform(0, 10)), SMALL, spread=float(rng.uniform(0, 1)), seeds=3)
    reps.add(2, "yolov7", "fps", 3.71, "CPU, 2 threads, batch 1")
    reps.add(4, "Figure 6 (a)", "ap_val", 1.234567, SMALL)
    return reps


def _result_cells(number: int) -> list[tuple[str, str]]:
    t = paper.get_table(number)
    return [(r.id, c) for r in t.rows for c in t.columns if paper.COLUMNS[c].kind != "setting"]


@pytest.mark.parametrize("number", sorted(paper.TABLES))
def test_every_result_cell_of_the_paper_appears_once_in_order(number: int) -> None:
    frame = compare_table(number)
    assert list(zip(frame["row"], frame["column"], strict=True)) == _result_cells(number)
    printed = {(r.id, c): r.cell(c).printed for r in paper.get_table(number).rows for c in r.columns}
    assert [printed[k] for k in zip(frame["row"], frame["column"], strict=True)] == list(
        frame["paper_printed"]
    )


@pytest.mark.parametrize("number", [1, 2, 4])
def test_differences_are_reproduced_minus_paper(number: int) -> None:
    reps = _some_values()
    frame = compare_table(number, reps)
    wide = paper.table(number)  # the paper's values, one line per row
    for rec in frame.itertuples(index=False):
        paper_value = wide.loc[wide["row"] == rec.row, rec.column].item()
        rep = reps.get((number, rec.row, rec.column))
        if rep is not None:
            assert rec.reproduced == rep.value and rec.scale == rep.scale and rec.status == "reproduced"
            if math.isnan(paper_value):
                assert math.isnan(rec.difference) and rec.agrees == ""
            else:
                assert rec.difference == pytest.approx(rep.value - paper_value, abs=1e-12)
        elif rec.status != "derived":
            assert math.isnan(rec.reproduced) and math.isnan(rec.difference)


def test_agreement_is_judged_at_the_papers_rounding() -> None:
    reps = Reproductions()
    reps.add(1, "yolov7", "params", 36.949, ARCH)  # rounds to 36.9
    reps.add(1, "yolov7x", "params", 71.36, ARCH)  # rounds to 71.4, paper 71.3
    reps.add(4, "base (3-S ELAN)", "ap_val", 52.264, SMALL)  # two decimals in Table 4: 52.26
    reps.add(4, "base (3-S ELAN)", "ap50_val", 70.42, SMALL)  # 70.41 printed
    agrees = {
        (t, r, c): a for t in (1, 4) for r, c, a in compare_table(t, reps)[["row", "column", "agrees"]].values
    }
    assert agrees[(1, "yolov7", "params")] == "yes" and agrees[(1, "yolov7x", "params")] == "no"
    assert (
        agrees[(4, "base-3-s-elan", "ap_val")] == "yes" and agrees[(4, "base-3-s-elan", "ap50_val")] == "no"
    )
    assert agrees[(1, "yolov4", "params")] == ""


def test_improvement_rows_are_derived_from_reproduced_rows() -> None:
    reps = Reproductions()
    reps.add(1, "yolov7", "params", 30.0, ARCH)
    reps.add(1, "yolor-csp", "params", 45.0, "another scale")
    reps.add(1, "yolov7", "ap_val", 4.0, SMALL)
    frame = compare_table(1, reps).set_index(["row", "column"])
    params = frame.loc[("improvement@yolov7", "params")]
    assert params["reproduced"] == pytest.approx(100 * (30.0 - 45.0) / 30.0)  # the paper's convention
    assert params["status"] == "derived" and params["scale"] == f"{ARCH}; another scale"
    assert params["difference"] == pytest.approx(-50.0 - (-43.0))
    ap = frame.loc[("improvement@yolov7", "ap_val")]  # YOLOR-CSP's AP is missing
    assert ap["status"] == "not reproduced" and "derived from yolov7 and yolor-csp" in ap["how"]


def test_improvement_rows_carry_the_spread_of_their_two_rows() -> None:
    """Difference: the spreads add in quadrature. Relative (% of the candidate): checked against a Monte
    Carlo estimate of the same quantity, which needs no derivative."""
    reps = Reproductions()
    reps.add(6, "coarse-to-fine lead guided", "ap_val", 0.30, SMALL, spread=0.04, seeds=2)
    reps.add(6, "base (v7-E6)", "ap_val", 0.20, SMALL, spread=0.03, seeds=3)
    reps.add(1, "yolov7", "params", 30.0, ARCH, spread=0.3, seeds=4)
    reps.add(1, "yolor-csp", "params", 45.0, ARCH, spread=0.9, seeds=4)
    reps.add(1, "yolov7x", "params", 70.0, ARCH)  # no spreads: none derived
    reps.add(1, "yolor-d6", "params", 151.7, ARCH)
    t6 = compare_table(6, reps).set_index(["row", "column"])
    ap = t6.loc[("improvement@coarse-to-fine-lead-guided", "ap_val")]
    assert (
        ap["reproduced"] == pytest.approx(0.10) and ap["spread"] == pytest.approx(0.05) and ap["seeds"] == 2
    )
    assert "| 0.10 ± 0.05, 2 seeds |" in render_markdown(6, compare_table(6, reps))
    t1 = compare_table(1, reps).set_index(["row", "column"])
    rel = t1.loc[("improvement@yolov7", "params")]
    rng = np.random.default_rng(0)
    c, b = rng.normal(30.0, 0.3, 400_000), rng.normal(45.0, 0.9, 400_000)
    assert rel["spread"] == pytest.approx(np.std(100 * (c - b) / c), rel=0.02)
    assert math.isnan(t1.loc[("improvement@yolov7x", "params")]["spread"])


def test_the_paper_footnotes_are_printed_under_their_tables() -> None:
    """Table 2's two footnotes (how FLOPs and inference time were measured) and Table 10's (the higher
    IoU threshold) appear on their pages with their marks; tables without footnotes get none."""
    pages = {n: render_markdown(n, compare_table(n)) for n in (1, 2, 10)}
    table2 = pages[2].split("\n| model |")[0]  # above the table
    assert "¹ Our FLOPs is calculated by rectangle input resolution like 640×640 or 1280×1280." in table2
    assert "² Our inference time is estimated by using letterbox resize input image" in table2
    assert "* Similar to meituan/YOLOv6 and PPYOLOE, our model could get higher AP" in pages[10]
    assert "Footnotes" not in pages[1]


def test_missing_cells_are_marked_with_what_it_takes() -> None:
    frame = compare_table(2, Reproductions(), Commands(accuracy="train {model} on COCO"))
    assert (frame["status"].isin(["not reproduced", "paper prints -"])).all()
    missing = frame[frame["status"] == "not reproduced"]
    assert frame.loc[frame["paper"].isna(), "status"].eq("paper prints -").all()
    assert missing["how"].str.startswith("not reproduced").all()
    by = missing.set_index(["row", "column"])["how"]
    assert "does not build YOLOX-S" in by[("yolox-s", "ap_val")] and "[21]" in by[("yolox-s", "ap_val")]
    assert (
        "COCO-scale training" in by[("yolov7", "ap_test")]
        and "train yolov7 on COCO" in by[("yolov7", "ap_test")]
    )
    assert "exact count by `dvc repro" in by[("yolov7", "params")]
    assert "V100" in by[("yolov7-e6e", "fps")]
    ablation = compare_table(6).set_index(["row", "column"])["how"]
    assert "dvc exp run -S profile=paper" in ablation[("independent", "ap_val")]


def test_table_10_fp16_rows_say_they_need_a_cuda_gpu() -> None:
    """The evaluation measures FP16 only on a CUDA device (notebook 04), so on a CPU run Table 10's FP16
    rows stay empty beside filled FP32 rows at the same scale: their marker says why."""
    for row in ("yolov7x@fp16-iou0.65", "yolov7x@fp16-iou0.70"):
        how = what_it_takes(paper.row(10, row), "ap_val")
        assert how.startswith("not reproduced here: FP16 evaluation needs a CUDA GPU"), row
    assert "CUDA" not in what_it_takes(paper.row(10, "yolov7x@fp32-iou0.70"), "ap_val")


def test_marker_templates_get_the_model_the_table_and_the_row() -> None:
    """Commands templates: {model} is the registry name, else "the Table N variant '<paper name>'";
    {table} the table number and {row} the row id. Table 1's other detectors are cited, like Table 2's;
    an improvement row is never a cited result."""
    cmds = Commands(architecture="A {model}|{table}|{row}", accuracy="B {model}|{table}|{row}",
                    speed="C {model}|{table}|{row}")  # fmt: skip
    assert what_it_takes(paper.row(4, "Figure 6 (a)"), "ap_val", cmds) == (
        "not reproduced here: needs COCO-scale training; `B the Table 4 variant 'Figure 6 (a)'|4|figure-6-a`"
    )
    fp32 = paper.row(10, "yolov7x@fp32-iou0.70")  # not the default setting: no registry name
    assert what_it_takes(fp32, "ap_val", cmds).endswith(
        "`B the Table 10 variant 'YOLOv7-X'|10|yolov7x@fp32-iou0.70`"
    )
    assert what_it_takes(paper.row(2, "YOLOv7"), "fps", cmds).endswith("`C yolov7|2|yolov7`")
    assert what_it_takes(paper.row(1, "YOLOv7"), "params", cmds).endswith("`A yolov7|1|yolov7`")
    assert what_it_takes(paper.row(1, "YOLOv4"), "ap_val", cmds) == (
        "not reproduced here: the kit does not build YOLOv4 (result of reference [3])"
    )
    assert not [r.id for t in paper.TABLES.values() for r in t.improvements if is_cited(r)]


def test_flags_and_inconsistencies_reach_the_note_column() -> None:
    notes = compare_table(2).set_index(["row", "column"])["note"]
    assert "unit G where the column is in M" in notes[("yolor-w6", "params")]
    assert "d6-params-training-graph" in notes[("yolov7-d6", "params")]
    assert "d6-params-training-graph" not in notes[("yolov7-d6", "ap_val")]


def test_csv_round_trip(tmp_path: Path) -> None:
    reps = _some_values(seed=1)
    for number in (1, 2, 9):
        md, csv = write_table(number, reps, tmp_path)
        assert (md.name, csv.name) == (f"table{number}.md", f"table{number}.csv")
        assert_frame_equal(read_table_csv(csv), compare_table(number, reps), check_exact=True)


def test_csv_is_plain_for_other_readers(tmp_path: Path) -> None:
    _, csv = write_table(1, _some_values(), tmp_path)
    plain = pd.read_csv(csv)  # no special options
    assert (
        len(plain) == len(_result_cells(1))
        and plain["scale"].str.contains('"quoted" | piped', regex=False).any()
    )


def test_read_table_csv_refuses_other_csv(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a table comparison CSV"):
        read_table_csv(path)


def _parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Split a GitHub markdown table on unescaped pipes; unescape the cells."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]

    def cells(line: str) -> list[str]:
        assert line.startswith("| ") or line.startswith("|-"), line
        assert line.endswith("|"), line
        parts = re.split(r"(?<!\\)\|", line)[1:-1]
        return [re.sub(r"\\(.)", r"\1", p.strip()) for p in parts]

    header, separator, *body = lines
    assert re.fullmatch(r"\|(---\|)+", separator)
    head = cells(header)
    assert separator.count("|") == len(head) + 1
    rows = [cells(ln) for ln in body]
    assert all(len(r) == len(head) for r in rows)
    return head, rows


def test_markdown_cells_keep_backslashes_and_pipes_and_flatten_line_breaks() -> None:
    """md_escape through markdown_table: a cell with backslashes, pipes and line breaks stays one cell
    and reads back (unescaped) as its text, line breaks turned into spaces; a short row is refused."""
    cells = ["a\\|b", "C:\\dir\\", "two\nlines", "cr\r\nlf", "|"]
    _, rows = _parse_markdown_table(markdown_table(["h"] * len(cells), [cells]))
    assert rows == [["a\\|b", "C:\\dir\\", "two lines", "cr  lf", "|"]]
    with pytest.raises(ValueError, match="one cell per header"):
        markdown_table(["a", "b"], [["1", "2"], ["3"]])


def test_fmt_prints_fixed_decimals_a_sign_on_request_and_nothing_for_missing() -> None:
    assert [fmt(0.5, 2), fmt(0.5, 2, signed=True), fmt(-0.5, 1, signed=True), fmt(0.0, 1, signed=True)] == [
        "0.50",
        "+0.50",
        "-0.5",
        "+0.0",
    ]
    assert fmt(None, 1) == fmt(float("nan"), 1, signed=True) == ""


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    """write_text_atomic: text that cannot be encoded fails before the rename; the previous file is
    intact and the temporary file is removed."""
    path = write_text_atomic(tmp_path / "t.md", "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "new \ud800")  # a lone surrogate has no UTF-8 encoding
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["t.md"]


def test_markdown_is_well_formed_and_holds_the_frame() -> None:
    reps = _some_values(seed=2)
    for number in sorted(paper.TABLES):
        frame = compare_table(number, reps)
        text = render_markdown(number, frame)
        assert text.startswith(f"# Table {number}: {paper.get_table(number).title}\n")
        head, rows = _parse_markdown_table(text)
        assert head[:5] == ["model", "setting", "column", "paper", "reproduced"]
        assert len(rows) == len(frame)
        col = {h: i for i, h in enumerate(head)}
        for rec, md in zip(frame.itertuples(index=False), rows, strict=True):
            assert md[col["model"]] == rec.model and md[col["paper"]] == rec.paper_printed
            assert md[col["status"]] == rec.status and md[col["scale"]] == rec.scale
            if not math.isnan(rec.reproduced):
                assert float(md[col["reproduced"]].split(" ± ")[0]) == pytest.approx(rec.reproduced, abs=0.05)
            else:
                assert md[col["reproduced"]] == ""
            if not math.isnan(rec.difference):
                assert float(md[col["difference"]]) == pytest.approx(rec.difference, abs=0.05)


def test_markdown_shows_spread_over_seeds_and_a_summary() -> None:
    reps = Reproductions()
    reps.add(1, "yolov7", "ap_val", 3.14159, SMALL, spread=0.271, seeds=3)
    reps.add(1, "yolov7", "params", 36.905341, ARCH)
    text = render_markdown(1, compare_table(1, reps))
    assert "3.14 ± 0.27, 3 seeds" in text and "36.91" in text
    assert "2 of 176 cells reproduced; 1 of 2 compared cells agree" in text


def test_write_tables_writes_every_table_atomically(tmp_path: Path) -> None:
    paths = write_tables(_some_values(), tmp_path)
    assert sorted(p.name for p in paths) == sorted(
        f"table{n}.{ext}" for n in range(1, 11) for ext in ("md", "csv")
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in paths
    )  # no temporary files left


# --------------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------------


def test_claims_hold_in_the_paper_except_the_known_arithmetic_slips() -> None:
    frame = compare_claims().set_index("claim")
    wrong = {c for i in paper.KNOWN_INCONSISTENCIES if i.kind == "arithmetic" for c in i.claims}
    quantitative = frame[frame["holds"] != ""]
    assert set(quantitative.index[quantitative["holds"] == "no"]) == wrong
    assert len(quantitative) == sum(c.formula is not None for c in paper.CLAIMS)
    assert (frame.loc[frame["holds"] == "", "status"] == "qualitative").all()


def test_claims_are_reproduced_against_cited_values() -> None:
    reps = Reproductions()
    reps.add(1, "yolov7", "params", 30.0, ARCH)
    frame = compare_claims(reps).set_index("claim")
    vs_v4 = frame.loc["s5.2-yolov4-params"]  # YOLOv4 is cited: its 64.4M stays the paper's
    assert vs_v4["reproduced"] == pytest.approx(100 * (64.4 - 30.0) / 30.0)
    assert vs_v4["status"].startswith("reproduced")
    assert vs_v4["difference"] == pytest.approx(vs_v4["reproduced"] - 100 * (64.4 - 36.9) / 36.9)
    vs_csp = frame.loc["s5.2-yolor-csp-params"]  # YOLOR-CSP is a kit model: its count is needed
    assert math.isnan(vs_csp["reproduced"]) and vs_csp["status"] == "not reproduced: needs 1:yolor-csp:params"
    assert frame.loc["abstract-swin-l-fps", "status"].startswith("cited results only")
    assert frame.loc["s8-tiny-vs-yolov6-n-speed", "status"] == "text only"


def test_write_claims(tmp_path: Path) -> None:
    md, csv = write_claims(None, tmp_path)
    head, rows = _parse_markdown_table(md.read_text())
    assert len(rows) == len(paper.CLAIMS) and head[0] == "claim"
    assert list(pd.read_csv(csv, keep_default_na=False)["claim"]) == [c.id for c in paper.CLAIMS]


def test_summary_compares_only_cells_the_paper_prints() -> None:
    """A reproduced cell where the paper prints "-" is reproduced but not compared."""
    reps = Reproductions()
    reps.add(2, "yolox-s", "ap50_test", 50.0, ARCH)  # the paper prints "-" here
    reps.add(2, "yolov7", "params", 36.9, ARCH)
    frame = compare_table(2, reps)
    assert frame.loc[(frame["row"] == "yolox-s") & (frame["column"] == "ap50_test"), "paper"].isna().all()
    text = render_markdown(2, frame)
    assert f"2 of {len(frame)} cells reproduced; 1 of 1 compared cells agree" in text


def test_a_value_half_a_unit_from_the_printed_one_agrees() -> None:
    """The paper prints 36.9: anything within half a unit of its last digit, both ends included, agrees."""
    for value, expected in ((36.95, "yes"), (36.85, "yes"), (36.951, "no"), (36.849, "no")):
        reps = Reproductions()
        reps.add(1, "yolov7", "params", value, ARCH)
        frame = compare_table(1, reps).set_index(["row", "column"])
        assert frame.loc[("yolov7", "params"), "agrees"] == expected, value


def test_a_claim_on_kit_models_only_is_plainly_reproduced() -> None:
    """Both cells of the YOLOR-CSP #Param claim are kit models: reproduced, not against cited values."""
    reps = Reproductions()
    reps.add(1, "yolov7", "params", 30.0, ARCH)
    reps.add(1, "yolor-csp", "params", 45.0, ARCH)
    row = compare_claims(reps).set_index("claim").loc["s5.2-yolor-csp-params"]
    assert row["status"] == "reproduced"
    assert row["reproduced"] == pytest.approx(100 * (45.0 - 30.0) / 30.0)
