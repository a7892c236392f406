"""How far the training-time mAP (the reference's test.py rules) is from pycocotools' on the same detections.

    python benchmarks/map_definitions.py [--images 200] [--seeds 5]

On synthetic COCO-like sets without crowds, prints per seed pycocotools' AP50 and AP, and the training-time
values with COCO's integration (isolating the matching rule) and with the reference's integration (what
training reports). With one detection per object the two matching rules nearly coincide; with several
(duplicates that NMS left) the reference's rule counts a detection whose best label is taken as false.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from coco_eval_speed import coco_like

from yolov7lib.ops.coco import evaluate_pycocotools
from yolov7lib.ops.metrics import DetectionMetrics


def training_map(gt: dict, dets: list[dict], method: str) -> tuple[float, float]:
    classes = {c["id"]: i for i, c in enumerate(gt["categories"])}
    per_image: dict[int, tuple[list, list]] = {img["id"]: ([], []) for img in gt["images"]}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        per_image[a["image_id"]][0].append([classes[a["category_id"]], x, y, x + w, y + h])
    for d in dets:
        x, y, w, h = d["bbox"]
        per_image[d["image_id"]][1].append([x, y, x + w, y + h, d["score"], classes[d["category_id"]]])
    metrics = DetectionMetrics(nc=len(classes), method=method)  # type: ignore[arg-type]
    for labels, det in per_image.values():
        metrics.update(
            torch.tensor(det, dtype=torch.float64).reshape(-1, 6),
            torch.tensor(labels, dtype=torch.float64).reshape(-1, 5),
        )
    res = metrics.compute()
    return res.map50, res.map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    for copies in (1, 5):
        print(f"\nup to {copies} detection(s) per object")
        head = ("seed", "coco AP50", "rule+coco", "reference", "coco AP", "rule+coco", "reference")
        print(f"{head[0]:>4}" + "".join(f" {h:>10}" for h in head[1:]))
        gaps = []
        for seed in range(args.seeds):
            gt, dets = coco_like(args.images, seed, crowd_p=0.0, copies=copies)
            coco = evaluate_pycocotools(gt, dets)
            m50c, mc = training_map(gt, dets, "coco")
            m50i, mi = training_map(gt, dets, "interp")
            gaps.append([m50c - coco.ap50, m50i - coco.ap50, mc - coco.ap, mi - coco.ap])
            print(
                f"{seed:>4} {coco.ap50:10.4f} {m50c:10.4f} {m50i:10.4f} {coco.ap:10.4f} {mc:10.4f} {mi:10.4f}"
            )
        g = np.array(gaps)
        print(
            "mean difference to pycocotools (AP50: rule+coco, reference; AP: rule+coco, reference):",
            np.round(g.mean(0), 4),
        )
        print("largest |difference|:", np.round(np.abs(g).max(0), 4))


if __name__ == "__main__":
    main()
