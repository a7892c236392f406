"""Engine building blocks: atomic checkpoints, RNG capture, EMA, parameter groups and the LR schedule."""

from __future__ import annotations

import math
import os
import pickle
import random

import numpy as np
import pytest
import torch
from torch import nn

from yolov7lib.configs import load_hyp
from yolov7lib.engine import checkpoint as checkpoint_module
from yolov7lib.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from yolov7lib.engine.ema import ModelEMA
from yolov7lib.engine.optim import Schedule, build_optimizer, lr_factor, parameter_groups


class _Implicit(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.implicit = nn.Parameter(torch.zeros(1, c, 1, 1))


def _toy() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.SiLU(), _Implicit(8), nn.Conv2d(8, 4, 1)
    )


# --- checkpoints -------------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path) -> None:
    state = {"epoch": 3, "model": _toy().state_dict(), "names": ["a", "b"], "nested": {"x": [1, 2.5]}}
    path = save_checkpoint(state, tmp_path / "w" / "last.pt")
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["names"] == ["a", "b"] and back["nested"] == {"x": [1, 2.5]}
    for k, v in state["model"].items():
        assert torch.equal(back["model"][k], v)


def test_failed_write_keeps_previous_checkpoint_and_leaves_no_temp_file(tmp_path) -> None:
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"epoch": 2, "bad": Unpicklable()}, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_a_write_cut_short_by_a_size_limit_is_a_clear_error_and_keeps_the_old_file(tmp_path) -> None:
    """A full disk or `ulimit -f` (Python ignores SIGXFSZ, so writes fail): before, torch's zip writer's
    "[enforce fail at inline_container.cc] unexpected pos" came up as a traceback from `yolov7 train`."""
    import resource

    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(CheckpointError, match=r"last\.pt' could not be written .*disk full") as err:
            save_checkpoint({"epoch": 2, "w": torch.zeros(256 * 1024)}, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "inline_container" not in str(err.value)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_a_full_disk_at_the_flush_is_a_clear_error_and_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    """The data a full disk refuses may only be reported at the fsync, as OSError ENOSPC (not torch's
    "unexpected pos"): the same CheckpointError with the system's reason, and the old file as it was."""
    import errno

    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(
        CheckpointError, match=r"last\.pt' could not be written \(No space left on device: is"
    ):
        save_checkpoint({"epoch": 2}, path)
    assert sorted(os.listdir(tmp_path)) == ["last.pt"] and load_checkpoint(path) == {"epoch": 1}


def test_a_checkpoint_gets_the_permissions_of_any_new_file(tmp_path) -> None:
    """mkstemp makes its file private (0600); the renamed checkpoint follows the umask like open() does."""
    old = os.umask(0o027)
    try:
        path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o640


def test_removing_partial_writes_deletes_only_the_temporary_files_of_the_named_checkpoint(
    tmp_path, monkeypatch
) -> None:
    """A process killed between save_checkpoint's write and its rename leaves its temporary file (made here
    by skipping the rename): remove_partial_writes deletes those of the checkpoint it names, returns their
    bytes, and keeps every other file, however close its name (a backup, another checkpoint's, a folder)."""
    from yolov7lib.engine.checkpoint import remove_partial_writes

    last, best = save_checkpoint({"epoch": 1}, tmp_path / "last.pt"), tmp_path / "best.pt"

    def killed_mid_save(n: int, path) -> tuple:
        before = set(tmp_path.iterdir())
        with monkeypatch.context() as m:
            m.setattr(checkpoint_module.os, "replace", lambda src, dst: None)
            save_checkpoint({"w": torch.zeros(n)}, path)
        (left,) = set(tmp_path.iterdir()) - before
        return left, left.stat().st_size

    partial = [killed_mid_save(n, last) for n in (1000, 3000)]
    best_partial, best_size = killed_mid_save(10, best)
    mine = [".notes.tmp", "last.pt.bak", ".last.pt.orig", "x.last.pt.1.tmp"]
    for name in mine:
        (tmp_path / name).write_text("mine")
    (tmp_path / ".last.pt.dir.tmp").mkdir()
    assert remove_partial_writes(last) == sum(size for _, size in partial) > 3000 * 4
    assert sorted(os.listdir(tmp_path)) == sorted(["last.pt", best_partial.name, ".last.pt.dir.tmp", *mine])
    assert remove_partial_writes(last) == 0
    assert remove_partial_writes(best) == best_size and not best_partial.exists()
    assert remove_partial_writes(tmp_path / "absent" / "last.pt") == 0


def test_damaged_checkpoints_give_clear_errors(tmp_path) -> None:
    good = save_checkpoint({"w": torch.arange(1000.0)}, tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n" * 20)
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")
    for damaged in (truncated, text):
        with pytest.raises(CheckpointError, match=r"cannot be read: not a complete torch\.save archive"):
            load_checkpoint(damaged)
    with pytest.raises(CheckpointError, match="it pickles Python objects") as err:
        load_checkpoint(tmp_path / "module.pt")
    assert "weights_only=False" not in str(err.value) and "\n" not in str(err.value)  # no advice to run it
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


# The plain pickle below uses Python's default protocol; torch's safe unpickler warns about it before
# refusing the file. The refusal is what this test checks, so that warning is expected here.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_malicious_pickle_is_refused_without_running(tmp_path, code_running_checkpoint) -> None:
    evil = code_running_checkpoint
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(evil.path)
    assert not evil.marker.exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"model": evil.payload}))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)
    assert not evil.marker.exists()


