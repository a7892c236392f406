"""Run under torchrun: each rank normalises its half of a batch with CrossReplicaBatchNorm2d."""

import sys

import torch
import torch.distributed as dist

from yolov7lib.engine.distributed import CrossReplicaBatchNorm2d

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
x = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 3 + 1
bn = CrossReplicaBatchNorm2d(3).double()
with torch.no_grad():
    bn.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
    bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
local = x.chunk(world)[rank].clone().requires_grad_(True)
y = bn(local)
offset = rank * y.numel()  # the weights of this rank's slice of the global loss
(y * (torch.arange(y.numel(), dtype=y.dtype) + offset).view_as(y)).sum().backward()
dist.all_reduce(bn.weight.grad)
grads = [torch.zeros_like(local) for _ in range(world)]
dist.all_gather(grads, local.grad)
outs = [torch.zeros_like(y) for _ in range(world)]
dist.all_gather(outs, y.detach())
if rank == 0:
    torch.save(
        {"y": torch.cat(outs), "dx": torch.cat(grads), "dw": bn.weight.grad, "rv": bn.running_var}, sys.argv[1]
    )
dist.destroy_process_group()
