"""Packaged configuration: training hyperparameter files (`--hyp p5|p6|tiny|custom|cpu`).

p5, p6, tiny and custom are the reference's files; cpu is the kit's CPU default (hyp.cpu.yaml).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

HYP_NAMES = ("p5", "p6", "tiny", "custom", "cpu")
REFERENCE_HYPS = ("p5", "p6", "tiny", "custom")


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: expected a mapping of hyperparameters, got {type(data).__name__}")
    return data


def load_hyp(name_or_path: str | Path | dict[str, Any] = "p5") -> dict[str, Any]:
    """Return the hyperparameters of a packaged profile (p5, p6, tiny, custom, cpu), a YAML file or a dict.

    The packaged defaults (hyp.defaults.yaml) fill keys that the chosen source does not set, so the
    reference implementation's hyp files load unchanged.
    """
    pkg = resources.files(__package__)
    hyp = _read_yaml(pkg.joinpath("hyp.defaults.yaml").read_text(), "hyp.defaults.yaml")
    if isinstance(name_or_path, dict):
        chosen, origin = dict(name_or_path), "<dict>"
    elif str(name_or_path) in HYP_NAMES:
        scratch = "scratch." if name_or_path in REFERENCE_HYPS else ""  # the reference's file names
        origin = f"hyp.{scratch}{name_or_path}.yaml"
        chosen = _read_yaml(pkg.joinpath(origin).read_text(), origin)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"hyperparameter file {str(path)!r} not found; "
                f"use one of {', '.join(HYP_NAMES)} or a YAML path"
            )
        origin = str(path)
        chosen = _read_yaml(path.read_text(), origin)
    hyp.update(chosen)
    return hyp
