"""The report builder: measured files in, tables, claims and an index out, with the counts right."""

from __future__ import annotations

import json

import pytest

from yolov7lib.report.build import build_report, collect, measured_sections, table10_reproductions
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


def test_table10_scale_names_the_evaluated_model() -> None:
    """Table 10's rows are YOLOv7-X; the sweep evaluates whatever model the run trained (the default
    profile: yolov7-tiny-cpu), so the scale of its cells names that model, not only the data."""
    evaluation = {"model": "yolov7-tiny-cpu", "scale": "generated data, the default CPU run",
                  "table10": [{"precision": "fp32", "iou": 0.65, "ap": 0.41}]}  # fmt: skip
    cell = table10_reproductions(evaluation)[(10, "yolov7x@fp32-iou0.65", "ap_val")]
    assert cell.scale == "yolov7-tiny-cpu, generated data, the default CPU run; FP32, NMS IoU 0.65"
    same = table10_reproductions({**evaluation, "model": "yolov7x"})[(10, "yolov7x@fp32-iou0.65", "ap_val")]
    assert same.scale == "generated data, the default CPU run; FP32, NMS IoU 0.65"  # the row's own model


def test_the_evaluated_kit_model_fills_its_ap_val_cells_of_tables_1_2_and_9(tmp_path) -> None:
    """The evaluation stage scores one model with the paper's protocol; where that is a model of the
    tables (the paper profile evaluates yolov7 on COCO), its COCO AP fills that model's AP val cells of
    Tables 1, 2 and 9 (in percent, at the first setting of the sweep), and nothing else."""
    metrics, _ = _inputs(tmp_path)
    evaluation = json.loads((metrics / "eval.json").read_text())
    evaluation.update(model="yolov7", coco={"ap": 0.512, "ap50": 0.697, "ap75": 0.555, "ap_small": 0.352,
                                            "ap_medium": 0.56, "ap_large": 0.667})  # fmt: skip
    (metrics / "eval.json").write_text(json.dumps(evaluation))
    rep, _ = collect(metrics)
    got = {k: v.value for k, v in rep.items() if k[2] != "params" and k[0] != 10}
    assert got == pytest.approx({
        (1, "yolov7", "ap_val"): 51.2, (1, "yolov7", "ap50_val"): 69.7, (1, "yolov7", "ap75_val"): 55.5,
        (1, "yolov7", "aps_val"): 35.2, (1, "yolov7", "apm_val"): 56.0, (1, "yolov7", "apl_val"): 66.7,
        (2, "yolov7", "ap_val"): 51.2, (9, "yolov7", "ap_val"): 51.2,
    })  # fmt: skip
    assert rep[(2, "yolov7", "ap_val")].scale == "generated data, CPU model; FP32, NMS IoU 0.65"
    # a score pycocotools did not give (None) fills no cell; the others still do
    evaluation["coco"]["ap_small"] = None
    (metrics / "eval.json").write_text(json.dumps(evaluation))
    rep, _ = collect(metrics)
    assert (1, "yolov7", "aps_val") not in rep and rep[(1, "yolov7", "ap_val")].value == pytest.approx(51.2)
    evaluation["img"] = 320  # yolov7 at another input size than its rows' 640: no cell
    (metrics / "eval.json").write_text(json.dumps(evaluation))
    rep, _ = collect(metrics)
    assert not [k for k in rep if k[0] != 10 and k[2] != "params"]
    evaluation["img"], evaluation["model"] = 640, "yolov7-tiny-cpu"  # not a model of the tables: no cell
    (metrics / "eval.json").write_text(json.dumps(evaluation))
    rep, _ = collect(metrics)
    assert not [k for k in rep if k[0] != 10 and k[2] != "params"]


def test_table10_matches_the_nms_iou_at_two_decimals() -> None:
    """An IoU read back from JSON as 0.7000000001 (or 0.65 written as 0.6500000001) is the 0.70 row."""
    sweep = [
        {"precision": "fp16", "iou": 0.7000000001, "ap": 0.5},
        {"precision": "fp32", "iou": 0.6499999999, "ap": 0.4},
    ]
    rep = table10_reproductions({"table10": sweep})
    assert sorted(row for _, row, _ in rep) == ["yolov7x@fp16-iou0.70", "yolov7x@fp32-iou0.65"]


