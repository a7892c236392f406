"""`yolov7 data check`: scan every split of a data.yaml and report what is usable and what is not."""

from __future__ import annotations

import os
from pathlib import Path

from yolov7lib.data.formats import img2label_path, list_image_files, load_data_config
from yolov7lib.data.scan import ScanReport, scan_source

LABEL_TOOL_FILES = {"classes.txt"}  # written beside the labels by labelling tools (LabelImg); not labels


def check_dataset(data: str | Path, progress: bool = False) -> dict[str, ScanReport]:
    """Scan each split of a data.yaml without writing anything; return split -> report.

    Reports images found, backgrounds (no label file, an empty one, or every row dropped), label files
    with duplicate rows, every corrupt image with its reason and every dropped label row by reason.
    """
    cfg = load_data_config(data)
    reports = {}
    for split, sources in cfg.splits.items():
        source = sources[0] if len(sources) == 1 and sources[0].suffix == ".json" else sources
        reports[split] = scan_source(
            source, nc=cfg.nc, cache=False, progress=progress, prefix=f"{split}: "
        ).report
    return reports


def format_reports(reports: dict[str, ScanReport]) -> list[str]:
    """Human-readable lines for `data check`: per split the scan line, the counts and every problem."""
    lines = []
    for split, r in reports.items():
        lines.append(f"{split}: {r.line()}")
        lines.append(
            f"{split}: {r.images} images, {r.usable} usable, {r.backgrounds} backgrounds "
            f"({r.missing} without label file, {r.empty} with an empty one, {r.emptied} with every row "
            f"dropped), {r.duplicate_files} label files with duplicate rows, {len(r.corrupt)} corrupt"
        )
        lines += [f"{split}:   {d}" for d in r.details()]
    return lines


def orphan_label_files(data: str | Path) -> list[Path]:
    """Label files in the `labels/` folders of a data.yaml's images that no image of any split reads.

    An image renamed or deleted after labelling leaves its label file behind: its objects train nowhere,
    and a renamed image trains as a background. Only the folders that `img2label_path` maps images into
    are looked at (not their subfolders, which hold the labels of subfolders of images), and only when
    they are not the images' own folders; COCO json splits carry their labels inside the json.
    """
    cfg = load_data_config(data)
    used: set[str] = set()
    folders: set[Path] = set()
    for sources in cfg.splits.values():
        if len(sources) == 1 and sources[0].suffix == ".json":
            continue
        images, _ = list_image_files(sources)
        for image in images:
            label = img2label_path(image)
            used.add(os.path.abspath(label))
            if label.parent != Path(image).parent:
                folders.add(label.parent)
    return sorted(
        f
        for folder in folders
        if folder.is_dir()
        for f in folder.glob("*.txt")
        if f.name not in LABEL_TOOL_FILES and os.path.abspath(f) not in used
    )


def format_orphans(orphans: list[Path], shown: int = 10) -> list[str]:
    """`data check`'s lines on label files without an image: the count, then the first `shown` of them."""
    if not orphans:
        return []
    lines = [f"{len(orphans)} label files belong to no image of the data set (an image renamed or deleted?):"]
    lines += [f"  {f}" for f in orphans[:shown]]
    if len(orphans) > shown:
        lines.append(f"  ... and {len(orphans) - shown} more")
    return lines
