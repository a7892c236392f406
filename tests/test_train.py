"""The trainer end to end on a tiny generated data set: run folder, exact resume after SIGKILL,
torchrun (gloo) against one process, and the NaN guard.

Training runs go through the `yolov7` command in subprocesses, as users run them (and so that
`--deterministic`, a process-wide switch, does not leak into other tests).
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from yolov7lib.cli import main
from yolov7lib.data import synthesize
from yolov7lib.engine.checkpoint import load_checkpoint, save_checkpoint
from yolov7lib.engine.runs import read_results

IMG = 64
COMMON = ["--model", "yolov7-tiny", "--img", str(IMG), "--workers", "0", "--seed", "3"]


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    return synthesize(root, n_train=16, n_val=4, img_size=IMG, seed=1, workers=1, progress=False)


def _yolov7(*args: str, env: dict[str, str] | None = None, torchrun: int = 0) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "yolov7lib"]
    if torchrun:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", str(torchrun), "-m", "yolov7lib"]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [*launcher, "train", *args], capture_output=True, text=True, env=full_env, timeout=900, check=False
    )


def _state(run: Path) -> dict:
    return load_checkpoint(run / "weights" / "last.pt")


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_sigkill_mid_epoch_then_resume_ends_with_the_uninterrupted_weights(
    data_yaml, tmp_path, processes
) -> None:
    """With 2 processes (torchrun, gloo) every rank dies and every rank resumes from rank 0's checkpoint:
    a rank that restored less (its optimizer's momentum, say) would change the averaged gradients."""
    args = [*COMMON, "--data", str(data_yaml), "--epochs", "3", "--batch", "4", "--max-batches", "3",
            "--deterministic", "--project", str(tmp_path)]  # fmt: skip
    torchrun = processes if processes > 1 else 0
    full = _yolov7(*args, "--name", "full", torchrun=torchrun)
    assert full.returncode == 0, full.stderr[-3000:]

    killed = _yolov7(*args, "--name", "killed", env={"YOLOV7LIB_KILL_AT": "1:1"}, torchrun=torchrun)
    # SIGKILL in the middle of the second epoch (torchrun reports its workers' death as status 1)
    assert killed.returncode == (1 if torchrun else -9), killed.stderr[-2000:]
    survivor = _state(tmp_path / "killed")
    assert survivor["epoch"] == 0  # the checkpoint of the first epoch is intact and readable

    resumed = _yolov7("--resume", str(tmp_path / "killed"), "--workers", "0", torchrun=torchrun)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = _state(tmp_path / "full"), _state(tmp_path / "killed")
    assert a["epoch"] == b["epoch"] == 2
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in a["ema"]["model"].items():
        assert torch.equal(v, b["ema"]["model"][k]), k
    assert a["ema"]["updates"] == b["ema"]["updates"]
    rows = read_results(tmp_path / "killed" / "results.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]  # the interrupted epoch is not recorded twice
    # the weights moved between the surviving checkpoint and the end, so the equality is not trivial
    assert any(not torch.equal(v, survivor["model"][k]) for k, v in a["model"].items())


@pytest.mark.slow
def test_two_process_torchrun_matches_one_process_with_the_same_global_batch(data_yaml, tmp_path) -> None:
    # In float64, so that the comparison is about the distributed algorithm (data split, cross-replica
    # BatchNorm, loss normalisation, gradient averaging) rather than float32 rounding, which BatchNorm's
    # backward amplifies to ~1e-2 relative in the first steps of a randomly initialised network.
    args = [*COMMON, "--data", str(data_yaml), "--epochs", "1", "--batch", "8", "--max-batches", "2",
            "--noval", "--sync-bn", "--deterministic", "--float64", "--project", str(tmp_path)]  # fmt: skip
    one = _yolov7(*args, "--name", "one")
    assert one.returncode == 0, one.stderr[-3000:]
    two = _yolov7(*args, "--name", "two", torchrun=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _state(tmp_path / "one")["model"], _state(tmp_path / "two")["model"]
    init = _initial_state(data_yaml)
    moved = max((a[k] - init[k]).abs().max().item() for k in a if a[k].is_floating_point())
    diff = max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())
    assert moved > 1e-3, moved  # training changed the weights by far more than the tolerance
    assert diff < 1e-4, diff


@pytest.mark.slow
def test_every_rank_follows_the_folder_rank_0_made_when_another_run_took_the_name(
    data_yaml, tmp_path
) -> None:
    """Rank 0 names the run folder early and makes it once the set-up succeeded, taking the next number if
    another run took the name meanwhile; before, the other ranks kept the early name (the other run's
    folder), which their messages (Ctrl-C, divergence) then named."""
    worker = Path(__file__).parent / "dist" / "run_folder_worker.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(worker), str(data_yaml), str(tmp_path / "runs"), str(tmp_path / "run_dir")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    folders = [(tmp_path / f"run_dir.{rank}").read_text() for rank in (0, 1)]
    assert folders == [str(tmp_path / "runs" / "exp2")] * 2
    assert list((tmp_path / "runs" / "exp").iterdir()) == []  # the other run's folder is left alone


@pytest.mark.slow
def test_two_nodes_of_one_process_train_as_one_node_of_two(data_yaml, tmp_path) -> None:
    """The README's multi-node launch (torchrun --nnodes 2 with a rendezvous), as two "nodes" on this
    machine: both processes have LOCAL_RANK 0, so anything keyed on the local rank instead of the global
    one (the main process, the data split) shows up as a second writer or different weights."""
    args = [*COMMON, "--data", str(data_yaml), "--epochs", "1", "--batch", "8", "--max-batches", "2",
            "--noval", "--sync-bn", "--deterministic", "--float64", "--project", str(tmp_path)]  # fmt: skip
    one_node = _yolov7(*args, "--name", "one-node", torchrun=2)
    assert one_node.returncode == 0, one_node.stderr[-3000:]

    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
             "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
             "-m", "yolov7lib", "train", *args, "--name", "two-nodes"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for rank in (0, 1)
    ]  # fmt: skip
    outputs = [node.communicate(timeout=900) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]

    assert sorted(p.name for p in tmp_path.iterdir()) == ["one-node", "two-nodes"]  # one run folder
    logs = [out + err for out, err in outputs]
    assert "parameters;" in logs[0] and "parameters;" not in logs[1]  # one main process
    a, b = _state(tmp_path / "one-node")["model"], _state(tmp_path / "two-nodes")["model"]
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


def _initial_state(data_yaml: Path) -> dict:
    from yolov7lib.data import load_data_config
    from yolov7lib.models import create_model

    torch.manual_seed(3)
    return create_model("yolov7-tiny", nc=load_data_config(data_yaml).nc).double().state_dict()


class _WrappedLoss:
    """The real loss, with `hook(value, items, imgs) -> (value, items)` applied to each call's result."""

    def __init__(self, real, hook) -> None:
        self.real, self.hook = real, hook

    def distribute(self, world_size: int) -> None:
        self.real.distribute(world_size)

    def __call__(self, preds, targets, imgs):
        return self.hook(*self.real(preds, targets, imgs), imgs)


def _wrap_the_loss(monkeypatch, hook) -> None:
    """Make the trainer's `build_loss` return the real loss wrapped with `hook` (see _WrappedLoss)."""
    import yolov7lib.loss as loss_module

    real_build = loss_module.build_loss

    def build(model, hyp, img_size=640):
        return _WrappedLoss(real_build(model, hyp, img_size=img_size), hook)

    monkeypatch.setattr(loss_module, "build_loss", build)


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_keeps_last_checkpoint(data_yaml, tmp_path, monkeypatch) -> None:
    from yolov7lib.engine.trainer import TrainingDiverged, train

    calls = {"n": 0}

    def poison(value, items, imgs):  # the 4th call returns NaN (epoch 2, batch 0)
        calls["n"] += 1
        return (value * float("nan"), items) if calls["n"] == 4 else (value, items)

    _wrap_the_loss(monkeypatch, poison)
    opts = dict(data=str(data_yaml), model="yolov7-tiny", img=IMG, batch=4, epochs=3, max_batches=3,
                workers=0, project=str(tmp_path), name="nan", progress=False)  # fmt: skip
    with pytest.raises(TrainingDiverged, match=r"epoch 2, batch 0 \(iteration 3\)"):
        train(**opts)
    # the first epoch's files are complete and untouched by the failure
    run = tmp_path / "nan"
    rows = read_results(run / "results.csv")
    assert [int(r["epoch"]) for r in rows] == [0]
    ckpt = load_checkpoint(run / "weights" / "last.pt")
    assert ckpt["epoch"] == 0
    expected = {"model", "model_cfg", "ema", "optimizer", "scaler", "rng", "epoch", "best_fitness", "hyp"}
    assert expected <= ckpt.keys()


@pytest.mark.parametrize("final_only", [False, True])
def test_val_final_only_validates_after_the_last_epoch_only(
    data_yaml, tmp_path, monkeypatch, final_only
) -> None:
    import yolov7lib.engine.trainer as trainer_module
    from yolov7lib.engine.trainer import train

    real_evaluate, calls = trainer_module.evaluate, []

    def counting_evaluate(*args, **kwargs):
        calls.append(kwargs.get("save_json") is not None)  # True: the final epoch's evaluation
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate", counting_evaluate)
    train(data=str(data_yaml), model="yolov7-tiny", img=IMG, batch=4, epochs=3, max_batches=1,
          workers=0, project=str(tmp_path), name="v", progress=False, plots=False,
          val_final_only=final_only)  # fmt: skip
    assert calls == ([True] if final_only else [False, False, True])
    rows = read_results(tmp_path / "v" / "results.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]  # every epoch is still recorded


def test_a_misspelt_hyp_override_is_refused_before_any_run_folder(data_yaml, tmp_path) -> None:
    """`hyp_overrides` (the Python API's and the pipeline's way to change one hyperparameter) must name
    keys the hyperparameters have: `lr_0` for `lr0` would otherwise train with the unchanged lr0."""
    from yolov7lib.engine.trainer import train

    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) aux_asign, lr_0"):
        train(data=str(data_yaml), model="yolov7-tiny", img=IMG, epochs=1, workers=0, progress=False,
              project=str(tmp_path / "runs"), hyp_overrides={"lr_0": 0.1, "aux_asign": "independent",
                                                          "lr0": 0.02})  # fmt: skip
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("option", "flag"), [("max_batches", "--max-batches"), ("workers", "--workers")])
def test_a_negative_count_is_refused_before_any_run_folder(data_yaml, tmp_path, option, flag) -> None:
    """Before: max_batches=-1 trained no batch at all and reported a finished run (workers=-1 failed in
    the DataLoader after the label scan)."""
    from yolov7lib.engine.trainer import train

    with pytest.raises(ValueError, match=f"{flag} must be at least 0, got -1"):
        train(data=str(data_yaml), project=str(tmp_path / "runs"), progress=False, **{option: -1})
    assert not (tmp_path / "runs").exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch, before it refuses