def test_rng_state_survives_a_checkpoint(tmp_path) -> None:
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    torch.manual_seed(3)
    path = save_checkpoint({"rng": rng_state()}, tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    random.seed(99)
    np.random.seed(99)  # noqa: NPY002
    torch.manual_seed(99)
    set_rng_state(load_checkpoint(path)["rng"])
    second = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


def test_cuda_rng_states_of_more_gpus_than_here_restore_those_present(monkeypatch) -> None:
    """rng_state keeps one CUDA state per visible GPU; a run saved on 2 GPUs and resumed on 1 (fewer GPUs,
    or CUDA_VISIBLE_DEVICES) set the state of GPU 1 too: torch.cuda.default_generators[1], IndexError.
    CUDA is faked: the setter stands for torch's, whose generators exist for the GPUs present only."""
    present, restored = 1, []

    def set_state(new_state: torch.Tensor, device: int = 0) -> None:
        if device >= present:
            raise IndexError("tuple index out of range")  # torch.cuda.default_generators[device]
        restored.append((device, new_state))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: present)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_state)  # what set_rng_state_all calls
    gpu0, gpu1 = torch.tensor([1], dtype=torch.uint8), torch.tensor([2], dtype=torch.uint8)
    state = {**rng_state(), "cuda": [gpu0, gpu1]}
    set_rng_state(state)
    assert len(restored) == 1 and restored[0][0] == 0 and restored[0][1] is gpu0


# --- EMA ---------------------------------------------------------------------------------------------


def test_ema_matches_the_closed_form_average() -> None:
    torch.manual_seed(0)
    model = _toy()
    ema = ModelEMA(model, decay=0.9, tau=3.0)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        d = 0.9 * (1 - math.exp(-step / 3.0))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                expected[k] = d * expected[k] + (1 - d) * v
    for k, v in ema.ema.state_dict().items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(v, expected[k])
    assert ema.updates == 5
    assert all(not p.requires_grad for p in ema.ema.parameters())


# --- optimizer and schedule ----------------------------------------------------------------------------


def test_parameter_groups_follow_the_reference_split() -> None:
    model = _toy()
    no_decay, decay, bias = parameter_groups(model)
    conv0, bn, _, implicit, conv1 = model
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(no_decay) == {id(bn.weight), id(implicit.implicit)}
    assert ids(decay) == {id(conv0.weight), id(conv1.weight)}
    assert ids(bias) == {id(bn.bias), id(conv1.bias)}
    assert len(no_decay) + len(decay) + len(bias) == len(list(model.parameters()))

    hyp = load_hyp("p5")
    opt = build_optimizer(model, hyp, total_batch_size=16)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2, 2]
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["weight_decay"] == 0
    # batch 16 -> accumulate 4 -> decay scaled by 16 * 4 / 64 = 1
    assert opt.param_groups[1]["weight_decay"] == pytest.approx(hyp["weight_decay"])
    opt = build_optimizer(model, hyp, total_batch_size=24)  # accumulate round(64/24)=3 -> 24*3/64
    assert opt.param_groups[1]["weight_decay"] == pytest.approx(hyp["weight_decay"] * 72 / 64)


