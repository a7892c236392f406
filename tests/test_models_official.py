"""load_official: official-format checkpoints without the official source tree, and no code execution.

The tests write official-format checkpoints themselves: yolov7lib models whose classes are swapped
for stand-ins registered as ``models.yolo`` / ``models.common`` in ``sys.modules`` while saving (as
the reference's pickles name them), then removed before loading.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from yolov7lib.models import create_model, load_official, randomize_batchnorm, reparameterize
from yolov7lib.models.heads import Detect
from yolov7lib.models.official import UnsafeCheckpointError

YOLO_CLASSES = {"Model", "Detect", "IDetect", "IAuxDetect"}

AUX_CFG = {  # a small two-level model with lead and auxiliary heads
    "nc": 4,
    "depth_multiple": 1.0,
    "width_multiple": 1.0,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]],
    "backbone": [
        [-1, 1, "Conv", [8, 3, 2]],
        [-1, 1, "Conv", [16, 3, 2]],
        [-1, 1, "Conv", [16, 3, 2]],
        [-1, 1, "Conv", [16, 3, 2]],
    ],
    "head": [
        [2, 1, "RepConv", [16, 3, 1]],
        [3, 1, "Conv", [16, 3, 1]],
        [2, 1, "Conv", [8, 3, 1]],
        [3, 1, "Conv", [8, 3, 1]],
        [[4, 5, 6, 7], 1, "IAuxDetect", ["nc", "anchors"]],
    ],
}


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    randomize_batchnorm(model, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    return model


def _official_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for the official source tree's modules, with classes named as the reference names them."""
    package, yolo, common = (types.ModuleType(n) for n in ("models", "models.yolo", "models.common"))
    package.yolo, package.common = yolo, common
    return {"models": package, "models.yolo": yolo, "models.common": common}


def _as_official(model: nn.Module, modules: dict[str, types.ModuleType]) -> nn.Module:
    """A copy of ``model`` whose yolov7lib classes are the official ones, with the official attributes."""
    official = copy.deepcopy(model)
    for m in official.modules():
        cls = type(m)
        if not cls.__module__.startswith("yolov7lib."):
            continue
        where = modules["models.yolo" if cls.__name__ in YOLO_CLASSES else "models.common"]
        if not hasattr(where, cls.__name__):
            attrs = {"__module__": where.__name__, "__qualname__": cls.__name__, "forward": cls.forward}
            setattr(where, cls.__name__, type(cls.__name__, (nn.Module,), attrs))
        m.__class__ = getattr(where, cls.__name__)
    cfg = official.__dict__.pop("cfg")
    official.yaml = {k: v for k, v in cfg.items() if k not in ("name", "fused", "groups")}
    official.nc = cfg["nc"]
    official.names = [f"class{i}" for i in range(cfg["nc"])]
    official.hyp = {"lr0": 0.01, "box": 0.05}
    return official


def save_official(
    path: Path, model: nn.Module, ema: nn.Module | None = None, model_entry: bool = True
) -> Path:
    """Write ``model`` (and ``ema``) as the reference's train.py does: float16 pickled modules
    (``model_entry=False``: ``'model'`` is None, the EMA alone holds the network)."""
    modules = _official_modules()
    with pytest.MonkeyPatch.context() as mp:
        for name, module in modules.items():
            mp.setitem(sys.modules, name, module)
        entry = _as_official(model, modules)
        ckpt = {
            "epoch": 3,
            "best_fitness": np.array([0.42]),
            "training_results": "   0/299 ...",
            "model": entry.half() if model_entry else None,
            "ema": _as_official(ema, modules).half() if ema is not None else None,
            "updates": 17,
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9).state_dict(),
            "wandb_id": None,
        }
        torch.save(ckpt, path)
    assert "models.yolo" not in sys.modules  # loading must not need the official tree
    return path


@torch.no_grad()
def _same_outputs(source: nn.Module, loaded: nn.Module, size: int = 64) -> None:
    reference = copy.deepcopy(source).half().float().eval()  # the checkpoint holds float16 weights
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    a, b = reference(x), loaded(x)
    torch.testing.assert_close(b[0], a[0], rtol=1e-5, atol=1e-4)
    for p, q in zip(a[1], b[1], strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-4)


