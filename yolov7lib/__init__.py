"""yolov7lib: a reproducible replication kit for the YOLOv7 paper.

Wang, Bochkovskiy, Liao. "YOLOv7: Trainable bag-of-freebies sets new state-of-the-art for
real-time object detectors", 2022.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public API re-exported lazily, so that `import yolov7lib` (and `yolov7 --help`) does not load torch.
_LAZY = {
    "Model": "yolov7lib.models",
    "create_model": "yolov7lib.models",
    "list_models": "yolov7lib.models",
    "reparameterize": "yolov7lib.models",
    "model_info": "yolov7lib.models",
    "load_official": "yolov7lib.models",
    "train": "yolov7lib.engine.trainer",
    "TrainOptions": "yolov7lib.engine.trainer",
    "load_model": "yolov7lib.engine.weights",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yolov7lib' has no attribute {name!r}")
