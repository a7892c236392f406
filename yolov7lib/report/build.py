"""The report: Tables 1-10 and the text's claims beside the reproduced values, and reports/README.md.

Inputs are the JSON files the other stages write under `reports/metrics/`: reproduced cells in the
`Reproductions` format (architecture.json, ablations.json), the evaluation (eval.json, whose settings
sweep becomes Table 10's reproduced column and whose COCO AP fills the evaluated model's AP val cells of
Tables 1, 2 and 9), the training runs (train/*.json), the re-parameterisation check (reparam.json), the
speed benchmark (speed.json) and the data summary (data.json). Any of them may be absent (a stage not
run yet): the report then says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yolov7lib import paper
from yolov7lib.report.ablations import COCO_COLUMNS
from yolov7lib.report.claims import write_claims
from yolov7lib.report.markers import COMPARISON_TABLES
from yolov7lib.report.render import markdown_table, write_text_atomic
from yolov7lib.report.reproduced import Reproductions
from yolov7lib.report.tables import compare_table, write_tables

REPRODUCTION_FILES = ("architecture.json", "ablations.json")
MEASUREMENT_FILES = ("eval", "reparam", "speed", "data")
TABLE10_ROWS = {
    ("fp32", 0.65): "yolov7x@fp32-iou0.65",
    ("fp32", 0.70): "yolov7x@fp32-iou0.70",
    ("fp16", 0.65): "yolov7x@fp16-iou0.65",
    ("fp16", 0.70): "yolov7x@fp16-iou0.70",
}
CLOSING = (
    "What it takes to close the rest: the accuracy cells need the models trained on COCO 2017 for 300 "
    "epochs (`dvc exp run -S profile=paper` with COCO in place and GPUs; the paper trained on V100s), the "
    "FPS cells the paper's V100 with batch 1 and no TensorRT, and the ablation tables at full scale the same "
    "COCO training per variant (the default profile gives Tables 4-8 on width-1/8 proxies on a CPU, "
    "`dvc exp run -S profile=small` adds Table 3's variants and a longer schedule)."
)


def _setting_label(setting: Mapping[str, Any]) -> str:
    """A setting of the evaluation's Table 10 sweep in words: 'FP32, NMS IoU 0.65'."""
    return f"{str(setting['precision']).upper()}, NMS IoU {float(setting['iou']):.2f}"


def table10_reproductions(evaluation: Mapping[str, Any] | None) -> Reproductions:
    """Table 10's reproduced column from the evaluation's settings sweep (precision x NMS IoU). The
    scale names the evaluated model where it is not the rows' YOLOv7-X."""
    rep = Reproductions()
    if not evaluation:
        return rep
    base = str(evaluation.get("scale", "this kit"))
    model = evaluation.get("model")
    if model and model != paper.get_table(10).models[0].key:
        base = f"{model}, {base}"
    for setting in evaluation.get("table10", []):
        key = (str(setting["precision"]).lower(), round(float(setting["iou"]), 2))
        if key in TABLE10_ROWS and setting.get("ap") is not None:
            scale = f"{base}; {_setting_label(setting)}"
            value = 100.0 * float(setting["ap"])
            rep.add(10, TABLE10_ROWS[key], "ap_val", value, scale, "notebooks/04-evaluate.ipynb")
    return rep


def evaluation_reproductions(evaluation: Mapping[str, Any] | None) -> Reproductions:
    """The evaluated model's COCO AP (val) in its rows of the comparison Tables 1, 2 and 9, when it is a
    model of those tables at the evaluated input size; at the sweep's first setting (the run's `coco`)."""
    rep = Reproductions()
    if not evaluation or evaluation.get("model") not in paper.REGISTRY_NAMES or not evaluation.get("coco"):
        return rep
    img, coco = evaluation.get("img"), evaluation["coco"]
    scale = str(evaluation.get("scale", "this kit"))
    sweep = evaluation.get("table10") or []
    if sweep:
        scale += f"; {_setting_label(sweep[0])}"
    for r in paper.rows_for_model(evaluation["model"]):
        if r.table not in COMPARISON_TABLES or (img is not None and r.size not in (None, int(img))):
            continue
        for column, key in COCO_COLUMNS.items():
            if column in r.columns and coco.get(key) is not None:
                rep.add(r.table, r.id, column, 100.0 * float(coco[key]), scale, "notebooks/04-evaluate.ipynb")
    return rep


