"""Tables 3-8 from the ablation runs: each variant's COCO metrics averaged over seeds.

Every ablation run (`ablation@VARIANT-sSEED`, notebook 02) writes its final metrics to
`reports/metrics/ablations/VARIANT-sSEED.json` (`{"coco": {"ap", "ap50", ...}}`, fractions). This
module groups those runs by variant, takes the mean and the standard deviation over seeds, and turns
them into reproduced cells of the table rows that `params.yaml`'s `ablation_catalogue` assigns to the
variant (in percent, the paper's unit).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yolov7lib.report.reproduced import Reproductions

logger = logging.getLogger(__name__)

# paper column -> key of the COCO metrics a training run records
COCO_COLUMNS = {
    "ap_val": "ap",
    "ap50_val": "ap50",
    "ap75_val": "ap75",
    "aps_val": "ap_small",
    "apm_val": "ap_medium",
    "apl_val": "ap_large",
}


def _variant(name: str) -> tuple[str, int]:
    variant, sep, seed = name.rpartition("-s")
    if not sep or not seed.isdigit():
        raise ValueError(f"ablation run {name!r} is not named VARIANT-sSEED")
    return variant, int(seed)


def collect_runs(
    metrics_dir: str | Path, profile: str | None = None
) -> dict[str, dict[int, dict[str, float]]]:
    """variant -> seed -> COCO metrics of every finished (not skipped) run under `metrics_dir`.

    With `profile`, a run that another profile recorded (its `profile` field) is left out with a
    warning naming it: the committed runs of the default profile's proxies stay in reports/ until the
    active profile's own run of that item replaces them, and must not be averaged with, or reported at
    the scale of, the active profile's runs.
    """
    runs: dict[str, dict[int, dict[str, float]]] = {}
    others: list[str] = []
    for path in sorted(Path(metrics_dir).glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("skipped"):
            continue
        if profile is not None and record.get("profile", profile) != profile:
            others.append(f"{path.stem} ({record['profile']})")
            continue
        if "coco" not in record:
            raise ValueError(f"{path}: no COCO metrics (was the run evaluated with COCO annotations?)")
        variant, seed = _variant(path.stem)
        runs.setdefault(variant, {})[seed] = dict(record["coco"])
    if others:
        shown = ", ".join(others)
        logger.warning(
            "%s: %d runs of other profiles than %r left out: %s", metrics_dir, len(others), profile, shown
        )
    return runs


def summarise(runs: Mapping[str, Mapping[int, Mapping[str, float]]]) -> dict[str, dict[str, Any]]:
    """variant -> metric -> {"mean", "std" (None for one seed), "seeds"}, in percent."""
    out: dict[str, dict[str, Any]] = {}
    for variant, by_seed in runs.items():
        metrics: dict[str, Any] = {}
        for key in sorted({k for m in by_seed.values() for k in m}):
            values = [100.0 * m[key] for m in by_seed.values() if key in m and m[key] >= 0]
            if not values:
                continue
            std = statistics.stdev(values) if len(values) > 1 else None
            metrics[key] = {"mean": statistics.fmean(values), "std": std, "seeds": len(values)}
        out[variant] = metrics
    return out


def reproductions(
    summary: Mapping[str, Mapping[str, Any]],
    catalogue: Mapping[str, Mapping[str, Any]],
    scale: str,
    source: str = "notebooks/07-ablations.ipynb",
) -> Reproductions:
    """The reproduced cells of Tables 3-8: each summarised variant fills the rows its catalogue entry
    names, in every AP column those tables have."""
    from yolov7lib import paper

    rep = Reproductions()
    for variant, metrics in summary.items():
        if variant not in catalogue:
            raise KeyError(f"ablation variant {variant!r} has results but no ablation_catalogue entry")
        for table, row in catalogue[variant]["rows"]:
            columns = paper.get_table(int(table)).columns
            for column, key in COCO_COLUMNS.items():
                if column in columns and key in metrics:
                    m = metrics[key]
                    spread = m["std"] if m["std"] is not None and math.isfinite(m["std"]) else None
                    rep.add(int(table), row, column, m["mean"], scale, source, spread, m["seeds"])
    return rep
