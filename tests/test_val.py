"""`yolov7 val` on a tiny generated set: its pycocotools numbers equal yolov7lib's own COCO evaluation
of the predictions json it saved, its direct mAP@0.5 equals the metrics recomputed from that json and
the label files, and the CLI fails clearly on bad weights for every model-taking command."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
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


def test_val_warns_when_the_checkpoints_class_names_differ_from_the_datas(
    data_yaml, weights, tmp_path: Path, capsys
) -> None:
    """Classes are scored by index: weights trained with other names (or another order) get a warning
    naming the first class that differs, while weights with the data's own names get none."""
    from yolov7lib.data import load_data_config

    common = ["--data", str(data_yaml), "--img", str(IMG), "--project", str(tmp_path)]
    assert main(["val", "--weights", str(weights), *common, "--json"]) == 0
    err = capsys.readouterr().err
    names = load_data_config(data_yaml).names
    assert "class names differ" in err and f"class 0 is 'c0' in the weights but {names[0]!r}" in err
    same = save_checkpoint(checkpoint_of(small_model(nc=8), names), tmp_path / "same.pt")
    assert main(["val", "--weights", str(same), *common, "--json"]) == 0
    assert "class names differ" not in capsys.readouterr().err
    # weights whose names are only the class numbers (saved without names) name no class to compare
    unnamed = save_checkpoint(checkpoint_of(small_model(nc=8), [str(c) for c in range(8)]), tmp_path / "u.pt")
    assert main(["val", "--weights", str(unnamed), *common, "--json"]) == 0
    assert "class names differ" not in capsys.readouterr().err


def test_val_v5_metric_integrates_ap_up_to_recall_one(data_yaml, weights, tmp_path: Path, capsys) -> None:
    """test.py's --v5-metric: the precision envelope runs to recall 1 instead of the last recall + 0.01, so
    no class's AP can fall and a class whose detections stop short of full recall gains; P and R stay."""
    common = ["--weights", str(weights), "--data", str(data_yaml), "--img", str(IMG), "--batch", "6",
              "--project", str(tmp_path)]  # fmt: skip
    default = _val(capsys, *common)
    v5 = _val(capsys, *common, "--v5-metric")
    assert default["v5_metric"] is False and v5["v5_metric"] is True
    assert (v5["precision"], v5["recall"]) == (default["precision"], default["recall"])
    pairs = list(zip(default["per_class"], v5["per_class"], strict=True))
    assert all(b["ap50"] >= a["ap50"] - 1e-12 and b["ap"] >= a["ap"] - 1e-12 for a, b in pairs)
    assert v5["map50"] > default["map50"] > 0 and v5["map"] > default["map"]
    assert v5["coco"] == default["coco"]  # pycocotools has its own integration


def test_val_task_train_scores_the_training_split(data_yaml, weights, tmp_path: Path, capsys) -> None:
    """test.py's --task takes train as well as val and test: the images scored are the training split's."""
    record = _val(capsys, "--weights", str(weights), "--data", str(data_yaml), "--img", str(IMG),
                  "--project", str(tmp_path), "--task", "train")  # fmt: skip
    gt = json.loads((data_yaml.parent / "annotations" / "instances_train.json").read_text())
    assert record["task"] == "train" and record["images"] == len(gt["images"]) == 2
    assert record["labels"] == len(gt["annotations"])
    assert record["coco_annotations"] == str(data_yaml.parent / "annotations" / "instances_train.json")


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
    again = _val(capsys, "--weights", str(weights), "--data", str(data_yaml), "--img", str(IMG),
                 "--project", str(tmp_path))  # fmt: skip
    assert again["run_dir"] == str(tmp_path / "exp2")  # without --exist-ok: a folder of its own


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


