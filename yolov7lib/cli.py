"""The `yolov7` command line.

Every subcommand is declared here (its arguments and a one-line help) and imports its
implementation lazily, so that `yolov7 --help` answers at once without loading torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from yolov7lib import __version__

Handler = Callable[[argparse.Namespace], int]


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type of sizes and counts: a whole number above 0."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type of counts that may be 0 (warm-up runs; workers and batch limits, where 0 means none)."""
    return _whole_number(text, 0)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def unit_interval(text: str) -> float:
    """argparse type of thresholds: a number from 0 to 1."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type of durations: a finite number above 0."""
    value = _number(text)
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `yolov7` command with all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="yolov7",
        description="yolov7lib: replicate the YOLOv7 paper (models, data, training, evaluation, reports).",
    )
    parser.add_argument("--version", action="version", version=f"yolov7lib {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = commands.add_parser("info", help="parameters and GFLOPs of a model (training and deploy graphs)")
    which = info.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="registry name (e.g. yolov7) or cfg YAML path")
    which.add_argument(
        "--weights", help="a checkpoint (yolov7lib or official .pt): the architecture it holds"
    )
    info.add_argument(
        "--img", type=positive_int, default=None, help="square input size (default: 640, 1280 for P6)"
    )
    info.add_argument("--nc", type=int, default=None, help="number of classes (default: 80 / the cfg's)")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(handler=_info)
    _add_data_commands(commands)
    _add_train_command(commands)
    _add_pipeline_command(commands)
    _add_val_command(commands)
    _add_detect_command(commands)
    _add_export_command(commands)
    _add_bench_command(commands)
    return parser


def _info(args: argparse.Namespace) -> int:
    import json

    from yolov7lib.models.info import describe_model, format_description

    try:
        source = args.model if args.weights is None else _weights_architecture(args.weights, args.nc)
        result = describe_model(source, img_size=args.img, nc=args.nc)
    except _model_errors() as err:
        print(f"yolov7 info: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_description(result))
    return 0


def _weights_architecture(weights: str, nc: int | None) -> dict:
    """The architecture spec a checkpoint holds (an official one: its own yaml), named after the file."""
    from pathlib import Path

    from yolov7lib.engine.weights import checkpoint_architecture, read_weights

    if nc is not None:
        raise ValueError("--nc is for --model; a checkpoint's class count is its own")
    cfg = checkpoint_architecture(read_weights(weights)[0], weights)
    return {**cfg, "name": cfg.get("name") or Path(weights).name}


# -- yolov7 data ----------------------------------------------------------------------------------------


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="generate the default data set, check a data set")
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    synth = sub.add_parser("synth", help="write the generated default data set (YOLO + COCO formats)")
    synth.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    synth.add_argument("--train", type=int, default=2000, help="number of training images (default 2000)")
    synth.add_argument("--val", type=int, default=500, help="number of validation images (default 500)")
    synth.add_argument("--img-size", type=int, default=320, help="long image side in pixels (default 320)")
    synth.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed (default 0); same seed, same bytes on one CPU model (see README on others)",
    )
    synth.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, max 8)")
    synth.set_defaults(handler=_data_synth)

    check = sub.add_parser("check", help="scan a data.yaml: images, backgrounds, empty, corrupt, bad rows")
    check.add_argument("data", help="path to a data.yaml")
    check.set_defaults(handler=_data_check)


