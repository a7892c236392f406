"""Packaged configuration: training hyperparameter files (`--hyp p5|p6|tiny|custom|cpu`).

p5, p6, tiny and custom are the reference's files; cpu is the kit's CPU default (hyp.cpu.yaml).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

HYP_NAMES = ("p5", "p6", "tiny", "custom", "cpu")
REFERENCE_HYPS = ("p5", "p6", "tiny", "custom")
TEXT_KEYS = ("optimizer", "aux_assign")  # the hyperparameters whose values are words, not numbers
_REFERENCE_FILE = resources.files(__package__).joinpath("hyp.scratch.p5.yaml")  # sets every reference key


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ValueError(f"{origin}: not valid YAML ({problem}{where})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: expected a mapping of hyperparameters, got {type(data).__name__}")
    return data


@functools.cache
def _reference_keys() -> tuple[str, ...]:
    """The keys every reference hyp file sets, in its order (read once from hyp.scratch.p5.yaml)."""
    return tuple(_read_yaml(_REFERENCE_FILE.read_text(), _REFERENCE_FILE.name))


def _check_hyp(hyp: dict[str, Any], origin: str) -> None:
    """A hyperparameter file must set every key of the reference's files, each to a number (the packaged
    defaults only add the kit's keys; a missing key would otherwise fail deep inside training)."""
    missing = [k for k in _reference_keys() if k not in hyp]
    if missing:
        raise ValueError(
            f"{origin}: missing hyperparameter(s) {', '.join(missing)}; start from a copy of a complete file "
            f"such as {_REFERENCE_FILE}"
        )
    for key, value in hyp.items():
        if key in TEXT_KEYS:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{origin}: hyperparameter {key} must be a number, got {value!r}")


def _check_known(chosen: dict[str, Any], known: set[str], origin: str) -> None:
    """Every key of a hyperparameter file must be one the kit reads: a misspelt one (`label_smothing`)
    would leave the value it meant to set at its default without a word."""
    unknown = sorted(set(chosen) - known)
    if not unknown:
        return
    message = f"{origin}: unknown hyperparameter(s) {', '.join(unknown)}"
    if "anchors" in unknown:  # the reference's hyp files carry it commented out (autoanchor's count)
        message += (
            " (anchors come from the model's cfg and are never recomputed here, as with the reference's "
            "--noautoanchor: give other anchors in a cfg YAML with --model)"
        )
    raise ValueError(f"{message}; the known ones are those of {_REFERENCE_FILE.name} and hyp.defaults.yaml")


def check_hyp_keys(hyp: Mapping[str, Any], origin: str) -> None:
    """Refuse a hyperparameter dict with a key the kit does not read (ValueError naming it), as a hyp file
    is refused: `origin` names the dict in the message."""
    defaults = _read_yaml(resources.files(__package__).joinpath("hyp.defaults.yaml").read_text(), "defaults")
    _check_known(dict(hyp), {*defaults, *_reference_keys()}, origin)


def load_hyp(name_or_path: str | Path | dict[str, Any] = "p5") -> dict[str, Any]:
    """Return the hyperparameters of a packaged profile (p5, p6, tiny, custom, cpu), a YAML file or a dict.

    The packaged defaults (hyp.defaults.yaml) fill keys that the chosen source does not set, so the
    reference implementation's hyp files load unchanged. A YAML file must set every key the reference's
    files set, each to a number, and no key the kit does not read (ValueError naming the key otherwise);
    a dict is taken as it is.
    """
    pkg = resources.files(__package__)
    hyp = _read_yaml(pkg.joinpath("hyp.defaults.yaml").read_text(), "hyp.defaults.yaml")
    if isinstance(name_or_path, dict):
        chosen, origin = dict(name_or_path), "<dict>"
    elif str(name_or_path) in HYP_NAMES:
        scratch = "scratch." if str(name_or_path) in REFERENCE_HYPS else ""  # the reference's file names
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
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:  # a checkpoint or an image given for --hyp
            raise ValueError(
                f"{origin}: not a UTF-8 text file, so not a hyperparameter YAML "
                f"({err.reason} at byte {err.start})"
            ) from err
        chosen = _read_yaml(text, origin)
        check_hyp_keys(chosen, origin)
        _check_hyp({**hyp, **chosen}, origin)  # packaged profiles are complete (tests check them)
    hyp.update(chosen)
    return hyp