def test_train_refuses_bad_weights_and_a_missing_run_with_a_message(data_yaml, tmp_path, capsys) -> None:
    """Checked before any training: a clear one-line error naming the file, no traceback, no run folder."""
    good = save_checkpoint({"model": {"w": torch.arange(4096.0)}}, tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    plain_pickle = tmp_path / "plain.pt"
    plain_pickle.write_bytes(pickle.dumps({"model": [1, 2, 3]}))
    project = tmp_path / "runs"
    common = ["train", "--data", str(data_yaml), *COMMON, "--epochs", "1", "--project", str(project)]
    unparsable, incomplete = tmp_path / "unparsable.yaml", tmp_path / "incomplete.yaml"
    unparsable.write_text("lr0: [0.01\n")
    incomplete.write_text("lr0: 0.01\n")
    cases = [
        (["--resume"], "no run with weights/last.pt"),
        (["--weights", str(tmp_path / "missing.pt")], "not found"),
        (["--weights", str(truncated)], "not a complete torch.save archive"),
        (["--weights", str(plain_pickle)], str(plain_pickle)),
        (["--hyp", str(unparsable)], "not valid YAML"),
        (["--hyp", str(incomplete)], "missing hyperparameter(s) lrf, momentum, weight_decay"),
        (["--model", "yolov7-nosuch"], "yolov7-nosuch"),
    ]
    for flags, message in cases:
        assert main([*common, *flags]) == 1, flags
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (flags, err)
        assert not project.exists(), (flags, sorted(project.rglob("*")))  # no run folder left behind


def test_a_refused_resume_leaves_the_finished_run_as_it_was(data_yaml, tmp_path, capsys) -> None:
    """Resuming a run that already finished is refused before anything in its folder is written."""
    project = tmp_path / "runs"
    args = ["train", "--data", str(data_yaml), *COMMON, "--epochs", "1", "--batch", "4", "--max-batches", "1",
            "--noval", "--project", str(project), "--name", "done"]  # fmt: skip
    assert main(args) == 0
    run = project / "done"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert {p.name for p in before} >= {"opt.yaml", "hyp.yaml", "last.pt", "results.csv"}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--workers", "2"]) == 1
    assert "already finished its 1 epochs" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_resume_from_another_folder_says_the_runs_paths_are_from_where_it_started(
    tmp_path, monkeypatch, capsys
) -> None:
    """opt.yaml keeps --data as given (relative, as the reference's): resumed from elsewhere, the error
    said only "data config 'data/shapes/data.yaml' not found"."""
    import yaml

    from yolov7lib.engine.trainer import RESUME_KEYS

    run = tmp_path / "runs" / "train" / "exp"
    (run / "weights").mkdir(parents=True)
    (run / "opt.yaml").write_text(yaml.safe_dump({"data": "data/shapes/data.yaml", "epochs": 5}))
    save_checkpoint({**dict.fromkeys(RESUME_KEYS, 0), "epoch": 1}, run / "weights" / "last.pt")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert "'data/shapes/data.yaml' not found" in err and "from the folder the run was started in" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # an absolute --data that is gone is not a matter of the working folder: no such hint
    gone = tmp_path / "gone" / "data.yaml"
    (run / "opt.yaml").write_text(yaml.safe_dump({"data": str(gone), "epochs": 5}))
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"{str(gone)!r} not found" in err and "from the folder the run was started in" not in err


def test_a_resume_of_a_damaged_run_folder_is_a_one_line_error(tmp_path, capsys) -> None:
    """A last.pt that is a bare state dict, or an opt.yaml that is not YAML or not a mapping: before, a
    KeyError 'epoch', a ScannerError or an AttributeError traceback."""
    from dataclasses import asdict

    import yaml

    from yolov7lib.engine.trainer import RESUME_KEYS, TrainOptions

    good_opt = yaml.safe_dump(asdict(TrainOptions(data="d.yaml", epochs=5)))
    cases = [
        (good_opt, {"model.0.conv.weight": torch.zeros(1)}, f"checkpoint (no {', '.join(RESUME_KEYS)})"),
        (good_opt, {"epoch": 1, "model": {}}, "not a training checkpoint (no best_fitness, model_cfg, ema"),
        ("epochs: [5\n", {"epoch": 1}, "opt.yaml is not valid YAML"),
        ("- 5\n", {"epoch": 1}, "opt.yaml is not a mapping of training options"),
    ]  # fmt: skip
    for i, (opt_text, state, message) in enumerate(cases):
        run = tmp_path / f"run{i}"
        save_checkpoint(state, run / "weights" / "last.pt")
        (run / "opt.yaml").write_text(opt_text)
        assert main(["train", "--resume", str(run)]) == 1
        err = capsys.readouterr().err
        assert message in err and str(run) in err and "Traceback" not in err, err


def test_a_resume_after_the_class_count_changed_is_a_one_line_error(data_yaml, tmp_path, capsys) -> None:
    """Before: a class added to the data.yaml between the sessions failed with a RuntimeError traceback
    (size mismatch for the head's weights) after both splits had been scanned."""
    import yaml

    doc = yaml.safe_load(data_yaml.read_text())
    names = doc["names"]
    splits = {k: str(data_yaml.parent / doc[k]) for k in ("train", "val")}  # no COCO json: nc is free
    own = tmp_path / "data.yaml"
    own.write_text(yaml.safe_dump({**splits, "nc": len(names), "names": names}))
    args = ["train", "--data", str(own), *COMMON, "--epochs", "1", "--batch", "4", "--max-batches", "1",
            "--noval", "--project", str(tmp_path / "runs"), "--name", "r"]  # fmt: skip
    assert main(args) == 0
    run = tmp_path / "runs" / "r"
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    (run / "opt.yaml").write_text(yaml.safe_dump({**opt, "epochs": 2}))
    own.write_text(yaml.safe_dump({**splits, "nc": len(names) + 1, "names": [*names, "new"]}))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"trained {len(names)} classes" in err and f"has {len(names) + 1}" in err, err
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_run_started_beside_another_never_shares_its_folder(data_yaml, tmp_path, monkeypatch) -> None:
    """Before: the folder was named before the set-up (scans, model) and made after it, so two trainings
    started together both took runs/train/exp: one results.csv with both runs' rows, one opt.yaml, and
    each run's weights overwriting the other's."""
    import yolov7lib.data
    from yolov7lib.engine.trainer import train

    real = yolov7lib.data.create_dataloader
    theirs = tmp_path / "exp" / "results.csv"

    def other_run_starts(*args, **kwargs):  # the other run makes its folder while this one scans
        theirs.parent.mkdir(parents=True, exist_ok=True)
        theirs.write_text("the other run's rows\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(yolov7lib.data, "create_dataloader", other_run_starts)
    train(data=str(data_yaml), model="yolov7-tiny-cpu", img=IMG, batch=4, epochs=1, max_batches=1, workers=0,
          noval=True, project=str(tmp_path), progress=False, plots=False)  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["results.csv"]
    assert theirs.read_text() == "the other run's rows\n"
    assert len(read_results(tmp_path / "exp2" / "results.csv")) == 1


def test_a_resume_removes_the_partial_checkpoint_write_of_a_killed_session(
    data_yaml, tmp_path, caplog
) -> None:
    """Before: a session killed while it saved left its temporary file (as large as a checkpoint) in weights/,
    and every resume kept it: a run killed mid-save a few times filled the disk with them. The resume now
    deletes them (a real one, left by a process that died before its rename) and only them."""
    import logging

    import yaml

    from yolov7lib.engine import checkpoint
    from yolov7lib.engine.trainer import train

    train(data=str(data_yaml), model="yolov7-tiny-cpu", img=IMG, batch=4, epochs=1, max_batches=1, workers=0,
          noval=True, project=str(tmp_path), name="r", progress=False, plots=False)  # fmt: skip
    run, weights = tmp_path / "r", tmp_path / "r" / "weights"
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    (run / "opt.yaml").write_text(yaml.safe_dump({**opt, "epochs": 2}))  # one epoch left to resume
    killed_mid_save = (
        "import os, sys, torch; from yolov7lib.engine import checkpoint as c; "
        "c.os.replace = lambda *a: os._exit(9); c.save_checkpoint({'w': torch.zeros(1000)}, sys.argv[1])"
    )
    done = subprocess.run([sys.executable, "-c", killed_mid_save, str(weights / "last.pt")], check=False)
    assert done.returncode == 9
    with pytest.MonkeyPatch.context() as m:  # and one killed while it wrote best.pt (the rename skipped)
        m.setattr(checkpoint.os, "replace", lambda src, dst: None)
        checkpoint.save_checkpoint({"w": torch.zeros(1000)}, weights / "best.pt")
    left = [p for p in weights.iterdir() if p.name not in ("last.pt", "best.pt")]
    assert len(left) == 2
    user_files = [weights / ".notes.tmp", weights / "last.pt.bak"]
    for f in user_files:
        f.write_text("mine")
    with caplog.at_level(logging.INFO, logger="yolov7lib.engine.trainer"):
        train(resume=str(run), workers=0, progress=False)
    assert not any(p.exists() for p in left)
    assert sorted(p.name for p in weights.iterdir()) == sorted(
        ["best.pt", "last.pt", *(f.name for f in user_files)]
    )
    assert any("removed the partial checkpoint writes" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("at_epoch", [0, 1])
def test_ctrl_c_names_the_run_folder_to_resume(data_yaml, tmp_path, monkeypatch, capsys, at_epoch) -> None:
    """Before: Ctrl-C said `continue with yolov7 train --resume RUN_FOLDER`, leaving the user to find the
    folder; now it names it, and says when the run has no finished epoch to resume (no last.pt)."""
    from yolov7lib.engine.trainer import Trainer

    real_epoch = Trainer.train_one_epoch

    def ctrl_c_at(self, epoch):
        if epoch == at_epoch:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", ctrl_c_at)
    code = main(["train", "--data", str(data_yaml), *COMMON, "--batch", "4", "--epochs", "2", "--max-batches",
                 "1", "--noval", "--project", str(tmp_path), "--name", "r"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 130
    run = tmp_path / "r"
    if at_epoch:
        assert err.endswith(f"continue with `yolov7 train --resume {run}`")
        assert load_checkpoint(run / "weights" / "last.pt")["epoch"] == 0
        monkeypatch.undo()
        assert main(["train", "--resume", str(run), "--workers", "0"]) == 0  # the named folder resumes
    else:
        assert err == f"yolov7 train: interrupted; {run} has no finished epoch to resume"
        assert not (run / "weights" / "last.pt").exists()


@pytest.mark.parametrize(
    ("hyp", "epochs", "min_iters", "warned"),
    [("p5", 3, None, True), ("cpu", 1, None, False), ("cpu", 2, None, False), ("cpu", 3, 3, True),
     ("cpu", 3, 2, False)],
)  # fmt: skip
def test_a_warm_up_stretched_past_the_run_by_its_minimum_is_warned_of(
    data_yaml, tmp_path, caplog, hyp, epochs, min_iters, warned
) -> None:
    """Before: --hyp p5 on a small set trained its whole run inside the warm-up that the reference's
    1000-iteration minimum (warmup_min_iters) stretches it to, at a small fraction of lr0 (and with the 0.1
    bias lr), without a word. Now a warning says so; not for a warm-up of warmup_epochs as asked (hyp cpu's
    one epoch, the whole of a one-epoch run). A minimum of exactly the run's 3 iterations (one batch an
    epoch) outlasts it too; one of 2 leaves its last iteration at lr0 x lf."""
    import logging

    from yolov7lib.engine.optim import Schedule
    from yolov7lib.engine.trainer import Trainer, TrainOptions

    overrides = {} if min_iters is None else {"warmup_min_iters": min_iters}
    with caplog.at_level(logging.WARNING, logger="yolov7lib.engine.trainer"):
        trainer = Trainer(TrainOptions(data=str(data_yaml), hyp=hyp, img=IMG, batch=4, epochs=epochs,
                                       max_batches=1, workers=0, noval=True, project=str(tmp_path),
                                       progress=False, plots=False, hyp_overrides=overrides))  # fmt: skip
    nb, iterations = trainer.batches_per_epoch, epochs * trainer.batches_per_epoch
    assert min_iters is None or nb == 1
    schedule = Schedule(trainer.hyp, epochs, nb, 4)
    reached = any(
        schedule.lr(1, ni, ni // nb) == trainer.hyp["lr0"] * schedule.lf(ni // nb) for ni in range(iterations)
    )
    said = [r.getMessage() for r in caplog.records if "outlasting the run" in r.getMessage()]
    assert bool(said) == warned
    if warned:
        assert not reached
        assert f"warmup_min_iters = {schedule.warmup_iters} iterations" in said[0]
        assert f"outlasting the run's {iterations}:" in said[0]


def test_resume_restores_the_global_random_states_of_the_checkpoint(data_yaml, tmp_path, monkeypatch) -> None:
    """Python's, NumPy's and torch's global generators continue from the checkpoint, whatever ran before.

    The trainer's own draws are functions of (seed, epoch, sample); the saved states matter for anything
    else that draws from the global generators during an epoch, which the wrapped epoch below stands for."""
    import random

    import numpy as np
    import yaml

    from yolov7lib.engine.trainer import Trainer, TrainOptions, train

    real_epoch = Trainer.train_one_epoch

    def epoch_that_also_draws(self, epoch):
        out = real_epoch(self, epoch)
        random.random(), np.random.rand(), torch.rand(1)  # noqa: NPY002 - a library's global draws
        return out

    monkeypatch.setattr(Trainer, "train_one_epoch", epoch_that_also_draws)
    train(data=str(data_yaml), model="yolov7-tiny", img=IMG, batch=4, epochs=1, max_batches=1, workers=0,
          noval=True, project=str(tmp_path), name="r", progress=False, plots=False)  # fmt: skip
    run = tmp_path / "r"
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    (run / "opt.yaml").write_text(yaml.safe_dump({**opt, "epochs": 2}))  # one epoch left to resume
    saved = load_checkpoint(run / "weights" / "last.pt")["rng"]
    random.seed(123)  # states the resume must replace
    np.random.seed(123)  # noqa: NPY002
    torch.manual_seed(123)
    Trainer(TrainOptions(resume=str(run), workers=0, progress=False))
    assert torch.equal(torch.get_rng_state(), saved["torch"])
    assert random.getstate()[1] == tuple(int(x) for x in saved["python"][1].tolist())
    assert np.random.get_state()[1].tolist() == saved["numpy"][1].tolist()  # noqa: NPY002


# --- the training loop's bookkeeping, on one short in-process run with spies -------------------------


@pytest.fixture(scope="module")
def spied_run(data_yaml, tmp_path_factory):
    """Two epochs of 5 batches of 2 (of 8 available) with multi-scale and plots on, recording every
    batch's loss items and input size, and, in order, each batch's iteration and each optimizer step."""
    from yolov7lib.engine.ema import ModelEMA
    from yolov7lib.engine.optim import Schedule
    from yolov7lib.engine.trainer import train

    events, items, sizes = [], [], []
    real_apply, real_update = Schedule.apply, ModelEMA.update

    def record(value, parts, imgs):
        items.append(parts.detach().clone())
        sizes.append(tuple(imgs.shape[2:]))
        return value, parts

    def apply(self, optimizer, ni, epoch):
        events.append(("batch", ni))
        return real_apply(self, optimizer, ni, epoch)

    def update(self, model):
        events.append(("step", None))
        return real_update(self, model)

    project = tmp_path_factory.mktemp("spied")
    with pytest.MonkeyPatch.context() as mp:
        _wrap_the_loss(mp, record)
        mp.setattr(Schedule, "apply", apply)
        mp.setattr(ModelEMA, "update", update)
        train(data=str(data_yaml), model="yolov7-tiny", img=IMG, batch=2, epochs=2, max_batches=5,
              workers=0, seed=5, multi_scale=True, noval=True, project=str(project), name="s",
              progress=False)  # fmt: skip
    return SimpleNamespace(run=project / "s", events=events, items=items, sizes=sizes)


def test_optimizer_steps_follow_the_warm_up_accumulation(spied_run) -> None:
    """hyp cpu: nbs 8, batch 2 -> accumulate 4 after a one-epoch warm-up (5 iterations, --max-batches 5),
    during which it rises as round(1 + 3 ni / 5): 1, 2, 2, 3, 3, then 4. A step is taken after batch ni
    when ni is a multiple of the count: ni 0, 2, 3 and 8. The iteration counter runs on across epochs."""
    batches = [ni for kind, ni in spied_run.events if kind == "batch"]
    assert batches == list(range(10))  # --max-batches 5 of the 8 batches per epoch, twice
    steps_after, ni = [], None  # the iteration each optimizer step follows
    for kind, value in spied_run.events:
        if kind == "batch":
            ni = value
        else:
            steps_after.append(ni)
    assert steps_after == [0, 2, 3, 8]
    assert load_checkpoint(spied_run.run / "weights" / "last.pt")["ema"]["updates"] == 4


def test_results_csv_holds_the_epoch_mean_losses_and_the_last_batch_lrs(spied_run, data_yaml) -> None:
    """Each row's losses are the mean of that epoch's per-batch loss items; lr0..lr2 are the three
    groups' rates at the epoch's last batch. hyp cpu: lr0 0.001, warmup_bias_lr 0.01, lrf 0.01."""
    rows = read_results(spied_run.run / "results.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    # epoch 0 ends at iteration 4 of the 5-iteration warm-up: weights and BatchNorm 4/5 of the way from 0
    # to lr0, biases from 0.01 down to lr0; epoch 1 ends after it: lr0 x lf(1), lf(1) = 1 + (lrf - 1) / 2
    expected = [[0.0008, 0.0008, 0.01 + (0.001 - 0.01) * 4 / 5], [0.001 * 0.505] * 3]
    for epoch, row in enumerate(rows):
        mean = torch.stack(spied_run.items[5 * epoch : 5 * epoch + 5]).double().mean(0)
        got = [float(row[k]) for k in ("box_loss", "obj_loss", "cls_loss", "total_loss")]
        assert got == pytest.approx(mean.tolist(), rel=1e-5)
        lrs = [float(row[f"lr{j}"]) for j in range(3)]
        assert lrs == pytest.approx(expected[epoch], rel=1e-9)


def test_multi_scale_draws_half_to_one_and_a_half_img_in_stride_multiples(spied_run) -> None:
    """The reference's range, randrange(0.5 img, 1.5 img + gs) // gs * gs: 32, 64 or 96 px for --img 64
    (training batches are square), drawn from a generator seeded by (seed, epoch)."""
    import random

    expected = []
    for epoch in range(2):
        rng = random.Random(f"5-{epoch}")
        expected += [(s, s) for s in (rng.randrange(32, 128) // 32 * 32 for _ in range(5))]
    assert spied_run.sizes == expected
    assert {s for s, _ in expected} == {32, 64, 96}  # this seed reaches both ends of the range


def test_multi_scale_never_draws_an_empty_image_at_small_sizes() -> None:
    """Before: --img 32 --multi-scale (or a P6 model, grid 64, at --img 64) drew 0 px for a quarter of the
    batches and training stopped in F.interpolate; such draws now give one grid cell, the others are
    the reference's."""
    import random

    from yolov7lib.engine.trainer import multi_scale_size

    for img, grid in ((32, 32), (64, 64), (64, 32), (320, 32)):
        ours, ref = random.Random(1), random.Random(1)
        for _ in range(200):
            reference = ref.randrange(int(img * 0.5), int(img * 1.5) + grid) // grid * grid
            assert multi_scale_size(ours, img, grid) == (reference or grid), (img, grid)
    zeros = random.Random(1)
    assert 0 in {zeros.randrange(16, 80) // 32 * 32 for _ in range(200)}  # the case is reached above


def test_without_validation_best_pt_is_the_last_epoch(spied_run) -> None:
    """--noval scores every epoch 0: all tie, so best.pt is the latest (the reference's rule), not epoch 0."""
    best = load_checkpoint(spied_run.run / "weights" / "best.pt")
    last = load_checkpoint(spied_run.run / "weights" / "last.pt")
    assert best["epoch"] == last["epoch"] == 1
    assert all(torch.equal(v, last["model"][k]) for k, v in best["model"].items())


def test_the_first_three_batches_of_a_run_are_plotted(spied_run) -> None:
    assert sorted(p.name for p in spied_run.run.glob("train_batch*.jpg")) == [
        "train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg"
    ]  # fmt: skip


def test_a_resume_keeps_the_runs_options_but_where_it_runs_and_how_it_reports(tmp_path) -> None:
    """--resume reloads opt.yaml: only --device, --workers, --progress and --dist-timeout given now replace
    the saved ones (a run that timed out at a barrier resumes with a longer wait)."""
    from dataclasses import asdict

    import yaml

    from yolov7lib.engine.trainer import RESUME_KEYS, Trainer, TrainOptions

    saved = TrainOptions(data="d.yaml", epochs=5, batch=6, device="", workers=3, progress=True, seed=9,
                         dist_timeout=30.0)  # fmt: skip
    (tmp_path / "opt.yaml").write_text(yaml.safe_dump(asdict(saved)))
    save_checkpoint({**dict.fromkeys(RESUME_KEYS, 0), "epoch": 1}, tmp_path / "weights" / "last.pt")
    given = TrainOptions(resume=str(tmp_path), epochs=50, batch=2, device="cpu", workers=0, progress=False,
                         dist_timeout=90.0)  # fmt: skip
    resumed, ckpt = Trainer._load_resume(given)
    assert ckpt["epoch"] == 1
    taken = (resumed.device, resumed.workers, resumed.progress, resumed.dist_timeout)
    assert taken == ("cpu", 0, False, 90.0)
    assert (resumed.data, resumed.epochs, resumed.batch, resumed.seed) == ("d.yaml", 5, 6, 9)
    assert resumed.resume == str(tmp_path)
    # what the resume line names as ignored: not --project, by which the CLI's bare --resume found the run
    # (written relative or absolute, it may differ from opt.yaml's), nor --workers, which a resume takes
    from yolov7lib.engine.trainer import _ignored_on_resume

    requested = TrainOptions(
        resume=str(tmp_path), project=str(tmp_path.parent), epochs=50, batch=6, workers=0
    )
    assert resumed.project != requested.project
    ignored = _ignored_on_resume(requested, resumed, ["resume", "project", "epochs", "batch", "workers"])
    assert ignored == ["epochs=50 (run: 5)"]  # batch 6 is the run's own: nothing ignored


def test_dist_timeout_reaches_the_process_group_of_a_training(tmp_path, monkeypatch, capsys) -> None:
    """`yolov7 train --dist-timeout 45` hands init_distributed its 45 minutes (the default: 30), before any
    data is read; the process group's own use of it is test_distributed's (slow, under torchrun)."""
    from yolov7lib.engine import trainer as trainer_module
    from yolov7lib.engine.distributed import DEFAULT_TIMEOUT_MINUTES

    given = []

    def init_distributed(device, timeout_minutes=None):
        given.append(timeout_minutes)
        raise ValueError("stopped after init_distributed")

    monkeypatch.setattr(trainer_module, "init_distributed", init_distributed)
    data = str(tmp_path / "absent.yaml")
    assert main(["train", "--data", data, "--dist-timeout", "45"]) == main(["train", "--data", data]) == 1
    assert (
        given == [45.0, DEFAULT_TIMEOUT_MINUTES]
        and "stopped after init_distributed" in capsys.readouterr().err
    )


def test_a_resume_names_the_options_it_ignores(data_yaml, tmp_path, caplog) -> None:
    """Before: `--resume RUN --epochs 5 --batch 2` trained on with the run's epochs and batch without a
    word; now a warning names each given option that differs from the run's (not --workers, which a resume
    takes), and the run still ends with its own options."""
    import logging

    import yaml

    from yolov7lib.engine.trainer import train

    train(data=str(data_yaml), model="yolov7-tiny-cpu", img=IMG, batch=4, epochs=1, max_batches=1, workers=0,
          noval=True, project=str(tmp_path), name="r", progress=False, plots=False)  # fmt: skip
    run = tmp_path / "r"
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    (run / "opt.yaml").write_text(yaml.safe_dump({**opt, "epochs": 2}))  # one epoch left to resume
    with caplog.at_level(logging.INFO, logger="yolov7lib.engine.trainer"):
        metrics = train(resume=str(run), epochs=5, batch=2, img=IMG, workers=1, progress=False)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "ignored: epochs=5 (run: 2), batch=2 (run: 4)" in warning and "workers" not in warning
    # epochs counted from 1, as the epoch lines count them: the second of two
    assert any(r.getMessage() == f"resuming {run} from epoch 2/2" for r in caplog.records)
    assert metrics["epochs"] == 2


def test_a_resume_trains_with_the_runs_hyperparameters_not_the_edited_hyp_file(data_yaml, tmp_path) -> None:
    """Before: --resume read the --hyp file again, so a file edited (lr0 0.001 -> 0.1) or moved since the
    run started changed the rest of the run (or refused it) and hyp.yaml in the run was rewritten."""
    import yaml

    from yolov7lib.configs import load_hyp
    from yolov7lib.engine.trainer import train

    hyp_file = tmp_path / "hyp.yaml"
    hyp_file.write_text(yaml.safe_dump(load_hyp("cpu")))
    train(data=str(data_yaml), model="yolov7-tiny-cpu", hyp=str(hyp_file), img=IMG, batch=4, epochs=1,
          max_batches=1, workers=0, noval=True, project=str(tmp_path), name="r", progress=False,
          plots=False)  # fmt: skip
    run = tmp_path / "r"
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    (run / "opt.yaml").write_text(yaml.safe_dump({**opt, "epochs": 2}))
    hyp_file.write_text(yaml.safe_dump({**load_hyp("cpu"), "lr0": 0.1}))
    train(resume=str(run), workers=0, progress=False)
    second = read_results(run / "results.csv")[1]
    assert float(second["lr1"]) == pytest.approx(0.001 * 0.505)  # lr0 x lf(1) of a 2-epoch cosine
    assert yaml.safe_load((run / "hyp.yaml").read_text())["lr0"] == 0.001
    assert load_checkpoint(run / "weights" / "last.pt")["hyp"]["lr0"] == 0.001


def test_time_s_counts_on_from_the_resumed_sessions_time(data_yaml, tmp_path) -> None:
    """Before: a resumed run restarted its clock, so time_s fell from one epoch to the next and metrics.json's
    train_time_s counted the last session only. The first session's time is set to an hour here."""
    import yaml

    from yolov7lib.engine.trainer import train

    train(data=str(data_yaml), model="yolov7-tiny-cpu", img=IMG, batch=4, epochs=1, max_batches=1, workers=0,
          noval=True, project=str(tmp_path), name="r", progress=False, plots=False)  # fmt: skip
    run = tmp_path / "r"
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    (run / "opt.yaml").write_text(yaml.safe_dump({**opt, "epochs": 2}))
    (row,) = read_results(run / "results.csv")
    lines = (run / "results.csv").read_text().splitlines()
    (run / "results.csv").write_text("\n".join([lines[0], lines[1].rsplit(",", 1)[0] + ",3600.0"]) + "\n")
    assert float(row["time_s"]) < 600
    metrics = train(resume=str(run), workers=0, progress=False)
    times = [float(r["time_s"]) for r in read_results(run / "results.csv")]
    assert times[0] == 3600.0 and 3600.0 <= times[1] < 4200.0
    assert times[1] <= metrics["train_time_s"] < 4200.0


@pytest.mark.parametrize("fails", [False, True])
def test_train_deterministic_does_not_leave_the_process_wide_switches_on(monkeypatch, fails: bool) -> None:
    """Before: `yolov7lib.train(deterministic=True)` returned with torch.use_deterministic_algorithms and
    cudnn.deterministic still on, so later work in the caller's notebook ran (or failed, on CUDA ops
    without a deterministic kernel) under them. The trainer is a stub that sets them as the real one does."""
    import yolov7lib
    from yolov7lib.engine import trainer

    class SwitchingTrainer:
        def __init__(self, opts: trainer.TrainOptions, given: object = None) -> None:
            trainer._set_seeds(opts.seed, opts.deterministic)
            assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic

        def fit(self) -> dict:
            if fails:
                raise RuntimeError("stopped")
            return {"epochs": 1}

    monkeypatch.setattr(trainer, "Trainer", SwitchingTrainer)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)  # fmt: skip
    try:
        if fails:
            with pytest.raises(RuntimeError, match="stopped"):
                yolov7lib.train(data="d.yaml", deterministic=True)
        else:
            assert yolov7lib.train(data="d.yaml", deterministic=True) == {"epochs": 1}
        after = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                 torch.backends.cudnn.benchmark)  # fmt: skip
    finally:  # never leak into the other tests, even when failing
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:]
    assert after == before == (False, False, False)


def test_train_leaves_a_process_group_the_caller_set_up_in_place(data_yaml, tmp_path, monkeypatch) -> None:
    """A researcher's own script may set up torch.distributed before calling yolov7lib.train (the trainer
    joins such a group rather than creating one); before, the run destroyed it on its way out, so the
    script's next collective failed with 'Default process group has not been initialized'."""
    import torch.distributed as dist

    import yolov7lib

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        yolov7lib.train(data=str(data_yaml), model="yolov7-tiny-cpu", img=IMG, batch=4, epochs=1,
                        max_batches=1, workers=0, noval=True, plots=False, progress=False, device="cpu",
                        project=str(tmp_path / "runs"))  # fmt: skip
        assert dist.is_initialized()
        value = torch.ones(1)
        dist.all_reduce(value)  # the caller's group still works
        assert value.item() == 1.0
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_weights_without_model_fine_tune_the_checkpoints_own_architecture(data_yaml, tmp_path) -> None:
    """--weights alone trains the checkpoint's architecture (the reference builds ckpt['model'].yaml when
    --cfg is empty), every tensor but the class-dependent head ones transferred: the same model as with
    the architecture named by --model, not the default small model with a few matching tensors."""
    from yolov7lib.data import load_data_config
    from yolov7lib.engine.ema import unwrap
    from yolov7lib.engine.trainer import Trainer, TrainOptions
    from yolov7lib.models import create_model

    nc = load_data_config(data_yaml).nc
    source = create_model("yolov7-tiny", nc=nc + 2)  # the data set has other classes
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.5)  # unlike any fresh initialisation
    state = {k: v.clone() for k, v in source.state_dict().items()}
    ckpt = save_checkpoint(
        {"model": state, "model_cfg": source.cfg, "names": [str(i) for i in range(nc + 2)]}, tmp_path / "a.pt"
    )
    common = {"data": str(data_yaml), "weights": str(ckpt), "img": IMG, "workers": 0, "noval": True,
              "project": str(tmp_path / "runs"), "progress": False, "plots": False}  # fmt: skip
    alone = unwrap(Trainer(TrainOptions(**common)).model)
    named = unwrap(Trainer(TrainOptions(**common, model="yolov7-tiny")).model)
    assert alone.cfg["name"] == "yolov7-tiny" and alone.head.nc == nc
    got, want = alone.state_dict(), named.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    same = [k for k in got if got[k].shape == state[k].shape and torch.equal(got[k], state[k])]
    assert len(same) >= len(got) - 9  # all but the head's class-dependent convolutions (and their anchors)
    bare = save_checkpoint(state, tmp_path / "bare.pt")  # a bare state dict names no architecture
    with pytest.raises(ValueError, match="--model"):
        Trainer(TrainOptions(**{**common, "weights": str(bare)}))


def test_the_start_line_names_the_checkpoint_whose_unnamed_architecture_is_trained(
    data_yaml, tmp_path, caplog
) -> None:
    """An official checkpoint's cfg has no name: `yolov7 train --weights yolov7-tiny.pt` without --model
    began its start line with an empty name (": 6,033,930 parameters; ...")."""
    from yolov7lib.engine.trainer import Trainer, TrainOptions
    from yolov7lib.models import create_model

    source = create_model("yolov7-tiny-cpu", nc=2)
    cfg = {k: v for k, v in source.cfg.items() if k != "name"}
    ckpt = save_checkpoint({"model": source.state_dict(), "model_cfg": cfg}, tmp_path / "official.pt")
    with caplog.at_level("INFO", logger="yolov7lib"):
        Trainer(TrainOptions(data=str(data_yaml), weights=str(ckpt), img=IMG, workers=0, noval=True,
                             project=str(tmp_path / "runs"), progress=False, plots=False))  # fmt: skip
    (line,) = [r.getMessage() for r in caplog.records if " parameters; " in r.getMessage()]
    assert line.startswith(f"the architecture of {ckpt}: "), line


def test_weights_with_model_keep_the_named_architectures_anchors(data_yaml, tmp_path) -> None:
    """Before: --model my.yaml --weights a.pt trained with a.pt's anchors over the cfg's own; the reference
    excludes the anchors from the transfer when --cfg is given. Without --model the checkpoint's
    architecture, anchors included, is trained."""
    from yolov7lib.data import load_data_config
    from yolov7lib.engine.ema import unwrap
    from yolov7lib.engine.trainer import Trainer, TrainOptions
    from yolov7lib.models import create_model

    nc = load_data_config(data_yaml).nc
    named = create_model("yolov7-tiny-cpu", nc=nc)
    doubled = [[2 * a for a in row] for row in named.cfg["anchors"]]
    source = create_model({**named.cfg, "anchors": doubled})
    ckpt = save_checkpoint({"model": source.state_dict(), "model_cfg": source.cfg}, tmp_path / "a.pt")
    common = {"data": str(data_yaml), "weights": str(ckpt), "img": IMG, "workers": 0, "noval": True,
              "project": str(tmp_path / "runs"), "progress": False, "plots": False}  # fmt: skip
    head = unwrap(Trainer(TrainOptions(**common, model="yolov7-tiny-cpu")).model).head
    assert torch.equal(head.anchor_grid, named.head.anchor_grid)
    assert torch.equal(head.anchors, named.head.anchors)
    alone = unwrap(Trainer(TrainOptions(**common)).model).head
    assert torch.equal(alone.anchor_grid, source.head.anchor_grid)
    assert not torch.equal(source.head.anchor_grid, named.head.anchor_grid)


# --- what is saved as best and last, and what metrics.json reports ------------------------------------


@pytest.fixture(scope="module")
def scripted_run(data_yaml, tmp_path_factory):
    """Four epochs whose validation returns scripted results (fitness 0, 0.5, 0.5, 0.3), with the COCO json
    of the val split named by a val_json key (a file find_coco_annotations would not find), recording the
    checkpoints written and the evaluations asked for."""
    import shutil

    import yaml

    import yolov7lib.engine.trainer as trainer_module
    from yolov7lib.engine.evaluator import EvalResult

    root = tmp_path_factory.mktemp("scripted")
    gt = shutil.copy(data_yaml.parent / "annotations" / "instances_val.json", root / "ground_truth.json")
    doc = yaml.safe_load(data_yaml.read_text())
    doc.update(path=str(data_yaml.parent), val_json=str(gt))
    (root / "data.yaml").write_text(yaml.safe_dump(doc))

    results = [  # precision, recall, map50, map; fitness = 0.1 map50 + 0.9 map
        EvalResult(0.1, 0.2, 0.0, 0.0, 4, 4),  # 0.0
        EvalResult(0.3, 0.4, 0.5, 0.5, 4, 4),  # 0.5
        EvalResult(0.6, 0.7, 0.5, 0.5, 4, 4),  # 0.5, a tie
        EvalResult(0.8, 0.9, 0.75, 0.25, 4, 4),  # 0.3
    ]
    asked, written = [], []
    real_save = trainer_module.save_checkpoint

    def scripted_evaluate(model, loader, names, **kwargs):
        asked.append(kwargs)
        return results[len(asked) - 1]

    def spy_save(state, path):
        written.append((Path(path).name, state["epoch"], state["best_fitness"]))
        return real_save(state, path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_module, "evaluate", scripted_evaluate)
        mp.setattr(trainer_module, "save_checkpoint", spy_save)
        metrics = trainer_module.train(
            data=str(root / "data.yaml"), model="yolov7-tiny", img=IMG, batch=4, epochs=4, max_batches=1,
            workers=0, project=str(root), name="r", progress=False, plots=False,
        )  # fmt: skip
    return SimpleNamespace(run=root / "r", gt=gt, asked=asked, written=written, metrics=metrics)


def test_best_pt_is_written_when_fitness_equals_or_beats_the_best(scripted_run) -> None:
    """best.pt follows the reference (train.py: saved when best_fitness == fi): written when the fitness
    equals or beats the best so far, so a tie moves it to the later epoch; last.pt every epoch, both
    carrying the best fitness so far."""
    assert scripted_run.written == [
        ("best.pt", 0, 0.0), ("last.pt", 0, 0.0),
        ("best.pt", 1, 0.5), ("last.pt", 1, 0.5),
        ("best.pt", 2, 0.5), ("last.pt", 2, 0.5),
        ("last.pt", 3, 0.5),
    ]  # fmt: skip
    assert load_checkpoint(scripted_run.run / "weights" / "best.pt")["epoch"] == 2


def test_a_kill_between_the_checkpoint_writes_of_an_improving_epoch_still_resumes_to_its_best_pt(
    data_yaml, tmp_path, monkeypatch
) -> None:
    """Before: last.pt was written before best.pt, so a run killed between the two writes of an epoch that
    improved the fitness resumed with that fitness as the best so far, and best.pt kept an older epoch for
    good (metrics.json's best_epoch named another one). Now last.pt, the checkpoint a resume continues, is
    written last: the epoch is redone and best.pt written again."""
    from yolov7lib.engine.evaluator import EvalResult
    from yolov7lib.engine.trainer import Trainer, train

    fitness = [0.0, 0.5, 0.3]  # epoch 1 improves; epoch 2 does not
    monkeypatch.setattr(
        Trainer, "validate", lambda self, epoch: EvalResult(0, 0, fitness[epoch], fitness[epoch], 1, 1)
    )
    real_save = Trainer.save

    class Killed(BaseException):
        pass

    def save_killed_after_the_first_write_of_epoch_1(self, epoch, result):
        writes = []

        def spy(state, path):
            if epoch == 1 and writes:
                raise Killed
            writes.append(path)
            return save_checkpoint(state, path)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("yolov7lib.engine.trainer.save_checkpoint", spy)
            real_save(self, epoch, result)

    options = dict(data=str(data_yaml), model="yolov7-tiny", img=IMG, batch=4, epochs=3, max_batches=1,
                   workers=0, project=str(tmp_path), name="r", progress=False, plots=False)  # fmt: skip
    with pytest.MonkeyPatch.context() as mp, pytest.raises(Killed):
        mp.setattr(Trainer, "save", save_killed_after_the_first_write_of_epoch_1)
        train(**options)
    metrics = train(resume=str(tmp_path / "r"), workers=0, progress=False)
    assert metrics["best_epoch"] == 1
    assert load_checkpoint(tmp_path / "r" / "weights" / "best.pt")["epoch"] == 1


def test_the_last_lines_name_the_epoch_of_best_pt_as_the_epoch_lines_count_it(
    data_yaml, tmp_path, caplog
) -> None:
    """Before: the run ended with metrics.json's line only, whose best_epoch counts from 0 while the line of
    each epoch counts from 1 (best_epoch 1 named the line "epoch 2: ..."), and nothing said where best.pt
    and last.pt were. Now a last line names both, with the epoch of best.pt as its epoch line shows it."""
    import logging
    import re

    from yolov7lib.engine.evaluator import EvalResult
    from yolov7lib.engine.trainer import Trainer, train

    fitness = [0.1, 0.5, 0.3]
    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.INFO, logger="yolov7lib.engine.trainer"):
        mp.setattr(
            Trainer, "validate", lambda self, epoch: EvalResult(0, 0, fitness[epoch], fitness[epoch], 1, 1)
        )
        train(data=str(data_yaml), model="yolov7-tiny", img=IMG, batch=4, epochs=3, max_batches=1, workers=0,
              project=str(tmp_path), name="r", progress=False, plots=False)  # fmt: skip
    lines = [r.getMessage() for r in caplog.records]
    by_map = {
        float(m[2]): m[1] for line in lines if (m := re.match(r"epoch (\d+): .*mAP@\.5:\.95 ([\d.]+)", line))
    }
    weights = tmp_path / "r" / "weights"
    assert lines[-1].startswith(f"weights in {weights}: best.pt of epoch {by_map[max(by_map)]}/3 ")
    assert "last.pt of epoch 3/3" in lines[-1]
    assert load_checkpoint(weights / "best.pt")["epoch"] + 1 == int(by_map[max(by_map)])


def test_metrics_json_reports_the_last_epoch_and_the_best_fitness_epoch(scripted_run) -> None:
    """The last row's P, R and mAPs; best_* from the row of best.pt: the latest of highest fitness (epoch 2
    of the tie)."""
    import json

    metrics = json.loads((scripted_run.run / "metrics.json").read_text())
    assert metrics == scripted_run.metrics
    expected = {"epochs": 4, "best_epoch": 2, "precision": 0.8, "recall": 0.9, "map50": 0.75, "map": 0.25,
                "best_map50": 0.5, "best_map": 0.5}  # fmt: skip
    assert {k: metrics[k] for k in expected} == expected


def test_the_final_validation_scores_against_the_data_configs_coco_json(scripted_run) -> None:
    """Only the last epoch's evaluation writes predictions.json and runs pycocotools, with the json that
    the data.yaml names for its val split (before any annotations/instances_val.json found beside it)."""
    finals = [(k["coco_json"], k["save_json"]) for k in scripted_run.asked]
    assert finals == [(None, None)] * 3 + [(scripted_run.gt, scripted_run.run / "predictions.json")]


def test_the_final_validation_maps_classes_to_the_found_coco_jsons_categories(data_yaml, tmp_path) -> None:
    """The official coco.yaml names no json: the trainer finds annotations/instances_val2017.json beside the
    split and must key its predictions by that json's category ids (COCO's 1..90), as `yolov7 val` does;
    with the class index as the id, pycocotools scored perfect predictions at AP 0."""
    import json

    import yaml

    import yolov7lib.engine.trainer as trainer_module

    doc = yaml.safe_load(data_yaml.read_text())
    plain = {"path": str(data_yaml.parent), "train": doc["train"], "val": doc["val"], "names": doc["names"]}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(plain))  # no train_json / val_json keys
    gt = data_yaml.parent / "annotations" / "instances_val.json"
    categories = sorted(c["id"] for c in json.loads(gt.read_text())["categories"])
    assert categories != list(range(len(categories)))
    asked = []

    def spy_evaluate(model, loader, names, **kwargs):
        asked.append(kwargs)
        return trainer_module.EvalResult(0.0, 0.0, 0.0, 0.0, 4, 4)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_module, "evaluate", spy_evaluate)
        trainer_module.train(
            data=str(tmp_path / "data.yaml"), model="yolov7-tiny", img=IMG, batch=4, epochs=1, max_batches=1,
            workers=0, project=str(tmp_path), name="r", progress=False, plots=False,
        )  # fmt: skip
    assert asked[-1]["coco_json"] == gt and list(asked[-1]["category_ids"]) == categories


# --- plots ----------------------------------------------------------------------------------------------


@pytest.fixture
def kept_figures(monkeypatch):
    """The figures the plot functions close, kept open for inspection (and closed at the end)."""
    import matplotlib.pyplot as plt

    import yolov7lib.engine.plots as plots_module

    figures = []
    monkeypatch.setattr(
        plots_module, "_pyplot", lambda: SimpleNamespace(subplots=plt.subplots, close=figures.append)
    )
    yield figures
    for fig in figures:
        plt.close(fig)


def test_plot_results_draws_each_column_against_the_epoch_counted_from_one(tmp_path, kept_figures) -> None:
    from yolov7lib.engine.plots import plot_results
    from yolov7lib.engine.trainer import RESULT_COLUMNS

    rows = [{c: 10 * k + j for j, c in enumerate(RESULT_COLUMNS)} | {"epoch": k} for k in range(3)]
    path = tmp_path / "results.csv"
    path.write_text(
        "\n".join([",".join(RESULT_COLUMNS)] + [",".join(str(r[c]) for c in RESULT_COLUMNS) for r in rows])
    )
    assert plot_results(path, tmp_path / "results.png").is_file()
    (fig,) = kept_figures
    titles = {"box loss": "box_loss", "objectness loss": "obj_loss", "classification loss": "cls_loss",
              "precision": "precision", "recall": "recall", "mAP@0.5": "map50", "mAP@0.5:0.95": "map",
              "learning rate (weights)": "lr1"}  # fmt: skip
    assert [ax.get_title() for ax in fig.axes] == list(titles)
    for ax, column in zip(fig.axes, titles.values(), strict=True):
        (line,) = ax.get_lines()
        assert line.get_xdata().tolist() == [1, 2, 3]
        assert line.get_ydata().tolist() == [float(r[column]) for r in rows], column


def test_plot_labels_counts_every_class_and_bins_centres_and_sizes(tmp_path, kept_figures) -> None:
    """Bars: instances of each of the names (absent classes at 0); 2-D histograms of (x, y) and (w, h),
    compared with NumPy's (pcolormesh shows the transposed counts); a single label is plotted too."""
    from yolov7lib.engine.plots import plot_labels

    labels = np.array([[0, 0.1, 0.8, 0.3, 0.05], [0, 0.12, 0.82, 0.3, 0.05], [2, 0.6, 0.2, 0.9, 0.5]])
    plot_labels(labels, ["a", "b", "c", "d"], tmp_path / "labels.png")
    plot_labels(labels[2:], ["a", "b", "c", "d"], tmp_path / "one.png")
    (fig, one) = kept_figures
    bars, centres, sizes = fig.axes
    assert [p.get_height() for p in bars.patches] == [2, 0, 1, 0]
    for ax, (u, v) in ((centres, (1, 2)), (sizes, (3, 4))):
        expected, _, _ = np.histogram2d(labels[:, u], labels[:, v], bins=40, range=[[0, 1], [0, 1]])
        assert np.asarray(ax.collections[0].get_array()).reshape(40, 40).tolist() == expected.T.tolist()
    assert np.asarray(one.axes[1].collections[0].get_array()).sum() == 1


def test_a_new_run_in_a_reused_folder_records_only_its_own_epochs(data_yaml, tmp_path) -> None:
    """Before: with --exist-ok the new run appended its rows to the old run's results.csv, so a 1-epoch run
    reported "epochs": 3 in metrics.json and could name an old epoch as its best."""
    from yolov7lib.engine.trainer import train

    common = dict(data=str(data_yaml), model="yolov7-tiny-cpu", img=IMG, batch=4, max_batches=1,
                  workers=0, noval=True, project=str(tmp_path), name="r", exist_ok=True, progress=False,
                  plots=False)  # fmt: skip
    train(**common, epochs=2)
    assert [int(r["epoch"]) for r in read_results(tmp_path / "r" / "results.csv")] == [0, 1]
    assert train(**common, epochs=1)["epochs"] == 1
    assert [int(r["epoch"]) for r in read_results(tmp_path / "r" / "results.csv")] == [0]


def test_a_new_run_in_a_reused_folder_stopped_in_its_first_epoch_does_not_resume_the_old_run(
    data_yaml, tmp_path, monkeypatch, capsys
) -> None:
    """Before: a new run with --exist-ok stopped before its first epoch ended left the old run's last.pt in
    the folder, and --resume continued that (its epoch 3 of 3 at 64 px) as "epoch 4/10" of the new run's
    opt.yaml (at 96 px), with results.csv's first rows gone. Now the new run removes the old last.pt."""
    from yolov7lib.engine.trainer import Trainer

    common = ["train", "--data", str(data_yaml), *COMMON, "--batch", "4", "--max-batches", "1", "--noval",
              "--project", str(tmp_path), "--name", "r", "--exist-ok"]  # fmt: skip
    assert main([*common, "--epochs", "1"]) == 0
    weights = tmp_path / "r" / "weights"
    assert load_checkpoint(weights / "last.pt")["epoch"] == 0

    def stopped(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_one_epoch", stopped)
    assert main([*common, "--epochs", "3"]) == 130
    assert capsys.readouterr().err.strip().endswith("has no finished epoch to resume")
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path / "r"), "--workers", "0"]) == 1
    assert "last.pt' not found" in capsys.readouterr().err


def test_a_run_without_amp_resumes_where_amp_is_on(data_yaml, tmp_path, monkeypatch) -> None:
    """A resume may move a run to another device (RESUME_TAKES_NEW); a CPU run's last.pt holds the state
    of a disabled GradScaler ({}), which an enabled one (CUDA) refused to load: "The source state dict is
    empty". AMP's scaler is switched on here on the CPU, as on CUDA; the resumed run starts it afresh."""
    import yaml

    from yolov7lib.engine.trainer import train

    train(data=str(data_yaml), model="yolov7-tiny-cpu", img=IMG, batch=4, epochs=1, max_batches=1, workers=0,
          noval=True, project=str(tmp_path), name="r", progress=False, plots=False)  # fmt: skip
    run = tmp_path / "r"
    assert load_checkpoint(run / "weights" / "last.pt")["scaler"] == {}
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    (run / "opt.yaml").write_text(yaml.safe_dump({**opt, "epochs": 2}))
    cpu_amp = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: cpu_amp("cpu", enabled=True))
    train(resume=str(run), workers=0, progress=False)
    scaler = load_checkpoint(run / "weights" / "last.pt")["scaler"]
    assert scaler["scale"] == cpu_amp("cpu", enabled=True).get_scale()  # started at the initial scale