def _data_synth(args: argparse.Namespace) -> int:
    from yolov7lib.data.synth import synthesize

    try:
        path = synthesize(args.out, args.train, args.val, args.img_size, args.seed, workers=args.workers)
    except (OSError, ValueError) as e:  # an --out in the way or not writable
        print(f"yolov7 data synth: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from yolov7lib.data.check import check_dataset, format_orphans, format_reports, orphan_label_files

    scan_log = logging.getLogger("yolov7lib.data")
    level = scan_log.level
    scan_log.setLevel(logging.ERROR)  # the report printed below says it all; the scan's log would repeat it
    try:
        reports = check_dataset(args.data, progress=True)  # a bar per split: COCO's train scan takes minutes
        orphans = orphan_label_files(args.data)
    except (FileNotFoundError, ValueError) as e:
        print(f"yolov7 data check: error: {e}", file=sys.stderr)
        return 1
    finally:
        scan_log.setLevel(level)
    for line in format_reports(reports) + format_orphans(orphans):
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
    add("--model", help="registry name (e.g. yolov7-tiny, yolov7) or cfg YAML path (default: the "
        "architecture of --weights, else yolov7-tiny-cpu)")  # fmt: skip
    add("--data", help="data.yaml (the reference's format; `yolov7 data synth` writes one)")
    add("--hyp", help="hyperparameters: cpu (the default), p5, p6, tiny, custom (the official "
        "fine-tuning recipe) or a YAML file")  # fmt: skip
    add("--epochs", type=positive_int)
    add("--batch", type=positive_int, help="total batch size over all processes")
    add("--img", type=positive_int, help="training and validation image size (pixels)")
    add("--device", help="cpu, 0, or 0,1,... (several GPUs: run under torchrun)")
    add("--weights", help="initialise from a checkpoint (yolov7lib or official): every tensor whose name and "
        "shape match; without --model its own architecture is trained")  # fmt: skip
    add("--resume", nargs="?", const="latest",
        help="continue a run folder or its weights/last.pt (default: the latest run)")  # fmt: skip
    add("--project", help="parent folder of run folders (default runs/train)")
    add("--name", help="run folder name (made unique unless --exist-ok)")
    add("--exist-ok", action="store_true", default=None, help="reuse an existing run folder name")
    add("--seed", type=int)
    add("--deterministic", action="store_true", default=None, help="bit-reproducible CPU runs")
    add("--workers", type=non_negative_int, help="data loader processes")
    add("--multi-scale", action="store_true", default=None, help="vary the image size +/- 50 %%")
    add("--sync-bn", action="store_true", default=None, help="synchronised BatchNorm across processes")
    add("--dist-timeout", type=positive_float, metavar="MINUTES",
        help="under torchrun: how long processes wait for each other, e.g. while rank 0 validates "
        "(default 30)")  # fmt: skip
    add("--linear-lr", action="store_true", default=None, help="linear instead of cosine lr decay")
    add("--noval", action="store_true", default=None, help="skip validation after each epoch")
    add("--val-final-only", action="store_true", default=None, help="validate after the last epoch only")
    add("--max-batches", type=non_negative_int, help="batches per epoch at most (smoke runs; 0: all)")
    add("--float64", action="store_true", default=None, help="double precision on CPU (verification)")
    add("--freeze", type=non_negative_int, nargs="+", metavar="N",
        help="layers to leave untrained, by the official cfg's layer index: one number N, the first N "
        "(yolov7's backbone: 50); several, exactly those (0 1 2); default none")  # fmt: skip
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from yolov7lib.engine.checkpoint import CheckpointError
    from yolov7lib.engine.distributed import DeviceError
    from yolov7lib.engine.trainer import (
        TrainingDiverged,
        TrainingInterrupted,
        TrainOptions,
        latest_run,
        train,
    )
    from yolov7lib.models.official import UnsafeCheckpointError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = {f.name for f in fields(TrainOptions)}
    options = {k: v for k, v in vars(args).items() if k in names and v is not None}
    try:
        if options.get("resume") == "latest":
            options["resume"] = str(latest_run(options.get("project", TrainOptions.project)))
        train(**options)
    except (OSError, ValueError, TrainingDiverged, CheckpointError, UnsafeCheckpointError,
            DeviceError) as err:  # fmt: skip
        print(f"yolov7 train: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        if not isinstance(err, TrainingInterrupted):  # before the epochs began
            said = "a run keeps weights/last.pt of its last finished epoch, if any: continue with "
            said += "`yolov7 train --resume RUN_FOLDER`"
        elif err.resumable:
            said = f"{err.run_dir / 'weights' / 'last.pt'} holds its last finished epoch: continue with "
            said += f"`yolov7 train --resume {err.run_dir}`"
        else:
            said = f"{err.run_dir} has no finished epoch to resume"
        print(f"\nyolov7 train: interrupted; {said}", file=sys.stderr)
        return 130
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
        message = err.args[0] if isinstance(err, KeyError) and err.args else err  # no KeyError quotes
        print(f"yolov7 pipeline: error: {message}", file=sys.stderr)
        return 2


# -- yolov7 val / detect / export / bench: shared model arguments ---------------------------------------


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="checkpoint: yolov7lib (EMA weights preferred) or official .pt")
    parser.add_argument("--model", help="registry name or cfg YAML (alone: initial random weights)")


def _model_errors() -> tuple[type[BaseException], ...]:
    from yolov7lib.engine.checkpoint import CheckpointError
    from yolov7lib.models.official import UnsafeCheckpointError

    return (
        OSError,  # a missing input, an output in the way, a folder that cannot be written, a full disk
        ValueError,
        CheckpointError,
        UnsafeCheckpointError,
        RuntimeError,
    )


def _fail(command: str, err: BaseException) -> int:
    print(f"yolov7 {command}: error: {err}", file=sys.stderr)
    return 1


def _needs_model(command: str, args: argparse.Namespace) -> int | None:
    if not (args.weights or args.model):
        print(f"yolov7 {command}: error: give --weights or --model", file=sys.stderr)
        return 2
    return None


# -- yolov7 val -----------------------------------------------------------------------------------------


def _add_val_command(commands: argparse._SubParsersAction) -> None:
    val = commands.add_parser(
        "val",
        help="evaluate on a labelled split: P, R, mAP and pycocotools AP (Tables 1, 2, 9, 10)",
        description="The reference's test protocol: rectangular letterboxed batches, NMS at --conf/--iou, "
        "direct P/R/mAP and, with COCO annotations, pycocotools. Writes metrics.json (and "
        "predictions.json) in a new run folder.",
    )
    _add_model_arguments(val)
    add = val.add_argument
    add("--data", required=True, help="data.yaml")
    add("--img", type=positive_int, default=640, help="inference size (long side, pixels; default 640)")
    add("--batch", type=positive_int, default=32,
        help="batch size (default 32, test.py's); each batch is padded to the shape of its images' aspect "
        "ratios, so the scores change slightly with it, as in test.py")  # fmt: skip
    add("--conf", type=unit_interval, default=0.001, help="confidence threshold (default 0.001)")
    add("--iou", type=unit_interval, default=0.65, help="NMS IoU threshold (default 0.65; Table 10: 0.70)")
    add("--half", action="store_true", help="FP16 inference (CUDA only; Table 10)")
    add("--task", choices=["train", "val", "test"], default="val", help="which split (default val)")
    add("--reparameterize", action=argparse.BooleanOptionalAction, default=True,
        help="evaluate the fused deploy graph (default) or the training graph as it is")  # fmt: skip
    add(
        "--save-json",
        action="store_true",
        help="write predictions.json (always written when the data set has COCO annotations)",
    )
    add("--v5-metric", action="store_true",
        help="AP integrated up to recall 1, as YOLOv5 (the reference's test.py --v5-metric); default: up to "
        "the last recall + 0.01, the reference's default")  # fmt: skip
    add("--augment", action="store_true",
        help="test-time augmentation, as the reference's test.py --augment: scales 1, 0.83 (flipped "
        "left-right) and 0.67, one NMS over all three")  # fmt: skip
    add("--json", action="store_true", help="print the metrics as JSON instead of a table")
    add("--device", default="cpu", help="cpu or a CUDA index (default cpu)")
    add("--workers", type=non_negative_int, default=0, help="data loader processes (default 0)")
    add("--project", default="runs/val", help="parent of run folders (default runs/val)")
    add("--name", default="exp", help="run folder name (made unique unless --exist-ok)")
    add("--exist-ok", action="store_true", help="reuse an existing run folder")
    val.set_defaults(handler=_val)


def _val(args: argparse.Namespace) -> int:
    import json

    if (code := _needs_model("val", args)) is not None:
        return code
    from yolov7lib.engine.val import format_result, options_from_namespace, run_val

    try:
        _, record = run_val(options_from_namespace({**vars(args), "progress": not args.json}))
    except _model_errors() as err:
        return _fail("val", err)
    print(json.dumps(record, indent=2) if args.json else format_result(record))
    return 0


# -- yolov7 detect --------------------------------------------------------------------------------------


def _add_detect_command(commands: argparse._SubParsersAction) -> None:
    detect = commands.add_parser(
        "detect",
        help="detect objects in images, folders, globs or videos; annotated copies, txt and json",
    )
    _add_model_arguments(detect)
    add = detect.add_argument
    add("--source", required=True,
        help="an image, a video, a folder or a glob (quote it); no webcams or URLs")  # fmt: skip
    add("--img", type=positive_int, default=640, help="inference size (long side, pixels; default 640)")
    add("--conf", type=unit_interval, default=0.25, help="confidence threshold (default 0.25)")
    add("--iou", type=unit_interval, default=0.45, help="NMS IoU threshold (default 0.45)")
    add("--classes", type=int, nargs="+", help="keep only these class indices")
    add("--agnostic-nms", dest="agnostic", action="store_true", help="NMS across classes")
    add("--max-det", type=positive_int, default=300, help="detections per image at most (default 300)")
    add("--device", default="cpu", help="cpu or a CUDA index (default cpu)")
    add("--project", default="runs/detect", help="parent of run folders (default runs/detect)")
    add("--name", default="exp", help="run folder name (made unique unless --exist-ok)")
    add("--exist-ok", action="store_true", help="reuse an existing run folder (files are never overwritten)")
    add("--save-txt", action="store_true",
        help="write labels/<stem>.txt (YOLO rows, normalised; video frame n: <stem>_<n>.txt)")  # fmt: skip
    add("--save-conf", action="store_true", help="add the confidence to the txt rows")
    add("--save-json", action="store_true", help="write predictions.json")
    add("--nosave", action="store_true", help="do not write annotated images or videos")
    add("--json", action="store_true", help="print the report as JSON")
    detect.set_defaults(handler=_detect)


def _detect(args: argparse.Namespace) -> int:
    import json
    from dataclasses import fields

    if (code := _needs_model("detect", args)) is not None:
        return code
    from yolov7lib.engine.detect import DetectInterrupted, DetectOptions, format_report, run_detect

    known = {f.name for f in fields(DetectOptions)}
    options = DetectOptions(**{k: v for k, v in vars(args).items() if k in known and v is not None})
    options.progress = not args.json
    try:
        report = run_detect(options)
    except _model_errors() as err:
        return _fail("detect", err)
    except DetectInterrupted as stop:
        print(f"\nyolov7 detect: interrupted; the inputs finished so far:\n{format_report(stop.report)}",
              file=sys.stderr)  # fmt: skip
        return 130
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


# -- yolov7 export --------------------------------------------------------------------------------------


def _add_export_command(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="export the re-parameterized model to ONNX (optionally with NMS) and check it in onnxruntime",
    )
    _add_model_arguments(export)
    add = export.add_argument
    add("--format", choices=["onnx"], default="onnx", help="export format (default onnx)")
    add("--out", help="output file (default: the weights path, or the model name, with .onnx)")
    add("--img", type=positive_int, nargs="+", default=[640], metavar="SIDE",
        help="input size: one side, or height and width (default 640)")  # fmt: skip
    add("--batch", type=positive_int, default=1, help="batch size of the exported input (default 1)")
    add("--dynamic", action="store_true", help="free batch, height and width")
    add("--end2end", action="store_true", help="NMS in the graph: num_dets, boxes, scores, classes")
    add("--opset", type=int, default=17, help="ONNX opset (17 up to what torch exports; default 17)")
    add("--conf", type=unit_interval, default=0.25, help="--end2end confidence threshold (default 0.25)")
    add("--iou", type=unit_interval, default=0.45, help="--end2end NMS IoU threshold (default 0.45)")
    add("--max-det", type=positive_int, default=100, help="--end2end detections per image (default 100)")
    add("--json", action="store_true", help="print the report as JSON")
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    if (code := _needs_model("export", args)) is not None:
        return code
    if len(args.img) > 2:
        print("yolov7 export: error: --img takes one side, or height and width", file=sys.stderr)
        return 2
    from yolov7lib.deploy import export_and_verify
    from yolov7lib.engine.weights import load_model

    suffix = "-end2end.onnx" if args.end2end else ".onnx"
    out = Path(args.out) if args.out else Path(args.weights or Path(args.model).name).with_suffix("")
    out = out if args.out else out.with_name(out.name + suffix)
    try:
        if out.exists():
            raise FileExistsError(f"{out} exists; not overwriting it (choose another --out)")
        model = load_model(args.weights, args.model)
        report = export_and_verify(
            model, out, (args.img * 2)[:2], args.batch, args.dynamic, args.end2end, args.opset,
            args.conf, args.iou, args.max_det,
        )  # fmt: skip
    except _model_errors() as err:
        return _fail("export", err)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"wrote {report['path']} ({report['size_mb']:.1f} MB)")
    for c in report["checks"]:
        shape = f"batch {c['batch']}, {c['height']}x{c['width']}"
        if c.get("same_detections") is False:
            print(f"  onnxruntime vs PyTorch ({shape}): the detections differ (counts or classes)")
            continue
        if c.get("detections") == 0:
            print(f"  onnxruntime vs PyTorch ({shape}): both find no box above --conf {args.conf} in the "
                  "probe images; no box or score was compared")  # fmt: skip
            continue
        if "detections" in c:
            shape += f", {c['detections']} detections"
        print(
            f"  onnxruntime vs PyTorch ({shape}): max abs diff scores {c['scores_max_abs_diff']:.2e}, "
            f"boxes {c['boxes_max_abs_diff_px']:.2e} px (relative {c['boxes_max_rel_diff']:.2e})"
        )
    return 0


