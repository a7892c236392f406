"""benchmarks/compare_official_loss.py: the parts that do not need the official code (which CI lacks)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmark_scripts import load_script
from test_assign_oracle import oracle_config

from yolov7lib.configs import load_hyp


@pytest.fixture(scope="module")
def tool():
    return load_script("compare_official_loss")


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
@pytest.fixture(scope="module")
def models_tool():
    return load_script("compare_official_models")


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


# -- benchmarks/compare_official_val.py ---------------------------------------------------------------
@pytest.fixture(scope="module")
def val_tool():
    return load_script("compare_official_val")


def test_the_printed_metric_rows_are_read_back_and_ours_are_printed_alike(val_tool) -> None:
    # test.py prints each row as '%20s' + '%12i' * 2 + '%12.3g' * 4 (names may contain spaces)
    lines = [
        "               Class      Images      Labels           P           R      mAP@.5  mAP@.5:.95",
        ("%20s" + "%12i" * 2 + "%12.3g" * 4) % ("all", 500, 2098, 0.62444, 0.63655, 0.65489, 0.39989),
        ("%20s" + "%12i" * 2 + "%12.3g" * 4) % ("traffic light", 500, 251, 0.5296, 0.69323, 0.0, 1.0),
        "Speed: 15.5/5.3/20.9 ms inference/NMS/total per 320x320 image at batch-size 32",
    ]
    rows = val_tool.official_rows("\n".join(lines), ["traffic light", "car"])
    assert rows == {
        "all": ("500", "2098", "0.624", "0.637", "0.655", "0.4"),
        "traffic light": ("500", "251", "0.53", "0.693", "0", "1"),
    }
    record = {
        "images": 500, "labels": 2098, "precision": 0.62444, "recall": 0.63655, "map50": 0.65489,
        "map": 0.39989,
        "per_class": [{"name": "traffic light", "labels": 251, "precision": 0.5296, "recall": 0.69323,
                       "ap50": 0.0, "ap": 1.0}],
    }  # fmt: skip
    assert val_tool.our_rows(record) == rows


def test_detections_are_keyed_as_test_py_keys_them(val_tool, tmp_path: Path) -> None:
    coco = {
        "images": [{"id": 7, "file_name": "000012.jpg"}, {"id": 8, "file_name": "street.png"}],
        "categories": [{"id": 5, "name": "b"}, {"id": 2, "name": "a"}],  # class order: by id
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    ours = [
        {"image_id": 7, "category_id": 5, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": 8, "category_id": 2, "bbox": [5, 6, 7, 8], "score": 0.25},
        {"image_id": 7, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 0.125},
    ]
    theirs = [
        {"image_id": 12, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": "street", "category_id": 0, "bbox": [5, 6, 7, 8], "score": 0.25},
        {"image_id": 12, "category_id": 0, "bbox": [0, 0, 1, 1], "score": 0.125},
    ]
    (tmp_path / "ours.json").write_text(json.dumps(ours))
    (tmp_path / "theirs.json").write_text(json.dumps(theirs))
    a = val_tool.detections_by_image(tmp_path / "theirs.json")
    # the class index -> category id mapping that yolov7 val writes with (here: the json's ids in order)
    data = types.SimpleNamespace(category_ids=None, nc=2, path=tmp_path / "data.yaml")
    category_ids = val_tool.class_category_ids(data, tmp_path / "coco.json")
    assert category_ids == [2, 5]
    b = val_tool.detections_by_image(tmp_path / "ours.json", str(tmp_path / "coco.json"), category_ids)
    assert a == b == {12: [(1, 1, 2, 3, 4, 0.5), (0, 0, 0, 1, 1, 0.125)], "street": [(0, 5, 6, 7, 8, 0.25)]}
    assert val_tool.compare_detections(a, b) == (2, 2, 3)
    b[12].reverse()  # the same detections in another order are not identical lists
    assert val_tool.compare_detections(a, b) == (2, 1, 3)


def test_the_split_is_linked_not_copied_and_a_list_file_is_refused(val_tool, tmp_path: Path) -> None:
    (tmp_path / "d" / "images" / "val").mkdir(parents=True)
    (tmp_path / "d" / "labels" / "val").mkdir(parents=True)
    (tmp_path / "d" / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    link = val_tool.scratch_split(tmp_path / "d" / "images" / "val", tmp_path / "scratch")
    assert link == tmp_path / "scratch" / "images" / "val" and link.is_symlink()
    assert (tmp_path / "scratch" / "labels" / "val" / "a.txt").read_text() == "0 0.5 0.5 0.1 0.1\n"
    (tmp_path / "list.txt").write_text("images/val/a.jpg\n")
    with pytest.raises(SystemExit, match="one image folder"):
        val_tool.scratch_split(tmp_path / "list.txt", tmp_path / "scratch2")


def test_a_failing_official_command_stops_with_its_name_exit_code_and_output(
    val_tool, tmp_path: Path
) -> None:
    """run_official serves every compare script: a failure names what ran, its exit status and the
    end of its output, kept in the log when one is given; a success returns the captured output."""
    script = "import sys; print('first'); print('last words', file=sys.stderr); sys.exit(3)"
    fail = [sys.executable, "-c", script]
    log = tmp_path / "official.log"
    expected = r"(?s)the official thing failed \(exit 3\); the end of .*last words"
    with pytest.raises(SystemExit, match=expected):
        val_tool.run_official(fail, tmp_path, "the official thing", log)
    assert log.read_text() == "first\nlast words\n"
    done = val_tool.run_official([sys.executable, "-c", "print('ok')"], tmp_path, "a success")
    assert done.returncode == 0 and done.stdout == "ok\n"


# -- benchmarks/compare_official_detect.py ------------------------------------------------------------
@pytest.fixture(scope="module")
def detect_tool():
    return load_script("compare_official_detect")


def test_detect_comparison_refuses_a_folder_without_the_official_detect_py(
    detect_tool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo.py").write_text("")  # models/yolo.py alone is not enough
    monkeypatch.setattr(sys, "argv", ["x", "--official", str(tmp_path), "--weights", "w.pt", "--source", "."])
    with pytest.raises(SystemExit, match=r"not a checkout of the official YOLOv7 code.*detect\.py"):
        detect_tool.main()


def test_txt_rows_are_read_as_numbers_in_file_order(detect_tool, tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("3 0.5 0.25 1 0.5 0.00145767\n\n0 0.1 0.2 0.3 0.4 1e-05\n")
    (tmp_path / "labels" / "b.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    assert detect_tool.read_labels(tmp_path / "labels") == {
        "a": [(3.0, 0.5, 0.25, 1.0, 0.5, 0.00145767), (0.0, 0.1, 0.2, 0.3, 0.4, 1e-05)],
        "b": [(1.0, 0.5, 0.5, 0.2, 0.2)],
    }
    assert detect_tool.read_labels(tmp_path / "missing") == {}
    (tmp_path / "labels" / "c.txt").write_text("1 0.5 0.5\n")
    with pytest.raises(ValueError, match=r"c\.txt:1"):
        detect_tool.read_labels(tmp_path / "labels")


def _official_text(rows: list[tuple], w: int, h: int) -> list[tuple]:
    """Rows of whole-pixel corners (cls, x1, y1, x2, y2, conf) as the official detect.py writes them:
    normalised, %g, lowest confidence first."""
    out = []
    for c, x1, y1, x2, y2, conf in reversed(rows):
        values = (c, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h, conf)
        out.append(tuple(float(f"{v:g}") for v in values))
    return out


def _our_text(rows: list[tuple], w: int, h: int) -> list[tuple]:
    """The same detections as ours writes them (6 decimals, confidences 5), highest confidence first."""
    out = []
    for c, x1, y1, x2, y2, conf in rows:
        box = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
        out.append((float(c), *(float(f"{v:.6f}") for v in box), float(f"{conf:.5f}")))
    return out


def test_per_image_comparison_catches_a_changed_confidence_class_box_or_missing_row(detect_tool) -> None:
    w = h = 320  # square at --img 320: no padding, gain 1, so whole-pixel corners map to themselves
    pixels = [(2, 10, 20, 110, 220, 0.912345), (0, 0, 5, 320, 64, 0.5), (2, 40, 40, 90, 90, 0.00123456)]
    theirs, ours = _official_text(pixels, w, h), _our_text(pixels, w, h)
    same, box, conf = detect_tool.compare_image(theirs, ours, (h, w), 320, 32)
    assert same and box < 0.01 and conf <= 5e-6
    assert detect_tool.compare_image([], [], (h, w), 320, 32) == (True, 0.0, 0.0)

    changed = [list(r) for r in ours]
    changed[0][5] += 2e-5  # a confidence beyond both printings
    assert not detect_tool.compare_image(theirs, [tuple(r) for r in changed], (h, w), 320, 32)[0]
    changed = [list(r) for r in ours]
    changed[1][0] = 1.0  # another class
    assert not detect_tool.compare_image(theirs, [tuple(r) for r in changed], (h, w), 320, 32)[0]
    moved = _our_text([(2, 11, 20, 111, 220, 0.912345), *pixels[1:]], w, h)  # one pixel to the right
    same, box, _ = detect_tool.compare_image(theirs, moved, (h, w), 320, 32)
    assert not same and box == pytest.approx(1.0, abs=0.01)
    assert detect_tool.compare_image(theirs, ours[:2], (h, w), 320, 32)[0] is False  # a missing row
    assert detect_tool.compare_image(theirs, ours[::-1], (h, w), 320, 32)[0] is False  # official order


def test_the_official_conventions_odd_padding_rounding_and_clipping_are_allowed_for(detect_tool) -> None:
    # a 221 x 320 image at --img 320: 3 rows of padding, 1 on top; the official maps back through 1.5
    h, w = 221, 320
    ours = _our_text([(0, 10.3, 50.8, 100.7, 221.0, 0.5)], w, h)  # sub-pixel corners, bottom clipped
    low, high = detect_tool.official_corner_bounds(ours, (h, w), 320, 32)
    assert low.tolist() == [[10.0, 50.0, 101.0, 220.0]]  # 50.8 - 0.5 rounds to 50; the bottom edge may have
    assert high.tolist() == [[10.0, 50.0, 101.0, 221.0]]  # been anywhere from 221 - 0.5 on
    assert detect_tool.compare_image(
        _official_text([(0, 10, 50, 101, 221, 0.5)], w, h), ours, (h, w), 320, 32
    )[0]
    assert not detect_tool.compare_image(
        _official_text([(0, 10, 51, 101, 221, 0.5)], w, h), ours, (h, w), 320, 32
    )[0]


def test_the_runs_are_compared_image_by_image_and_a_missing_file_means_no_detections(detect_tool) -> None:
    shapes = {"a": (320, 320), "b": (320, 320), "c": (320, 320)}
    pixels = [(1, 10, 20, 110, 220, 0.75)]
    theirs = {"a": _official_text(pixels, 320, 320), "b": _official_text(pixels, 320, 320)}
    ours = {"a": _our_text(pixels, 320, 320)}  # nothing for b; neither writes c
    result = detect_tool.compare_runs(theirs, ours, shapes, 320, 32)
    assert (result["images"], result["identical"], result["rows"], result["differing"]) == (3, 2, 2, ["b"])


# -- benchmarks/compare_official_augment.py -----------------------------------------------------------
@pytest.fixture(scope="module")
def augment_tool():
    return load_script("compare_official_augment")


def test_recorded_draws_replay_in_order_and_a_different_range_is_caught(augment_tool) -> None:
    recorder = augment_tool.Recorder(seed=3)
    values = [
        recorder.uniform(-1.0, 1.0),
        recorder.uniform(0.4, 0.6),
        recorder.randint(0, 5),
        recorder.random(),
    ]
    assert [d[2] for d in recorder.draws] == values and values[2] in range(6) and 0 <= values[3] < 1
    replay = augment_tool.Replay(recorder.draws)
    # randint(0, 5) is numpy's integers(0, 6); integers(k) is integers(0, k)
    assert [
        replay.uniform(-1.0, 1.0),
        replay.uniform(0.4, 0.6),
        replay.integers(6),
        replay.random(),
    ] == values
    with pytest.raises(AssertionError, match="more numbers"):
        replay.uniform(0.0, 1.0)
    with pytest.raises(
        AssertionError, match=r"ours draws uniform\[0.3, 0.7\) where the official draws uniform\[0.4, 0.6\)"
    ):
        augment_tool.Replay(recorder.draws[1:]).uniform(0.3, 0.7)
    with pytest.raises(
        AssertionError, match=r"ours draws integers\[0, 5\) where the official draws integers\[0, 6\)"
    ):
        augment_tool.Replay(recorder.draws[2:]).integers(0, 5)  # randint's upper end is inclusive
    with pytest.raises(AssertionError, match=r"ours draws random.*the official draws integers"):
        augment_tool.Replay(recorder.draws[2:]).random()
    with pytest.raises(AssertionError, match="draws 2 numbers"):
        augment_tool.Replay([(-1, 1, [0.1, 0.2, 0.3])]).uniform(-1, 1, 2)


def test_replayed_draws_reproduce_our_own_random_perspective(augment_tool) -> None:
    """A replay of the draws our function made with a real generator gives the same warp and boxes."""
    from yolov7lib.data import augment

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    targets = augment_tool.random_boxes(rng, 6, 90, 60)
    seen: list = []

    class Spy:
        def uniform(self, low, high, size=None):
            value = rng.uniform(low, high, size)
            seen.append((low, high, value))
            return value

    kwargs = dict(degrees=10.0, translate=0.2, scale=0.5, shear=2.0, perspective=0.0005, border=(0, 0))
    img_a, t_a = augment.random_perspective(img.copy(), targets.copy(), rng=Spy(), **kwargs)
    img_b, t_b = augment.random_perspective(
        img.copy(), targets.copy(), rng=augment_tool.Replay(seen), **kwargs
    )
    assert len(seen) == 8 and np.array_equal(img_a, img_b) and np.array_equal(t_a, t_b)
    assert not np.array_equal(img_a, img)  # the warp did something


def test_a_folder_without_the_official_datasets_module_is_refused(augment_tool, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a checkout of the official YOLOv7 code"):
        augment_tool.import_official_datasets(tmp_path)


# -- benchmarks/compare_official_train.py -------------------------------------------------------------
@pytest.fixture(scope="module")
def train_tool():
    return load_script("compare_official_train")


def test_train_comparison_refuses_a_folder_that_is_not_the_official_code(
    train_tool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo.py").write_text("")  # train.py and the cfg are missing
    monkeypatch.setattr(sys, "argv", ["compare_official_train.py", "--official", str(tmp_path)])
    with pytest.raises(SystemExit, match="not a checkout of the official YOLOv7 code"):
        train_tool.main()
    assert not list(tmp_path.parent.glob("compare_train_*"))  # refused before any scratch folder


def test_with_augmentation_off_every_sample_seed_gives_the_same_fixed_zoom(
    train_tool, tmp_path: Path
) -> None:
    """The comparison's hyperparameters leave no random draw any effect: every sample seed gives the
    same image and labels, the letterboxed image zoomed by exactly 1.05 about its centre (the reference
    draws the scale from [1 - scale, 1.1 + scale], pinned by scale = -0.05)."""
    from yolov7lib.data import synthesize
    from yolov7lib.data.dataset import DetectionDataset

    synthesize(tmp_path / "set", n_train=3, n_val=1, img_size=96, seed=2, workers=1, progress=False)
    train = tmp_path / "set" / "images" / "train"
    hyp = train_tool.training_hyp("tiny")
    assert hyp["scale"] == -0.05 and hyp["lr0"] == load_hyp("tiny")["lr0"]
    augmented = DetectionDataset(train, 96, 3, augment=True, hyp=hyp, stride=32)
    plain = DetectionDataset(train, 96, 3, augment=False, hyp=hyp, stride=32)
    for index in range(3):
        img, labels, _, _ = augmented[(index, 11)]
        for seed in (12, 987654321):
            again, labels_again, _, _ = augmented[(index, seed)]
            assert torch.equal(img, again) and torch.equal(labels, labels_again)
        _, flat_labels, _, _ = plain[index]
        # a zoom by 1.05 about the centre of the 96 x 96 letterboxed image, x' = 0.5 + 1.05 (x - 0.5),
        # then clipped to the frame (no box loses enough area to be dropped)
        xy, half = flat_labels[:, 2:4], flat_labels[:, 4:6] / 2
        low = (0.5 + 1.05 * (xy - half - 0.5)).clamp(0, 1)
        high = (0.5 + 1.05 * (xy + half - 0.5)).clamp(0, 1)
        expected = torch.cat((flat_labels[:, :2], (low + high) / 2, high - low), 1)
        assert torch.allclose(labels, expected, atol=1e-5)


def test_official_results_txt_losses_are_read_from_their_columns(train_tool, tmp_path: Path) -> None:
    # the official train.py's row: '%10s' * 2 + '%10.4g' * 6 (epoch, memory, 4 losses, labels, size),
    # then '%10.4g' * 7 (P, R, mAP@.5, mAP@.5:.95, 3 validation losses)
    rows = [
        ("0/1", "0G", 0.07523, 0.01381, 0.05957, 0.1486, 71, 320),
        ("1/1", "0G", 0.071, 0.0147, 0.059, 0.1447, 71, 320),
    ]
    text = "".join(
        ("%10s" * 2 + "%10.4g" * 6) % r + "%10.4g" * 7 % (0.5, 0.25, 0.1, 0.05, 0, 0, 0) + "\n" for r in rows
    )
    (tmp_path / "results.txt").write_text(text)
    assert train_tool.official_losses(tmp_path / "results.txt") == [r[2:6] for r in rows]


def test_largest_state_difference_names_its_tensor_and_skips_batch_counters(train_tool) -> None:
    theirs = {
        "a.weight": torch.tensor([1.0, -2.0]),
        "b.bias": torch.tensor([4.0, 0.0]),
        "bn.num_batches_tracked": torch.tensor(3),
    }
    ours = {
        "a.weight": torch.tensor([1.0, -2.002]),
        "b.bias": torch.tensor([4.0, 0.02]),
        "bn.num_batches_tracked": torch.tensor(9),
    }
    worst, where = train_tool.largest_differences(ours, theirs)
    assert where == "b.bias" and worst == pytest.approx(0.02 / 4)  # a.weight: 0.002 / 2 = 0.001
    assert train_tool.largest_differences(theirs, theirs) == (0.0, "")
    with pytest.raises(SystemExit, match="differ in their tensors"):
        train_tool.largest_differences({**ours, "extra": torch.zeros(1)}, theirs)


# -- benchmarks/compare_official_export.py ------------------------------------------------------------
@pytest.fixture(scope="module")
def export_tool():
    return load_script("compare_official_export")


def test_export_comparison_refuses_a_folder_without_export_py(
    export_tool, tmp_path: Path, monkeypatch
) -> None:
    (tmp_path / "models").mkdir()
    for name in ("yolo.py", "experimental.py"):
        (tmp_path / "models" / name).write_text("")
    monkeypatch.setattr(
        sys, "argv", ["x", "--official", str(tmp_path), "--weights", "w.pt", "--source", str(tmp_path)]
    )
    with pytest.raises(SystemExit, match=r"not a checkout of the official YOLOv7 code \(expected export.py"):
        export_tool.main()


DETS = [(3, 0.9, 10.0, 20.0, 110.0, 220.0), (1, 0.5, 50.0, 60.0, 70.0, 80.0), (1, 0.4, 0.0, 0.0, 5.0, 5.0)]


def test_official_rows_and_our_padded_outputs_become_the_same_detections(export_tool) -> None:
    rows = np.array([[1, *d[2:], d[0], d[1]] for d in DETS[:2]] + [[0, *DETS[2][2:], 1, 0.4]], np.float32)
    theirs = export_tool.official_detections(rows, 3)
    boxes = np.zeros((3, 4, 4), np.float32)
    scores = np.zeros((3, 4), np.float32)
    classes = np.full((3, 4), -1, np.int64)
    boxes[1, :2], scores[1, :2], classes[1, :2] = [d[2:] for d in DETS[:2]], [0.9, 0.5], [3, 1]
    boxes[0, 0], scores[0, 0], classes[0, 0] = DETS[2][2:], 0.4, 1
    ours = export_tool.our_detections(np.array([[1], [2], [0]]), boxes, scores, classes)
    assert [len(d) for d in theirs] == [len(d) for d in ours] == [1, 2, 0]
    result = export_tool.compare_end2end(theirs, ours)
    assert result["matched"] == 3 and result["differing"] == [] and result["reordered"] == []
    assert result["score"] < 1e-7 and result["box_px"] == 0.0


def test_end2end_matching_finds_a_moved_box_a_missing_detection_and_another_order(export_tool) -> None:
    same = export_tool.match_image(DETS, list(DETS))
    assert same["matched"] == 3 and same["same_order"] and not same["missing"] and not same["extra"]
    moved = [DETS[0], (1, 0.5, 50.0, 60.5, 70.0, 80.0), DETS[2]]
    result = export_tool.match_image(DETS, moved)
    assert result["matched"] == 2 and result["missing"] == [DETS[1]] and result["extra"] == [moved[1]]
    slightly = [DETS[0], (1, 0.5 + 5e-5, 50.0, 60.0 + 5e-4, 70.0, 80.0), DETS[2]]  # within the tolerances
    assert export_tool.match_image(DETS, slightly)["matched"] == 3
    other_class = [DETS[0], (2, *DETS[1][1:]), DETS[2]]
    assert export_tool.match_image(DETS, other_class)["matched"] == 2
    missing = export_tool.compare_end2end([DETS, []], [DETS[:2], []])
    assert missing["differing"] == [0] and missing["matched"] == 2 and missing["official"] == 3
    swapped = export_tool.compare_end2end([DETS], [[DETS[1], DETS[0], DETS[2]]])
    assert swapped["differing"] == [] and swapped["reordered"] == [0]


def test_plain_differences_measure_boxes_and_scores_apart(export_tool) -> None:
    theirs = np.random.default_rng(0).random((2, 30, 9)).astype(np.float32)
    theirs[..., :4] *= 320
    assert export_tool.plain_differences(theirs, theirs.copy(), 320) == {
        "scores_abs": 0.0,
        "boxes_px": 0.0,
        "boxes_rel": 0.0,
    }
    ours = theirs.copy()
    ours[1, 7, 2] += 0.5
    ours[0, 3, 6] -= 0.01
    d = export_tool.plain_differences(theirs, ours, 320)
    assert d["boxes_px"] == pytest.approx(0.5, abs=1e-4) and d["scores_abs"] == pytest.approx(0.01, abs=1e-6)
    assert d["boxes_rel"] == pytest.approx(0.5 / (320 + theirs[1, 7, 2]), rel=1e-3)
    with pytest.raises(ValueError, match="shapes differ"):
        export_tool.plain_differences(theirs, ours[:, :20], 320)


def test_nms_of_plain_keeps_the_best_box_per_class_and_a_small_offset_mixes_classes(export_tool) -> None:
    # (x, y, w, h, obj, cls0, cls1): two overlapping boxes of class 0, one of class 1, one below conf
    rows = [[740, 740, 40, 40, 0.9, 0.9, 0.1], [742, 740, 40, 40, 0.8, 0.9, 0.1],
            [100, 100, 40, 40, 0.9, 0.1, 0.8], [300, 300, 10, 10, 0.1, 0.5, 0.1]]  # fmt: skip
    pred = np.array([rows], np.float32)
    kept = export_tool.nms_of_plain(pred, 0.25, 0.45, 100, 4096)[0]
    assert [(c, round(s, 4)) for c, s, *_ in kept] == [(0, 0.81), (1, 0.72)]
    assert kept[1][2:] == (80.0, 80.0, 120.0, 120.0)
    assert export_tool.nms_of_plain(pred, 0.25, 0.45, 1, 4096)[0] == kept[:1]
    # with a class offset of 640 the class-1 box (80..120 in x and y) moves onto the class-0 box (720..760)
    assert [c for c, *_ in export_tool.nms_of_plain(pred, 0.25, 0.45, 100, 640)[0]] == [0]
