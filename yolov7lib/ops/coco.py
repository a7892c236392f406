"""COCO-format records and the pycocotools evaluation behind the paper's AP columns (Tables 1, 2, 9, 10).

Detections become COCO result records (xywh from the top-left corner in original-image pixels, box
rounded to 3 decimals and score to 5, as the official evaluation writes them); pycocotools' COCOeval
turns them into AP, AP50, AP75, AP_S, AP_M, AP_L, the six recall numbers and per-category AP. The same
records can be scored without pycocotools by `yolov7lib.ops.coco_eval.evaluate_coco`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolov7lib.ops.boxes import xyxy2xywh
from yolov7lib.ops.coco_eval import CocoMetrics, check_image_ids

_UNUSED_COCO_IDS = frozenset({12, 26, 29, 30, 45, 66, 68, 69, 71, 83})
COCO80_TO_COCO91 = tuple(i for i in range(1, 91) if i not in _UNUSED_COCO_IDS)
"""Category id in COCO's annotation files (1..90, ten ids unused) of each of the 80 training classes."""


def coco80_to_coco91_class() -> list[int]:
    """The COCO category id of each of the 80 contiguous class indices (index 0 -> id 1, ..., 79 -> 90)."""
    return list(COCO80_TO_COCO91)


def image_id_from_path(path: str | Path) -> int | str:
    """COCO image id of an image file: its stem, as an integer when numeric (000000000139.jpg -> 139)."""
    stem = Path(path).stem
    return int(stem) if stem.isascii() and stem.isdecimal() else stem


def detections_to_coco(
    detections: torch.Tensor,
    image_id: int | str,
    class_map: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """COCO result records of one image's detections (n, 6) `[x1, y1, x2, y2, conf, cls]` in original pixels.

    `class_map[cls]` gives the category id (e.g. `COCO80_TO_COCO91` for COCO); without it the class index
    is the category id.
    """
    if detections.ndim != 2 or detections.shape[1] < 6:
        raise ValueError(
            f"detections must be (n, 6) [x1, y1, x2, y2, conf, cls], got {tuple(detections.shape)}"
        )
    box = xyxy2xywh(detections[:, :4].detach().cpu())
    box[:, :2] -= box[:, 2:] / 2  # centre to top-left corner
    records = []
    for b, (conf, cls) in zip(box.tolist(), detections[:, 4:6].detach().cpu().tolist(), strict=True):
        records.append(
            {
                "image_id": image_id,
                "category_id": class_map[int(cls)] if class_map is not None else int(cls),
                "bbox": [round(v, 3) for v in b],
                "score": round(conf, 5),
            }
        )
    return records


def labels_to_coco(
    images: Sequence[tuple[int | str, int, int]],
    labels: Sequence[np.ndarray | torch.Tensor],
    names: Sequence[str],
    class_map: Sequence[int] | None = None,
) -> dict[str, Any]:
    """A COCO ground-truth dataset from per-image labels (n, 5) `[cls, x1, y1, x2, y2]` in original pixels.

    `images` lists `(image_id, width, height)` in the order of `labels`. Annotation ids count from 1,
    `area` is the box area and nothing is a crowd.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} label arrays")
    cat = (lambda c: class_map[c]) if class_map is not None else (lambda c: c)
    annotations = []
    for (image_id, _, _), lab in zip(images, labels, strict=True):
        for c, x1, y1, x2, y2 in np.asarray(lab, dtype=float).reshape(-1, 5).tolist():
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat(int(c)),
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    return {
        "images": [{"id": i, "width": w, "height": h} for i, w, h in images],
        "annotations": annotations,
        "categories": [{"id": cat(i), "name": n} for i, n in enumerate(names)],
    }


def _load(source: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | Path) -> Any:
    if isinstance(source, str | Path):
        with open(source) as f:
            return json.load(f)
    if isinstance(source, Mapping):
        return copy.deepcopy(source)  # pycocotools annotates the ground truth's records it is given
    # result records: pycocotools only adds keys to each (area, id, iscrowd, segmentation), so a copy of
    # each dict keeps the caller's as they are (a deep copy took 8 s for 375k records)
    return [dict(r) for r in source]


def evaluate_pycocotools(
    gt: Mapping[str, Any] | str | Path,
    detections: Sequence[Mapping[str, Any]] | str | Path,
    img_ids: Sequence[int | str] | None = None,
) -> CocoMetrics:
    """Score COCO result records (or a json file of them) against a COCO dataset (dict or json file).

    Runs pycocotools' COCOeval for boxes, restricted to `img_ids` when given; neither input is modified.
    Annotations without `iscrowd` count as not crowded, without `area` get their box area.
    No detections at all is scored as such (AP 0 where there is ground truth) rather than failing.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, results = _load(gt), _load(detections)
    for ann in dataset.get("annotations", []):  # the defaults of yolov7lib's own evaluator
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", ann["bbox"][2] * ann["bbox"][3])
    check_image_ids(results, {img["id"] for img in dataset.get("images", [])})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        if len(results):
            coco_dt = coco_gt.loadRes(list(results))
        else:  # pycocotools cannot load an empty result list
            coco_dt = COCO()
            coco_dt.dataset = {**copy.deepcopy(dataset), "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        if img_ids is not None:
            evaluator.params.imgIds = list(img_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    cat_ids = [c.item() if isinstance(c, np.generic) else c for c in evaluator.params.catIds]
    return CocoMetrics(
        stats=np.asarray(evaluator.stats, dtype=float),
        cat_ids=cat_ids,
        precision=evaluator.eval["precision"],
        recall=evaluator.eval["recall"],
    )
