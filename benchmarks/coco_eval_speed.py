"""Time yolov7lib's own COCO evaluator against pycocotools on one synthetic COCO-like set, side by side.

    python benchmarks/coco_eval_speed.py [--images 500] [--seed 0]

Prints both wall times, their ratio and the largest difference between the two results (stats, precision
and recall arrays). The set mimics a COCO validation run at conf 0.001: 80 categories, about 7 objects
per image (some crowds), about 100 detections per image (jittered copies and false positives).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from yolov7lib.ops.coco import COCO80_TO_COCO91, evaluate_pycocotools
from yolov7lib.ops.coco_eval import evaluate_coco


def coco_like(n_images: int, seed: int, crowd_p: float = 0.01, copies: int = 5) -> tuple[dict, list[dict]]:
    """Ground truth and detections; each object gets 1 to `copies` jittered detections."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for img in range(1, n_images + 1):
        images.append({"id": img, "width": 640, "height": 480})
        for _ in range(int(rng.poisson(7))):
            w, h = np.exp(rng.uniform(np.log(6), np.log(400), 2))
            box = np.array([rng.uniform(0, 640 - min(w, 639)), rng.uniform(0, 480 - min(h, 479)), w, h])
            cat = int(rng.choice(COCO80_TO_COCO91[:20]))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img,
                    "category_id": cat,
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3] * rng.uniform(0.5, 1.0)),
                    "iscrowd": int(rng.random() < crowd_p),
                }
            )
            for _ in range(int(rng.integers(1, copies + 1))):
                jitter = box + rng.normal(0, 0.15, 4) * box[[2, 3, 2, 3]]
                jitter[2:] = np.abs(jitter[2:]) + 1
                dets.append(
                    {"image_id": img, "category_id": cat, "bbox": jitter.tolist(), "score": rng.random()}
                )
        for _ in range(int(rng.integers(60, 100))):
            w, h = np.exp(rng.uniform(np.log(6), np.log(400), 2))
            box = [rng.uniform(0, 600), rng.uniform(0, 450), w, h]
            dets.append(
                {
                    "image_id": img,
                    "category_id": int(rng.choice(COCO80_TO_COCO91)),
                    "bbox": box,
                    "score": rng.random() * 0.3,
                }
            )
    for d in dets:
        d["score"] = round(float(d["score"]), 5)
    categories = [{"id": c, "name": str(c)} for c in COCO80_TO_COCO91]
    return {"images": images, "annotations": anns, "categories": categories}, dets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    gt, dets = coco_like(args.images, args.seed)
    print(f"{args.images} images, {len(gt['annotations'])} ground truths, {len(dets)} detections")
    t0 = time.perf_counter()
    theirs = evaluate_pycocotools(gt, dets)
    t1 = time.perf_counter()
    ours = evaluate_coco(gt, dets)
    t2 = time.perf_counter()
    diff = max(
        np.abs(ours.stats - theirs.stats).max(),
        np.abs(ours.precision - theirs.precision).max(),
        np.abs(ours.recall - theirs.recall).max(),
    )
    print(f"pycocotools {t1 - t0:8.2f} s")
    print(f"yolov7lib   {t2 - t1:8.2f} s")
    print(f"speed-up    {(t1 - t0) / (t2 - t1):8.2f} x")
    print(f"largest difference in stats, precision, recall: {diff:.3g}")
    print(ours.summary())


if __name__ == "__main__":
    main()
