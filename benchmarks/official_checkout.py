"""A checkout of the official YOLOv7 code that the user names, for benchmarks/compare_official_*.py.

The official code is never part of this project: the comparison scripts import it from the folder given
with --official, after checking that it is one, or stop with a message saying what to clone.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from collections.abc import Sequence
from pathlib import Path

CLONE = "clone https://github.com/WongKinYiu/yolov7 and pass its folder"


def add_official_arguments(parser: argparse.ArgumentParser, interpreter: bool = True) -> None:
    """`--official` (the checkout's folder) and, for the scripts that run the official code in a
    subprocess (`interpreter`), `--official-python` (default: this interpreter)."""
    parser.add_argument(
        "--official", type=Path, required=True, help="folder of a checkout of WongKinYiu/yolov7"
    )
    if interpreter:
        parser.add_argument(
            "--official-python", default=sys.executable, help="interpreter for the official side"
        )


def check_checkout(root: Path, expected: Sequence[str]) -> Path:
    """`root` resolved, or SystemExit if any of the `expected` paths (files or folders) is missing."""
    root = Path(root).resolve()
    if not all((root / path).exists() for path in expected):
        raise SystemExit(
            f"{root} is not a checkout of the official YOLOv7 code (expected {', '.join(expected)}); {CLONE}"
        )
    return root


def import_official(root: Path, module: str, expected: Sequence[str]) -> types.ModuleType:
    """`module` (e.g. "utils.loss") imported from the checkout at `root`, or SystemExit saying why not.

    The official packages are called `utils` and `models`; they must not be imported already under
    those names, so each script imports them once, in a fresh process.
    """
    root = check_checkout(root, expected)
    clash = [m for m in ("utils", "models") if m in sys.modules]
    if clash:
        raise SystemExit(f"modules named {clash} are already imported; run the script in a fresh process")
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise SystemExit(
            f"the official {module.replace('.', '/')}.py does not import here ({err}); "
            "install the checkout's requirements.txt"
        ) from err
