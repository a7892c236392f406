"""What the loss reads from the prediction maps, with one gradient buffer per map.

The loss reads two things from each raw map (B, na, H, W, no): the objectness logit of every cell
(the objectness term covers all cells) and the whole rows of the positives' cells (box, objectness
and class terms). Read with plain indexing, autograd gives each read its own zero-filled gradient of
the map's size and then adds them up; `read_maps` writes both gradients into one buffer per map, which
saves a fill and an addition of every map per step (most of the backward pass of the loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def _reads(maps: Sequence[torch.Tensor], cells: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    obj = torch.cat([m[..., 4].reshape(-1) for m in maps])
    rows = torch.cat(
        [m.reshape(-1, m.shape[-1]).index_select(0, c) for m, c in zip(maps, cells, strict=True)]
    )
    return obj, rows


class _MapReads(torch.autograd.Function):
    """`read_maps` with one gradient buffer per map."""

    @staticmethod
    def forward(ctx: Any, n_maps: int, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps, cells = args[:n_maps], args[n_maps:]
        ctx.save_for_backward(*cells)
        ctx.shapes = [m.shape for m in maps]
        return _reads(maps, cells)

    @staticmethod
    def backward(
        ctx: Any, grad_obj: torch.Tensor, grad_rows: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        cells = ctx.saved_tensors
        grads, start_obj, start_row = [], 0, 0
        for shape, c in zip(ctx.shapes, cells, strict=True):
            grad = grad_obj.new_zeros(shape)
            n_cells, n_rows = grad[..., 4].numel(), c.shape[0]
            grad[..., 4] = grad_obj[start_obj : start_obj + n_cells].view(shape[:-1])
            grad.view(-1, shape[-1]).index_add_(0, c, grad_rows[start_row : start_row + n_rows])
            grads.append(grad)
            start_obj, start_row = start_obj + n_cells, start_row + n_rows
        return (None, *grads, *([None] * len(cells)))


def read_maps(
    maps: Sequence[torch.Tensor], cells: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The objectness logits of every cell of `maps` (flattened, map after map) and the rows (N, no) of
    map i at its flattened cell indices `cells[i]` (the rows of all maps concatenated)."""
    if torch.is_grad_enabled() and any(m.requires_grad for m in maps):
        return _MapReads.apply(len(maps), *maps, *cells)
    return _reads(maps, cells)