def test_freeze_keeps_the_frozen_layers_of_a_fine_tune_bitwise_and_a_resume_keeps_freezing(
    data_yaml, tmp_path, caplog
) -> None:
    """--freeze 20 (the reference's first N layers) on a fine-tune with SGD, momentum, weight decay and the
    EMA: every tensor of layers 0-19 in last.pt's weights and EMA is the checkpoint's, bit for bit, after
    the first session and after a resume (which reads the option from opt.yaml), while the rest trains."""
    import logging

    import yaml

    from yolov7lib.data import load_data_config
    from yolov7lib.engine.trainer import train
    from yolov7lib.models import create_model

    torch.manual_seed(5)
    source = create_model("yolov7-tiny-cpu", nc=load_data_config(data_yaml).nc + 1)  # other classes
    ckpt = save_checkpoint({"model": source.state_dict(), "model_cfg": source.cfg}, tmp_path / "a.pt")
    frozen = {k: v for k, v in source.named_parameters() if int(k.split(".")[1]) < 20}
    with caplog.at_level(logging.INFO, logger="yolov7lib.engine.trainer"):
        train(data=str(data_yaml), weights=str(ckpt), hyp="tiny", freeze=[20], img=IMG, batch=4, epochs=1,
              max_batches=2, workers=0, noval=True, project=str(tmp_path), name="r", progress=False,
              plots=False)  # fmt: skip
    count = sum(v.numel() for v in frozen.values())
    line = f"--freeze 20: {len(frozen)} tensors ({count:,} parameters) of 20 layers (0-19) frozen"
    assert line in caplog.text
    run = tmp_path / "r"
    opt = yaml.safe_load((run / "opt.yaml").read_text())
    assert opt["freeze"] == [20]
    (run / "opt.yaml").write_text(yaml.safe_dump({**opt, "epochs": 2}))  # one epoch left to resume
    first = _state(run)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yolov7lib.engine.trainer"):
        train(resume=str(run), workers=0, progress=False)
    assert "--freeze" not in caplog.text  # the resume restores trained layers: none is at random
    second = _state(run)
    assert second["epoch"] == 1 and second["ema"]["updates"] > first["ema"]["updates"]
    for state in (first, second):
        for key, value in frozen.items():
            assert torch.equal(state["model"][key], value) and torch.equal(state["ema"]["model"][key], value)
    moved = [k for k, v in second["model"].items() if not torch.equal(v, first["model"][k])]
    assert not set(moved) & set(frozen)
    assert any(".conv.weight" in k for k in moved)  # the unfrozen layers trained on in the resumed epoch


