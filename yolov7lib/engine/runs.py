"""Run folders (`runs/train/exp`, `runs/val/exp2`, ...): a new folder per run, never a user's reused;
and the per-epoch table a training run keeps in it (results.csv)."""

from __future__ import annotations

import csv
from pathlib import Path


def increment_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """project/name, or project/name2, name3, ... if it already exists (never reuse a user's folder)."""
    project = Path(project)
    path = project / name
    if exist_ok or not path.exists():
        return path
    n = 2
    while (project / f"{name}{n}").exists():
        n += 1
    return project / f"{name}{n}"


def free_path(path: Path) -> Path:
    """`path`, or `stem_2.suffix`, `stem_3.suffix`, ... if taken: a run never overwrites a file."""
    n, candidate = 2, path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        n += 1
    return candidate


def read_results(path: str | Path) -> list[dict[str, str]]:
    """The rows of a run's results.csv (one per epoch, as written by the trainer), values as text."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))