def test_val_augment_is_recorded_and_named_under_the_table(
    data_yaml, weights, tmp_path: Path, capsys
) -> None:
    """--augment's record says so and its table says that the numbers are of test-time augmentation; a
    plain run's says neither."""
    from yolov7lib.engine.val import format_result

    common = ["--weights", str(weights), "--data", str(data_yaml), "--img", str(IMG),
              "--project", str(tmp_path)]  # fmt: skip
    plain, tta = _val(capsys, *common), _val(capsys, *common, "--augment")
    assert (plain["augment"], tta["augment"]) == (False, True)
    assert "test-time augmentation" in format_result(tta) and "augmentation" not in format_result(plain)


def test_a_found_json_with_other_categories_is_mapped_by_name_or_not_scored(tmp_path: Path, caplog) -> None:
    """annotations/instances_<split>.json found beside a YOLO split may list more categories than the
    data has classes: the classes then map to the categories of their names; where a name is missing,
    pycocotools is not run (with a warning) rather than scoring class indices as category ids."""
    from types import SimpleNamespace

    from yolov7lib.engine.val import class_category_ids, coco_ground_truth

    gt = tmp_path / "instances_val.json"
    cats = [{"id": 9, "name": "b"}, {"id": 4, "name": "a"}, {"id": 23, "name": "unused"}]
    gt.write_text(json.dumps({"images": [], "categories": cats}))
    two = SimpleNamespace(category_ids=None, nc=2, names=["b", "a"], path=tmp_path / "d.yaml", json={},
                          splits={"val": [gt]})  # fmt: skip
    assert class_category_ids(two, gt) == [9, 4] and coco_ground_truth(two, "val") == (gt, [9, 4])
    two.names = ["b", "c"]  # 'c' is no category of the json
    assert coco_ground_truth(two, "val") == (None, None)
    assert "pycocotools is not run" in caplog.text and "'c'" in caplog.text
    # a class whose name two categories share cannot be mapped either: neither id is taken
    gt.write_text(json.dumps({"images": [], "categories": [*cats, {"id": 30, "name": "a"}]}))
    two.names = ["b", "a"]
    assert class_category_ids(two, gt) is None and coco_ground_truth(two, "val") == (None, None)
    assert "class names shared by several categories" in caplog.text


def _white_box_set(root: Path, sizes) -> tuple[Path, dict]:
    """One white rectangle per black image of each (w, h) in `sizes`: the images and YOLO labels under
    `root`/images/val and labels/val, and the same boxes as a COCO dict (category id 1, image ids 0..n-1)."""
    rng = np.random.default_rng(0)
    img_dir, lbl_dir = root / "images" / "val", root / "labels" / "val"
    img_dir.mkdir(parents=True), lbl_dir.mkdir(parents=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "box"}]}
    for i, (w, h) in enumerate(sizes):
        bw, bh = int(rng.integers(w // 4, w // 2)), int(rng.integers(h // 4, h // 2))
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        img = np.zeros((h, w, 3), np.uint8)
        img[y0 : y0 + bh, x0 : x0 + bw] = 255
        cv2.imwrite(str(img_dir / f"{i}.png"), img)
        (lbl_dir / f"{i}.txt").write_text(f"0 {(x0 + bw / 2) / w} {(y0 + bh / 2) / h} {bw / w} {bh / h}\n")
        coco["images"].append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
        coco["annotations"].append({"id": i + 1, "image_id": i, "category_id": 1, "bbox": [x0, y0, bw, bh],
                                    "area": bw * bh, "iscrowd": 0})  # fmt: skip
    return img_dir, coco


class _BrightBoxDetector(torch.nn.Module):
    """A stand-in model that finds the one white rectangle of each input image: its pixel box, in the
    letterboxed frame the network sees, with objectness 1 and score 1 for class 0 (of `nc`)."""

    def __init__(self, nc: int = 1) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the evaluator reads device and dtype from it
        self.nc = nc

    def forward(self, x: torch.Tensor):
        rows = []
        for mask in x.mean(1) > 0.75:  # white object; black background and grey (114) padding below
            ys, xs = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
            x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            rows.append(torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]).float())
        boxes = torch.stack(rows)[:, None]
        scores = torch.zeros(*boxes.shape[:2], 1 + self.nc)
        scores[..., :2] = 1  # objectness and class 0; any other class 0
        return torch.cat([boxes, scores], 2), None


