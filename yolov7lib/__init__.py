"""yolov7lib: a reproducible replication kit for the YOLOv7 paper.

Wang, Bochkovskiy, Liao. "YOLOv7: Trainable bag-of-freebies sets new state-of-the-art for
real-time object detectors", 2022.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
