"""The report builder: measured files in, tables, claims and an index out, with the counts right."""

from __future__ import annotations

import json

import pytest

from yolov7lib.report.build import build_report, collect, table10_reproductions
from yolov7lib.report.reproduced import Reproductions
from yolov7lib.report.tables import read_table_csv


def _inputs(tmp_path):
    metrics = tmp_path / "metrics"
    (metrics / "train").mkdir(parents=True)
    arch = Reproductions()
    arch.add(1, "yolov7", "params", 36.905341, "exact (architecture, nc=80)")
    arch.to_json(metrics / "architecture.json")
    evaluation = {
        "model": "cpu",
        "scale": "generated data, CPU model",
        "coco": {"ap": 0.4, "ap50": 0.6},
        "table10": [
            {"precision": "fp32", "iou": 0.65, "ap": 0.4012},
            {"precision": "fp32", "iou": 0.7, "ap": 0.4034},
            {"precision": "fp16", "iou": 0.65, "ap": None},  # not measurable on a CPU
        ],
    }
    (metrics / "eval.json").write_text(json.dumps(evaluation))
    run = {"model": "yolov7-tiny", "scale": "tiny", "map50": 0.55, "map": 0.3, "train_time_s": 600.0}
    (metrics / "train" / "cpu.json").write_text(json.dumps(run))
    (metrics / "train" / "yolov7.json").write_text(json.dumps({"skipped": True}))
    figures = tmp_path / "figures"
    figures.mkdir()
    for n in (10, 2, 1):
        (figures / f"figure{n}.png").write_bytes(b"png")
    return metrics, figures


def test_table10_takes_the_settings_sweep_in_percent() -> None:
    rep = table10_reproductions({"scale": "s", "table10": [{"precision": "FP32", "iou": 0.70, "ap": 0.5}]})
    cell = rep[(10, "yolov7x@fp32-iou0.70", "ap_val")]
    assert cell.value == pytest.approx(50.0) and "NMS IoU 0.70" in cell.scale
    assert len(table10_reproductions(None)) == 0


def test_report_tables_readme_and_counts(tmp_path) -> None:
    metrics, figures = _inputs(tmp_path)
    rep, measured = collect(metrics)
    assert len(rep) == 3 and set(measured["train"]) == {"cpu", "yolov7"}

    tables, readme = tmp_path / "tables", tmp_path / "README.md"
    build_report(metrics, tables, readme, figures, profile="default")
    for n in range(1, 11):
        assert (tables / f"table{n}.md").is_file() and (tables / f"table{n}.csv").is_file()
    assert (tables / "claims.md").is_file()

    t10 = read_table_csv(tables / "table10.csv")
    got = t10[t10["status"] == "reproduced"].set_index("row")["reproduced"].to_dict()
    assert got == pytest.approx({"yolov7x@fp32-iou0.65": 40.12, "yolov7x@fp32-iou0.70": 40.34})
    t1 = read_table_csv(tables / "table1.csv")
    row = t1[(t1["row"] == "yolov7") & (t1["column"] == "params")].iloc[0]
    assert row["agrees"] == "yes" and row["reproduced"] == pytest.approx(36.905341)

    text = readme.read_text()
    assert "| [Table 10](tables/table10.md) |" in text
    line = next(x for x in text.splitlines() if x.startswith("| [Table 10]"))
    assert [c.strip() for c in line.split("|")][4:6] == ["2", "0"]  # 2 reproduced, 0 agree (other model)
    assert "| cpu | yolov7-tiny | tiny | 0.550 |" in text and "| yolov7 |" not in text  # skipped run left out
    order = [x for x in text.splitlines() if x.startswith("- [figure")]
    assert order == ["- [figure1](figures/figure1.png)", "- [figure2](figures/figure2.png)",
                     "- [figure10](figures/figure10.png)"]  # fmt: skip


def test_readme_summary_counts_cells_as_the_table_pages_do(tmp_path) -> None:
    """A derived cell (an improvement row from two reproduced ones) counts in both, the same way."""
    import re

    metrics, figures = _inputs(tmp_path)
    arch = Reproductions()
    arch.add(1, "yolov7", "params", 36.905341, "exact (architecture, nc=80)")
    arch.add(1, "yolor-csp", "params", 52.9, "exact (architecture, nc=80)")
    arch.to_json(metrics / "architecture.json")
    tables, readme = tmp_path / "tables", tmp_path / "README.md"
    build_report(metrics, tables, readme, figures, profile="default")
    t1 = read_table_csv(tables / "table1.csv")
    assert (t1["status"] == "derived").sum() == 1  # improvement@yolov7 from yolov7 and yolor-csp
    for n in range(1, 11):
        page = (tables / f"table{n}.md").read_text()
        reproduced, agree = re.search(r"(\d+) of \d+ cells reproduced; (\d+) of", page).groups()
        line = next(x for x in readme.read_text().splitlines() if x.startswith(f"| [Table {n}]"))
        assert [c.strip() for c in line.split("|")][4:6] == [reproduced, agree], n