# -- yolov7 bench ---------------------------------------------------------------------------------------


def _add_bench_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench",
        help="inference speed as Table 9 measures it, per backend, with GFLOP/s and matmul-peak fraction",
    )
    _add_model_arguments(bench)
    add = bench.add_argument
    add("--img", type=positive_int, default=640, help="square input size (default 640)")
    add("--batch", type=positive_int, nargs="+", default=[1, 32], help="batch sizes (default 1 32)")
    add("--device", default="cpu", help="cpu or a CUDA index (default cpu)")
    add("--backend", default="eager,onnxruntime", help="comma list of eager, compile, onnxruntime")
    add("--half", action="store_true", help="FP16 (CUDA only)")
    add("--runs", type=positive_int, default=10, help="timed runs; the median is reported (default 10)")
    add("--warmup", type=non_negative_int, default=3, help="untimed warm-up runs (default 3)")
    add("--threads", type=positive_int, help="torch and onnxruntime threads (default: torch's)")
    add("--json", action="store_true", help="print a JSON list of rows")
    bench.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    import json

    if (code := _needs_model("bench", args)) is not None:
        return code
    from yolov7lib.engine.bench import format_rows, run_bench

    if args.half and args.device == "cpu":
        print("yolov7 bench: --half needs CUDA; measuring float32 on the CPU", file=sys.stderr)
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    try:
        rows = run_bench(
            args.model, args.weights, args.img, args.batch, backends, args.device, args.half,
            args.runs, args.warmup, args.threads, progress=not args.json,
        )  # fmt: skip
    except _model_errors() as err:
        return _fail("bench", err)
    print(json.dumps([r.as_dict() for r in rows], indent=2) if args.json else format_rows(rows))
    return 0


