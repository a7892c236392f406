"""Data: the generated default data set, YOLO and COCO formats, augmentations, loaders, checks, drawing.

Public API: `synthesize`, `load_data_config`, `DetectionDataset`, `create_dataloader`, `letterbox`,
`check_dataset`, `dataset_manifest`, `plot_batch` (and the augmentations in `yolov7lib.data.augment`).
"""

from yolov7lib.data.augment import letterbox, random_perspective
from yolov7lib.data.check import check_dataset
from yolov7lib.data.dataset import DetectionDataset
from yolov7lib.data.formats import DataConfig, load_data_config, read_coco_json
from yolov7lib.data.loader import SeededSampler, create_dataloader
from yolov7lib.data.manifest import dataset_manifest
from yolov7lib.data.plot import plot_batch
from yolov7lib.data.scan import ScanReport, scan_source
from yolov7lib.data.synth import CATEGORY_IDS, CLASS_NAMES, synthesize

__all__ = [
    "CATEGORY_IDS",
    "CLASS_NAMES",
    "DataConfig",
    "DetectionDataset",
    "ScanReport",
    "SeededSampler",
    "check_dataset",
    "create_dataloader",
    "dataset_manifest",
    "letterbox",
    "load_data_config",
    "plot_batch",
    "random_perspective",
    "read_coco_json",
    "scan_source",
    "synthesize",
]
