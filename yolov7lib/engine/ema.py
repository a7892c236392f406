"""Exponential moving average of a model's weights (Section 4.3 (3): the EMA model is the inference model)."""

from __future__ import annotations

import math
from copy import deepcopy

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel wrappers."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel) else model


class ModelEMA:
    """Keep `ema = d * ema + (1 - d) * model` over every floating-point entry of the state dict but the
    frozen parameters (`requires_grad=False`, `--freeze`), which keep their values.

    The decay ramps up as `d = decay * (1 - exp(-updates / tau))` so that early updates follow the model
    closely (the reference's schedule: decay 0.9999, tau 2000 updates).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = deepcopy(unwrap(model)).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the model's current weights into the average (call after each optimizer step)."""
        self.updates += 1
        d = self.current_decay()
        bare = unwrap(model)
        source = bare.state_dict()
        # frozen parameters (--freeze) keep their values: d x + (1 - d) x is not always x in floating point
        frozen = {name for name, p in bare.named_parameters() if not p.requires_grad}
        for name, value in self.ema.state_dict().items():
            if value.dtype.is_floating_point and name not in frozen:
                value.mul_(d).add_(source[name].detach(), alpha=1 - d)

    def state_dict(self) -> dict:
        return {"model": self.ema.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state["model"])
        self.updates = int(state["updates"])