def _reference_lr(hyp, epochs, nw, j, ni, epoch) -> float:
    """The reference's rule written out by hand: straight line during warm-up, cosine one-cycle after."""
    lf = ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (hyp["lrf"] - 1) + 1
    end = hyp["lr0"] * lf
    if ni > nw:
        return end
    start = hyp["warmup_bias_lr"] if j == 2 else 0.0
    return start + (end - start) * ni / nw


@pytest.mark.parametrize("ni", [0, 1, 7, 500, 999, 1000, 1001, 2345])
def test_schedule_matches_reference_formulas(ni: int) -> None:
    hyp = load_hyp("p5")
    epochs, nb = 30, 40  # 3 warm-up epochs = 120 batches < 1000 -> 1000 warm-up iterations
    sched = Schedule(hyp, epochs=epochs, batches_per_epoch=nb, total_batch_size=16)
    assert sched.warmup_iters == 1000
    epoch = ni // nb
    model = _toy()
    opt = build_optimizer(model, hyp, total_batch_size=16)
    sched.apply(opt, ni, epoch)
    for j, group in enumerate(opt.param_groups):
        assert group["lr"] == pytest.approx(_reference_lr(hyp, epochs, 1000, j, ni, epoch), rel=1e-12)
        mom = hyp["momentum"] if ni > 1000 else 0.8 + (hyp["momentum"] - 0.8) * ni / 1000
        assert group["momentum"] == pytest.approx(mom, rel=1e-12)
    acc = 4 if ni > 1000 else max(1, round(1 + 3 * ni / 1000))
    assert sched.accumulate(ni) == acc


def test_nominal_batch_sets_accumulation_and_weight_decay() -> None:
    hyp = {**load_hyp("p5"), "nbs": 16}
    sched = Schedule({**hyp, "warmup_min_iters": 0, "warmup_epochs": 0}, epochs=3, batches_per_epoch=10,
                     total_batch_size=16)  # fmt: skip
    assert sched.accumulate(50) == 1  # one optimizer step per batch of 16
    opt = build_optimizer(_toy(), hyp, total_batch_size=8)  # accumulate 2 -> decay x 8 * 2 / 16
    assert opt.param_groups[1]["weight_decay"] == pytest.approx(hyp["weight_decay"])
    assert Schedule({**hyp, "nbs": 64}, 3, 10, 16).accumulate(5000) == 4


def test_accumulation_rounds_nominal_over_total_batch_to_the_nearest_step() -> None:
    """The reference's max(round(nbs / total batch), 1): 64 / 48 -> 1, 64 / 28 -> 2, 64 / 20 -> 3."""
    from yolov7lib.engine.optim import accumulation_steps

    assert [accumulation_steps(b) for b in (48, 28, 20, 64, 200)] == [1, 2, 3, 1, 1]
    assert accumulation_steps(6, nominal=16) == 3  # 2.67


def test_adam_option_keeps_the_groups_and_uses_momentum_as_beta1() -> None:
    model = _toy()
    hyp = {**load_hyp("tiny"), "optimizer": "adam", "lr0": 0.001}
    opt = build_optimizer(model, hyp, total_batch_size=16)
    sgd = build_optimizer(model, load_hyp("tiny"), total_batch_size=16)
    assert isinstance(opt, torch.optim.Adam) and isinstance(sgd, torch.optim.SGD)
    assert [len(g["params"]) for g in opt.param_groups] == [len(g["params"]) for g in sgd.param_groups]
    assert [g["weight_decay"] for g in opt.param_groups] == [g["weight_decay"] for g in sgd.param_groups]
    assert opt.param_groups[0]["betas"] == (hyp["momentum"], 0.999)
    Schedule(hyp, epochs=3, batches_per_epoch=10, total_batch_size=16).apply(opt, 5, 0)  # no momentum key
    assert opt.param_groups[0]["betas"] == (hyp["momentum"], 0.999)
    with pytest.raises(ValueError, match="sgd' or 'adam"):
        build_optimizer(model, {**hyp, "optimizer": "rmsprop"}, total_batch_size=16)