def test_detections_come_back_to_each_images_own_pixels(tmp_path: Path) -> None:
    """Rectangular batches letterbox images of several shapes with padding; a detector that is exact in the
    network's frame must score mAP@0.5 = 1 in the images' own frame (labels and pycocotools alike)."""
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, coco = _white_box_set(
        tmp_path, [(200, 120), (120, 200), (160, 160), (300, 100), (90, 250), (220, 150)]
    )
    (tmp_path / "val.json").write_text(json.dumps(coco))
    loader, _ = create_dataloader(img_dir, 128, 3, 32, rect=True, pad=0.5, workers=0, nc=1, progress=False)
    shapes = {tuple(imgs.shape[2:]) for imgs, *_ in loader}
    assert len(shapes) > 1  # the batches really are letterboxed to different shapes
    result = evaluate(_BrightBoxDetector(), loader, ["box"], coco_json=tmp_path / "val.json",
                      category_ids=[1], progress=False)  # fmt: skip
    assert result.map50 == pytest.approx(1.0) and result.coco["ap50"] == pytest.approx(1.0)
    assert result.coco["ap"] > 0.8  # resizing blurs the edges by a pixel or so, no more


def test_val_batches_images_as_the_reference_test_protocol(data_yaml, weights, tmp_path: Path, monkeypatch,
                                                            capsys) -> None:  # fmt: skip
    """test.py's loader: rectangular batches padded by half a stride, at the largest stride's multiple."""
    import yolov7lib.data as data_module

    real, seen = data_module.create_dataloader, []

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(data_module, "create_dataloader", spy)
    _val(capsys, "--weights", str(weights), "--data", str(data_yaml), "--img", str(IMG),
         "--project", str(tmp_path))  # fmt: skip
    assert [(k["rect"], k["pad"], k.get("augment", False)) for k in seen] == [(True, 0.5, False)]


def test_val_rounds_img_up_to_the_stride_and_applies_its_nms_thresholds(tmp_path: Path, monkeypatch) -> None:
    """The reference's check_img_size rounds --img up to a multiple of the largest stride (100 -> 128), and
    --conf / --iou are the thresholds NMS runs with, not only the numbers written in the record."""
    import yolov7lib.data as data_module
    import yolov7lib.engine.evaluator as evaluator_module
    from yolov7lib.engine.val import ValOptions, run_val

    root = tmp_path / "set"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(root / "images" / "val" / f"{i}.png"), np.full((60 + 20 * i, 90, 3), 60, np.uint8))
        (root / "labels" / "val" / f"{i}.txt").write_text("0 0.5 0.5 0.3 0.3\n")
    (root / "data.yaml").write_text("val: images/val\nnames: [a, b]\n")

    made, nms_args = [], []
    real_loader, real_nms = data_module.create_dataloader, evaluator_module.non_max_suppression

    def loader_spy(*args, **kwargs):
        made.append(real_loader(*args, **kwargs))
        return made[-1]

    def nms_spy(pred, conf_thres, iou_thres, *args, **kwargs):
        nms_args.append((conf_thres, iou_thres))
        return real_nms(pred, conf_thres, iou_thres, *args, **kwargs)

    monkeypatch.setattr(data_module, "create_dataloader", loader_spy)
    monkeypatch.setattr(evaluator_module, "non_max_suppression", nms_spy)
    opts = ValOptions(data=str(root / "data.yaml"), model="yolov7-tiny", img=100, batch=2, conf=0.2, iou=0.3,
                      project=str(tmp_path / "runs"), progress=False)  # fmt: skip
    _, record = run_val(opts)
    assert record["img"] == 128 and record["iou"] == 0.3 and record["conf"] == 0.2
    ((_, dataset),) = made
    assert dataset.img_size == 128
    assert nms_args and set(nms_args) == {(0.2, 0.3)}