_NO_TRACE = "not needed: nothing is traced here"
_SIZES = {"--img-size": "use --img", "--batch-size": "use --batch"}
_THRESHOLDS = {"--conf-thres": "use --conf", "--iou-thres": "use --iou"}
OFFICIAL_FLAGS: dict[str, dict[str, str]] = {
    "train": {
        **_SIZES,
        "--img-size": "use --img (one size, for training and validation)",
        "--cfg": "use --model (a registry name or a cfg YAML)",
        "--notest": "use --val-final-only",
        "--adam": "set `optimizer: adam` in a --hyp YAML (hyp cpu, the default, uses Adam)",
        "--label-smoothing": "set `label_smoothing: EPS` in a --hyp YAML",
        "--noautoanchor": "not needed: anchors are never recomputed here (as with --noautoanchor)",
        "--local_rank": "not needed: run under torchrun, which sets the rank in the environment",
        "--local-rank": "not needed: run under torchrun, which sets the rank in the environment",
        **dict.fromkeys(
            "--rect --image-weights --quad --single-cls --evolve --cache-images --nosave --v5-metric".split(),
            "not available in yolov7 train",
        ),
        **dict.fromkeys(
            "--bucket --entity --upload_dataset --bbox_interval --save_period --artifact_alias".split(),
            "not available: no W&B or cloud storage here",
        ),
    },
    "val": {
        **_SIZES,
        **_THRESHOLDS,
        "--verbose": "not needed: the per-class rows are always printed",
        "--no-trace": _NO_TRACE,
        "--single-cls": "not available in yolov7 val",
        **dict.fromkeys(
            ["--save-txt", "--save-conf", "--save-hybrid"],
            "not available in yolov7 val (predictions.json has every box); "
            "yolov7 detect --save-txt [--save-conf] writes YOLO label rows",
        ),
    },
    "detect": {
        "--img-size": "use --img",
        **_THRESHOLDS,
        "--augment": "not available in yolov7 detect (yolov7 val --augment has test-time augmentation)",
        "--no-trace": _NO_TRACE,
        "--view-img": "not available: results are written to the run folder only",
        "--update": "not needed: checkpoints are read as they are",
    },
    "export": {
        "--img-size": "use --img (one side, or height and width; --dynamic frees them)",
        "--batch-size": "use --batch",
        **_THRESHOLDS,
        "--topk-all": "use --max-det",
        "--dynamic-batch": "use --dynamic (frees batch, height and width)",
        "--grid": "not needed: the graph always outputs decoded boxes (what --grid gives)",
        "--include-nms": "use --end2end (NMS for onnxruntime in the graph; no TensorRT plugin)",
        "--max-wh": "not needed: --end2end's class offset is fixed (4096 pixels)",
        "--device": "not needed: the graph is traced on the CPU in float32; onnxruntime picks the device",
        **dict.fromkeys(["--simplify", "--fp16", "--int8"], "not available: ONNX export only, unsimplified"),
    },
}
"""Flags of the official train.py, test.py, detect.py and export.py that `yolov7` spells differently
or leaves out, by subcommand: what to use instead, or why there is none (see `unrecognized_message`)."""


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)command parser that parsed `args`: `yolov7 val ...` -> the val parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None)
            if name in action.choices:
                return _chosen_parser(action.choices[name], args)
    return parser


