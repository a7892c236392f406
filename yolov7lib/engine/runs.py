"""Run folders (`runs/train/exp`, `runs/val/exp2`, ...): a new folder per run, never a user's reused;
and the per-epoch table a training run keeps in it (results.csv)."""

from __future__ import annotations

import csv
import re
from pathlib import Path


def increment_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """project/name, or, if it exists, project/name<N> with N one above the highest number in use (at least
    2), as the reference's increment_path: never a user's folder, and the newest run has the highest N."""
    path = Path(project) / name
    if exist_ok or not path.exists():
        return path
    numbered = re.compile(rf"{re.escape(path.name)}(\d+)")
    used = [int(m.group(1)) for p in path.parent.iterdir() if (m := numbered.fullmatch(p.name))]
    return path.with_name(f"{path.name}{max(used, default=1) + 1}")


def create_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """Make the folder `increment_run_dir` names and return it. Without `exist_ok` the folder is new: a
    name another run took in the meantime moves this one to the next number, so two runs started
    together never write into one folder."""
    while True:
        path = increment_run_dir(project, name, exist_ok)
        try:
            path.mkdir(parents=True, exist_ok=exist_ok)
            return path
        except FileExistsError:
            if exist_ok:  # a file where the folder should be: nothing to retry
                raise


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
