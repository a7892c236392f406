"""COCO evaluation: yolov7lib's own evaluator and the training-time metrics against pycocotools."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from yolov7lib.ops.coco import (
    COCO80_TO_COCO91,
    detections_to_coco,
    evaluate_pycocotools,
    image_id_from_path,
    labels_to_coco,
)
from yolov7lib.ops.coco_eval import evaluate_coco
from yolov7lib.ops.metrics import DetectionMetrics

CATEGORIES = (1, 3, 5, 8, 13, 21, 40)  # sparse ids; the last one never has ground truth


def _random_box(rng: np.random.Generator) -> list[float]:
    w, h = np.exp(rng.uniform(np.log(4), np.log(300), 2))  # small, medium and large areas
    return [rng.uniform(0, 640 - w), rng.uniform(0, 480 - h), w, h]


def synthetic_coco(
    seed: int, n_images: int = 30, crowd_p: float = 0.1, decimals: int = 2, dense: bool = False
) -> tuple[dict, list[dict]]:
    """Ground truth with crowds, duplicates, empty images and mask-like areas; detections with jittered
    copies, wrong classes, false positives (also on images without ground truth and on a category without
    any), more than 100 in one image, and rounded scores that tie."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    scale = np.array([1 / 6, 1 / 6, 1 / 2, 1 / 2]) if dense else np.ones(4)  # crowd the boxes together
    for img in range(1, n_images + 1):
        images.append({"id": 7 * img, "width": 640, "height": 480})
        for _ in range(0 if rng.random() < 0.15 else int(rng.integers(1, 12))):
            box = np.array(_random_box(rng)) * scale
            cat = int(rng.choice(CATEGORIES[:-1]))
            area = box[2] * box[3] * (rng.uniform(0.4, 1.0) if rng.random() < 0.5 else 1.0)
            ann = {"image_id": 7 * img, "category_id": cat, "bbox": box.tolist(), "area": area}
            anns.append({**ann, "id": len(anns) + 1, "iscrowd": int(rng.random() < crowd_p)})
            if rng.random() < 0.1:
                anns.append({**ann, "id": len(anns) + 1, "iscrowd": 0})
            for _ in range(int(rng.integers(0, 4))):
                jitter = box + rng.normal(0, 0.1, 4) * box[[2, 3, 2, 3]]
                jitter[2:] = np.abs(jitter[2:]) + 1
                c = cat if rng.random() < 0.85 else int(rng.choice(CATEGORIES))
                dets.append(
                    {"image_id": 7 * img, "category_id": c, "bbox": jitter.tolist(), "score": rng.random()}
                )
        for _ in range(int(rng.integers(0, 8))):
            box = (np.array(_random_box(rng)) * scale).tolist()
            dets.append(
                {
                    "image_id": 7 * img,
                    "category_id": int(rng.choice(CATEGORIES)),
                    "bbox": box,
                    "score": rng.random(),
                }
            )
    for _ in range(130):
        box = (np.array(_random_box(rng)) * scale).tolist()
        dets.append({"image_id": 7, "category_id": CATEGORIES[0], "bbox": box, "score": rng.random()})
    for d in dets:
        d["score"] = round(float(d["score"]), decimals) if rng.random() < 0.5 else float(d["score"])
    gt = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": str(c)} for c in CATEGORIES],
    }
    return gt, [dets[i] for i in rng.permutation(len(dets))]


def _assert_same(ours, theirs) -> None:
    np.testing.assert_allclose(ours.precision, theirs.precision, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.recall, theirs.recall, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.stats, theirs.stats, rtol=0, atol=1e-12)
    assert ours.cat_ids == theirs.cat_ids
    assert ours.per_class_ap == pytest.approx(theirs.per_class_ap, abs=1e-12)


@pytest.mark.parametrize(
    ("seed", "options"),
    [
        (0, {}),
        (1, {}),
        (2, {"crowd_p": 0.35, "decimals": 1}),
        (3, {"dense": True}),
        (4, {"dense": True, "crowd_p": 0.3, "decimals": 1, "n_images": 12}),
    ],
)
def test_own_evaluator_equals_pycocotools(seed: int, options: dict) -> None:
    gt, dets = synthetic_coco(seed, **options)
    before = copy.deepcopy((gt, dets))
    ours, theirs = evaluate_coco(gt, dets), evaluate_pycocotools(gt, dets)
    assert (gt, dets) == before, "inputs must not be modified"
    _assert_same(ours, theirs)
    assert (ours.stats[[0, 1, 2, 6, 7, 8]] > 0.02).all()  # not a degenerate case
    assert (ours.stats[3:6] != -1).sum() >= 2
    assert ours.per_class_ap[CATEGORIES[-1]] == -1.0
    assert ours.ap == ours.stats[0] and ours.ar_large == ours.stats[11]
    assert "maxDets=100 ] = " in ours.summary()


