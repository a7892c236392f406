"""Device selection and distributed set-up for torchrun (DDP: nccl on GPUs, gloo on CPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass

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


def select_device(device: str = "") -> torch.device:
    """'cpu', '0', '0,1' or '' (first GPU if any, else CPU) -> torch.device for this process."""
    device = str(device).strip().lower().replace("cuda:", "")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if device:
            raise RuntimeError(
                f"--device {device} asks for a GPU but CUDA is not available here; use --device cpu"
            )
        return torch.device("cpu")
    ids = [int(x) for x in device.split(",") if x != ""] or [0]
    local_rank = int(os.environ.get("LOCAL_RANK", -1))
    if local_rank >= 0:
        return torch.device("cuda", ids[local_rank % len(ids)] if len(ids) > 1 else local_rank)
    if len(ids) > 1:
        raise RuntimeError(
            f"--device {device} names {len(ids)} GPUs: run under torchrun, e.g. "
            f"`torchrun --nproc_per_node {len(ids)} -m yolov7lib train ...`"
        )
    return torch.device("cuda", ids[0])


def init_distributed(device: str = "") -> DistContext:
    """Read torchrun's environment and join the process group (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", -1)) if world_size > 1 else -1
    local_rank = int(os.environ.get("LOCAL_RANK", -1)) if world_size > 1 else -1
    dev = select_device(device)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
