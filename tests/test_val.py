"""`yolov7 val` on a tiny generated set: its pycocotools numbers equal yolov7lib's own COCO evaluation
of the predictions json it saved, its direct mAP@0.5 equals the metrics recomputed from that json and
the label files, and the CLI fails clearly on bad weights for every model-taking command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_models import checkpoint_of, small_model

from yolov7lib.cli import main
from yolov7lib.data import synthesize
from yolov7lib.engine.checkpoint import save_checkpoint
from yolov7lib.ops import DetectionMetrics, evaluate_coco, evaluate_pycocotools, xywh2xyxy
from yolov7lib.ops.coco_eval import STAT_NAMES

IMG = 96


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    return synthesize(root, n_train=2, n_val=6, img_size=IMG, seed=4, workers=1, progress=False)


@pytest.fixture(scope="module")
def weights(data_yaml, tmp_path_factory) -> Path:
    names = [f"c{i}" for i in range(8)]
    path = tmp_path_factory.mktemp("weights") / "small.pt"
    return save_checkpoint(checkpoint_of(small_model(nc=8, objectness_shift=2.0), names), path)


def _val(capsys, *args: str) -> dict:
    assert main(["val", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_val_coco_numbers_and_direct_map_agree_with_independent_computations(
    data_yaml, weights, tmp_path: Path, capsys
) -> None:
    record = _val(capsys, "--weights", str(weights), "--data", str(data_yaml), "--img", str(IMG),
                  "--batch", "4", "--project", str(tmp_path), "--save-json")  # fmt: skip
    run = Path(record["run_dir"])
    assert json.loads((run / "metrics.json").read_text()) == record
    predictions = json.loads(Path(record["predictions"]).read_text())
    gt_path = data_yaml.parent / "annotations" / "instances_val.json"
    gt = json.loads(gt_path.read_text())
    assert record["images"] == len(gt["images"]) == 6 and record["labels"] == len(gt["annotations"])
    assert {p["category_id"] for p in predictions} <= {c["id"] for c in gt["categories"]}  # 80-to-91 style

    # pycocotools through val == yolov7lib's own COCO evaluation of the saved json == pycocotools again
    ours = evaluate_coco(gt_path, predictions).as_dict()
    again = evaluate_pycocotools(gt_path, predictions).as_dict()
    for name in STAT_NAMES:
        assert record["coco"][name] == pytest.approx(ours[name], abs=1e-12)
        assert record["coco"][name] == pytest.approx(again[name], abs=1e-12)
    assert record["coco"]["ap50"] > 0  # something was found: the comparison is not of two zeros

    # direct mAP@0.5 == the same metric recomputed from the json records and the label files
    cls_of = {c["id"]: k for k, c in enumerate(sorted(gt["categories"], key=lambda c: c["id"]))}
    metrics = DetectionMetrics(8)
    for image in gt["images"]:
        rows = [p for p in predictions if p["image_id"] == image["id"]]
        det = torch.tensor(
            [
                [x, y, x + w, y + h, p["score"], cls_of[p["category_id"]]]
                for p in rows
                for x, y, w, h in [p["bbox"]]
            ],
            dtype=torch.float64,
        ).reshape(-1, 6)
        label_file = data_yaml.parent / "labels" / "val" / Path(image["file_name"]).with_suffix(".txt").name
        lab = torch.from_numpy(np.loadtxt(label_file, ndmin=2)).reshape(-1, 5)
        size = torch.tensor([image["width"], image["height"]] * 2, dtype=torch.float64)
        metrics.update(det, torch.cat([lab[:, :1], xywh2xyxy(lab[:, 1:]) * size], 1))
    recomputed = metrics.compute()
    assert record["map50"] == pytest.approx(recomputed.map50, abs=1e-6)  # json rounding could move a
    assert record["map"] == pytest.approx(recomputed.map, abs=1e-6)  # match at a threshold; it did not
    assert record["map50"] > 0


def test_val_options_iou_fp16_note_and_training_graph(data_yaml, weights, tmp_path: Path, capsys) -> None:
    common = ["--weights", str(weights), "--data", str(data_yaml), "--img", str(IMG), "--batch", "6",
              "--project", str(tmp_path)]  # fmt: skip
    fused = _val(capsys, *common, "--iou", "0.7", "--half")
    assert fused["iou"] == 0.7 and fused["half"] is False  # FP16 is CUDA only ...
    assert main(["val", *common, "--iou", "0.7", "--half"]) == 0
    assert "--half needs CUDA" in capsys.readouterr().err  # ... and the CPU run says so
    unfused = _val(capsys, *common, "--iou", "0.7", "--no-reparameterize")
    assert unfused["reparameterized"] is False
    # the deploy graph computes the same function: same metrics within float noise
    assert unfused["map50"] == pytest.approx(fused["map50"], abs=2e-3)
    assert unfused["coco"]["ap"] == pytest.approx(fused["coco"]["ap"], abs=2e-3)


def test_val_exist_ok_keeps_earlier_results(data_yaml, weights, tmp_path: Path, capsys) -> None:
    """`--exist-ok` reuses the folder but not the files in it: earlier results stay as they were."""
    run = tmp_path / "exp"
    run.mkdir()
    mine = {"metrics.json": '{"mine": 1}', "predictions.json": "[]"}
    for name, text in mine.items():
        (run / name).write_text(text)
    record = _val(capsys, "--weights", str(weights), "--data", str(data_yaml), "--img", str(IMG),
                  "--project", str(tmp_path), "--exist-ok")  # fmt: skip
    assert record["run_dir"] == str(run)
    assert {name: (run / name).read_text() for name in mine} == mine
    assert record["predictions"] == str(run / "predictions_2.json")
    assert json.loads((run / "metrics_2.json").read_text())["map50"] == record["map50"]
    assert json.loads((run / "predictions_2.json").read_text())  # the new predictions are there


@pytest.mark.parametrize("command", ["val", "detect", "export", "bench"])
def test_bad_weights_fail_clearly(command, data_yaml, weights, tmp_path: Path, capsys) -> None:
    extra = {"val": ["--data", str(data_yaml)], "detect": ["--source", str(data_yaml.parent / "images")]}
    args = [command, *extra.get(command, []), "--img", "64"]
    if command in ("val", "detect"):
        args += ["--project", str(tmp_path / "runs")]
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    cases = [
        (["--weights", str(tmp_path / "missing.pt")], "not found"),
        (["--model", "yolov7-huge"], "unknown model 'yolov7-huge'"),
        (["--weights", str(truncated)], "cannot be read"),
    ]
    for flags, message in cases:
        assert main([*args, *flags]) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "truncated.onnx").exists()
    assert not (tmp_path / "runs").exists()  # no empty run folder is left behind


def test_a_failed_val_leaves_no_run_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "set" / "images" / "val").mkdir(parents=True)  # a split without images
    (tmp_path / "set" / "data.yaml").write_text("val: images/val\nnames: [a, b]\n")
    args = ["val", "--model", "yolov7-tiny", "--data", str(tmp_path / "set" / "data.yaml"), "--img", "64"]
    assert main([*args, "--project", str(tmp_path / "runs")]) != 0
    assert "no images found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_category_ids_follow_the_json_else_cocos_80_to_91_mapping(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from yolov7lib.engine.val import class_category_ids
    from yolov7lib.ops import COCO80_TO_COCO91

    coco = SimpleNamespace(category_ids=None, nc=80, path=tmp_path / "coco.yaml")
    assert class_category_ids(coco, None) == list(COCO80_TO_COCO91)  # YOLO-format COCO: the reference's map
    mine = SimpleNamespace(category_ids=None, nc=80, path=tmp_path / "mine.yaml")
    assert class_category_ids(mine, None) is None
    gt = tmp_path / "instances_val.json"
    gt.write_text(json.dumps({"images": [], "categories": [{"id": 9, "name": "b"}, {"id": 4, "name": "a"}]}))
    two = SimpleNamespace(category_ids=None, nc=2, path=tmp_path / "d.yaml")
    assert class_category_ids(two, gt) == [4, 9]
