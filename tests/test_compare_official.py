"""benchmarks/compare_official_loss.py: the parts that do not need the official code (which CI lacks)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from test_assign_oracle import oracle_config

from yolov7lib.configs import load_hyp

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_official_loss.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("compare_official_loss", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_folder_that_is_not_the_official_code_is_refused_clearly(tool, tmp_path: Path) -> None:
    (tmp_path / "utils").mkdir()
    (tmp_path / "utils" / "loss.py").write_text("raise RuntimeError('must not be imported')\n")
    for folder in (tmp_path / "missing", tmp_path):  # absent; present but without models/yolo.py
        with pytest.raises(SystemExit, match="not a checkout of the official YOLOv7 code"):
            tool.import_official_loss(folder)
    assert "utils.loss" not in sys.modules


def test_stable_topk_equals_torch_values_and_breaks_ties_towards_the_earlier_index(tool) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (40, 25), generator=gen).float()  # many exact ties
    for largest in (True, False):
        for k in (1, 7, 25):
            values, index = tool._StableTopk.topk(x, k, dim=1, largest=largest)
            assert torch.equal(values, torch.topk(x, k, dim=1, largest=largest).values)
            for row, picked in zip(x.tolist(), index.tolist(), strict=True):  # naive: rank by (value, index)
                sign = -1.0 if largest else 1.0
                assert picked == sorted(range(len(row)), key=lambda i, r=row: (sign * r[i], i))[:k]


@pytest.mark.parametrize("profile, nl, img", [("tiny", 3, 320), ("p6", 4, 640), ("p5", 3, 1280)])
def test_official_hyp_scales_the_gains_as_the_oracle(tool, profile: str, nl: int, img: int) -> None:
    hyp = dict(load_hyp(profile))
    scaled = tool.official_hyp(hyp, nl, 80, img)
    assert (scaled["box"], scaled["obj"], scaled["cls"]) == pytest.approx(
        oracle_config(hyp, nl, 80, img, nl == 4).gains, rel=1e-12
    )
    assert {k: v for k, v in scaled.items() if k not in ("box", "obj", "cls")} == {
        k: v for k, v in hyp.items() if k not in ("box", "obj", "cls")
    }


# -- benchmarks/compare_official_models.py ------------------------------------------------------------
MODELS_SCRIPT = SCRIPT.with_name("compare_official_models.py")


@pytest.fixture(scope="module")
def models_tool():
    spec = importlib.util.spec_from_file_location("compare_official_models", MODELS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_paper_model_with_an_official_cfg_is_compared(models_tool) -> None:
    from yolov7lib.models import list_models

    registered = set(list_models())
    assert set(models_tool.PAIRS) <= registered
    yolov7_family = {"yolov7-tiny", "yolov7-tiny-silu", "yolov7", "yolov7x", "yolov7-w6", "yolov7-e6"}
    assert yolov7_family | {"yolov7-d6", "yolov7-e6e", "yolor-csp", "yolor-w6", "yolov4-csp"} <= set(
        models_tool.PAIRS
    )
    for train_cfg, deploy_cfg in models_tool.PAIRS.values():
        assert (train_cfg or deploy_cfg).startswith("cfg/") and (train_cfg or deploy_cfg).endswith(".yaml")


def test_a_folder_without_the_official_models_is_refused_clearly(models_tool, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a checkout of the official YOLOv7 code"):
        models_tool.import_official_model(tmp_path)
    assert "models.yolo" not in sys.modules


def test_relative_difference(models_tool) -> None:
    b = torch.tensor([[1.0, -4.0], [2.0, 0.5]])
    assert models_tool.relative_difference(b.clone(), b) == 0.0
    assert models_tool.relative_difference(b + torch.tensor([[0.0, 0.0], [0.0, 0.02]]), b) == pytest.approx(
        0.005
    )
    assert models_tool.relative_difference(b[:1], b) == float("inf")