def test_a_freeze_past_the_last_layer_is_refused_before_any_run_folder(data_yaml, tmp_path, capsys) -> None:
    args = ["--data", str(data_yaml), "--model", "yolov7-tiny-cpu", "--img", str(IMG), "--workers", "0",
            "--project", str(tmp_path)]  # fmt: skip
    assert main(["train", *args, "--freeze", "5", "78"]) == 1
    assert "--freeze 5 78: the model's layers are 0-77; no layer 78" in capsys.readouterr().err
    assert main(["train", *args, "--freeze", "78"]) == 1
    assert "freezes all 78 layers of the model: nothing would train" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_freezing_layers_that_no_weights_initialised_is_named(data_yaml, tmp_path, caplog) -> None:
    """Before: --freeze without --weights (or with weights of another architecture) froze layers at their
    random initialisation without a word; a fine-tune whose frozen tensors all came from --weights says
    nothing more than the freeze line."""
    import logging

    from yolov7lib.data import load_data_config
    from yolov7lib.engine.trainer import Trainer, TrainOptions
    from yolov7lib.models import create_model

    common = {"data": str(data_yaml), "img": IMG, "workers": 0, "noval": True, "progress": False,
              "plots": False, "project": str(tmp_path / "runs"), "freeze": [3]}  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="yolov7lib.engine.trainer"):
        Trainer(TrainOptions(**{**common, "freeze": 3}, model="yolov7-tiny-cpu"))  # train(freeze=3) as [3]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("--freeze: 9 of the 9 frozen tensors were not loaded (no --weights given)")

    source = create_model("yolov7-tiny", nc=load_data_config(data_yaml).nc)  # another width from layer 0
    other = save_checkpoint({"model": source.state_dict(), "model_cfg": source.cfg}, tmp_path / "b.pt")
    same = create_model("yolov7-tiny-cpu", nc=1)
    ckpt = save_checkpoint({"model": same.state_dict(), "model_cfg": same.cfg}, tmp_path / "a.pt")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yolov7lib.engine.trainer"):
        Trainer(TrainOptions(**common, weights=str(other), model="yolov7-tiny-cpu"))
        Trainer(TrainOptions(**common, weights=str(ckpt)))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"--freeze: 9 of the 9 frozen tensors were not loaded from {other} and keep their "
                        "random initialisation (first: model.0.conv.weight)"]  # fmt: skip


