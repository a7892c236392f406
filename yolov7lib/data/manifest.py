"""A fingerprint of a data set that leaves out the image bytes, which differ between CPU models.

The generated data set is the same bytes only on one CPU model: its images are drawn with float
arithmetic that OpenCV and NumPy vectorise differently per instruction set, so a few pixels of a few
images come out differently (README, "The pipeline"). Its labels, annotation files, data.yaml and
file names do not. `dataset_manifest` hashes exactly those, for the data set as its data.yaml describes
it: the data.yaml, every list file and COCO json it names, every image of every split by its path only
(the image sizes are in the COCO annotation files), and every image's label file byte for byte. The
DVC stages that read the data set depend on this manifest instead of the folder's bytes, so a fresh
clone on another CPU regenerates the data (a minute) and still reuses the committed training and
ablation runs; a change of the generator's code reaches them through their `yolov7lib/data`
dependency. For COCO (the `paper` profile), whose tree DVC does not track, the manifest is what makes a
changed label or list rerun the training.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from yolov7lib.data.formats import img2label_path, list_image_files, load_data_config

__all__ = ["dataset_manifest"]


def _content(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dataset_manifest(data_yaml: str | Path) -> dict[str, Any]:
    """{"images", "labels", "files", "sha256"} of the data set that `data_yaml` describes.

    The digest covers the paths (relative to the data.yaml's folder) of every image, label file, list
    file and COCO json, the bytes of all but the images, and the data.yaml's own bytes; label caches,
    modification times and where the data set lies do not count. A missing label file counts as such
    (an image without objects).
    """
    data_yaml = Path(data_yaml)
    config = load_data_config(data_yaml)
    base = data_yaml.resolve().parent
    entries: dict[str, str] = {"data.yaml": _content(data_yaml)}  # relative path -> what is hashed

    def name(path: str | Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), base)).as_posix()

    images = labels = 0
    for sources in config.splits.values():
        folders_and_lists = [s for s in sources if s.suffix != ".json"]
        for source in sources:
            if source.is_file():
                entries[name(source)] = _content(source)
        if not folders_and_lists:
            continue  # a COCO json split: its images and boxes are in the json, hashed above
        for image in list_image_files(folders_and_lists)[0]:
            label = img2label_path(image)
            entries[name(image)] = "image"
            entries[name(label)] = _content(label) if label.is_file() else "absent"
            images += 1
            labels += label.is_file()
    for coco_json in config.json.values():
        entries[name(coco_json)] = _content(coco_json)
    digest = hashlib.sha256()
    for key in sorted(entries):
        digest.update(f"{key}\0{entries[key]}\n".encode())
    return {"images": images, "labels": labels, "files": len(entries), "sha256": digest.hexdigest()}
