"""The optimizer and learning-rate recipe of the reference training (SGD, warm-up, one-cycle).

- Three parameter groups: 0 = BatchNorm weights and implicit-knowledge vectors (no weight decay),
  1 = other weights (weight decay), 2 = biases (no decay; their warm-up starts from `warmup_bias_lr`).
- Gradients are accumulated up to a nominal batch (`nbs`, 64 images in the reference); weight decay is
  scaled to match.
- Warm-up over `max(round(warmup_epochs * batches_per_epoch), warmup_min_iters)` iterations, linear in
  the iteration index: bias lr falls from `warmup_bias_lr`, other lrs rise from 0, momentum rises from
  `warmup_momentum`, and the accumulation count rises from 1. Afterwards lr = lr0 * lf(epoch), with lf
  a cosine one-cycle (default) or linear ramp from 1 to `lrf`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

NOMINAL_BATCH = 64


def parameter_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """Split trainable parameters into (no_decay, decay, bias) groups, each parameter exactly once.

    no_decay: weights of BatchNorm layers and implicit-knowledge vectors (ImplicitA / ImplicitM);
    bias: every parameter named `bias`; decay: every other parameter (convolution weights).
    """
    no_decay: list[nn.Parameter] = []
    decay: list[nn.Parameter] = []
    bias: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if name == "bias":
                bias.append(p)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) or name == "implicit":
                no_decay.append(p)
            else:
                decay.append(p)
    return no_decay, decay, bias


def frozen_layers(freeze: Sequence[int], n_layers: int) -> list[int]:
    """The layer indices `--freeze` names, by the reference's rule (its train.py --freeze): one number N
    freezes the first N layers (0, or no number: none), several numbers freeze exactly those layers.

    Indices are those of the official cfg's layer list (`Model.model`); a value that is not a whole number,
    is negative or is past the last layer, and a selection that leaves no layer to train, are refused.
    """
    values = list(freeze)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"--freeze takes whole numbers (layer indices), got {value!r}")
        if value < 0:
            raise ValueError(f"--freeze takes layer indices from 0, got {value}")
    if len(values) == 1:
        if values[0] > n_layers:
            raise ValueError(
                f"--freeze {values[0]}: the model has {n_layers} layers; give at most {n_layers - 1} "
                "(the first N layers) or the layer indices to freeze"
            )
        layers = list(range(values[0]))
    else:
        past = sorted({v for v in values if v >= n_layers})
        if past:
            raise ValueError(
                f"--freeze {' '.join(map(str, values))}: the model's layers are 0-{n_layers - 1}; "
                f"no layer {', '.join(map(str, past))}"
            )
        layers = sorted(set(values))
    if n_layers and len(layers) == n_layers:
        raise ValueError(
            f"--freeze {' '.join(map(str, values))} freezes all {n_layers} layers of the model: nothing "
            "would train"
        )
    return layers


def freeze_layers(model: nn.Module, freeze: Sequence[int]) -> list[str]:
    """Freeze (`requires_grad=False`) the parameters of the layers `freeze` names (`frozen_layers`);
    return their names, `model.<layer index>.<...>` as in the reference.

    `parameter_groups` leaves frozen parameters out of the optimizer (no update, momentum or weight
    decay) and `ModelEMA` leaves them out of the average, so they keep their values bitwise. As in the
    reference, a frozen layer's BatchNorm statistics still follow the training batches.
    """
    layers = model.model  # the official layer list: `model.<index>` in state-dict names
    chosen = frozen_layers(freeze, len(layers))
    frozen: list[str] = []
    for i in chosen:
        for name, p in layers[i].named_parameters():
            p.requires_grad_(False)
            frozen.append(f"model.{i}.{name}")
    return frozen


def one_cycle(y1: float = 0.0, y2: float = 1.0, steps: int = 100) -> Callable[[float], float]:
    """Half-cosine ramp from y1 (at 0) to y2 (at `steps`)."""
    return lambda x: ((1 - math.cos(x * math.pi / steps)) / 2) * (y2 - y1) + y1


def lr_factor(hyp: dict[str, Any], epochs: int, linear: bool = False) -> Callable[[float], float]:
    """lf(epoch): the multiple of lr0 used in `epoch` after warm-up (1 at epoch 0, `lrf` at the end)."""
    lrf = float(hyp["lrf"])
    if linear:
        return lambda x: (1 - x / max(epochs - 1, 1)) * (1.0 - lrf) + lrf
    return one_cycle(1.0, lrf, epochs)


def nominal_batch(hyp: dict[str, Any]) -> int:
    """The batch size one optimizer step stands for (`nbs`; the reference's 64)."""
    return int(hyp.get("nbs", NOMINAL_BATCH))


def accumulation_steps(total_batch_size: int, nominal: int = NOMINAL_BATCH) -> int:
    """Batches whose gradients are summed before one optimizer step."""
    return max(round(nominal / total_batch_size), 1)


def build_optimizer(model: nn.Module, hyp: dict[str, Any], total_batch_size: int) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum over the three groups; weight decay scaled to the nominal batch.

    The hyp key `optimizer: adam` selects Adam with betas (momentum, 0.999) instead, as the
    reference's `train.py --adam`; the groups, decay scaling and schedule stay the same.
    """
    no_decay, decay, bias = parameter_groups(model)
    nbs = nominal_batch(hyp)
    accumulate = accumulation_steps(total_batch_size, nbs)
    weight_decay = float(hyp["weight_decay"]) * total_batch_size * accumulate / nbs
    kind = str(hyp.get("optimizer", "sgd")).lower()  # dicts built by hand may lack the key
    first = [{"params": no_decay}]  # a group, not a list: it may be empty (--freeze of every BatchNorm)
    if kind == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(
            first, lr=hyp["lr0"], betas=(hyp["momentum"], 0.999)
        )
    elif kind == "sgd":
        optimizer = torch.optim.SGD(first, lr=hyp["lr0"], momentum=hyp["momentum"], nesterov=True)
    else:
        raise ValueError(f"hyp optimizer must be 'sgd' or 'adam', not {kind!r}")
    optimizer.add_param_group({"params": decay, "weight_decay": weight_decay})
    optimizer.add_param_group({"params": bias})
    for group in optimizer.param_groups:
        group["initial_lr"] = hyp["lr0"]
    return optimizer


@dataclass
class Schedule:
    """Learning rate, momentum and accumulation count at every iteration of a run."""

    hyp: dict[str, Any]
    epochs: int
    batches_per_epoch: int
    total_batch_size: int
    linear_lr: bool = False

    def __post_init__(self) -> None:
        self.lf = lr_factor(self.hyp, self.epochs, self.linear_lr)
        # the warm-up warmup_epochs asks for, and its length after the minimum (the reference's 1000)
        self.warmup_asked = round(float(self.hyp["warmup_epochs"]) * self.batches_per_epoch)
        self.warmup_iters = max(self.warmup_asked, int(self.hyp.get("warmup_min_iters", 1000)))

    def accumulate(self, ni: int) -> int:
        """Accumulation count at integrated batch `ni` (rises during warm-up, then nominal)."""
        nbs = nominal_batch(self.hyp)
        if ni <= self.warmup_iters:
            ramp = np.interp(ni, [0, self.warmup_iters], [1, nbs / self.total_batch_size])
            return max(1, int(ramp.round()))
        return accumulation_steps(self.total_batch_size, nbs)

    def lr(self, group: int, ni: int, epoch: int) -> float:
        """Learning rate of parameter group `group` at integrated batch `ni` in `epoch`."""
        target = float(self.hyp["lr0"]) * self.lf(epoch)
        if ni <= self.warmup_iters:
            start = float(self.hyp["warmup_bias_lr"]) if group == 2 else 0.0
            return float(np.interp(ni, [0, self.warmup_iters], [start, target]))
        return target

    def momentum(self, ni: int) -> float:
        if ni <= self.warmup_iters:
            return float(
                np.interp(ni, [0, self.warmup_iters], [self.hyp["warmup_momentum"], self.hyp["momentum"]])
            )
        return float(self.hyp["momentum"])

    def apply(self, optimizer: torch.optim.Optimizer, ni: int, epoch: int) -> None:
        """Set every group's lr and momentum for integrated batch `ni`."""
        for j, group in enumerate(optimizer.param_groups):
            group["lr"] = self.lr(j, ni, epoch)
            if "momentum" in group:
                group["momentum"] = self.momentum(ni)