def test_a_checkpoint_without_read_permission_is_reported_by_the_reason(tmp_path, monkeypatch) -> None:
    """Permission denied (faked: the tests run as root) is a CheckpointError in the OS's words."""
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(CheckpointError, match=r"cannot be read: Permission denied$"):
        load_checkpoint(path)


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def test_ema_model_is_in_inference_mode_and_forwards_leave_its_average_alone() -> None:
    """Section 4.3 (3): the EMA model is the inference model. In eval mode a forward pass uses, and does not
    update, BatchNorm's running statistics, which belong to the average."""
    torch.manual_seed(0)
    model = _net().train()
    ema = ModelEMA(model)
    assert not ema.ema.training
    before = {k: v.clone() for k, v in ema.ema.state_dict().items()}
    x = torch.randn(4, 3, 8, 8) * 3 + 1
    with torch.no_grad():
        out = ema.ema(x)
    for k, v in ema.ema.state_dict().items():
        assert torch.equal(v, before[k]), k
    twin = _net()
    twin.load_state_dict(before)
    with torch.no_grad():
        torch.testing.assert_close(out, twin.eval()(x))  # the running statistics, not the batch's


def test_ema_resumed_from_its_state_dict_continues_the_same_decay_schedule() -> None:
    """d = decay (1 - exp(-updates / tau)) depends on the update count, which a resumed EMA must restore:
    an EMA loaded after 3 updates and one that never stopped give the same weights after the next update."""
    torch.manual_seed(1)
    model = _net()
    running = ModelEMA(model, decay=0.9, tau=3.0)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        running.update(model)
    resumed = ModelEMA(_net(), decay=0.9, tau=3.0)
    resumed.load_state_dict(running.state_dict())
    assert resumed.updates == 3
    assert resumed.current_decay() == pytest.approx(0.9 * (1 - math.exp(-1.0)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    running.update(model)
    resumed.update(model)
    for k, v in running.ema.state_dict().items():
        torch.testing.assert_close(resumed.ema.state_dict()[k], v, rtol=0, atol=0)


# --- optimizer and schedule ----------------------------------------------------------------------------


def test_only_the_decay_group_is_shrunk_by_weight_decay() -> None:
    """With zero gradients one SGD step moves only the decay group: Nesterov SGD's first step is
    p -= lr (g + wd p)(1 + momentum) with g = 0. Biases and BatchNorm weights have no decay (reference)."""
    torch.manual_seed(2)
    model = _net()
    hyp = load_hyp("p5")
    opt = build_optimizer(model, hyp, total_batch_size=16)  # accumulate 4: decay scaled by 16 x 4 / 64 = 1
    assert [g["weight_decay"] for g in opt.param_groups] == [0, pytest.approx(hyp["weight_decay"]), 0]
    before = {k: v.clone() for k, v in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    shrink = 1 - hyp["lr0"] * hyp["weight_decay"] * (1 + hyp["momentum"])
    for name, p in model.named_parameters():
        if name in ("0.weight", "2.weight"):  # convolution weights
            torch.testing.assert_close(p, before[name] * shrink)
        else:  # BatchNorm weight, BatchNorm bias, convolution bias
            assert torch.equal(p, before[name]), name


def test_linear_lr_factor_reaches_lrf_in_the_last_epoch() -> None:
    """The reference's linear schedule: lf(x) = (1 - x / (epochs - 1)) (1 - lrf) + lrf, so 1 in epoch 0 and
    lrf in the last epoch (epochs - 1)."""
    lf = lr_factor({"lrf": 0.1}, epochs=10, linear=True)
    assert lf(0) == pytest.approx(1.0)
    assert lf(9) == pytest.approx(0.1)
    assert lf(4.5) == pytest.approx(0.55)


def test_warmup_length_rounds_epochs_times_batches_to_the_nearest_iteration() -> None:
    """The reference: nw = max(round(warmup_epochs * nb), min_iters). 0.7 x 11 = 7.7 -> 8 iterations, so at
    iteration 7 the weight lr is still 7/8 of the way from 0 to its target."""
    hyp = {**load_hyp("p5"), "warmup_epochs": 0.7, "warmup_min_iters": 0}
    sched = Schedule(hyp, epochs=3, batches_per_epoch=11, total_batch_size=16)
    assert sched.warmup_iters == 8
    target = hyp["lr0"] * sched.lf(0)
    assert sched.lr(1, 7, 0) == pytest.approx(target * 7 / 8, rel=1e-12)


def test_a_checkpoint_is_written_beside_the_destination_then_renamed(tmp_path, monkeypatch) -> None:
    """While the new checkpoint is written, the old one is intact and the data go to a temporary file in
    the same folder (a rename within one file system is atomic)."""
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    old = path.read_bytes()
    seen = []
    real_save = torch.save

    def spy(obj, f, *args, **kwargs):
        seen.append((path.read_bytes() == old, sorted(p.name for p in tmp_path.iterdir())))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", spy)
    save_checkpoint({"epoch": 2}, path)
    assert len(seen) == 1
    intact, names = seen[0]
    assert intact
    temps = [n for n in names if n != "last.pt"]
    assert len(temps) == 1 and temps[0].startswith(".last.pt.") and temps[0].endswith(".tmp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert load_checkpoint(path) == {"epoch": 2}


def test_a_checkpoint_reaches_the_disk_before_the_rename(tmp_path, monkeypatch) -> None:
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    assert events == ["fsync", "replace"]


def test_an_interrupted_write_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path) -> None:
    """Ctrl-C (KeyboardInterrupt, not an Exception) during torch.save cleans up like any failure."""
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")

    class Interrupted:
        def __reduce__(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2, "x": Interrupted()}, path)
    assert sorted(os.listdir(tmp_path)) == ["last.pt"] and load_checkpoint(path) == {"epoch": 1}


def test_a_checkpoint_that_is_not_a_dict_is_refused(tmp_path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="holds a list, not a dict"):
        load_checkpoint(path)


def test_an_empty_checkpoint_is_reported_as_empty(tmp_path) -> None:
    path = tmp_path / "last.pt"  # a name without the word 'empty' in it
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)"):
        load_checkpoint(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_bare_pickle_is_reported_as_pickled_objects(tmp_path) -> None:
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"model": nn.Linear(2, 2)}, protocol=2))
    with pytest.raises(CheckpointError, match="it pickles Python objects"):
        load_checkpoint(path)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pickled_code_is_refused_when_the_environment_disables_weights_only(
    code_running_checkpoint, monkeypatch
) -> None:
    """torch's default (weights_only=True) can be overridden by the environment; the explicit one is not."""
    evil = code_running_checkpoint
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="it pickles Python objects"):
        load_checkpoint(evil.path)
    assert not evil.marker.exists()


