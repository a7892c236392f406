"""Distributed pieces that run on CPU under torchrun with the gloo backend."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from yolov7lib.engine.distributed import (
    CrossReplicaBatchNorm2d,
    DeviceError,
    DistContext,
    cleanup_distributed,
    convert_sync_batchnorm,
    init_distributed,
    select_device,
)

HERE = Path(__file__).parent


def _torchrun(script: Path, *args: str, nproc: int = 2) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    out = subprocess.run([*cmd, str(script), *args], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_cross_replica_batchnorm_equals_full_batch_batchnorm(tmp_path) -> None:
    result = tmp_path / "syncbn.pt"
    _torchrun(HERE / "dist" / "syncbn_worker.py", str(result))
    got = torch.load(result, weights_only=True)

    torch.manual_seed(0)
    x = (torch.randn(4, 3, 5, 5, dtype=torch.float64) * 3 + 1).requires_grad_(True)
    bn = torch.nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    y = bn(x)
    (y * torch.arange(y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    # the all-gathered halves are laid out rank by rank, as x.chunk(2) is
    torch.testing.assert_close(got["y"], y.detach())
    torch.testing.assert_close(got["dx"], x.grad)
    torch.testing.assert_close(got["dw"], bn.weight.grad)
    torch.testing.assert_close(got["rv"], bn.running_var)


def test_convert_sync_batchnorm_keeps_state_and_is_plain_outside_a_group() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    model[1].running_mean.fill_(0.5)
    params = list(model.parameters())
    converted = convert_sync_batchnorm(model, torch.device("cpu"))
    assert [id(p) for p in converted.parameters()] == [id(p) for p in params]  # optimizers keep working
    assert isinstance(converted[1], CrossReplicaBatchNorm2d)
    assert torch.equal(converted[1].running_mean, torch.full((4,), 0.5))
    x = torch.randn(2, 3, 4, 4)
    plain = torch.nn.BatchNorm2d(4)
    plain.load_state_dict(converted[1].state_dict())
    torch.testing.assert_close(converted[1](converted[0](x)), plain(converted[0](x)))


def test_select_device_maps_names_and_torchrun_local_ranks_to_gpus(monkeypatch) -> None:
    """With CUDA present (faked: torch.device needs no GPU): '' is the first GPU, 'N' and 'cuda:N' GPU N;
    under torchrun rank r takes the r-th listed id (or GPU r with none listed); a list outside torchrun
    is refused."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cuda = lambda i: torch.device("cuda", i)  # noqa: E731
    assert [select_device(d) for d in ("", "1", "cuda:2", " CUDA:3 ", "cpu")] == [
        cuda(0), cuda(1), cuda(2), cuda(3), torch.device("cpu")
    ]  # fmt: skip
    with pytest.raises(RuntimeError, match="names 2 GPUs: run under torchrun"):
        select_device("0,1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert [select_device(d) for d in ("", "2,3", "4,5,6")] == [cuda(1), cuda(3), cuda(5)]
    # more processes than listed GPUs: before, local rank 2 of --device 0,1 took GPU 0 as local rank 0 did,
    # and NCCL failed at the first collective with "Duplicate GPU detected : rank 2 and rank 0"
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(DeviceError, match="lists 2 GPUs but this node runs more processes"):
        select_device("0,1")


def test_a_one_process_torchrun_is_a_plain_single_process(monkeypatch) -> None:
    """torchrun --nproc_per_node 1 sets RANK 0 and WORLD_SIZE 1: no process group, rank -1, main process."""
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    ctx = init_distributed("cpu")
    assert ctx == DistContext(rank=-1, local_rank=-1, world_size=1, device=torch.device("cpu"))
    assert ctx.is_main and not ctx.distributed and not dist.is_initialized()
    assert DistContext(0, 0, 2, torch.device("cpu")).is_main
    assert not DistContext(1, 1, 2, torch.device("cpu")).is_main
    assert DistContext(1, 1, 2, torch.device("cpu")).distributed


def test_select_device_takes_cuda_and_refuses_other_names_clearly(monkeypatch) -> None:
    """Before: --device cuda (torch's name for the first GPU) and a misspelt name failed with "invalid
    literal for int() with base 10: 'cuda'"; -1 gave torch's "Device index must not be negative"."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert select_device("cuda") == select_device(" CUDA ") == torch.device("cuda", 0)
    for name in ("gpu", "cuda:x", "-1", "0,-1"):
        with pytest.raises(DeviceError, match="expected cpu, cuda, a GPU index"):
            select_device(name)


def test_a_one_process_torchrun_uses_the_gpu_that_device_names(monkeypatch) -> None:
    """torchrun --nproc_per_node 1 sets LOCAL_RANK 0 but is a plain single process: --device 1 is GPU 1 and
    a list of GPUs is refused as outside torchrun (before: GPU 0 for both, the list silently cut to one)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert select_device("1") == init_distributed("1").device == torch.device("cuda", 1)
    with pytest.raises(RuntimeError, match="names 2 GPUs: run under torchrun"):
        select_device("0,1")


def test_convert_sync_batchnorm_shares_the_batch_count_and_is_ours_off_cuda() -> None:
    """The converted layer keeps the very num_batches_tracked tensor (momentum=None averages by it), and
    every device but CUDA gets CrossReplicaBatchNorm2d (torch's SyncBatchNorm is for CUDA)."""
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(4))
    count = model[0].num_batches_tracked
    count.fill_(7)
    converted = convert_sync_batchnorm(model, torch.device("cpu"))
    assert converted[0].num_batches_tracked is count and int(converted[0].num_batches_tracked) == 7
    other = convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(4)), torch.device("mps"))
    assert type(other[0]) is CrossReplicaBatchNorm2d