def collect(metrics_dir: str | Path) -> tuple[Reproductions, dict[str, Any]]:
    """Every reproduced cell, and the other measurements (keyed by file stem), found in `metrics_dir`."""
    metrics_dir = Path(metrics_dir)
    files = [metrics_dir / f for f in REPRODUCTION_FILES if (metrics_dir / f).is_file()]
    rep = Reproductions.from_json(*files) if files else Reproductions()
    measured: dict[str, Any] = {}
    for name in MEASUREMENT_FILES:
        path = metrics_dir / f"{name}.json"
        measured[name] = json.loads(path.read_text()) if path.is_file() else None
    runs = sorted((metrics_dir / "train").glob("*.json"))
    measured["train"] = {p.stem: json.loads(p.read_text()) for p in runs}
    for cell in [
        *table10_reproductions(measured["eval"]).values(),
        *evaluation_reproductions(measured["eval"]).values(),
    ]:
        rep.add(cell.table, cell.row, cell.column, cell.value, cell.scale, cell.source)
    return rep, measured


def table_summary(rep: Reproductions) -> list[list[object]]:
    """Per table: result cells, reproduced, agreeing at the paper's rounding, scales of the reproduced.

    Counted as the table pages count them (`tables.render_markdown`): a cell is reproduced when it has a
    reproduced value, measured or derived from measured ones."""
    lines = []
    for number in paper.TABLES:
        frame = compare_table(number, rep)
        done = frame[frame["reproduced"].notna()]
        agree = int((done["agrees"] == "yes").sum())
        scales = "; ".join(sorted(set(done["scale"]))) or "-"
        link = f"[Table {number}](tables/table{number}.md)"
        lines.append([link, paper.get_table(number).title, len(frame), len(done), agree, scales])
    return lines


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _data_section(data: Mapping[str, Any]) -> list[str]:
    t, v = data.get("train", {}), data.get("val", {})
    sizes = " / ".join(_f(v.get(k), 2) for k in ("small", "medium", "large"))
    return [
        f"**Data** ({data.get('kind')}): {t.get('images')} training and {v.get('images')} validation "
        f"images with {t.get('objects')} and {v.get('objects')} objects; share of small / medium / large "
        f"validation objects {sizes}.",
        "",
    ]


def _train_section(runs: Mapping[str, Any]) -> list[str]:
    header = ["run", "model", "scale", "mAP@.5", "mAP@.5:.95", "COCO AP", "minutes"]
    rows = []
    for name, r in runs.items():
        coco_ap = (r.get("coco") or {}).get("ap")
        minutes = r.get("train_time_s", 0) / 60
        rows.append([name, r.get("model"), r.get("scale"), _f(r.get("map50")), _f(r.get("map")), _f(coco_ap),
                     _f(minutes, 1)])  # fmt: skip
    note = "**Training runs** (the EMA model on the validation split; COCO AP by pycocotools):"
    return [note, "", markdown_table(header, rows), ""]


def _speed_section(speed: Mapping[str, Any]) -> list[str]:
    header = ["model", "backend", "batch", "img", "ms / image", "images / s", "GFLOP/s", "of peak"]
    keys = ("ms_per_image", "images_per_s", "gflops_per_s", "peak_fraction")
    rows = [[r.get("model"), r.get("backend"), r.get("batch"), r.get("img"), *(_f(r.get(k), 2) for k in keys)]
            for r in speed["rows"]]  # fmt: skip
    peak = _f(speed.get("peak_gflops"), 1)
    title = f"**Speed** on {speed.get('device')} (matrix-product peak {peak} GFLOP/s):"
    return [title, "", markdown_table(header, rows), ""]


