"""Plain rendering helpers of the report: markdown tables, numbers, atomic file writes."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path


def md_escape(text: object) -> str:
    """A markdown table cell: pipes escaped, line breaks flattened."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table: header line, separator, one line per row."""
    if any(len(r) != len(headers) for r in rows):
        raise ValueError("every row needs one cell per header")
    lines = ["| " + " | ".join(md_escape(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def fmt(x: float | None, decimals: int, signed: bool = False) -> str:
    """`x` with `decimals` decimals ("" for a missing value); `signed` adds a "+" to positive numbers."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it over `path`, so that a reader
    never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