def test_rng_state_keeps_the_cached_gaussians(tmp_path) -> None:
    """random.gauss and NumPy's legacy normal draw in pairs and cache the second value: it is state too."""
    random.seed(5)
    np.random.seed(6)  # noqa: NPY002
    random.gauss(0.0, 1.0)
    np.random.standard_normal()  # noqa: NPY002
    path = save_checkpoint({"rng": rng_state()}, tmp_path / "rng.pt")
    first = (random.gauss(0.0, 1.0), np.random.standard_normal())  # noqa: NPY002
    random.seed(99)
    np.random.seed(99)  # noqa: NPY002
    set_rng_state(load_checkpoint(path)["rng"])
    assert (random.gauss(0.0, 1.0), np.random.standard_normal()) == first  # noqa: NPY002


def test_run_folders_number_one_above_the_highest_in_use_as_the_reference(tmp_path) -> None:
    """The reference's increment_path: exp, then exp2, exp3, ...; with exp and exp3 there (exp2 deleted) the
    next run is exp4, not exp2, so the newest run keeps the highest number; a free name is used as it is."""
    from yolov7lib.engine.runs import increment_run_dir

    assert increment_run_dir(tmp_path, "exp") == tmp_path / "exp"
    (tmp_path / "exp").mkdir()
    assert increment_run_dir(tmp_path, "exp") == tmp_path / "exp2"
    assert increment_run_dir(tmp_path, "exp", exist_ok=True) == tmp_path / "exp"
    for other in ("exp3", "exp_old9", "expa7", "myexp12", "run5"):
        (tmp_path / other).mkdir()
    assert increment_run_dir(tmp_path, "exp") == tmp_path / "exp4"  # exp_old9, expa7, myexp12 are not runs
    (tmp_path / "exp10").mkdir()
    assert increment_run_dir(tmp_path, "exp") == tmp_path / "exp11"
    assert increment_run_dir(tmp_path, "run") == tmp_path / "run"  # run5 alone: run is free