def test_pycocotools_scoring_copies_each_result_record_not_the_whole_list_deeply(monkeypatch) -> None:
    """pycocotools only adds keys to the result records; a deep copy of all of them cost 8 s and a second
    copy of every bbox list for 375k predictions (before: `copy.deepcopy` of the records list)."""
    gt, dets = synthetic_coco(0)
    before = copy.deepcopy((gt, dets))
    expected = evaluate_coco(gt, dets)
    deep: list[int] = []
    real = copy.deepcopy
    monkeypatch.setattr(copy, "deepcopy", lambda x, *a: deep.append(id(x)) or real(x, *a))
    theirs = evaluate_pycocotools(gt, dets)
    assert id(dets) not in deep and id(gt) in deep  # the ground truth dict is still copied deeply
    assert (gt, dets) == before, "inputs must not be modified"
    _assert_same(expected, theirs)


def test_image_subset_and_missing_detections() -> None:
    gt, dets = synthetic_coco(5, n_images=10)
    subset = [7, 21, 35, 70]
    _assert_same(evaluate_coco(gt, dets, img_ids=subset), evaluate_pycocotools(gt, dets, img_ids=subset))
    none = evaluate_pycocotools(gt, dets, img_ids=[])  # an empty subset is no image, not every image
    assert (none.stats == -1).all() and (evaluate_coco(gt, dets, img_ids=[]).stats == -1).all()
    nothing_ours, nothing_theirs = evaluate_coco(gt, []), evaluate_pycocotools(gt, [])
    _assert_same(nothing_ours, nothing_theirs)
    assert nothing_ours.ap == 0.0 and nothing_ours.ar100 == 0.0