def unrecognized_message(command: str | None, extras: Sequence[str]) -> str:
    """argparse's 'unrecognized arguments' line, then a hint for each flag the official scripts have."""
    hints = OFFICIAL_FLAGS.get(command or "", {})
    script = {"val": "test.py"}.get(command or "", f"{command}.py")
    lines = [f"unrecognized arguments: {' '.join(extras)}"]
    for flag in dict.fromkeys(extra.split("=", 1)[0] for extra in extras):
        if flag in hints:
            lines.append(f"  {flag} (the official {script}'s): {hints[flag]}")
    if command in ("val", "detect") and any(e.endswith((".pt", ".pth")) for e in extras):
        lines.append(  # test.py, detect.py: --weights A.pt B.pt is an Ensemble, all boxes into one NMS
            f"  --weights A.pt B.pt (the official {script}'s model ensemble): not available; "
            "give one checkpoint"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = build_parser()
    args, extras = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if extras:  # the subcommand's usage and error line, not the top level's, and the official spellings
        _chosen_parser(parser, args).error(unrecognized_message(getattr(args, "command", None), extras))
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except BrokenPipeError:  # the reader of the output went away (`yolov7 ... | head`): stop quietly
        # the interpreter flushes stdout once more at exit: point it at /dev/null so that flush cannot fail
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a command ended by SIGPIPE (128 + 13)


if __name__ == "__main__":
    raise SystemExit(main())