def test_evaluate_restores_the_models_mode_and_reports_milliseconds_per_image(
    tmp_path: Path, monkeypatch
) -> None:
    """A model evaluated in training mode is returned in training mode, one in eval mode in eval mode (the
    trainer's EMA model must stay in eval); half=True is ignored off CUDA. speed_ms is milliseconds per
    image: with a clock that advances 1 s per reading, each batch of 3 costs 1 s of inference and 1 s of
    NMS, i.e. 1000 / 3 ms an image."""
    import yolov7lib.engine.evaluator as evaluator_module
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, _ = _white_box_set(tmp_path, [(100, 80)] * 6)
    loader, _ = create_dataloader(img_dir, 128, 3, 32, rect=True, pad=0.5, workers=0, nc=1, progress=False)
    model = _BrightBoxDetector()
    for training in (True, False):
        model.train(training)
        result = evaluate(model, loader, ["box"], progress=False)
        assert model.training is training
    assert result.map50 == pytest.approx(1.0)  # it did evaluate
    dtypes = []
    model.register_forward_pre_hook(lambda module, args: dtypes.append(args[0].dtype))
    evaluate(model, loader, ["box"], half=True, progress=False)  # FP16 is CUDA only: float32 on the CPU
    assert dtypes == [torch.float32] * 2 and model.anchor.dtype == torch.float32
    clock = iter(range(1000))
    monkeypatch.setattr(evaluator_module.time, "perf_counter", lambda: float(next(clock)))
    result = evaluate(model, loader, ["box"], progress=False)
    assert result.images == 6
    assert result.speed_ms == pytest.approx({"inference": 1000 / 3, "nms": 1000 / 3})


def test_evaluate_times_the_inference_up_to_its_end_on_an_asynchronous_device(
    tmp_path: Path, monkeypatch
) -> None:
    """On CUDA a forward only queues its kernels; the reference's test.py synchronises before each clock
    reading. Before, evaluate read the clock right after the call, so `yolov7 val --device 0` reported
    about 0 ms inference and the forward's time under NMS (whose first read-back waits for it). Faked
    here: each forward queues 1 s of work that only `synchronize` waits for (3 images a batch)."""
    import yolov7lib.engine.evaluator as evaluator_module
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, _ = _white_box_set(tmp_path, [(100, 80)] * 6)
    loader, _ = create_dataloader(img_dir, 128, 3, 32, rect=True, pad=0.5, workers=0, nc=1, progress=False)
    model = _BrightBoxDetector()
    clock, queued = [0.0], [0.0]

    def wait_for_queue(device: torch.device) -> None:
        clock[0], queued[0] = clock[0] + queued[0], 0.0

    model.register_forward_hook(lambda module, args, out: queued.__setitem__(0, queued[0] + 1.0))
    nms = evaluator_module.non_max_suppression

    def queued_nms(*args, **kwargs):  # NMS queues 0.5 s of its own, also read up to its end
        queued[0] += 0.5
        return nms(*args, **kwargs)

    monkeypatch.setattr(evaluator_module, "non_max_suppression", queued_nms)
    monkeypatch.setattr(evaluator_module, "synchronize", wait_for_queue, raising=False)
    monkeypatch.setattr(evaluator_module.time, "perf_counter", lambda: clock[0])
    result = evaluate(model, loader, ["box"], progress=False)
    assert result.images == 6 and result.map50 == pytest.approx(1.0)
    assert result.speed_ms == pytest.approx({"inference": 1000 / 3, "nms": 500 / 3})