def _reparam_section(reparam: Mapping[str, Any]) -> list[str]:
    header = ["model", "params training", "params deploy", "ms training", "ms deploy", "speed-up", "max diff"]
    rows = [[r.get("model"), r.get("params_training"), r.get("params_deploy"), _f(r.get("ms_training"), 1),
             _f(r.get("ms_deploy"), 1), _f(r.get("speedup"), 2), f"{r.get('max_rel_diff', float('nan')):.1e}"]
            for r in reparam.get("rows", [])]  # fmt: skip
    title = (f"**Re-parameterisation** (training graph vs `reparameterize`, {reparam.get('img')} px, "
             "batch 1; max diff: largest output difference relative to the largest output):")  # fmt: skip
    return [title, "", markdown_table(header, rows), ""]


def _flat(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {_f(v, 6)}" for k, v in d.items() if isinstance(v, int | float | str))


def measured_sections(measured: Mapping[str, Any]) -> list[str]:
    """The README's 'Measured here' part: data, training runs, evaluation, re-parameterisation, speed."""
    out: list[str] = ["## Measured here", ""]
    if measured.get("data"):
        out += _data_section(measured["data"])
    runs = {k: r for k, r in (measured.get("train") or {}).items() if not r.get("skipped")}
    if runs:
        out += _train_section(runs)
    if measured.get("eval"):
        ev = measured["eval"]
        coco = _flat(ev.get("coco") or {})
        out += [f"**Evaluation** of `{ev.get('model')}` ({ev.get('scale')}): {coco}", ""]
    if measured.get("reparam"):
        out += _reparam_section(measured["reparam"])
    if measured.get("speed") and measured["speed"].get("rows"):
        out += _speed_section(measured["speed"])
    if len(out) == 2:
        out += ["(no measurements yet)", ""]
    return out


def readme(
    rep: Reproductions,
    measured: Mapping[str, Any],
    profile: str,
    figures: list[str],
    other_figures: Sequence[str] = (),
) -> str:
    """reports/README.md: the index of tables, claims, measurements, figures and paper inconsistencies.
    `figures` are the paper's (``figure<N>.png``), `other_figures` this kit's own, as paths relative to
    the figures directory."""
    header = ["table", "what", "result cells", "reproduced", "agree at the paper's rounding", "scale"]
    out = [
        "# reports/: the YOLOv7 paper beside this kit's reproduction",
        "",
        f"Written by the `report` stage of the pipeline (`dvc repro`, profile `{profile}`); do not edit by "
        "hand. `tables/` holds every table of the paper as `.md` and `.csv`: the paper's value, the "
        "reproduced value, their difference, whether they agree at the paper's rounding and the scale at "
        "which the value was obtained. A cell that is not reproduced here says why and names the command "
        "that produces it. `tables/claims.md` checks the numbers quoted in the text.",
        "",
        "## Tables",
        "",
        markdown_table(header, table_summary(rep)),
        "",
        CLOSING,
        "",
        *measured_sections(measured),
        "## Figures",
        "",
        *([f"- [{Path(f).stem}](figures/{Path(f).name})" for f in figures] or ["(none yet)"]),
        "",
        *(
            ["This kit's own figures:", "", *[f"- [{f}](figures/{f})" for f in other_figures], ""]
            if other_figures
            else []
        ),
        "## Where the paper disagrees with itself or with the official code",
        "",
        *[f"- **{inc.where}** ({inc.kind}): {inc.explanation}" for inc in paper.KNOWN_INCONSISTENCIES],
        "",
    ]
    return "\n".join(out)


def build_report(
    metrics_dir: str | Path, tables_dir: str | Path, readme_out: str | Path, figures_dir: str | Path,
    profile: str,
) -> Reproductions:  # fmt: skip
    """Write Tables 1-10, the claims and the README; return the reproduced cells."""
    rep, measured = collect(metrics_dir)
    write_tables(rep, tables_dir)
    write_claims(rep, tables_dir)
    figures = sorted(Path(figures_dir).glob("figure*.png"), key=lambda p: int(p.stem[6:] or 0))
    others = sorted(
        p.relative_to(figures_dir).as_posix() for p in Path(figures_dir).rglob("*.png") if p not in figures
    )
    write_text_atomic(Path(readme_out), readme(rep, measured, profile, [str(f) for f in figures], others))
    return rep
