"""Deployment: ONNX export of the re-parameterized model, optionally with NMS in the graph, checked in
onnxruntime (`yolov7 export`; the onnxruntime backend of `yolov7 bench` uses the same export)."""

from yolov7lib.deploy.end2end import End2End
from yolov7lib.deploy.onnx_export import (
    MAX_OPSET,
    MIN_OPSET,
    export_and_verify,
    export_onnx,
    onnx_session,
    probe_images,
    verify_onnx,
)

__all__ = [
    "MAX_OPSET",
    "MIN_OPSET",
    "End2End",
    "export_and_verify",
    "export_onnx",
    "onnx_session",
    "probe_images",
    "verify_onnx",
]
