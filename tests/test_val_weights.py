"""`engine.weights.load_model`, the one loader behind val, detect, export and bench: our checkpoints
(EMA preferred), bare state dicts with --model, official .pt files, and the deploy form by default."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from inference_models import SMALL_CFG, checkpoint_of, small_model
from test_models_official import save_official

from yolov7lib.deploy import probe_images
from yolov7lib.engine.checkpoint import save_checkpoint
from yolov7lib.engine.weights import WeightsError, load_model, read_weights
from yolov7lib.models.heads import Detect, IDetect


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)[0]


def test_our_checkpoint_prefers_the_ema_weights_and_deploys(tmp_path: Path) -> None:
    model, ema = small_model(seed=1), small_model(seed=2)
    state = {**checkpoint_of(model, ["a", "b", "c"]), "ema": {"model": ema.state_dict(), "updates": 9}}
    path = save_checkpoint(state, tmp_path / "last.pt")
    x = probe_images(2, 64, 96)
    loaded = load_model(path)
    assert type(loaded.head) is Detect and not loaded.training and loaded.names == ["a", "b", "c"]
    torch.testing.assert_close(_outputs(loaded, x), _outputs(ema, x), rtol=1e-4, atol=1e-3)
    raw = load_model(path, reparameterize=False, prefer_ema=False)
    assert type(raw.head) is IDetect
    _, from_text, names = read_weights(str(path))  # a path given as text reads the same
    assert names == ["a", "b", "c"] and all(torch.equal(from_text[k], v) for k, v in ema.state_dict().items())
    torch.testing.assert_close(_outputs(raw, x), _outputs(model, x))


def test_bare_state_dict_needs_and_takes_the_model_name(tmp_path: Path) -> None:
    model = small_model(seed=3)
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(SMALL_CFG))
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(WeightsError, match="--model"):
        load_model(path)
    loaded = load_model(path, model=str(cfg), nc=3, reparameterize=False)
    x = probe_images(1, 64, 64)
    torch.testing.assert_close(_outputs(loaded, x), _outputs(model, x))
    with pytest.raises(WeightsError, match="does not fit") as err:
        load_model(path, model="yolov7-tiny")
    reason = str(err.value)  # the reason itself, not only torch's header line
    assert "Missing key(s)" in reason or "size mismatch" in reason
    state = model.state_dict()
    first = next(iter(state))
    torch.save({**state, first: state[first][:1]}, path)  # one tensor cut: the reason names it
    with pytest.raises(WeightsError, match=f"size mismatch for {first}"):
        load_model(path, model=str(cfg), nc=3)


def test_official_checkpoint_loads_through_the_restricted_unpickler(tmp_path: Path) -> None:
    model, ema = small_model(seed=4), small_model(seed=5)
    path = save_official(tmp_path / "yolov7_training.pt", model, copy.deepcopy(ema))
    loaded = load_model(path)  # EMA preferred, deploy form
    assert type(loaded.head) is Detect and loaded.names == ["class0", "class1", "class2"]
    x = probe_images(1, 64, 64)
    reference = copy.deepcopy(ema).half().float()  # the official file holds float16 weights
    torch.testing.assert_close(_outputs(loaded, x), _outputs(reference, x), rtol=1e-4, atol=2e-3)


def test_no_source_and_damaged_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="--weights"):
        load_model()
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="not found"):  # the reader the trainer shares
        read_weights(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match=r"not a complete torch\.save archive"):
        load_model(junk)
