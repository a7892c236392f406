"""Run folders (`runs/train/exp`, `runs/val/exp2`, ...): a new folder per run, never a user's reused."""

from __future__ import annotations

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
