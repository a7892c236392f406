"""Tensor operations on boxes and detections: conversions, IoU, NMS, metrics."""

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
from yolov7lib.ops.nms import non_max_suppression

__all__ = [
    "bbox_iou",
    "box_iou",
    "clip_boxes",
    "non_max_suppression",
    "scale_boxes",
    "xywh2xyxy",
    "xywhn2xyxy",
    "xyxy2xywh",
    "xyxy2xywhn",
]
