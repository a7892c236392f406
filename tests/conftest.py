"""Fixtures shared by several test files."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch


@pytest.fixture
def code_running_checkpoint(tmp_path: Path) -> SimpleNamespace:
    """`payload`, an object whose unpickling runs `touch MARKER`; `path`, a torch.save archive
    {"model": payload}; `marker`, MARKER, which a loader that refuses the archive leaves absent."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    return SimpleNamespace(path=path, marker=marker, payload=Evil())
