"""Official YOLOv7 checkpoints (``yolov7.pt``, ``yolov7_training.pt``, ``last.pt`` ...) -> yolov7lib models.

An official checkpoint is a ``torch.save``d dict whose ``'model'`` (and ``'ema'``) entry is the whole
pickled ``nn.Module``, built from classes of the official source tree (``models.yolo``,
``models.common``). Unpickling it normally needs that source tree and runs whatever the pickle names;
here a restricted unpickler instead

- maps every class of ``OFFICIAL_MODULES`` (``models.yolo``, ``models.common``, ``models.experimental``)
  to an inert stand-in (an ``nn.Module`` that only holds the pickled state: parameters, buffers,
  children, attributes such as ``yaml``);
- allows the few torch / numpy / collections globals that a pickled module and an optimizer state
  need (tensor and parameter rebuilding, ``OrderedDict``, a whitelist of ``torch.nn`` layers);
- refuses everything else (``os.system``, ``builtins.eval``, ``subprocess.Popen`` ...) with
  :class:`UnsafeCheckpointError` before anything runs.

The architecture is rebuilt from the checkpoint's own ``yaml`` dict by the cfg reader, and the state
dict is loaded strictly, so every official key maps to the same yolov7lib key.
"""

from __future__ import annotations

import _compat_pickle
import copy
import os
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from yolov7lib.models.graph import Model

__all__ = ["OfficialModule", "UnsafeCheckpointError", "load_official", "read_official_checkpoint"]

OFFICIAL_MODULES = ("models.yolo", "models.common", "models.experimental")

_TORCH_NN_CLASSES = {
    "torch.nn.modules.conv": {"Conv2d", "ConvTranspose2d"},
    "torch.nn.modules.batchnorm": {"BatchNorm2d", "SyncBatchNorm"},
    "torch.nn.modules.activation": {
        "SiLU",
        "LeakyReLU",
        "ReLU",
        "ReLU6",
        "Hardswish",
        "Mish",
        "Sigmoid",
        "Tanh",
    },
    "torch.nn.modules.linear": {"Identity", "Linear"},
    "torch.nn.modules.container": {"Sequential", "ModuleList", "ModuleDict"},
    "torch.nn.modules.pooling": {"MaxPool2d", "AdaptiveAvgPool2d"},
    "torch.nn.modules.upsampling": {"Upsample"},
    "torch.nn.modules.flatten": {"Flatten"},
    "torch.nn.parameter": {"Parameter"},
}
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("_codecs", "encode"),  # bytes in protocol 2 pickles (numpy array data)
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint names a global that an official YOLOv7 checkpoint never needs; nothing was run."""


class OfficialModule(nn.Module):
    """Inert stand-in for a class of the official source tree: holds the pickled state, runs nothing."""

    official_name: ClassVar[str] = ""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self.official_name} is a stand-in for reading checkpoints; it cannot run")


_STAND_INS: dict[tuple[str, str], type[OfficialModule]] = {}


def _stand_in(module: str, name: str) -> type[OfficialModule]:
    key = (module, name)
    if key not in _STAND_INS:
        attrs = {"official_name": f"{module}.{name}", "__module__": __name__, "__qualname__": name}
        _STAND_INS[key] = type(name, (OfficialModule,), attrs)
    return _STAND_INS[key]


class _RestrictedUnpickler(pickle.Unpickler):
    """``find_class`` is the only way a pickle reaches code: answer it from a whitelist."""

    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 pickles use Python 2 names (__builtin__, commands, ...): map them as pickle does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module in OFFICIAL_MODULES and name.isidentifier():
            return _stand_in(module, name)
        if name in _TORCH_NN_CLASSES.get(module, ()) or (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        hint = (
            " (a model saved after Model.fuse() pickles bound methods this way)" if name == "getattr" else ""
        )
        raise UnsafeCheckpointError(
            f"refused to unpickle {module}.{name}: an official YOLOv7 checkpoint only needs torch, numpy "
            f"and models.yolo / models.common classes, so this file may be malicious{hint}; nothing was run"
        )


# torch.load(pickle_module=...) takes a module exposing Unpickler (and load for the legacy format)
_restricted_pickle = types.ModuleType("yolov7lib_restricted_pickle")
_restricted_pickle.Unpickler = _RestrictedUnpickler  # type: ignore[attr-defined]
_restricted_pickle.__name__ = "yolov7lib_restricted_pickle"


def read_official_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Unpickle an official checkpoint with the restricted unpickler (tensors on the CPU)."""
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a checkpoint file" if p.is_dir() else "does not exist"
        raise FileNotFoundError(f"checkpoint {str(p)!r} {what}")
    if not zipfile.is_zipfile(p):
        raise ValueError(f"{p}: not a torch.save zip archive (the legacy pre-1.6 format is not supported)")
    return torch.load(p, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False)


