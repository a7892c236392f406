"""Ablation aggregation: seeds averaged by hand, cells routed to the catalogue's table rows."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from yolov7lib.report.ablations import collect_runs, reproductions, summarise

CATALOGUE = {
    "t6-base": {"rows": [[6, "base-v7-e6"], [7, "base-v7-e6"]]},
    "t4-fig6a": {"rows": [[4, "figure-6-a"]]},
}


def _write(folder, name, coco=None, skipped=False) -> None:
    record = {"skipped": True} if skipped else {"name": name, "coco": coco}
    (folder / f"{name}.json").write_text(json.dumps(record))


def test_seeds_are_averaged_and_routed_to_every_row(tmp_path) -> None:
    m0 = {"ap": 0.10, "ap50": 0.30, "ap75": 0.05, "ap_small": 0.01, "ap_medium": 0.2, "ap_large": 0.4}
    m1 = {"ap": 0.14, "ap50": 0.34, "ap75": 0.09, "ap_small": -1.0, "ap_medium": 0.3, "ap_large": 0.5}
    _write(tmp_path, "t6-base-s0", m0)
    _write(tmp_path, "t6-base-s1", m1)
    _write(tmp_path, "t4-fig6a-s0", m0)
    _write(tmp_path, "t4-fig6b-s0", skipped=True)
    runs = collect_runs(tmp_path)
    assert set(runs) == {"t6-base", "t4-fig6a"} and set(runs["t6-base"]) == {0, 1}

    summary = summarise(runs)
    ap = summary["t6-base"]["ap"]
    assert ap["mean"] == pytest.approx(12.0) and ap["seeds"] == 2
    assert ap["std"] == pytest.approx(statistics.stdev([10.0, 14.0]))
    assert summary["t6-base"]["ap_small"]["seeds"] == 1  # -1 (undefined) is not averaged in
    assert summary["t4-fig6a"]["ap"]["std"] is None

    rep = reproductions(summary, CATALOGUE, scale="test scale")
    assert rep[(6, "base-v7-e6", "ap_val")].value == pytest.approx(12.0)
    assert rep[(7, "base-v7-e6", "ap75_val")].value == pytest.approx(7.0)
    assert rep[(6, "base-v7-e6", "ap_val")].seeds == 2
    assert (6, "base-v7-e6", "aps_val") not in rep  # Table 6 has no AP_S column
    assert rep[(4, "figure-6-a", "aps_val")].value == pytest.approx(1.0)  # Table 4 has
    assert rep[(4, "figure-6-a", "ap_val")].spread is None


def test_results_without_a_catalogue_entry_or_coco_metrics_are_errors(tmp_path) -> None:
    _write(tmp_path, "t9-unknown-s0", {"ap": 0.1})
    with pytest.raises(KeyError, match="no ablation_catalogue entry"):
        reproductions(summarise(collect_runs(tmp_path)), CATALOGUE, scale="x")
    (tmp_path / "t6-base-s0.json").write_text(json.dumps({"name": "t6-base-s0"}))
    with pytest.raises(ValueError, match="no COCO metrics"):
        collect_runs(tmp_path)


def _write_run(folder: Path, name: str, ap: float) -> None:
    coco = {"ap": ap, "ap50": ap, "ap75": ap, "ap_small": ap, "ap_medium": ap, "ap_large": ap}
    (folder / f"{name}.json").write_text(json.dumps({"name": name, "coco": coco}))


def test_ablation_mean_and_spread_over_three_seeds(tmp_path: Path) -> None:
    """The mean (not the median) over seeds, the sample standard deviation as the cell's spread, and an
    AP of exactly 0 (defined, unlike -1) counted as a seed."""
    for seed, ap in enumerate((0.0, 0.11, 0.31)):
        _write_run(tmp_path, f"t6-base-s{seed}", ap)
    summary = summarise(collect_runs(tmp_path))
    values = [0.0, 11.0, 31.0]
    ap = summary["t6-base"]["ap"]
    assert ap["seeds"] == 3
    assert ap["mean"] == pytest.approx(sum(values) / 3)
    assert ap["std"] == pytest.approx(statistics.stdev(values))
    rep = reproductions(summary, {"t6-base": {"rows": [[6, "base-v7-e6"]]}}, scale="test scale")
    cell = rep[(6, "base-v7-e6", "ap_val")]
    assert cell.value == pytest.approx(14.0) and cell.seeds == 3
    assert cell.spread == pytest.approx(statistics.stdev(values))


def test_ablation_variant_names_may_contain_dash_s(tmp_path: Path) -> None:
    """The seed is what follows the last '-s': 'w6-small-s1' is variant 'w6-small', seed 1."""
    _write_run(tmp_path, "t5-w6-small-s1", 0.2)
    _write_run(tmp_path, "t5-w6-small-s12", 0.4)
    runs = collect_runs(tmp_path)
    assert set(runs) == {"t5-w6-small"} and set(runs["t5-w6-small"]) == {1, 12}


def test_runs_of_another_profile_are_left_out(tmp_path, caplog) -> None:
    """reports/metrics/ablations holds the default profile's committed proxy runs: once the paper
    profile has run some items, the others must not be averaged in or reported at the paper's scale."""
    m = {"ap": 0.10, "ap50": 0.30}
    for name, profile in [("t6-base-s0", "paper"), ("t6-base-s1", "default"), ("t4-fig6a-s0", "default")]:
        (tmp_path / f"{name}.json").write_text(json.dumps({"profile": profile, "coco": m}))
    with caplog.at_level("WARNING"):
        runs = collect_runs(tmp_path, profile="paper")
    assert runs == {"t6-base": {0: m}}
    assert "t6-base-s1 (default)" in caplog.text and "t4-fig6a-s0 (default)" in caplog.text
    assert set(collect_runs(tmp_path)) == {"t6-base", "t4-fig6a"}  # without a profile: every run
