"""`yolov7 data check`: scan every split of a data.yaml and report what is usable and what is not."""

from __future__ import annotations

from pathlib import Path

from yolov7lib.data.formats import load_data_config
from yolov7lib.data.scan import ScanReport, scan_source


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
