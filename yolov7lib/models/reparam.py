"""Re-parameterization: the training graph -> the deploy graph computing the same function (eval mode).

Steps (paper Sections 4.1 and 4.3, reference ``Model.fuse`` and its re-parameterization notebook):

1. every BatchNorm folds into the convolution before it (conv-BN-activation topology);
2. every RepConv / RepConvN becomes one 3x3 convolution (the 1x1 branch padded to 3x3, the identity
   BatchNorm written as a 3x3 identity kernel);
3. the implicit knowledge of IDetect folds into the detection convolutions:
   ``im * (W (x + ia) + b) = (im W) x + im (W ia + b)``;
4. the auxiliary head and the layers that only feed it are dropped (IAuxDetect becomes Detect).

The result is built from the deploy spec (:func:`~yolov7lib.models.spec.deploy_spec`), so it is
structurally identical to ``create_model(name, deploy=True)`` and its state dict loads there strictly.
The argument is never modified.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from yolov7lib.models.graph import Model
from yolov7lib.models.heads import IDetect
from yolov7lib.models.layers import Conv, RepConv
from yolov7lib.models.spec import deploy_spec

__all__ = ["randomize_batchnorm", "reparameterize"]


@torch.no_grad()
def reparameterize(
    model: Model, *, fuse: bool = True, drop_aux: bool = True, fold_implicit: bool = True
) -> Model:
    """Return the deploy form of ``model`` (a new model in eval mode; ``model`` is left unchanged).

    ``fuse``: fold BatchNorms and RepConvs; ``drop_aux``: remove the auxiliary head;
    ``fold_implicit``: fold ImplicitA / ImplicitM into the detection convolutions (head -> Detect).
    The four parameter counts of the reference (official-figures.md) are, for a training model ``m``:
    training graph ``m``; training graph fused ``reparameterize(m, drop_aux=False,
    fold_implicit=False)``; deploy graph ``reparameterize(m, fuse=False)``; deploy graph fused
    ``reparameterize(m)``.
    """
    fused = fuse or model.fused
    cfg, index_map = deploy_spec(model.cfg, drop_aux=drop_aux, fold_implicit=fold_implicit, fused=fused)
    state = _deploy_state(model, fuse=fuse, drop_aux=drop_aux, fold_implicit=fold_implicit)

    def new_key(key: str) -> str | None:
        _, index, rest = key.split(".", 2)
        j = index_map.get(int(index))
        return None if j is None else f"model.{j}.{rest}"

    remapped = {k2: v for k, v in state.items() if (k2 := new_key(k)) is not None}
    with torch.device("meta"):
        target = Model(cfg)
    target = target.to_empty(device=_device(model))
    dtype = _dtype(model)
    if dtype is not None:  # before loading: the folded weights keep the model's precision (float64 stays)
        target = target.to(dtype)
    target.load_state_dict(remapped, strict=True, assign=False)
    _copy_settings(model, target, index_map)
    target.names = list(model.names)
    target.hyp = copy.deepcopy(model.hyp)
    return target.eval()


def _device(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _dtype(model: nn.Module) -> torch.dtype | None:
    tensor = next(model.parameters(), None)
    return tensor.dtype if tensor is not None else None


def _deploy_state(
    model: Model, *, fuse: bool, drop_aux: bool, fold_implicit: bool
) -> dict[str, torch.Tensor]:
    """State dict of the deploy structure, under the training graph's layer indices (unchanged entries
    are the model's own tensors, copied once when loaded into the new model)."""
    state = dict(model.state_dict())

    def replace(prefix: str, new: dict[str, torch.Tensor]) -> None:
        for key in [k for k in state if k.startswith(prefix + ".")]:
            del state[key]
        state.update({f"{prefix}.{k}": v for k, v in new.items()})

    if fuse:
        for name, module in model.named_modules():
            if isinstance(module, Conv) and not module.fused:
                w, b = module.fused_weights()
                replace(name, {"conv.weight": w, "conv.bias": b})
            elif isinstance(module, RepConv) and not module.fused:
                w, b = module.fused_weights()
                replace(name, {"rbr_reparam.weight": w, "rbr_reparam.bias": b})
    head = model.head
    prefix = f"model.{len(model.model) - 1}"
    if drop_aux:
        for key in [k for k in state if k.startswith(f"{prefix}.m2.")]:
            del state[key]
    if fold_implicit and isinstance(head, IDetect):
        for i, conv in enumerate(head.m):
            w = conv.weight.double()  # small tensors: float64 for free
            ia = head.ia[i].implicit.double().view(-1)
            im = head.im[i].implicit.double().view(-1)
            bias = (conv.bias.double() + w.view(w.shape[0], -1) @ ia) * im
            state[f"{prefix}.m.{i}.weight"] = (w * im.view(-1, 1, 1, 1)).to(conv.weight.dtype)
            state[f"{prefix}.m.{i}.bias"] = bias.to(conv.bias.dtype)
        for key in [k for k in state if k.startswith((f"{prefix}.ia.", f"{prefix}.im."))]:
            del state[key]
    return state


def _copy_settings(source: Model, target: Model, index_map: dict[int, int]) -> None:
    """Carry over what a state dict does not hold: BatchNorm eps / momentum, head strides."""
    for old, new in index_map.items():
        src_modules = dict(source.model[old].named_modules())
        for name, module in target.model[new].named_modules():
            twin = src_modules.get(name)
            if isinstance(module, nn.BatchNorm2d) and isinstance(twin, nn.BatchNorm2d):
                module.eps, module.momentum = twin.eps, twin.momentum
    target.head.stride = source.head.stride.clone()
    target.stride = target.head.stride


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm the non-trivial statistics and affine terms a trained model has (in place).

    A fresh model's BatchNorms (mean 0, variance 1, weight 1, bias 0) fold into almost nothing, so a
    fused-equals-unfused check on it proves little; after this call the folding does real arithmetic.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            m.weight.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return model
