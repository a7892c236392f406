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
    _add_data_commands(commands)
    _add_train_command(commands)
    _add_pipeline_command(commands)
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


# -- yolov7 data ----------------------------------------------------------------------------------------


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="generate the default data set, check a data set")
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    synth = sub.add_parser("synth", help="write the generated default data set (YOLO + COCO formats)")
    synth.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    synth.add_argument("--train", type=int, default=2000, help="number of training images (default 2000)")
    synth.add_argument("--val", type=int, default=500, help="number of validation images (default 500)")
    synth.add_argument("--img-size", type=int, default=320, help="long image side in pixels (default 320)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, max 8)")
    synth.set_defaults(handler=_data_synth)

    check = sub.add_parser("check", help="scan a data.yaml: images, backgrounds, empty, corrupt, bad rows")
    check.add_argument("data", help="path to a data.yaml")
    check.set_defaults(handler=_data_check)


def _data_synth(args: argparse.Namespace) -> int:
    from yolov7lib.data.synth import synthesize

    try:
        path = synthesize(args.out, args.train, args.val, args.img_size, args.seed, workers=args.workers)
    except (FileExistsError, ValueError) as e:
        print(f"yolov7 data synth: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from yolov7lib.data.check import check_dataset, format_reports

    try:
        reports = check_dataset(args.data)
    except (FileNotFoundError, ValueError) as e:
        print(f"yolov7 data check: error: {e}", file=sys.stderr)
        return 1
    for line in format_reports(reports):
        print(line)
    usable = sum(r.usable for r in reports.values())
    if usable == 0:
        print("yolov7 data check: no usable image left", file=sys.stderr)
        return 1
    return 0


# -- yolov7 train ---------------------------------------------------------------------------------------


def _add_train_command(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train a model (one CPU, one GPU, or many under torchrun)",
        description="Train with the paper's recipe. Unset options take the defaults of "
        "yolov7lib.engine.trainer.TrainOptions (the kit's small model, CPU-friendly settings).",
    )
    add = train.add_argument
    add("--model", help="registry name (e.g. yolov7-tiny, yolov7) or cfg YAML path")
    add("--data", help="data.yaml (the reference's format; `yolov7 data synth` writes one)")
    add("--hyp", help="hyperparameters: p5, p6, tiny, custom or a YAML file")
    add("--epochs", type=int)
    add("--batch", type=int, help="total batch size over all processes")
    add("--img", type=int, help="training and validation image size (pixels)")
    add("--device", help="cpu, 0, or 0,1,... (several GPUs: run under torchrun)")
    add("--weights", help="initialise from a checkpoint (yolov7lib or official)")
    add("--resume", nargs="?", const="latest", help="continue a run folder (default: the latest run)")
    add("--project", help="parent folder of run folders (default runs/train)")
    add("--name", help="run folder name (made unique unless --exist-ok)")
    add("--exist-ok", action="store_true", default=None, help="reuse an existing run folder name")
    add("--seed", type=int)
    add("--deterministic", action="store_true", default=None, help="bit-reproducible CPU runs")
    add("--workers", type=int, help="data loader processes")
    add("--multi-scale", action="store_true", default=None, help="vary the image size +/- 50 %%")
    add("--sync-bn", action="store_true", default=None, help="synchronised BatchNorm across processes")
    add("--linear-lr", action="store_true", default=None, help="linear instead of cosine lr decay")
    add("--noval", action="store_true", default=None, help="skip validation after each epoch")
    add("--max-batches", type=int, help="batches per epoch at most (smoke runs)")
    add("--float64", action="store_true", default=None, help="double precision on CPU (verification)")
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    import logging
    from dataclasses import fields

    from yolov7lib.engine.trainer import TrainingDiverged, TrainOptions, latest_run, train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = {f.name for f in fields(TrainOptions)}
    options = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if options.get("resume") == "latest":
        options["resume"] = str(latest_run(options.get("project", TrainOptions.project)))
    try:
        train(**options)
    except (FileNotFoundError, ValueError, TrainingDiverged) as err:
        print(f"yolov7 train: error: {err}", file=sys.stderr)
        return 1
    return 0


# -- yolov7 pipeline ------------------------------------------------------------------------------------


def _add_pipeline_command(commands: argparse._SubParsersAction) -> None:
    pipe = commands.add_parser(
        "pipeline",
        help="run one stage of the DVC pipeline (its notebook, with the active profile's settings)",
        description="Used by dvc.yaml: resolves the active profile of params.yaml and runs the stage's "
        "notebook through papermill (items the profile does not run get a skip marker).",
    )
    pipe.add_argument("stage", help="tour, data, train, ablation, reparameterize, evaluate, speed, ...")
    pipe.add_argument("item", nargs="?", help="the model or ablation variant of a foreach stage")
    pipe.add_argument("--params", default="params.yaml", help="the parameters file (default params.yaml)")
    pipe.add_argument("--profile", help="override the profile chosen in the parameters file")
    pipe.set_defaults(handler=_pipeline)


def _pipeline(args: argparse.Namespace) -> int:
    from yolov7lib.pipeline import run_stage

    try:
        return run_stage(args.stage, args.item, params=args.params, profile=args.profile)
    except (KeyError, FileNotFoundError) as err:
        print(f"yolov7 pipeline: error: {err}", file=sys.stderr)
        return 2


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
