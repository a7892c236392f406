"""A fingerprint of a data set that leaves out the image bytes, which differ between CPU models.

The generated data set is the same bytes only on one CPU model: its images are drawn with float
arithmetic that OpenCV and NumPy vectorise differently per instruction set, so a few pixels of a few
images come out differently (README, "The pipeline"). Its labels, annotation files, data.yaml and
file names do not. `dataset_manifest` hashes exactly those: every file that is not an image, byte for
byte, and every image by its path only (the image sizes are in the COCO annotation files); label
caches, which any reader may write beside the labels, are left out as DVC leaves them out. The DVC
stages that read the data set depend on this manifest instead of the folder's bytes, so a fresh clone
on another CPU regenerates the data (a minute) and still reuses the committed training and ablation
runs; a change of the generator's code reaches them through their `yolov7lib/data` dependency.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from yolov7lib.data.formats import is_image_file
from yolov7lib.data.scan import CACHE_SUFFIX

__all__ = ["dataset_manifest"]


def dataset_manifest(root: str | Path) -> dict[str, Any]:
    """{"images", "other_files", "sha256"} of the folder `root`: the digest covers the relative path of
    every file, the bytes of every file that is not an image (labels, annotations, data.yaml), and of
    images nothing else; label caches, file order, modification times and the folder's location do not
    count."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data set folder {str(root)!r} not found")
    digest = hashlib.sha256()
    images = others = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(CACHE_SUFFIX)):
        name = path.relative_to(root).as_posix()
        if is_image_file(path):
            images += 1
            digest.update(b"image\0" + name.encode() + b"\0")
        else:
            others += 1
            content = hashlib.sha256(path.read_bytes()).hexdigest()
            digest.update(b"file\0" + name.encode() + b"\0" + content.encode() + b"\0")
    return {"images": images, "other_files": others, "sha256": digest.hexdigest()}
