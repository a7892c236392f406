"""`--weights W` / `--model NAME` -> a model ready for inference (shared by val, detect, export, bench).

Accepted weights: a yolov7lib checkpoint (the trainer's plain dict: `model_cfg`, `model`, `ema`,
`names`; the EMA weights are preferred, as the paper's inference model is the EMA one, Section 4.3),
a bare state dict together with `--model NAME`, or an official YOLOv7 `.pt` (read by the restricted
unpickler of `yolov7lib.models.load_official`, never by plain `torch.load`). `--model NAME` alone
builds the architecture with its initial (random) weights. The result is in eval mode and, by default,
re-parameterized into the deploy graph (BatchNorm and RepConv fused, implicit knowledge folded,
auxiliary head dropped: Sections 4.1 and 4.3), which computes the same function.
"""

from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path

import torch

from yolov7lib.engine.checkpoint import CheckpointError, load_checkpoint
from yolov7lib.models import Model, create_model, load_official
from yolov7lib.models import reparameterize as to_deploy
from yolov7lib.models.official import UnsafeCheckpointError

__all__ = ["WeightsError", "checkpoint_architecture", "fit_img_size", "load_model", "read_weights"]

logger = logging.getLogger(__name__)


def model_grid(model: torch.nn.Module) -> int:
    """The multiple that input sides must have: the model's largest stride, at least 32."""
    return max(int(getattr(model, "stride", torch.tensor([32])).max()), 32)


def fit_img_size(img: int, model: torch.nn.Module) -> tuple[int, int]:
    """(`img` rounded up to a multiple of the grid, the grid): the grid is the model's largest stride, at
    least 32. A changed size is logged, as the reference's check_img_size does for detect, test, export."""
    grid = model_grid(model)
    fitted = math.ceil(img / grid) * grid
    if fitted != img:
        logger.warning("--img %d is not a multiple of the stride %d; using %d", img, grid, fitted)
    return fitted, grid


def checkpoint_architecture(arch: dict | Model | None, weights: str | Path) -> dict:
    """The architecture spec that `read_weights(weights)` found (its first item): a kit checkpoint's
    spec, or the cfg of an official checkpoint's built model; a bare state dict names none (ValueError)."""
    cfg = getattr(arch, "cfg", arch)  # an official checkpoint comes as a built model
    if not isinstance(cfg, dict):
        raise ValueError(f"{weights}: a bare state dict names no architecture; give it with --model")
    return cfg


class WeightsError(ValueError):
    """Weights that cannot be turned into a model: missing, damaged, or not matching the architecture."""


def read_weights(
    path: str | Path, prefer_ema: bool = True
) -> tuple[dict | Model | None, dict[str, torch.Tensor], list[str] | None]:
    """Read a yolov7lib or an official checkpoint: (architecture spec, or the loaded model of an official
    file, or None for a bare state dict; state dict; class names). A file that is neither raises
    WeightsError naming what each reader found wrong; a missing file raises FileNotFoundError, a folder
    IsADirectoryError (naming the best.pt and last.pt of a run folder or of its weights/ folder)."""
    path = Path(path)
    if path.is_dir():  # a run folder, as --resume takes, or its weights/: name the checkpoints it holds
        checkpoints = [
            folder / name for folder in (path / "weights", path) for name in ("best.pt", "last.pt")
        ]
        held = [str(p) for p in checkpoints if p.is_file()]
        hint = f"; give one of its checkpoints: {' or '.join(held)}" if held else ""
        raise IsADirectoryError(f"weights {str(path)!r} is a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} not found")
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as ours:
        if not zipfile.is_zipfile(path):  # official checkpoints are torch.save archives too
            raise WeightsError(str(ours)) from ours
        try:
            official = load_official(path, prefer_ema=prefer_ema)
        except UnsafeCheckpointError:
            raise
        except Exception as theirs:
            raise WeightsError(
                f"{path} is neither a yolov7lib checkpoint ({ours}) nor an official YOLOv7 one ({theirs})"
            ) from theirs
        return official, official.state_dict(), list(official.names)
    if "model" in ckpt:
        ema = ckpt.get("ema") if prefer_ema else None
        state = (
            ema["model"] if isinstance(ema, dict) and isinstance(ema.get("model"), dict) else ckpt["model"]
        )
        names = ckpt.get("names")
        return ckpt.get("model_cfg"), state, list(names) if names is not None else None
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return None, ckpt, None  # a bare state dict: the architecture must come from --model
    raise WeightsError(f"{path}: a dict without a 'model' entry; not a yolov7lib checkpoint")


def mismatch_summary(err: RuntimeError, lines: int = 3, width: int = 240) -> str:
    """The first `lines` reasons of a load_state_dict error (missing keys, unexpected keys, size
    mismatches), each cut to `width` characters: torch's header line alone says nothing."""
    reasons = [r.strip() for r in str(err).splitlines()[1:] if r.strip()] or [str(err).strip()]
    shown = [r if len(r) <= width else r[: width - 3] + "..." for r in reasons[:lines]]
    more = f"; and {len(reasons) - lines} more" if len(reasons) > lines else ""
    return "; ".join(shown) + more


def load_model(
    weights: str | Path | None = None,
    model: str | None = None,
    nc: int | None = None,
    device: str | torch.device = "cpu",
    reparameterize: bool = True,
    prefer_ema: bool = True,
) -> Model:
    """Build the inference model from `weights` and/or `model` (a registry name or cfg path).

    `nc` sets the class count of a model built from its name alone (default 80); with weights the
    checkpoint decides it. `model.names` holds the class names (from the checkpoint when it has them).
    Raises FileNotFoundError for a missing file and WeightsError (a ValueError) for everything else.
    """
    if weights is None and model is None:
        raise WeightsError("give --weights (a checkpoint) or --model (an architecture name), or both")
    cfg, state, names = None, None, None
    if weights is not None:
        cfg, state, names = read_weights(weights, prefer_ema)
        nc = len(names) if names else nc
    if model is not None:
        cfg = model
    if cfg is None:
        raise WeightsError(f"{weights}: a bare state dict; name its architecture with --model")
    try:
        net = cfg if isinstance(cfg, Model) else create_model(cfg, nc=nc if isinstance(cfg, str) else None)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise WeightsError(
            f"cannot build model {cfg if isinstance(cfg, str) else 'from checkpoint'}: {err}"
        ) from err
    if state is not None and not isinstance(cfg, Model):
        if not any(k.startswith("model.") for k in state):
            raise WeightsError(f"{weights}: its state dict has no 'model.<layer>' keys")
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsError(
                f"{weights} does not fit the architecture {model or 'it names'}: {mismatch_summary(err)}"
            ) from err
    if names is not None and len(names) == net.head.nc:
        net.names = [str(n) for n in names]
    net = net.float().eval()
    if reparameterize:
        net = to_deploy(net)
    return net.to(device).eval()
