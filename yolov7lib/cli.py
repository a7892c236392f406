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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = commands.add_parser("info", help="parameters and GFLOPs of a model (training and deploy graphs)")
    info.add_argument("--model", required=True, help="registry name (e.g. yolov7) or cfg YAML path")
    info.add_argument("--img", type=int, default=None, help="square input size (default: 640, 1280 for P6)")
    info.add_argument("--nc", type=int, default=None, help="number of classes (default: 80 / the cfg's)")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(handler=_info)
    return parser


def _info(args: argparse.Namespace) -> int:
    import json

    from yolov7lib.models.info import describe_model, format_description

    try:
        result = describe_model(args.model, img_size=args.img, nc=args.nc)
    except (ValueError, FileNotFoundError) as err:
        print(f"yolov7 info: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_description(result))
    return 0


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
