"""Hyperparameter profiles: packaged files, user files and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from yolov7lib.configs import HYP_NAMES, load_hyp

HYP_FILES = Path(__file__).resolve().parents[1] / "yolov7lib" / "configs"

REFERENCE_KEYS = {
    "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr",
    "box", "cls", "cls_pw", "obj", "obj_pw", "iou_t", "anchor_t", "fl_gamma", "hsv_h", "hsv_s", "hsv_v",
    "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr", "mosaic", "mixup",
    "copy_paste", "paste_in", "loss_ota",
}  # fmt: skip


@pytest.mark.parametrize("name", HYP_NAMES)
def test_packaged_profiles_hold_every_reference_key(name: str) -> None:
    hyp = load_hyp(name)
    assert REFERENCE_KEYS <= hyp.keys()
    assert all(isinstance(v, int | float) for v in hyp.values() if not isinstance(v, str))


def test_profiles_differ_where_the_reference_does() -> None:
    p5, p6, tiny = load_hyp("p5"), load_hyp("p6"), load_hyp("tiny")
    assert (p5["lrf"], p6["lrf"], tiny["lrf"]) == (0.1, 0.2, 0.01)
    assert tiny["obj"] == 1.0 and p5["obj"] == 0.7


def test_user_file_overrides_and_defaults_fill(tmp_path: Path) -> None:
    f = tmp_path / "hyp.yaml"
    reference = yaml.safe_load((Path(HYP_FILES) / "hyp.scratch.p5.yaml").read_text())
    f.write_text(yaml.safe_dump({**reference, "lr0": 0.02, "mosaic": 0.0}))
    hyp = load_hyp(f)
    assert hyp["lr0"] == 0.02 and hyp["mosaic"] == 0.0
    assert hyp["aux_weight"] == load_hyp("p5")["aux_weight"]  # a kit key the reference's files lack
    assert load_hyp({"lr0": 0.5})["lr0"] == 0.5  # a dict (from code) is taken as it is


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: [unclosed\n", r"not valid YAML \(.* at line \d\)"),
        ("lr0: 0.01\nmosaic: 0.0\n", "missing hyperparameter\\(s\\) lrf, momentum, weight_decay"),
        ("lr0: abc\n", "missing hyperparameter"),
        (b"PK\x03\x04\x80\x81", "not a UTF-8 text file, so not a hyperparameter YAML"),  # a checkpoint
    ],
)
def test_incomplete_or_unparsable_user_file_is_refused_by_name(
    tmp_path: Path, text: str | bytes, message: str
) -> None:
    """A hyp file is the whole recipe, as the reference's are: a missing key would otherwise surface as a
    KeyError deep inside the optimizer or the data pipeline."""
    f = tmp_path / "hyp.yaml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=message) as err:
        load_hyp(f)
    assert str(f) in str(err.value)


@pytest.mark.parametrize(("key", "value"), [("lr0", "abc"), ("mosaic", True), ("box", None)])
def test_a_value_that_is_not_a_number_is_refused_by_name(tmp_path: Path, key: str, value: object) -> None:
    hyp = load_hyp("cpu")
    hyp[key] = value
    f = tmp_path / "hyp.yaml"
    f.write_text(yaml.safe_dump(hyp))
    with pytest.raises(ValueError, match=f"hyperparameter {key} must be a number"):
        load_hyp(f)
    hyp[key] = load_hyp("cpu")[key]
    f.write_text(yaml.safe_dump(hyp))
    assert load_hyp(f) == load_hyp("cpu")  # the packaged profile written out loads back unchanged


def test_missing_or_malformed_file_gives_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_hyp(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_hyp(bad)
