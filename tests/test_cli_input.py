"""`yolov7` on bad arguments: sizes and counts checked by the parser, an output path that is a file,
and `data check` saying each problem once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from yolov7lib.cli import main
from yolov7lib.data import synthesize


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    return synthesize(root, n_train=2, n_val=2, img_size=64, seed=2, workers=1, progress=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["val", "--model", "yolov7-tiny", "--img", "0"], "--img: must be at least 1, got 0"),
        (["val", "--model", "yolov7-tiny", "--batch", "-1"], "--batch: must be at least 1, got -1"),
        (
            ["detect", "--model", "yolov7-tiny", "--source", ".", "--img", "big"],
            "'big' is not a whole number",
        ),
        (["export", "--model", "yolov7-tiny", "--img", "0"], "must be at least 1"),
        (["bench", "--model", "yolov7-tiny", "--batch", "1", "0"], "must be at least 1"),
        (["train", "--batch", "0"], "must be at least 1"),
        (["train", "--epochs", "0"], "--epochs: must be at least 1, got 0"),
        (["train", "--max-batches", "-1"], "--max-batches: must be at least 0, got -1"),  # trained 0 batches
        (["train", "--workers", "-2"], "--workers: must be at least 0, got -2"),
        (["train", "--freeze", "-1"], "--freeze: must be at least 0, got -1"),
        (["train", "--freeze", "10", "x"], "--freeze: 'x' is not a whole number"),
        (["train", "--freeze", "2.5"], "--freeze: '2.5' is not a whole number"),
        (["train", "--freeze"], "--freeze: expected at least one argument"),  # not a silent no-op
        (["val", "--model", "yolov7-tiny", "--workers", "-1"], "--workers: must be at least 0, got -1"),
        (["detect", "--model", "yolov7-tiny", "--source", ".", "--conf", "2"], "must be between 0 and 1"),
        (["val", "--model", "yolov7-tiny", "--data", "d.yaml", "--iou", "-0.1"], "must be between 0 and 1"),
        (["export", "--model", "yolov7-tiny", "--conf", "x"], "'x' is not a number"),
        (["info", "--model", "yolov7", "--img", "-640"], "must be at least 1"),
        (["detect", "--model", "yolov7-tiny", "--source", ".", "--max-det", "-1"], "--max-det: must be at"),
        (["export", "--model", "yolov7-tiny", "--end2end", "--max-det", "0"], "--max-det: must be at"),
        (["bench", "--model", "yolov7-tiny", "--runs", "0"], "--runs: must be at least 1, got 0"),
        (["bench", "--model", "yolov7-tiny", "--warmup", "-1"], "--warmup: must be at least 0, got -1"),
        (["bench", "--model", "yolov7-tiny", "--threads", "0"], "--threads: must be at least 1, got 0"),
        (["train", "--dist-timeout", "0"], "--dist-timeout: must be a positive number, got 0"),
        (["train", "--dist-timeout", "-5"], "--dist-timeout: must be a positive number, got -5"),
        (["train", "--dist-timeout", "nan"], "--dist-timeout: must be a positive number, got nan"),
        (["train", "--dist-timeout", "inf"], "--dist-timeout: must be a positive number, got inf"),
        (["train", "--dist-timeout", "1h"], "--dist-timeout: '1h' is not a number"),
    ],
)
def test_out_of_range_sizes_counts_and_thresholds_are_usage_errors(
    args: list[str], message: str, capsys
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_bench_without_a_backend_is_an_error(capsys) -> None:
    """`--backend ''` (or ','): the command printed a table header without a row and exited 0."""
    assert main(["bench", "--model", "yolov7-tiny-cpu", "--img", "32", "--batch", "1", "--backend", ","]) == 1
    assert "no backend given; choose from eager, compile, onnxruntime" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (
            ["train", "--data", "d.yaml", "--img-size", "640", "640"],
            "--img-size (the official train.py's): use --img",
        ),
        (
            ["train", "--cfg", "yolov7.yaml", "--adam"],
            "--adam (the official train.py's): set `optimizer: adam`",
        ),
        (
            ["val", "--data", "d.yaml", "--conf-thres", "0.1"],
            "--conf-thres (the official test.py's): use --conf",
        ),
        (["detect", "--source", ".", "--iou-thres=0.5"], "--iou-thres (the official detect.py's): use --iou"),
        (
            ["detect", "--source", ".", "--weights", "a.pt", "b.pt"],
            "--weights A.pt B.pt (the official detect.py's model ensemble): not available; give one",
        ),
        (["val", "--data", "d.yaml", "--weights", "a.pt", "b.pt"], "(the official test.py's model ensemble)"),
        (
            ["val", "--data", "d.yaml", "--weights", "a.pth", "b.pth"],
            "(the official test.py's model ensemble)",
        ),
        (["export", "--topk-all", "50"], "--topk-all (the official export.py's): use --max-det"),
        (["export", "--device", "0"], "--device (the official export.py's): not needed: the graph is traced"),
    ],
)
def test_an_official_flag_is_refused_by_its_subcommand_with_what_to_use(
    args: list[str], hint: str, capsys
) -> None:
    """A flag of the official scripts that `yolov7` spells differently: the error names the subcommand, shows
    its usage (not the top level's) and says what to type instead."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"usage: yolov7 {args[0]} " in err and f"yolov7 {args[0]}: error: unrecognized arguments" in err
    assert hint in err


def test_every_official_flag_hint_is_a_flag_we_refuse_and_points_at_one_we_accept() -> None:
    """The hint table agrees with the parser: no hinted flag is one the subcommand accepts (its hint would
    never show), and every `use --X` names a flag the subcommand has."""
    import argparse
    import re

    from yolov7lib.cli import OFFICIAL_FLAGS, build_parser

    (commands,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command, hints in OFFICIAL_FLAGS.items():
        accepted = set(commands.choices[command]._option_string_actions)
        assert not accepted & set(hints), command
        for flag, hint in hints.items():
            for target in re.findall(r"\buse (--[a-z0-9-]+)", hint):
                assert target in accepted, (command, flag, target)


@pytest.mark.parametrize("command", ["val", "detect"])
def test_a_project_path_that_is_a_file_is_an_error_and_the_file_stays(
    command: str, data_yaml: Path, tmp_path: Path, capsys
) -> None:
    mine = tmp_path / "notes.txt"
    mine.write_text("a user's file")
    where = ["--data", str(data_yaml)] if command == "val" else ["--source", str(data_yaml.parent / "images")]
    code = main([command, "--model", "yolov7-tiny", *where, "--img", "64", "--project", str(mine)])
    err = capsys.readouterr().err
    assert code == 1 and str(mine) in err and "Traceback" not in err
    assert mine.read_text() == "a user's file"


@pytest.mark.parametrize("command", ["val", "detect", "export", "train", "data synth"])
def test_an_output_folder_that_cannot_be_written_is_a_one_line_error(
    command: str, data_yaml: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A read-only or foreign folder (EACCES; as root, chmod does not stop a write, so os.mkdir refuses
    here): before, each command ended in a PermissionError traceback."""
    import errno
    import os

    locked = tmp_path / "locked"
    real_mkdir = os.mkdir

    def refusing_mkdir(path, *args, **kwargs):
        if Path(path).is_relative_to(locked):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refusing_mkdir)
    where = {
        "val": ["--model", "yolov7-tiny", "--data", str(data_yaml), "--project", str(locked), "--img", "64"],
        "detect": ["--model", "yolov7-tiny", "--source", str(data_yaml.parent / "images"), "--project",
                   str(locked), "--img", "64"],
        "export": ["--model", "yolov7-tiny", "--out", str(locked / "m.onnx"), "--img", "64"],
        "train": ["--model", "yolov7-tiny", "--data", str(data_yaml), "--epochs", "1", "--workers", "0",
                  "--project", str(locked), "--img", "64"],
        "data synth": ["--out", str(locked / "data"), "--train", "1", "--val", "1", "--workers", "1"],
    }[command]  # fmt: skip
    assert main([*command.split(), *where]) == (2 if command == "data synth" else 1)
    err = capsys.readouterr().err
    assert f"yolov7 {command}: error: " in err and "Permission denied" in err and str(locked) in err
    assert "Traceback" not in err


def test_data_check_reports_each_problem_once(data_yaml: Path, caplog, capsys) -> None:
    bad = data_yaml.parent / "labels" / "val"
    label = sorted(bad.glob("*.txt"))[0]
    original = label.read_text()
    try:
        label.write_text(original + "0 0.5 0.5 nan 0.1\n")
        with caplog.at_level(logging.INFO, logger="yolov7lib.data"):
            assert main(["data", "check", str(data_yaml)]) == 0
    finally:
        label.write_text(original)
    out = capsys.readouterr().out
    assert out.count(label.name) == 1 and "NaN or infinite" in out  # printed once, in the report
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # and not logged again


def test_data_check_shows_a_progress_bar_per_split(data_yaml: Path, capsys) -> None:
    """A scan of COCO's 118k training images takes minutes (before: `data check` printed nothing until
    it was done, while the same scan in `yolov7 train` shows its bar)."""
    assert main(["data", "check", str(data_yaml)]) == 0
    err = capsys.readouterr().err
    assert "train: Scanning" in err and "val: Scanning" in err and "/2 " in err  # of its 2 images


def test_data_check_counts_an_image_whose_every_row_was_dropped_as_a_background(
    data_yaml: Path, capsys
) -> None:
    """Such an image trains without a box, exactly like one without a label file."""
    labelled = [
        p for p in sorted((data_yaml.parent / "labels" / "val").glob("*.txt")) if p.read_text().strip()
    ]
    emptied, mixed = labelled[:2]
    originals = {p: p.read_text() for p in (emptied, mixed)}

    def background_counts() -> tuple[int, int]:
        assert main(["data", "check", str(data_yaml)]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("val:") and "usable" in x)
        total = int(line.split(" backgrounds (")[0].rsplit(" ", 1)[1])
        return total, int(line.split(" with every row dropped")[0].rsplit(" ", 1)[1])

    before = background_counts()
    try:
        emptied.write_text("0 0.5 0.5 nan 0.1\n9 0.5 0.5 0.2 0.2\n")  # two bad rows, nothing left
        mixed.write_text(originals[mixed] + "0 0.5 0.5 nan 0.1\n")  # one bad row among good ones
        after = background_counts()
    finally:
        for p, text in originals.items():
            p.write_text(text)
    assert before[1] == 0 and after == (before[0] + 1, 1)


def test_ctrl_c_in_train_is_one_line_naming_resume(monkeypatch, capsys) -> None:
    from yolov7lib.engine import trainer

    def interrupted(**options):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    assert main(["train", "--data", "data.yaml"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err


@pytest.mark.parametrize("progress", [True, False])
def test_a_training_status_line_is_shown_once(progress: bool, caplog, capsys) -> None:
    """With progress bars the line goes to the terminal beside them, without them to the log; not both."""
    from types import SimpleNamespace

    from yolov7lib.engine.trainer import Trainer

    fake = SimpleNamespace(ctx=SimpleNamespace(is_main=True), opts=SimpleNamespace(progress=progress))
    with caplog.at_level(logging.INFO, logger="yolov7lib.engine.trainer"):
        Trainer.log(fake, "epoch 1: a status line")
    shown = capsys.readouterr().out.count("epoch 1: a status line")
    logged = sum(r.getMessage() == "epoch 1: a status line" for r in caplog.records)
    assert (shown, logged) == ((1, 0) if progress else (0, 1))


def test_output_piped_into_a_reader_that_stops_early_ends_quietly() -> None:
    """`yolov7 info ... | head -c 1`: before, a BrokenPipeError traceback (exit 1); now exit 141, the status a
    shell gives a command ended by SIGPIPE, and nothing on stderr but what ran before."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "yolov7lib", "info", "--model", "yolov7-tiny-cpu", "--img", "64", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