def test_a_run_folder_taken_between_naming_and_making_moves_to_the_next_number(tmp_path, monkeypatch) -> None:
    """Two runs started together: another process makes the folder just after this one named it. The run
    takes the next number and never writes into theirs; with exist_ok the folder is reused, and a file where
    it should be is an error (not an endless retry)."""
    from yolov7lib.engine import runs

    real, named = runs.increment_run_dir, []

    def another_run_takes_it(*args, **kwargs):
        path = real(*args, **kwargs)
        if not named:
            path.mkdir(parents=True)
            (path / "theirs.txt").write_text("x")
        named.append(path)
        assert len(named) < 10, "create_run_dir keeps retrying"
        return path

    monkeypatch.setattr(runs, "increment_run_dir", another_run_takes_it)
    assert runs.create_run_dir(tmp_path, "exp") == tmp_path / "exp2" and (tmp_path / "exp2").is_dir()
    assert os.listdir(tmp_path / "exp") == ["theirs.txt"] and named == [tmp_path / "exp", tmp_path / "exp2"]
    assert runs.create_run_dir(tmp_path, "exp", exist_ok=True) == tmp_path / "exp"
    (tmp_path / "notes").write_text("mine")
    with pytest.raises(FileExistsError):
        runs.create_run_dir(tmp_path, "notes", exist_ok=True)
    assert runs.create_run_dir(tmp_path, "notes") == tmp_path / "notes2" and (tmp_path / "notes").is_file()


def test_resume_takes_the_run_folder_or_its_last_pt_as_the_reference_does(tmp_path) -> None:
    """The reference's train.py takes --resume path/to/last.pt (the run is two folders up); the run folder
    works as before, and any other file is refused by name rather than read as a folder."""
    import yaml

    from yolov7lib.engine.trainer import RESUME_KEYS, Trainer, TrainOptions

    run = tmp_path / "exp"
    (run / "weights").mkdir(parents=True)
    (run / "opt.yaml").write_text(yaml.safe_dump({"data": "d.yaml", "epochs": 5, "img": 96}))
    save_checkpoint({**dict.fromkeys(RESUME_KEYS, 0), "epoch": 1}, run / "weights" / "last.pt")
    save_checkpoint({"epoch": 1}, run / "weights" / "best.pt")
    for given in (run, run / "weights" / "last.pt"):
        resumed, ckpt = Trainer._load_resume(TrainOptions(resume=str(given), workers=0))
        assert resumed.resume == str(run) and (resumed.data, resumed.epochs, resumed.img) == ("d.yaml", 5, 96)
        assert ckpt["epoch"] == 1 and resumed.workers == 0
    with pytest.raises(ValueError, match=r"best\.pt: give a run folder or its weights/last\.pt"):
        Trainer._load_resume(TrainOptions(resume=str(run / "weights" / "best.pt")))


# --- --freeze (the reference's train.py --freeze) ------------------------------------------------------


def _reference_frozen_names(model: nn.Module, freeze: list[int]) -> list[str]:
    """The reference's rule as its train.py writes it: name patterns `model.<i>.` matched anywhere in a
    parameter's name, `i` in range(N) for one number N, else the numbers given."""
    patterns = [f"model.{x}." for x in (freeze if len(freeze) > 1 else range(freeze[0]))]
    return [k for k, _ in model.named_parameters() if any(x in k for x in patterns)]


