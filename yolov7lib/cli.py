"""The `yolov7` command line.

Every subcommand is declared here (its arguments and a one-line help) and imports its
implementation lazily, so that `yolov7 --help` answers at once without loading torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from yolov7lib import __version__

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `yolov7` command with all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="yolov7",
        description="yolov7lib: replicate the YOLOv7 paper (models, data, training, evaluation, reports).",
    )
    parser.add_argument("--version", action="version", version=f"yolov7lib {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    return int(handler(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