def test_bad_input_is_refused_clearly() -> None:
    gt, dets = synthetic_coco(6, n_images=5)
    stray = [*dets, {"image_id": 999, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]
    for evaluate in (evaluate_coco, evaluate_pycocotools):
        with pytest.raises(ValueError, match="not images of the ground truth"):
            evaluate(gt, stray)
    gt["annotations"][1]["id"] = gt["annotations"][0]["id"]
    with pytest.raises(ValueError, match="unique positive"):
        evaluate_coco(gt, dets)


def _separated_set(seed: int, nc: int = 6) -> tuple[dict, list[dict]]:
    """Ground truth on a grid, at most one detection per object: both matching rules agree here."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for img in range(1, 41):
        images.append({"id": img})
        for cell in rng.permutation(16)[: int(rng.integers(0, 9))]:
            w, h = rng.uniform(10, 120, 2)
            box = np.array([(cell % 4) * 160 + 80 - w / 2, (cell // 4) * 160 + 80 - h / 2, w, h])
            c = int(rng.integers(nc))
            anns.append(
                {"id": len(anns) + 1, "image_id": img, "category_id": c, "bbox": box.tolist(), "area": w * h}
            )
            if rng.random() < 0.7:
                jitter = box + rng.normal(0, 0.12, 4) * box[[2, 3, 2, 3]]
                c = c if rng.random() < 0.85 else int(rng.integers(nc))
                dets.append(
                    {"image_id": img, "category_id": c, "bbox": jitter.tolist(), "score": rng.random()}
                )
        for _ in range(int(rng.integers(0, 4))):
            box = [rng.uniform(0, 600), rng.uniform(700, 800), 20, 20]
            dets.append(
                {"image_id": img, "category_id": int(rng.integers(nc)), "bbox": box, "score": rng.random()}
            )
    return {"images": images, "annotations": anns, "categories": [{"id": c} for c in range(nc)]}, dets


def _xyxy(bbox: list[float]) -> list[float]:
    return [bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]]


def _training_metrics(gt: dict, dets: list[dict], method: str) -> DetectionMetrics:
    metrics = DetectionMetrics(nc=len(gt["categories"]), method=method)  # type: ignore[arg-type]
    for img in gt["images"]:
        labels = [
            [a["category_id"], *_xyxy(a["bbox"])] for a in gt["annotations"] if a["image_id"] == img["id"]
        ]
        det = [[*_xyxy(d["bbox"]), d["score"], d["category_id"]] for d in dets if d["image_id"] == img["id"]]
        metrics.update(
            torch.tensor(det, dtype=torch.float64).reshape(-1, 6),
            torch.tensor(labels, dtype=torch.float64).reshape(-1, 5),
        )
    return metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_map_equals_pycocotools_where_the_definitions_coincide(seed: int) -> None:
    gt, dets = _separated_set(seed)
    coco = evaluate_pycocotools(gt, dets)
    exact = _training_metrics(gt, dets, "coco").compute()
    assert exact.map50 == pytest.approx(coco.ap50, abs=1e-9)
    assert exact.map == pytest.approx(coco.ap, abs=1e-9)
    # the reference's integration (interp) differs from COCO's by less than 0.03 per class
    reference = _training_metrics(gt, dets, "interp").compute()
    assert abs(reference.map50 - coco.ap50) < 0.03 and abs(reference.map - coco.ap) < 0.03
    assert 0.1 < coco.ap50 < 0.9


def test_detection_records_round_trip_through_the_evaluators() -> None:
    gt, dets = synthetic_coco(8, n_images=12, crowd_p=0.0)
    classes = {c: i for i, c in enumerate(CATEGORIES)}
    records = []
    for img in gt["images"]:
        mine = [d for d in dets if d["image_id"] == img["id"]]
        tensor = torch.tensor([[*_xyxy(d["bbox"]), d["score"], classes[d["category_id"]]] for d in mine])
        records += detections_to_coco(tensor.reshape(-1, 6), img["id"], class_map=CATEGORIES)
    assert len(records) == len(dets)
    rounded = [
        {**d, "bbox": [round(v, 3) for v in d["bbox"]], "score": round(d["score"], 5)}
        for img in gt["images"]
        for d in dets
        if d["image_id"] == img["id"]
    ]
    for ours, expected in zip(records, rounded, strict=True):
        assert ours["image_id"] == expected["image_id"] and ours["category_id"] == expected["category_id"]
        assert ours["score"] == pytest.approx(expected["score"], abs=1e-5)
        assert ours["bbox"] == pytest.approx(expected["bbox"], abs=2e-3)  # float32 tensor, then 3 decimals
    _assert_same(evaluate_coco(gt, records), evaluate_pycocotools(gt, records))


def test_coco_category_ids_and_image_ids() -> None:
    assert len(COCO80_TO_COCO91) == 80 and len(set(COCO80_TO_COCO91)) == 80
    assert (COCO80_TO_COCO91[0], COCO80_TO_COCO91[11], COCO80_TO_COCO91[79]) == (
        1,
        13,
        90,
    )  # person, stop sign, toothbrush
    det = torch.tensor([[10.0, 20.0, 50.0, 80.0, 0.1234567, 11.0]])
    (rec,) = detections_to_coco(det, image_id_from_path("/data/val/000000000139.jpg"), COCO80_TO_COCO91)
    assert rec == {"image_id": 139, "category_id": 13, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.12346}
    assert image_id_from_path("img_7.png") == "img_7"
    assert image_id_from_path("cat.jpg") == "cat" and image_id_from_path("IMG7.jpg") == "IMG7"  # letters
    assert image_id_from_path("½.jpg") == "½" and image_id_from_path("²3.jpg") == "²3"  # numeric, not decimal
    with pytest.raises(ValueError, match="n, 6"):
        detections_to_coco(torch.zeros(3, 4), 1)


def test_labels_to_coco_scores_its_own_labels_perfectly() -> None:
    labels = [
        np.array([[0, 10, 10, 50, 60], [2, 100, 100, 300, 250]]),
        np.zeros((0, 5)),
        np.array([[1, 5, 5, 20, 30]]),
    ]
    gt = labels_to_coco([(1, 640, 480), (2, 640, 480), (3, 320, 240)], labels, ["a", "b", "c"])
    assert [a["area"] for a in gt["annotations"]] == [2000.0, 30000.0, 375.0]
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in gt["annotations"]
    ]
    ours, theirs = evaluate_coco(gt, dets), evaluate_pycocotools(gt, dets)
    _assert_same(ours, theirs)
    assert [ours.ap, ours.ap_small, ours.ap_medium, ours.ap_large] == pytest.approx([1.0] * 4)
    with pytest.raises(ValueError, match="3 images but 2"):
        labels_to_coco([(1, 1, 1), (2, 1, 1), (3, 1, 1)], labels[:2], ["a"])


def test_labels_to_coco_maps_categories_and_keeps_image_sizes() -> None:
    """With a class map, annotations and the category list both carry the mapped ids (else pycocotools
    scores no category); images keep width and height as given (not square, so a swap shows)."""
    labels = [np.array([[2, 10, 10, 50, 60]]), np.array([[0, 5, 5, 20, 30], [1, 1, 2, 3, 4]])]
    gt = labels_to_coco([(4, 640, 480), ("b", 320, 200)], labels, ["a", "b", "c"], class_map=CATEGORIES)
    assert gt["categories"] == [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}, {"id": 5, "name": "c"}]
    assert [a["category_id"] for a in gt["annotations"]] == [5, 1, 3]
    assert gt["images"] == [{"id": 4, "width": 640, "height": 480}, {"id": "b", "width": 320, "height": 200}]


def test_boundary_cases_equal_pycocotools() -> None:
    """Ties in IoU, IoU exactly at thresholds, areas exactly at range limits: exact coordinates."""
    anns = [
        [1, 1, [-2, 0, 10, 10]],  # two ground truths at equal IoU to the first detection
        [1, 1, [2, 0, 10, 10]],
        [2, 1, [0, 0, 10, 10]],  # IoU exactly 0.5 and 0.75 below
        [2, 1, [50, 50, 10, 10]],
        [3, 1, [0, 0, 32, 32]],  # area exactly 32^2 (small and medium)
        [3, 1, [100, 100, 96, 96]],  # exactly 96^2
    ]
    gt = {
        "images": [{"id": i} for i in (1, 2, 3)],
        "categories": [{"id": 1}],
        "annotations": [
            {"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for k, (i, c, b) in enumerate(anns)
        ],
    }
    dets = [
        [1, [0, 0, 10, 10], 0.9],
        [1, [3, 0, 10, 10], 0.8],  # only the later ground truth fits it
        [2, [0, 0, 10, 5], 0.7],  # IoU 0.5
        [2, [50, 50, 10, 7.5], 0.6],  # IoU 0.75
        [3, [0, 0, 32, 32], 0.5],
        [3, [100, 100, 96, 96], 0.5],
        [3, [300, 300, 32, 32], 0.5],  # unmatched, area exactly 32^2
    ]
    records = [{"image_id": i, "category_id": 1, "bbox": b, "score": s} for i, b, s in dets]
    _assert_same(evaluate_coco(gt, records), evaluate_pycocotools(gt, records))


def test_json_files_and_empty_ground_truth(tmp_path) -> None:
    gt, dets = synthetic_coco(9, n_images=6)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    from_files = evaluate_coco(tmp_path / "gt.json", str(tmp_path / "dets.json"))
    _assert_same(from_files, evaluate_pycocotools(tmp_path / "gt.json", tmp_path / "dets.json"))
    _assert_same(from_files, evaluate_coco(gt, dets))
    empty = {"images": [], "annotations": [], "categories": gt["categories"]}
    _assert_same(evaluate_coco(empty, []), evaluate_pycocotools(empty, []))
    assert evaluate_coco(empty, []).ap == -1.0


def test_the_80_classes_map_to_cocos_category_ids() -> None:
    """COCO's instances files number the 80 categories 1..90 with ten ids unused: 12, 26, 29, 30, 45, 66, 68,
    69, 71 and 83 (person = 1, ..., toothbrush = 90)."""
    assert COCO80_TO_COCO91[:12] == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13)
    assert COCO80_TO_COCO91[23:28] == (25, 27, 28, 31, 32)  # backpack, umbrella, handbag, tie, suitcase
    assert COCO80_TO_COCO91[39:41] == (44, 46)  # bottle, wine glass
    assert COCO80_TO_COCO91[58:64] == (
        64,
        65,
        67,
        70,
        72,
        73,
    )  # potted plant, bed, dining table, toilet, tv, laptop
    assert COCO80_TO_COCO91[70:] == (80, 81, 82, 84, 85, 86, 87, 88, 89, 90)  # toaster ... toothbrush
    assert len(COCO80_TO_COCO91) == 80 and list(COCO80_TO_COCO91) == sorted(set(COCO80_TO_COCO91))


def test_per_class_ap_uses_one_hundred_detections_per_image() -> None:
    """Per-class AP is the AP@0.5:0.95 of the `ap` stat (maxDets 100). Two objects found exactly score 1; with
    a single detection per image it would be 51/101 (recall 0.5)."""
    gt = {
        "images": [{"id": 1}],
        "categories": [{"id": 1}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100.0, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "area": 100.0, "iscrowd": 0},
        ],
    }
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.8},
    ]
    m = evaluate_coco(gt, dets)
    assert m.ap == pytest.approx(1.0) and m.ar1 == pytest.approx(0.5)
    assert m.per_class_ap == {1: pytest.approx(1.0)}


def test_missing_ground_truth_area_defaults_to_the_box_area() -> None:
    """`area` defaults to w x h: a 20 x 60 box (1200 px, between 32^2 and 96^2) is medium, not small."""
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5.0, 5.0, 20.0, 60.0]}
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [ann]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [5.0, 5.0, 20.0, 60.0], "score": 0.9}]
    m = evaluate_coco(gt, dets)
    assert (m.ap_medium, m.ap_small, m.ap_large) == (pytest.approx(1.0), -1.0, -1.0)
    explicit = evaluate_coco({**gt, "annotations": [{**ann, "area": 1200.0}]}, dets)
    np.testing.assert_array_equal(m.stats, explicit.stats)
    np.testing.assert_allclose(m.stats, evaluate_pycocotools(gt, dets).stats, rtol=0, atol=1e-12)
