"""Hyperparameter profiles: packaged files, user files and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from yolov7lib.configs import HYP_NAMES, load_hyp

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
    f.write_text(yaml.safe_dump({"lr0": 0.02, "mosaic": 0.0}))
    hyp = load_hyp(f)
    assert hyp["lr0"] == 0.02 and hyp["mosaic"] == 0.0
    assert load_hyp({"lr0": 0.5})["lr0"] == 0.5


def test_missing_or_malformed_file_gives_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_hyp(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_hyp(bad)