@pytest.mark.parametrize(
    ("name", "freeze"),
    [
        ("yolov7", [50]),  # the reference's help: "backbone of yolov7=50"
        ("yolov7-tiny", [50]),
        ("yolov7", [0, 1, 2]),  # "first3=0 1 2"
        ("yolov7-tiny", [5, 77]),  # a middle layer and the IDetect head
        ("yolov7-w6", [3, 122]),  # P6: the IAuxDetect head, lead and auxiliary convolutions
        ("yolov7-e6e", [40]),  # E-ELAN's merged cardinality blocks
    ],
)
def test_freeze_selects_the_parameters_the_reference_rule_names(name: str, freeze: list[int]) -> None:
    """The frozen set is taken layer by layer (`Model.model[i]`) and compared with the reference's name
    patterns over the state-dict names, which are the official ones (benchmarks/compare_official_models.py:
    identical keys for every official cfg)."""
    from yolov7lib.engine.optim import freeze_layers
    from yolov7lib.models import create_model

    with torch.device("meta"):
        model = create_model(name)
    frozen = freeze_layers(model, freeze)
    want = _reference_frozen_names(model, freeze)
    assert sorted(frozen) == sorted(want) and want
    assert [k for k, p in model.named_parameters() if not p.requires_grad] == want
    if freeze == [50] and name == "yolov7":  # the first 50 of the backbone's 51 rows; the head trains
        assert len(model.cfg["backbone"]) == 51
        assert all(p.requires_grad for p in model.model[50:].parameters())


@pytest.mark.parametrize(
    ("freeze", "message"),
    [
        ([-1], "from 0, got -1"),
        ([2.0], "whole numbers"),
        (["3"], "whole numbers"),
        ([True], "whole numbers"),
        ([79], "has 78 layers; give at most 77"),
        ([3, 78], "layers are 0-77; no layer 78"),
        ([78], "all 78 layers"),
        (list(range(78)), "all 78 layers"),
    ],
)
def test_freeze_refuses_what_names_no_layer_or_leaves_nothing_to_train(freeze: list, message: str) -> None:
    from yolov7lib.engine.optim import frozen_layers

    with pytest.raises(ValueError, match=message):
        frozen_layers(freeze, 78)
    assert frozen_layers([], 78) == frozen_layers([0], 78) == []
    assert frozen_layers([3, 1, 3], 78) == [1, 3]


@pytest.mark.parametrize("wrapped", [False, True])
def test_frozen_parameters_get_no_step_no_weight_decay_and_keep_their_average(wrapped: bool) -> None:
    """Frozen parameters are left out of the optimizer: with a zero gradient on every parameter, weight
    decay would still shrink a frozen convolution weight in it. The EMA leaves them as they are: after
    2000 updates its d x + (1 - d) x rounds away from x in about a quarter of the values. Under DDP the
    trainer hands the EMA the wrapper, whose parameter names start with `module.` (DataParallel here)."""
    torch.manual_seed(4)
    model = _net()
    model[0].weight.requires_grad_(False)  # what freeze_layers does
    model[1].bias.requires_grad_(False)
    frozen = {"0.weight": model[0].weight.detach().clone(), "1.bias": model[1].bias.detach().clone()}
    opt = build_optimizer(model, load_hyp("p5"), total_batch_size=16)
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.parameters() if p.requires_grad}
    given = nn.DataParallel(model) if wrapped else model
    ema = ModelEMA(given, updates=2000)
    for _ in range(3):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        ema.update(given)
    params, averaged = dict(model.named_parameters()), ema.ema.state_dict()
    for k, v in frozen.items():
        assert torch.equal(params[k], v) and torch.equal(averaged[k], v), k
    assert not torch.equal(params["2.weight"], averaged["2.weight"])  # the others moved and are averaged


def test_an_optimizer_whose_no_decay_group_is_all_frozen_is_built() -> None:
    """Before: freezing every BatchNorm of a model whose head has no implicit vector (Detect) emptied the
    first parameter group, and torch refused it ("optimizer got an empty parameter list")."""
    model = _net()
    model[1].requires_grad_(False)
    for kind in ("sgd", "adam"):
        opt = build_optimizer(model, {**load_hyp("p5"), "optimizer": kind}, total_batch_size=16)
        assert [len(g["params"]) for g in opt.param_groups] == [0, 2, 1]