def test_a_fine_tune_into_the_run_its_weights_come_from_is_refused(
    data_yaml, tmp_path, capsys, monkeypatch
) -> None:
    """Before: `--weights runs/train/r/weights/best.pt --name r --exist-ok` (a fine-tune script reusing its
    run name) overwrote the very checkpoint it started from, and deleted the run's results.csv. So is its
    last.pt, also named relative to the current folder."""
    from yolov7lib.engine.trainer import train

    common = {"data": str(data_yaml), "model": "yolov7-tiny-cpu", "img": IMG, "batch": 4, "epochs": 1,
              "max_batches": 1, "workers": 0, "noval": True, "progress": False, "plots": False,
              "project": str(tmp_path), "name": "r"}  # fmt: skip
    train(**common)
    run = tmp_path / "r"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    best = run / "weights" / "best.pt"
    with pytest.raises(ValueError, match=r"is a checkpoint this run would overwrite \(--exist-ok reuses"):
        train(**common, weights=str(best), exist_ok=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"is a checkpoint this run would overwrite"):
        train(**common, weights="r/weights/last.pt", exist_ok=True)
    with pytest.raises(ValueError, match=r"is a checkpoint this run would overwrite"):  # --project relative
        train(**{**common, "project": "."}, weights=str(best), exist_ok=True)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    train(**common, weights=str(best))  # without --exist-ok the fine-tune goes to r2
    assert (tmp_path / "r2" / "weights" / "last.pt").is_file()