def test_training_checkpoint_loads_with_its_ema_names_and_hyp(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _randomise(create_model("yolov7-tiny"), 1).eval()
    ema = _randomise(copy.deepcopy(model), 2)
    path = save_official(tmp_path / "yolov7-tiny_training.pt", model, ema)
    loaded = load_official(path)
    assert not loaded.training and type(loaded.head).__name__ == "IDetect"
    assert loaded.names[:2] == ["class0", "class1"] and loaded.hyp == {"lr0": 0.01, "box": 0.05}
    assert next(loaded.parameters()).dtype == torch.float32
    _same_outputs(ema, loaded)
    _same_outputs(model, load_official(path, prefer_ema=False))
    assert torch.equal(loaded.head.anchors, model.head.anchors)
    # its cfg rebuilds it: a checkpoint of our own stores model.cfg
    rebuilt = create_model(loaded.cfg)
    rebuilt.load_state_dict(loaded.state_dict(), strict=True)
    assert "models" not in sys.modules


@pytest.mark.parametrize("fuse", [False, True])
def test_deploy_checkpoints_load_fused_or_not(tmp_path: Path, fuse: bool) -> None:
    torch.manual_seed(0)
    training = _randomise(create_model("yolov7-tiny-silu"), 3).eval()
    deploy = reparameterize(training, fuse=fuse)
    loaded = load_official(save_official(tmp_path / "yolov7-tiny.pt", deploy))
    assert type(loaded.head) is Detect and loaded.fused == fuse
    assert any(isinstance(m, nn.BatchNorm2d) for m in loaded.modules()) != fuse
    _same_outputs(deploy, loaded)


def test_auxiliary_head_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _randomise(create_model(AUX_CFG), 4)
    loaded = load_official(save_official(tmp_path / "aux.pt", model))
    assert type(loaded.head).__name__ == "IAuxDetect" and loaded.head.nc == 4
    _same_outputs(model, loaded)
    loaded.train()
    maps = loaded(torch.rand(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 3, 8, 8, 9), (1, 3, 4, 4, 9)] * 2


class _Evil:
    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (lambda marker: _Evil(os.system, f"touch {marker}"), "system"),
        (lambda marker: _Evil(eval, f"open({str(marker)!r}, 'w')"), "builtins.eval"),
        (lambda marker: _Evil(subprocess.call, ["touch", str(marker)]), "subprocess.call"),
    ],
)
def test_malicious_pickle_is_refused_before_running(tmp_path: Path, payload, refused: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": payload(marker), "epoch": 0}, path)
    with pytest.raises(UnsafeCheckpointError, match=rf"refused to unpickle .*{refused}.*malicious"):
        load_official(path)
    assert not marker.exists()
    assert isinstance(UnsafeCheckpointError("x"), pickle.UnpicklingError)


def test_not_an_official_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_official(tmp_path / "missing.pt")
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"model": None}))
    with pytest.raises(ValueError, match=r"not a torch\.save zip"):
        load_official(legacy)
    weights_only = tmp_path / "state_dict.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, weights_only)
    with pytest.raises(ValueError, match="no 'model' entry"):
        load_official(weights_only)


def test_a_yolov7lib_checkpoint_or_a_folder_is_named_as_such(tmp_path: Path) -> None:
    """Before: a run folder was reported as not existing, and the trainer's own last.pt as 'not an official
    YOLOv7 model with its yaml architecture', with no word of load_model."""
    from yolov7lib.engine.checkpoint import save_checkpoint

    with pytest.raises(FileNotFoundError, match="is a folder, not a checkpoint file"):
        load_official(tmp_path)
    with torch.device("meta"):
        model = create_model("yolov7-tiny", nc=2)
    ours = tmp_path / "last.pt"
    save_checkpoint({"model_cfg": model.cfg, "model": {"model.0.conv.weight": torch.zeros(1)}}, ours)
    with pytest.raises(ValueError, match=r"a yolov7lib checkpoint .* yolov7lib\.load_model"):
        load_official(ours)


def test_a_checkpoint_whose_model_is_none_loads_its_ema_either_way(tmp_path: Path) -> None:
    """Before: prefer_ema=False on a checkpoint whose 'model' is None (the EMA alone kept) raised "the
    'model' entry is not an official YOLOv7 model"; the EMA is then the only network to load."""
    torch.manual_seed(0)
    model = _randomise(create_model("yolov7-tiny"), 1).eval()
    ema = _randomise(copy.deepcopy(model), 2)
    path = save_official(tmp_path / "ema_only.pt", model, ema, model_entry=False)
    _same_outputs(ema, load_official(path))
    _same_outputs(ema, load_official(path, prefer_ema=False))
    empty = tmp_path / "empty.pt"
    torch.save({"model": None, "ema": None, "epoch": -1}, empty)
    with pytest.raises(ValueError, match="neither its 'model' nor its 'ema' entry holds a model"):
        load_official(empty)


def test_info_reads_the_architecture_of_an_official_checkpoint(tmp_path: Path, capsys) -> None:
    """`yolov7 info --weights yolov7-tiny.pt` counts the checkpoint's own graph (its yaml, its nc)."""
    from yolov7lib.cli import main

    path = save_official(tmp_path / "custom.pt", create_model("yolov7-tiny", nc=8).eval())
    assert main(["info", "--weights", str(path), "--json"]) == 0
    from_weights = json.loads(capsys.readouterr().out)
    assert main(["info", "--model", "yolov7-tiny", "--nc", "8", "--json"]) == 0
    from_name = json.loads(capsys.readouterr().out)
    assert from_weights["model"] == "custom.pt" and from_weights["img_size"] == 640
    assert from_weights["params"] == from_name["params"] and from_weights["gflops"] == from_name["gflops"]
    assert main(["info", "--model", "yolov7-tiny", "--json"]) == 0  # 80 classes: other counts
    assert json.loads(capsys.readouterr().out)["params"] != from_weights["params"]
    assert main(["info", "--weights", str(path), "--nc", "3"]) == 2
    assert "--nc is for --model" in capsys.readouterr().err
