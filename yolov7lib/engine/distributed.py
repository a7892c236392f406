"""Device selection and distributed set-up for torchrun (DDP: nccl on GPUs, gloo on CPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: rank -1 means a plain single process (no torchrun)."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank in (-1, 0)


class DeviceError(RuntimeError):
    """--device names a device this process cannot use (no CUDA here, or several GPUs outside torchrun)."""


def select_device(device: str = "") -> torch.device:
    """'cpu', '0', '0,1', 'cuda' or '' (first GPU if any, else CPU) -> torch.device for this process."""
    device = str(device).strip().lower().replace("cuda:", "")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if device:
            raise DeviceError(
                f"--device {device} asks for a GPU but CUDA is not available here; use --device cpu"
            )
        return torch.device("cpu")
    try:  # 'cuda' is torch's name for the first GPU
        ids = [int(x) for x in ("" if device == "cuda" else device).split(",") if x.strip() != ""] or [0]
    except ValueError:
        ids = [-1]
    if min(ids) < 0:
        raise DeviceError(f"--device {device}: expected cpu, cuda, a GPU index (0) or a list of them (0,1)")
    # a one-process torchrun (WORLD_SIZE 1, LOCAL_RANK 0) is a plain single process: --device decides
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    local_rank = int(os.environ.get("LOCAL_RANK", -1)) if distributed else -1
    if local_rank >= 0:
        if len(ids) == 1:
            return torch.device("cuda", local_rank)
        if local_rank >= len(ids):  # NCCL refuses two processes on one GPU ("Duplicate GPU detected")
            raise DeviceError(
                f"--device {device} lists {len(ids)} GPUs but this node runs more processes (local rank "
                f"{local_rank}): list one GPU per process or give torchrun --nproc_per_node {len(ids)}"
            )
        return torch.device("cuda", ids[local_rank])
    if len(ids) > 1:
        raise DeviceError(
            f"--device {device} names {len(ids)} GPUs: run under torchrun, e.g. "
            f"`torchrun --nproc_per_node {len(ids)} -m yolov7lib train ...`"
        )
    return torch.device("cuda", ids[0])


def synchronize(device: torch.device) -> None:
    """Wait until the work queued on `device` is done (CUDA runs asynchronously), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


DEFAULT_TIMEOUT_MINUTES = 30.0
"""How long a collective waits for the slowest process. Rank 0 alone validates after each epoch (on COCO,
minutes of inference and pycocotools) while the others wait at a barrier: torch's own NCCL default (10
minutes) would abort such a run, so the process group gets the 30 minutes the reference had with torch 1.x."""


def init_distributed(device: str = "", timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> DistContext:
    """Read torchrun's environment and join the process group (gloo on CPU, nccl on CUDA), whose
    collectives give up after `timeout_minutes` (see DEFAULT_TIMEOUT_MINUTES)."""
    if not timeout_minutes > 0:
        raise ValueError(f"the process group timeout must be positive minutes, not {timeout_minutes}")
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", -1)) if world_size > 1 else -1
    local_rank = int(os.environ.get("LOCAL_RANK", -1)) if world_size > 1 else -1
    dev = select_device(device)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_minutes))
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


def cleanup_distributed() -> None:
    global _BN_GROUP
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _BN_GROUP = None


# CrossReplicaBatchNorm2d reduces over its own process group, so that its collectives (issued in the
# middle of backward) can never be paired with DistributedDataParallel's bucket all-reduces.
_BN_GROUP: Any = None


class _AllReduceSum(torch.autograd.Function):
    """Sum a tensor over all ranks; the gradient of every rank's input is the sum of all output grads."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: Any = None) -> torch.Tensor:  # type: ignore[override]
        ctx.group = group
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class CrossReplicaBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed over the whole global batch, on any device.

    torch.nn.SyncBatchNorm runs only on GPUs; this layer does the same with differentiable all-reduces
    (`_AllReduceSum`), so that CPU runs under torchrun/gloo normalise like one process holding the
    global batch. Outside a process group it is a plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        # Two passes, as a numerically careful BatchNorm does: the global mean first, then the global
        # mean of squared deviations (E[x^2] - mean^2 would cancel catastrophically in float32).
        c = x.shape[1]
        shape = (1, c, 1, 1)
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dim=(0, 2, 3)), count]), _BN_GROUP)
        n = sums[-1]
        mean = sums[:c] / n
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dim=(0, 2, 3)), _BN_GROUP) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / max(n - 1, 1), alpha=m)
        y = centred / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Replace BatchNorm2d layers by cross-replica ones: torch.s SyncBatchNorm on CUDA, ours elsewhere."""
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    global _BN_GROUP
    if _BN_GROUP is None and dist.is_available() and dist.is_initialized():
        _BN_GROUP = dist.new_group()
    return _convert(model)


def _convert(model: torch.nn.Module) -> torch.nn.Module:
    for name, child in model.named_children():
        if type(child) is torch.nn.BatchNorm2d:
            new = CrossReplicaBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            # keep the very same parameter and buffer objects: an optimizer may already hold them
            new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var = child.running_mean, child.running_var
            new.num_batches_tracked = child.num_batches_tracked
            setattr(model, name, new)
        else:
            _convert(child)
    return model
