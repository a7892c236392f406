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
from torch import nn

from yolov7lib.deploy import probe_images
from yolov7lib.engine.checkpoint import load_checkpoint, save_checkpoint
from yolov7lib.engine.weights import WeightsError, load_model, mismatch_summary, read_weights
from yolov7lib.models.heads import Detect, IDetect
from yolov7lib.models.official import UnsafeCheckpointError


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
    run = tmp_path / "exp"  # a run folder, as --resume takes; before: "weights file 'exp' not found"
    (run / "weights").mkdir(parents=True)
    save_checkpoint(checkpoint_of(small_model(), ["a", "b", "c"]), run / "weights" / "best.pt")
    with pytest.raises(IsADirectoryError, match=f"is a folder, not a checkpoint file; give one of its "
                       f"checkpoints: {run / 'weights' / 'best.pt'}$"):  # fmt: skip
        read_weights(run)
    with pytest.raises(IsADirectoryError, match=f"checkpoints: {run / 'weights' / 'best.pt'}$"):
        read_weights(run / "weights")  # the run's weights folder: before, no checkpoint was named
    with pytest.raises(IsADirectoryError, match=r"is a folder, not a checkpoint file$"):
        read_weights(tmp_path)  # holds no checkpoint: no empty "give one of" hint
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match=r"not a complete torch\.save archive"):
        load_model(junk)


def test_checkpoint_names_set_the_class_count_of_a_named_architecture(tmp_path: Path) -> None:
    """--weights with --model: the checkpoint's class count wins over the cfg's nc (3 here)."""
    model = small_model(nc=2, seed=6)
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(SMALL_CFG))
    path = save_checkpoint(checkpoint_of(model, ["a", "b"]), tmp_path / "last.pt")
    loaded = load_model(path, model=str(cfg), reparameterize=False)
    assert loaded.head.nc == 2 and loaded.names == ["a", "b"]
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_outputs(loaded, x), _outputs(model, x))


def test_a_bare_state_dict_missing_a_tensor_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(SMALL_CFG))
    state = small_model(seed=7).state_dict()
    missing = next(k for k in state if k.endswith("running_var"))
    del state[missing]
    path = tmp_path / "state.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=f'Missing key.*"{missing}"'):
        load_model(path, model=str(cfg), nc=3)


def test_class_names_that_do_not_fit_the_head_are_not_used(tmp_path: Path) -> None:
    model = small_model(nc=3, seed=8)
    path = save_checkpoint(checkpoint_of(model, ["a", "b", "c"]), tmp_path / "last.pt")
    ckpt = load_checkpoint(path)
    ckpt["names"] = ["a", "b"]
    save_checkpoint(ckpt, path)
    loaded = load_model(path, reparameterize=False)
    assert loaded.head.nc == 3 and len(loaded.names) == 3


def test_an_unsafe_archive_is_refused_as_unsafe_without_running_it(code_running_checkpoint) -> None:
    evil = code_running_checkpoint
    with pytest.raises(UnsafeCheckpointError):
        read_weights(evil.path)
    assert not evil.marker.exists()


def test_mismatch_summary_gives_the_reasons_without_torchs_header() -> None:
    with pytest.raises(RuntimeError) as err:
        nn.Linear(2, 2).load_state_dict({"weight": torch.zeros(3, 2), "extra": torch.zeros(1)})
    summary = mismatch_summary(err.value)
    assert "Error(s) in loading" not in summary
    assert summary.startswith('Missing key(s) in state_dict: "bias"')
    assert 'Unexpected key(s) in state_dict: "extra"' in summary and "size mismatch for weight" in summary


def test_an_empty_dict_is_not_taken_for_a_bare_state_dict(tmp_path: Path) -> None:
    path = save_checkpoint({}, tmp_path / "empty_dict.pt")
    with pytest.raises(WeightsError, match="without a 'model' entry"):
        read_weights(path)


@pytest.mark.parametrize("ema", [None, {"updates": 0}, {"model": None, "updates": 0}])
def test_a_checkpoint_without_ema_weights_falls_back_to_the_model(tmp_path: Path, ema) -> None:
    model = small_model(seed=9)
    ckpt = {**checkpoint_of(model, ["a", "b", "c"]), "ema": copy.deepcopy(ema)}
    path = save_checkpoint(ckpt, tmp_path / "last.pt")
    _, state, names = read_weights(path)
    assert names == ["a", "b", "c"]
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