def test_evaluate_refuses_augmented_batches_clearly_and_leaves_the_model_as_it_was(tmp_path: Path) -> None:
    """Augmented training batches carry no original shapes (None); before, evaluate failed on them with
    "TypeError: cannot unpack non-iterable NoneType object" and left a training-mode model in eval mode."""
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, _ = _white_box_set(tmp_path, [(100, 80)] * 4)
    loader, _ = create_dataloader(img_dir, 64, 2, 32, hyp="tiny", augment=True, nc=1, progress=False)
    model = _BrightBoxDetector().train()
    with pytest.raises(ValueError, match="without augment=True"):
        evaluate(model, loader, ["box"], progress=False)
    assert model.training


class _NothingDetector(torch.nn.Module):
    """A model that detects nothing, on the device of its one weight (not a float16 number: 1/3)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((4,), 1 / 3))

    def forward(self, x: torch.Tensor):
        return torch.zeros(x.shape[0], 1, 6, device=x.device, dtype=x.dtype) * self.weight[0], None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="evaluate(half=True) is for CUDA only")
def test_evaluate_in_half_precision_leaves_the_callers_weights_as_they_were(tmp_path: Path) -> None:
    """Before, half=True ran model.half() and model.float() on the caller's model: its weights came back
    rounded to float16 (1/3 -> 0.33325195), and a float64 model came back float32."""
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, _ = _white_box_set(tmp_path, [(100, 80)] * 2)
    loader, _ = create_dataloader(img_dir, 64, 2, 32, rect=True, pad=0.5, progress=False)
    for dtype in (torch.float32, torch.float64):
        model = _NothingDetector().to("cuda", dtype).train()
        before = model.weight.detach().clone()
        evaluate(model, loader, ["box"], half=True, progress=False)
        assert model.weight.dtype == dtype and torch.equal(model.weight.detach(), before)
        assert model.training


def test_evaluate_with_fewer_names_than_the_labels_classes_says_so(tmp_path: Path) -> None:
    """Before: an IndexError ('list index out of range') from building the per-class rows."""
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, _ = _white_box_set(tmp_path, [(100, 80)] * 2)
    label = img_dir.parent.parent / "labels" / "val" / "1.txt"
    label.write_text(label.read_text().replace("0 ", "2 ", 1))  # image 1's box is of class 2
    loader, _ = create_dataloader(img_dir, 64, 2, 32, rect=True, pad=0.5, progress=False)
    with pytest.raises(ValueError, match="labels of class 2 but names lists 1 classes"):
        evaluate(_BrightBoxDetector(), loader, ["box"], progress=False)
    assert evaluate(_BrightBoxDetector(nc=3), loader, ["box", "b", "c"], progress=False).labels == 2


def test_coco_scores_cover_the_evaluated_images_and_every_class_with_annotations(tmp_path: Path) -> None:
    """pycocotools scores only the images evaluated (the json may list more, e.g. corrupt ones skipped),
    and coco_per_class names each class with annotations in them, an AP of 0 included (class 'ghost':
    annotated, never detected), but not one without any ('absent': pycocotools' -1)."""
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, coco = _white_box_set(tmp_path, [(100, 80), (80, 100), (90, 90)])
    coco["categories"] += [{"id": 5, "name": "ghost"}, {"id": 7, "name": "absent"}]
    coco["annotations"].append(
        {"id": 10, "image_id": 0, "category_id": 5, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}
    )
    coco["images"].append({"id": 3, "file_name": "skipped.png", "width": 100, "height": 100})  # not on disk
    coco["annotations"].append(
        {"id": 11, "image_id": 3, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0}
    )
    (tmp_path / "val.json").write_text(json.dumps(coco))
    loader, _ = create_dataloader(img_dir, 128, 3, 32, rect=True, pad=0.5, workers=0, nc=3, progress=False)
    result = evaluate(_BrightBoxDetector(nc=3), loader, ["box", "ghost", "absent"],
                      coco_json=tmp_path / "val.json", category_ids=[1, 5, 7], progress=False)  # fmt: skip
    assert result.coco["ap50"] == pytest.approx(
        0.5
    )  # box 1.0 and ghost 0.0; a miss on 'skipped' would lower box
    assert result.coco_per_class == {"box": pytest.approx(result.coco_per_class["box"]), "ghost": 0.0}
    assert result.coco_per_class["box"] > 0.8


def test_images_of_the_same_name_in_subfolders_keep_their_own_coco_ids(tmp_path: Path) -> None:
    """A COCO json whose file names repeat in different folders (camA/0.png, camB/0.png): each image's
    predictions carry its own id (matched on the longest path), so an exact detector scores AP50 = 1;
    keyed by the bare file name, both images took the last one's id."""
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, coco = _white_box_set(tmp_path, [(100, 80), (80, 100), (90, 120), (120, 90)])
    for i, image in enumerate(coco["images"]):
        sub = f"cam{'AB'[i % 2]}/{i // 2}.png"
        for folder, suffix in ((img_dir, ".png"), (tmp_path / "labels" / "val", ".txt")):
            (folder / sub).parent.mkdir(exist_ok=True)
            (folder / f"{i}{suffix}").rename((folder / sub).with_suffix(suffix))
        image["file_name"], image["id"] = sub, 100 + i
    for ann in coco["annotations"]:
        ann["image_id"] += 100
    (tmp_path / "val.json").write_text(json.dumps(coco))
    loader, _ = create_dataloader(img_dir, 128, 2, 32, rect=True, pad=0.5, workers=0, nc=1, progress=False)
    out = tmp_path / "predictions.json"
    result = evaluate(_BrightBoxDetector(), loader, ["box"], coco_json=tmp_path / "val.json",
                      category_ids=[1], save_json=out, progress=False)  # fmt: skip
    assert sorted(r["image_id"] for r in json.loads(out.read_text())) == [100, 101, 102, 103]
    assert result.coco["ap50"] == pytest.approx(1.0)


def test_a_file_name_that_several_json_images_share_names_none_of_them(tmp_path: Path) -> None:
    """camA/0.png and camB/0.png in the json: an image file known only as 0.png (its folders not those of
    the json) is neither image, so it takes no id of the json (it is then left out and counted) rather
    than the first one's; a path that ends in camB/0.png is camB's."""
    from yolov7lib.engine.evaluator import _coco_image_id, _json_images

    images = [{"id": 100, "file_name": "camA/0.png"}, {"id": 101, "file_name": "camB/0.png"}]
    (tmp_path / "val.json").write_text(json.dumps({"images": images}))
    ids, _ = _json_images(tmp_path / "val.json")
    assert _coco_image_id(ids, tmp_path / "flat" / "0.png") == 0  # the stem, as without a json
    assert _coco_image_id(ids, tmp_path / "x" / "camB" / "0.png") == 101


def test_images_missing_from_the_coco_json_are_left_out_of_its_scores_and_reported(
    tmp_path: Path, caplog
) -> None:
    """An image of the split that the COCO json does not list cannot be scored by pycocotools: it is left
    out of predictions.json (which then loads with COCO.loadRes as is) and of the COCO numbers, and
    counted in a warning, while the direct metrics still include it (the run used to fail at the end)."""
    from pycocotools.coco import COCO

    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, coco = _white_box_set(tmp_path, [(100, 80), (80, 100), (90, 120)])
    coco["images"].pop(), coco["annotations"].pop()  # 2.png is not in the json
    (tmp_path / "val.json").write_text(json.dumps(coco))
    loader, _ = create_dataloader(img_dir, 128, 3, 32, rect=True, pad=0.5, workers=0, nc=1, progress=False)
    out = tmp_path / "predictions.json"
    result = evaluate(_BrightBoxDetector(), loader, ["box"], coco_json=tmp_path / "val.json",
                      category_ids=[1], save_json=out, progress=False)  # fmt: skip
    assert result.images == 3 and result.labels == 3 and result.map50 == pytest.approx(1.0)
    assert result.coco["ap50"] == pytest.approx(1.0)
    assert sorted(r["image_id"] for r in json.loads(out.read_text())) == [0, 1]
    assert len(COCO(str(tmp_path / "val.json")).loadRes(str(out)).anns) == 2
    assert "1 of the 3 images" in caplog.text and "2.png" in caplog.text


def test_evaluate_says_when_pycocotools_starts_scoring(tmp_path: Path, caplog) -> None:
    """pycocotools' own output is captured, and it scores 1.5M predictions of COCO's 5,000 val images for
    minutes (before: after the val bar nothing was said until the table; at 375k predictions of 1,250
    images, 30 s of silence on a 2-core CPU)."""
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, coco = _white_box_set(tmp_path, [(100, 80), (80, 100), (90, 120)])
    (tmp_path / "val.json").write_text(json.dumps(coco))
    loader, _ = create_dataloader(img_dir, 128, 3, 32, rect=True, pad=0.5, workers=0, nc=1, progress=False)
    with caplog.at_level("INFO", logger="yolov7lib.engine.evaluator"):
        evaluate(_BrightBoxDetector(), loader, ["box"], coco_json=tmp_path / "val.json", category_ids=[1])
    assert f"pycocotools: scoring 3 predictions of 3 images against {tmp_path / 'val.json'}" in caplog.text


class _FixedBox(torch.nn.Module):
    """A stand-in model that records its inputs and predicts one box, centre (10, 20), size 4 x 6 px."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor):
        self.inputs.append(x)
        return torch.tensor([[[10.0, 20.0, 4.0, 6.0, 1.0, 1.0]]]).expand(len(x), 1, 6), None


def test_test_time_augmentation_scales_flips_and_maps_boxes_back_as_the_reference() -> None:
    """--augment (the reference's augmented inference): passes at scale 1, 0.83 flipped left-right and
    0.67, each resized and padded right and bottom with grey 0.447 to a multiple of the grid; each pass's
    boxes come back into the input's pixels (divided by the scale, x mirrored for the flipped pass)."""
    from yolov7lib.engine.evaluator import augmented_forward

    imgs = torch.rand(2, 3, 96, 160)
    model = _FixedBox()
    out = augmented_forward(model, imgs, grid=32)
    assert [tuple(x.shape[2:]) for x in model.inputs] == [(96, 160), (96, 160), (96, 128)]
    assert torch.equal(model.inputs[0], imgs)
    flipped = model.inputs[1]  # 79 x 132 of content (int(96 * 0.83), int(160 * 0.83)), then the padding
    assert (flipped[:, :, 79:] == 0.447).all() and (flipped[:, :, :, 132:] == 0.447).all()
    resized = torch.nn.functional.interpolate(
        imgs.flip(3), size=(79, 132), mode="bilinear", align_corners=False
    )
    assert torch.allclose(flipped[:, :, :79, :132], resized)
    expected = torch.tensor(
        [
            [10, 20, 4, 6],
            [160 - 10 / 0.83, 20 / 0.83, 4 / 0.83, 6 / 0.83],
            [10 / 0.67, 20 / 0.67, 4 / 0.67, 6 / 0.67],
        ]
    )
    assert out.shape == (2, 3, 6) and torch.allclose(out[0, :, :4], expected)


def test_evaluate_with_test_time_augmentation_still_maps_boxes_to_each_images_pixels(tmp_path: Path) -> None:
    """An exact detector stays exact with --augment: the scaled and flipped passes' boxes come back onto
    the objects in every image's own frame (mAP@0.5 and pycocotools AP50 of 1)."""
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, coco = _white_box_set(tmp_path, [(200, 120), (120, 200), (160, 160), (300, 100)])
    (tmp_path / "val.json").write_text(json.dumps(coco))
    loader, _ = create_dataloader(img_dir, 128, 2, 32, rect=True, pad=0.5, workers=0, nc=1, progress=False)
    result = evaluate(_BrightBoxDetector(), loader, ["box"], coco_json=tmp_path / "val.json",
                      category_ids=[1], progress=False, augment=True)  # fmt: skip
    assert result.map50 == pytest.approx(1.0) and result.coco["ap50"] == pytest.approx(1.0)


def test_predictions_follow_the_coco_jsons_image_sizes_where_the_files_differ(tmp_path: Path, caplog) -> None:
    """Images resized on disk after their COCO json was written (the json's width, height and boxes twice
    the files'): the json's boxes are read relative to its sizes, and the predictions go to pycocotools
    in the json's frame too (an exact detector scores AP50 = 1; in the files' pixels it scored about 0),
    with a warning that counts those images."""
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, coco = _white_box_set(tmp_path, [(100, 80), (80, 100), (90, 120)])
    for image in coco["images"][:2]:
        image["width"], image["height"] = 2 * image["width"], 2 * image["height"]
    for ann in coco["annotations"][:2]:
        ann["bbox"] = [2 * v for v in ann["bbox"]]
        ann["area"] *= 4
    # the third stretched to another aspect ratio (width x 3, height x 1): each axis has its own factor
    coco["images"][2]["width"] *= 3
    x, y, w, h = coco["annotations"][2]["bbox"]
    coco["annotations"][2]["bbox"], coco["annotations"][2]["area"] = [3 * x, y, 3 * w, h], 3 * w * h
    (tmp_path / "val.json").write_text(json.dumps(coco))
    loader, _ = create_dataloader(img_dir, 128, 3, 32, rect=True, pad=0.5, workers=0, nc=1, progress=False)
    result = evaluate(_BrightBoxDetector(), loader, ["box"], coco_json=tmp_path / "val.json",
                      category_ids=[1], progress=False)  # fmt: skip
    assert result.map50 == pytest.approx(1.0) and result.coco["ap50"] == pytest.approx(1.0)
    assert "3 of the 3 images" in caplog.text and "100x80 on disk, 200x160 in" in caplog.text


def test_predictions_json_without_coco_annotations_is_keyed_by_file_stem(tmp_path: Path) -> None:
    """save_json alone (no COCO json known) still writes the predictions, each image keyed by its stem,
    as an int where the stem is a number (the reference's test.py: COCO's file names are their ids)."""
    from yolov7lib.data import create_dataloader
    from yolov7lib.engine.evaluator import evaluate

    img_dir, _ = _white_box_set(tmp_path, [(100, 80), (80, 100)])
    loader, _ = create_dataloader(img_dir, 128, 2, 32, rect=True, pad=0.5, workers=0, nc=1, progress=False)
    out = tmp_path / "out" / "predictions.json"
    result = evaluate(_BrightBoxDetector(), loader, ["box"], save_json=out, progress=False)
    assert result.predictions_json == str(out) and result.coco is None
    records = json.loads(out.read_text())
    assert sorted(r["image_id"] for r in records) == [0, 1]
    assert {r["category_id"] for r in records} == {0}


def test_find_coco_annotations_looks_beside_the_split_and_one_level_up(tmp_path: Path) -> None:
    """Where the reference keeps COCO's json: <root>/annotations/instances_<split>.json for a list file
    <root>/val2017.txt or an images folder <root>/images/val2017; a split given as a json is its own."""
    from yolov7lib.engine.evaluator import find_coco_annotations

    (tmp_path / "annotations").mkdir()
    gt = tmp_path / "annotations" / "instances_val2017.json"
    gt.write_text("{}")
    assert find_coco_annotations([tmp_path / "val2017.txt"]) == gt
    assert find_coco_annotations([tmp_path / "images" / "val2017"]) == gt
    assert find_coco_annotations([tmp_path / "train2017.txt"]) is None
    assert find_coco_annotations([tmp_path / "other.txt", tmp_path / "mine.json"]) == tmp_path / "mine.json"