def _official_type(module: nn.Module) -> str:
    return type(module).official_name.rsplit(".", 1)[-1] if isinstance(module, OfficialModule) else ""


def load_official(path: str | os.PathLike[str], prefer_ema: bool = True) -> Model:
    """Load an official checkpoint into a yolov7lib :class:`Model` (float32, eval mode).

    The architecture comes from the checkpoint's ``yaml`` dict; the EMA weights are taken when the
    checkpoint has them (as the reference's ``attempt_load`` does) unless ``prefer_ema=False``; a
    checkpoint whose ``'model'`` is None gives its EMA either way.
    Checkpoints saved in their training form, in the deploy form (``cfg/deploy``) or with fused
    BatchNorms all load; ``model.cfg`` records which.
    """
    ckpt = read_official_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path}: not an official YOLOv7 checkpoint (no 'model' entry)")
    if "model_cfg" in ckpt and isinstance(ckpt["model"], dict):
        raise ValueError(
            f"{path}: a yolov7lib checkpoint (written by its trainer), not an official one; "
            "load it with yolov7lib.load_model(weights)"
        )
    model, ema = ckpt["model"], ckpt.get("ema")
    if model is None and ema is None:
        raise ValueError(f"{path}: neither its 'model' nor its 'ema' entry holds a model")
    source = ema if ema is not None and (prefer_ema or model is None) else model
    if not isinstance(source, OfficialModule) or not isinstance(getattr(source, "yaml", None), dict):
        raise ValueError(
            f"{path}: the 'model' entry is not an official YOLOv7 model with its yaml architecture"
        )

    cfg = copy.deepcopy(source.yaml)
    convs = [m for m in source.modules() if _official_type(m) == "Conv"]
    fused = bool(convs) and all(getattr(m, "bn", None) is None for m in convs)
    if not fused and any(getattr(m, "bn", None) is None for m in convs):
        raise ValueError(f"{path}: some Conv layers are fused and others not; cannot rebuild the graph")
    head = list(source.modules())[-1] if not hasattr(source, "model") else source.model[-1]
    if fused and _official_type(head) in ("IDetect", "IAuxDetect"):
        raise ValueError(
            f"{path}: saved after Model.fuse(), with its implicit knowledge folded but still present; "
            "load the checkpoint saved before fusing"
        )
    cfg["fused"] = fused
    cfg.setdefault("ch", 3)

    state = source.state_dict()
    with torch.device("meta"):
        model = Model(cfg)
    model = model.to_empty(device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: the weights do not fit the checkpoint's own architecture: {err}") from err
    official_modules = dict(source.named_modules())
    for name, module in model.named_modules():
        twin = official_modules.get(name)
        if isinstance(module, nn.BatchNorm2d) and isinstance(twin, nn.BatchNorm2d):
            module.eps, module.momentum = twin.eps, twin.momentum
    stride = getattr(source, "stride", None)
    if isinstance(stride, torch.Tensor) and stride.tolist() != model.stride.tolist():
        raise ValueError(
            f"{path}: strides {stride.tolist()} disagree with the architecture's {model.stride.tolist()}"
        )
    model.cfg["anchors"] = model.head.anchor_grid.view(model.head.nl, -1).tolist()
    names = getattr(source, "names", None)
    if isinstance(names, list | tuple) and len(names) == model.head.nc:
        model.names = [str(n) for n in names]
    hyp = getattr(source, "hyp", None)
    model.hyp = dict(hyp) if isinstance(hyp, dict) else None
    return model.eval()
