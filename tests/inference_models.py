"""Small models for the val / detect / export / bench tests (imported by those test modules).

`calibrated(model)`: a randomly initialised network's activations shrink layer after layer (1e-8 at the
head), so that its predictions barely depend on the image and tie across positions. One forward pass in
training mode with BatchNorm momentum 1 sets every BatchNorm's statistics to those of real inputs, so
that, as in a trained network, each layer's output has unit scale: predictions then vary with the image
and their scores do not tie.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from yolov7lib.deploy import probe_images
from yolov7lib.models import Model, create_model

SMALL_CFG: dict[str, Any] = {  # two levels (strides 8, 16), RepConv, MP, upsample, concat, IDetect
    "nc": 3,
    "depth_multiple": 1.0,
    "width_multiple": 1.0,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]],
    "backbone": [
        [-1, 1, "Conv", [8, 3, 2]],
        [-1, 1, "Conv", [16, 3, 2]],
        [-1, 1, "Conv", [16, 3, 2]],
        [-1, 1, "MP", []],
        [-1, 1, "Conv", [32, 1, 1]],
    ],
    "head": [
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 2], 1, "Concat", [1]],
        [-1, 1, "RepConv", [16, 3, 1]],
        [4, 1, "RepConv", [32, 3, 1]],
        [[7, 8], 1, "IDetect", ["nc", "anchors"]],
    ],
}


@torch.no_grad()
def calibrated(model: Model, size: int = 96, objectness_shift: float = 0.0) -> Model:
    """`model` (training graph) with BatchNorm statistics of smooth random images; optionally the
    objectness biases raised by `objectness_shift` (more candidates above a threshold). Eval mode."""
    model = copy.deepcopy(model)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 1.0
    model.train()
    model(probe_images(4, size, size, seed=123))
    for m, momentum in zip(bns, saved, strict=True):
        m.momentum = momentum
    head = model.head
    for conv in head.m:
        conv.bias.view(head.na, -1)[:, 4] += objectness_shift
    return model.eval()


def small_model(nc: int = 3, objectness_shift: float = 0.0, seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return calibrated(create_model({**SMALL_CFG, "nc": nc}), objectness_shift=objectness_shift)


def tiny_model(nc: int = 3, objectness_shift: float = 0.0, seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return calibrated(create_model("yolov7-tiny", nc=nc), objectness_shift=objectness_shift)


def checkpoint_of(model: Model, names: list[str]) -> dict[str, Any]:
    """The trainer's checkpoint layout (ema preferred by the loader), holding `model`'s weights."""
    state = model.state_dict()
    return {"model": state, "model_cfg": model.cfg, "names": names, "ema": {"model": state, "updates": 1},
            "epoch": 0}  # fmt: skip
