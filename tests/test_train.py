"""The trainer end to end on a tiny generated data set: run folder, exact resume after SIGKILL,
torchrun (gloo) against one process, and the NaN guard.

Training runs go through the `yolov7` command in subprocesses, as users run them (and so that
`--deterministic`, a process-wide switch, does not leak into other tests).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

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
def test_sigkill_mid_epoch_then_resume_ends_with_the_uninterrupted_weights(data_yaml, tmp_path) -> None:
    args = [*COMMON, "--data", str(data_yaml), "--epochs", "3", "--batch", "4", "--max-batches", "3",
            "--deterministic", "--project", str(tmp_path)]  # fmt: skip
    full = _yolov7(*args, "--name", "full")
    assert full.returncode == 0, full.stderr[-3000:]

    killed = _yolov7(*args, "--name", "killed", env={"YOLOV7LIB_KILL_AT": "1:1"})
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL in the middle of the second epoch
    survivor = _state(tmp_path / "killed")
    assert survivor["epoch"] == 0  # the checkpoint of the first epoch is intact and readable

    resumed = _yolov7("--resume", str(tmp_path / "killed"), "--workers", "0")
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


def _initial_state(data_yaml: Path) -> dict:
    from yolov7lib.data import load_data_config
    from yolov7lib.models import create_model

    torch.manual_seed(3)
    return create_model("yolov7-tiny", nc=load_data_config(data_yaml).nc).double().state_dict()


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_keeps_last_checkpoint(data_yaml, tmp_path, monkeypatch) -> None:
    import yolov7lib.loss as loss_module
    from yolov7lib.engine.trainer import TrainingDiverged, train

    real_build = loss_module.build_loss
    calls = {"n": 0}

    class Poisoned:
        """The real loss, except that its 4th call returns NaN (epoch 2, batch 0)."""

        def __init__(self, real) -> None:
            self.real = real

        def distribute(self, world_size: int) -> None:
            self.real.distribute(world_size)

        def __call__(self, preds, targets, imgs):
            calls["n"] += 1
            value, items = self.real(preds, targets, imgs)
            return (value * float("nan"), items) if calls["n"] == 4 else (value, items)

    def poisoned_build(model, hyp, img_size=640):
        return Poisoned(real_build(model, hyp, img_size=img_size))

    monkeypatch.setattr(loss_module, "build_loss", poisoned_build)
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