def test_measured_sections_put_every_value_in_its_column() -> None:
    """The README's 'Measured here': each measurement under its own header, training time in minutes,
    counts printed as integers, floats at fixed decimals; with nothing measured it says so."""
    reparam = {
        "model": "yolov7",
        "params_training": 37620125,
        "params_deploy": 36905341,
        "ms_training": 12.34,
        "ms_deploy": 10.0,
        "speedup": 1.234,
        "max_rel_diff": 1.5e-6,
    }
    speed = {
        "model": "yolov7",
        "backend": "eager",
        "batch": 1,
        "img": 640,
        "ms_per_image": 12.5,
        "images_per_s": 80.0,
        "gflops_per_s": 8.4,
        "peak_fraction": 0.084,
    }
    measured = {
        "data": {"kind": "generated", "train": {"images": 10, "objects": 31},
                 "val": {"images": 4, "objects": 9, "small": 0.5, "medium": 0.25, "large": 0.25}},
        "train": {"cpu": {"model": "yolov7-tiny", "scale": "tiny", "map50": 0.55, "map": 0.3,
                          "coco": {"ap": 0.25}, "train_time_s": 900.0}},
        "eval": {"model": "cpu", "scale": "s", "coco": {"ap": 0.4, "images": 500, "per_class": [0.1]}},
        "reparam": {"img": 320, "rows": [reparam]},
        "speed": {"device": "cpu", "peak_gflops": 100.0, "rows": [speed]},
    }  # fmt: skip
    lines = measured_sections(measured)
    assert lines[:2] == ["## Measured here", ""]
    assert lines[2] == (
        "**Data** (generated): 10 training and 4 validation images with 31 and 9 objects; share of small / "
        "medium / large validation objects 0.50 / 0.25 / 0.25."
    )
    for expected in (
        "| run | model | scale | mAP@.5 | mAP@.5:.95 | COCO AP | minutes |",
        "| cpu | yolov7-tiny | tiny | 0.550 | 0.300 | 0.250 | 15.0 |",  # 900 s
        "**Evaluation** of `cpu` (s): ap 0.400000, images 500",
        "| model | params training | params deploy | ms training | ms deploy | speed-up | max diff |",
        "| yolov7 | 37620125 | 36905341 | 12.3 | 10.0 | 1.23 | 1.5e-06 |",
        "| model | backend | batch | img | ms / image | images / s | GFLOP/s | of peak |",
        "| yolov7 | eager | 1 | 640 | 12.50 | 80.00 | 8.40 | 0.08 |",
    ):
        assert expected in "\n".join(lines).splitlines(), expected
    assert measured_sections({}) == ["## Measured here", "", "(no measurements yet)", ""]


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


def test_readme_indexes_every_figure_under_the_figures_directory(tmp_path) -> None:
    """The paper's figures in number order, then every other PNG (speed.png, tour/figure2.png, ...)."""
    metrics, figures = _inputs(tmp_path)
    (figures / "tour").mkdir()
    for name in ("speed.png", "tour/figure2.png", "ablations.png"):
        (figures / name).write_bytes(b"png")
    readme = tmp_path / "README.md"
    build_report(metrics, tmp_path / "tables", readme, figures, profile="default")
    listed = [x for x in readme.read_text().splitlines() if x.startswith("- [")]
    linked = sorted(line.split("](figures/")[1].rstrip(")") for line in listed if "](figures/" in line)
    assert linked == sorted(p.relative_to(figures).as_posix() for p in figures.rglob("*.png"))
    paper_figures = [x.split("](")[0] for x in listed if "](figures/figure" in x]
    assert paper_figures == ["- [figure1", "- [figure2", "- [figure10"]  # the paper's, in number order


def test_readme_summary_counts_cells_as_the_table_pages_do(tmp_path) -> None:
    """A derived cell (an improvement row from two reproduced ones), and a reproduced cell where the
    paper prints "-" (reproduced, not compared), count in both, the same way."""
    import re

    metrics, figures = _inputs(tmp_path)
    arch = Reproductions()
    arch.add(1, "yolov7", "params", 36.905341, "exact (architecture, nc=80)")
    arch.add(1, "yolor-csp", "params", 52.9, "exact (architecture, nc=80)")
    arch.add(2, "yolov5-n-r6.1", "ap_test", 28.0, "generated data")  # the paper prints "-"
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
