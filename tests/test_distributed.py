"""Distributed pieces that run on CPU under torchrun with the gloo backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolov7lib.engine.distributed import CrossReplicaBatchNorm2d, convert_sync_batchnorm

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