def _one_process_group(path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=0, world_size=1)


def test_cross_replica_batchnorm_in_a_one_process_group_is_batchnorm(tmp_path) -> None:
    """In a process group of one, the layer's own (all-reduce) path must give BatchNorm2d's outputs, input
    gradients and running statistics (unbiased variance; momentum None: the cumulative average). Cleanup
    forgets the layers' private group, which dies with the process group it was made in."""
    import yolov7lib.engine.distributed as distributed_module

    torch.manual_seed(0)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        for momentum in (0.1, None):
            plain = torch.nn.BatchNorm2d(3, momentum=momentum).double()
            with torch.no_grad():
                plain.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
                plain.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
            ours = convert_sync_batchnorm(copy.deepcopy(torch.nn.Sequential(plain)), torch.device("cpu"))[0]
            assert type(ours) is CrossReplicaBatchNorm2d
            for _ in range(3):
                x = (torch.randn(4, 3, 5, 5, dtype=torch.float64) * 3 + 1).requires_grad_(True)
                x2 = x.detach().clone().requires_grad_(True)
                y, y2 = plain(x), ours(x2)
                w = torch.arange(y.numel(), dtype=y.dtype).view_as(y)
                (y * w).sum().backward()
                (y2 * w).sum().backward()
                torch.testing.assert_close(y2, y)
                torch.testing.assert_close(x2.grad, x.grad)
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                torch.testing.assert_close(getattr(ours, name), getattr(plain, name))
        assert distributed_module._BN_GROUP is not None
    finally:
        cleanup_distributed()
    assert distributed_module._BN_GROUP is None and not dist.is_initialized()


@pytest.mark.slow
def test_the_process_group_gives_up_after_the_timeout_it_was_given(tmp_path) -> None:
    """`--dist-timeout` reaches the process group: a rank waiting at a barrier for a rank that is late by a
    third of the timeout passes, and gives up after about the timeout when the other is three times late
    (torch's own NCCL default, 10 minutes, would abort a COCO run while rank 0 validates)."""
    import json

    result = tmp_path / "waits.json"
    _torchrun(HERE / "dist" / "timeout_worker.py", str(result), "1.5")
    on_time, late = json.loads(result.read_text())
    assert on_time["outcome"] == "passed"
    assert late["outcome"].startswith("gave up") and "1500ms" in late["outcome"], late
    assert 1.2 < late["waited_s"] < 3.5, late


def test_a_process_group_timeout_must_be_positive() -> None:
    for minutes in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="timeout must be positive minutes"):
            init_distributed("cpu", timeout_minutes=minutes)
