"""Tensor operations on boxes and detections: conversions, IoU, NMS, metrics, COCO evaluation."""

from yolov7lib.ops.boxes import (
    bbox_iou,
    box_iou,
    clip_boxes,
    scale_boxes,
    xywh2xyxy,
    xywhn2xyxy,
    xyxy2xywh,
    xyxy2xywhn,
)
from yolov7lib.ops.coco import (
    COCO80_TO_COCO91,
    coco80_to_coco91_class,
    detections_to_coco,
    evaluate_pycocotools,
    image_id_from_path,
    labels_to_coco,
)
from yolov7lib.ops.coco_eval import CocoMetrics, evaluate_coco
from yolov7lib.ops.metrics import (
    IOU_THRESHOLDS,
    ConfusionMatrix,
    DetectionMetrics,
    ValidationMetrics,
    ap_per_class,
    compute_ap,
    match_detections,
)
from yolov7lib.ops.nms import non_max_suppression

__all__ = [
    "COCO80_TO_COCO91",
    "IOU_THRESHOLDS",
    "CocoMetrics",
    "ConfusionMatrix",
    "DetectionMetrics",
    "ValidationMetrics",
    "ap_per_class",
    "bbox_iou",
    "box_iou",
    "clip_boxes",
    "coco80_to_coco91_class",
    "compute_ap",
    "detections_to_coco",
    "evaluate_coco",
    "evaluate_pycocotools",
    "image_id_from_path",
    "labels_to_coco",
    "match_detections",
    "non_max_suppression",
    "scale_boxes",
    "xywh2xyxy",
    "xywhn2xyxy",
    "xyxy2xywh",
    "xyxy2xywhn",
]
