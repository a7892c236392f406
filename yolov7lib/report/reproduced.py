"""Reproduced values: what this kit measured for a cell of the paper's tables, and at what scale.

A reproduced value is keyed by ``(table, row id, column)``, the same key as the paper's cell in
`yolov7lib.paper`, and is in that column's unit (#Param in M, FLOPs in G, AP in %, FPS). Every value
says at what scale it was obtained (``"exact (architecture)"``, ``"generated data, 320 px, 30 epochs,
CPU"``) and may carry its source and the spread over seeds.

Pipeline stages write JSON files that :meth:`Reproductions.from_json` reads::

    {"scale": "exact (architecture)", "source": "notebooks/06-architecture-tables.ipynb",
     "values": [{"table": 1, "row": "yolov7", "column": "params", "value": 36.905341},
                {"model": "yolov7-tiny", "size": 416, "column": "flops", "value": 5.83}]}

An entry names a cell (``table``, ``row``, ``column``) or a kit model (``model``, optional ``size``),
which fills that column in every table row that reports the model; ``scale`` and ``source`` at the
top are defaults that an entry may override, and ``spread`` / ``seeds`` are optional. A bare list of
entries is accepted too. Unknown cells, non-numeric values and missing scales are errors naming the
file and the entry.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolov7lib import paper
from yolov7lib.report.render import write_text_atomic

if TYPE_CHECKING:
    import pandas as pd

CellKey = tuple[int, str, str]  # (table, row id, column)

_ENTRY_KEYS = {"table", "row", "model", "size", "column", "value", "scale", "source", "spread", "seeds"}


@dataclass(frozen=True)
class Reproduced:
    """One reproduced cell: the value in the column's unit, the scale it was obtained at, where it
    came from, and (for noisy quantities) the spread (standard deviation) over `seeds` runs."""

    table: int
    row: str
    column: str
    value: float
    scale: str
    source: str = ""
    spread: float | None = None
    seeds: int | None = None

    @property
    def key(self) -> CellKey:
        return (self.table, self.row, self.column)


def _number(x: object, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise ValueError(f"{what} must be a finite number, got {x!r}")
    return float(x)


def resolve_cell(table: int, row: str, column: str) -> CellKey:
    """The paper cell a reproduced value belongs to, as ``(table, row id, column)``; `row` may be a
    row id, a key or the paper's spelling. ValueError for an unknown cell, an improvement row (those
    are derived) or a setting column (Size, Precision, IoU threshold are inputs, not results)."""
    try:
        t = paper.get_table(int(table))
        r = t.by_id(row) if row in {x.id for x in t.rows} else t.find(row)
    except KeyError as err:
        raise ValueError(str(err).strip('"')) from None
    if r.kind != "model":
        raise ValueError(
            f"Table {t.number} row {r.id!r} is an improvement row; it is derived, not reproduced"
        )
    if column not in t.columns:
        raise ValueError(f"Table {t.number} has no column {column!r}; columns: {', '.join(t.columns)}")
    if paper.COLUMNS[column].kind == "setting":
        raise ValueError(f"Table {t.number} column {column!r} is a setting of the experiment, not a result")
    return (t.number, r.id, column)


class Reproductions(Mapping[CellKey, Reproduced]):
    """The reproduced values of a run of the pipeline, keyed by ``(table, row id, column)``."""

    def __init__(self, values: Iterable[Reproduced] = ()) -> None:
        self._values: dict[CellKey, Reproduced] = {}
        for v in values:
            self.add(v.table, v.row, v.column, v.value, v.scale, v.source, v.spread, v.seeds)

    def __getitem__(self, key: CellKey) -> Reproduced:
        return self._values[key]

    def __iter__(self) -> Iterator[CellKey]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Reproductions({len(self)} values)"

    def add(
        self,
        table: int,
        row: str,
        column: str,
        value: float,
        scale: str,
        source: str = "",
        spread: float | None = None,
        seeds: int | None = None,
    ) -> Reproduced:
        """Record one reproduced cell (validated against the paper's tables). Adding the same cell
        twice is an error unless the two records are identical."""
        key = resolve_cell(table, row, column)
        if not isinstance(scale, str) or not scale.strip():
            raise ValueError(f"{key}: every reproduced value needs a scale (e.g. 'exact (architecture)')")
        if spread is not None and _number(spread, "spread") < 0:
            raise ValueError(f"{key}: spread must be >= 0, got {spread!r}")
        if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
            raise ValueError(f"{key}: seeds must be a positive integer, got {seeds!r}")
        rec = Reproduced(
            *key,
            value=_number(value, f"{key} value"),
            scale=scale.strip(),
            source=str(source),
            spread=None if spread is None else float(spread),
            seeds=seeds,
        )
        old = self._values.get(key)
        if old is not None and old != rec:
            raise ValueError(
                f"{key} is already reproduced as {old.value} ({old.scale}, {old.source or 'no source'})"
            )
        self._values[key] = rec
        return rec

    def add_model(
        self,
        model: str,
        column: str,
        value: float,
        scale: str,
        size: int | None = None,
        source: str = "",
        spread: float | None = None,
        seeds: int | None = None,
    ) -> list[Reproduced]:
        """Record `value` for kit model `model` (a registry name) in every table row that reports it
        and has `column`; `size` picks the rows at that input size (needed where the rows differ, e.g.
        Table 1's YOLOv7-tiny at 416 and 320 px, for anything but #Param)."""
        rows = [r for r in paper.rows_for_model(model) if column in r.columns]
        if size is not None:
            rows = [r for r in rows if r.size in (None, size)]
        sizes = {r.size for r in rows if r.size is not None}
        if column != "params" and len(sizes) > 1:
            raise ValueError(f"{model} {column}: rows at sizes {sorted(s for s in sizes if s)}; pass size=")
        if not rows:
            raise ValueError(f"no table row reports {model} with column {column!r} at size {size}")
        return [self.add(r.table, r.id, column, value, scale, source, spread, seeds) for r in rows]

    def lookup(self) -> dict[CellKey, float]:
        """``{cell: value}``, e.g. for `paper.Claim.evaluate`."""
        return {k: v.value for k, v in self._values.items()}

    @classmethod
    def from_json(cls, *paths: str | os.PathLike[str]) -> Reproductions:
        """Read and merge reproduced values from JSON files (format in the module docstring)."""
        out = cls()
        for path in paths:
            out.read_json(path)
        return out

    def read_json(self, path: str | os.PathLike[str]) -> None:
        """Add the values of one JSON file; ValueError naming the file and entry on bad input."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"reproduced values file {str(path)!r} not found") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        defaults: dict[str, Any] = {}
        if isinstance(data, dict):
            unknown = set(data) - {"scale", "source", "values"}
            if unknown or "values" not in data:
                raise ValueError(
                    f"{path}: expected keys 'values' and optional 'scale', 'source'; got {sorted(data)}"
                )
            defaults = {k: data[k] for k in ("scale", "source") if k in data}
            data = data["values"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: 'values' must be a list of entries")
        for i, entry in enumerate(data):
            try:
                self._read_entry({**defaults, **entry} if isinstance(entry, dict) else entry)
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}: entry {i}: {err}") from None

    def _read_entry(self, entry: object) -> None:
        if not isinstance(entry, dict):
            raise ValueError(f"expected an object, got {entry!r}")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(_ENTRY_KEYS)}")
        for required in ("column", "value", "scale"):
            if required not in entry:
                raise ValueError(f"missing {required!r}")
        common = {
            "column": entry["column"],
            "value": entry["value"],
            "scale": entry["scale"],
            "source": entry.get("source", ""),
            "spread": entry.get("spread"),
            "seeds": entry.get("seeds"),
        }
        if "model" in entry:
            if "table" in entry or "row" in entry:
                raise ValueError("give either 'model' or 'table' and 'row', not both")
            self.add_model(entry["model"], size=entry.get("size"), **common)
        elif "table" in entry and "row" in entry:
            if "size" in entry:
                raise ValueError("'size' goes with 'model'; a 'table' and 'row' already name one cell")
            self.add(entry["table"], entry["row"], **common)
        else:
            raise ValueError("an entry names a cell ('table', 'row') or a kit model ('model')")

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the values as a JSON file that `from_json` reads back (atomically: a reader never
        sees a half-written file)."""
        entries = [{k: v for k, v in asdict(r).items() if v not in (None, "")} for r in self._values.values()]
        return write_text_atomic(Path(path), json.dumps({"values": entries}, indent=1) + "\n")

    def to_frame(self) -> pd.DataFrame:
        """One line per reproduced cell."""
        import pandas as pd

        return pd.DataFrame.from_records(
            [asdict(r) for r in self._values.values()],
            columns=["table", "row", "column", "value", "scale", "source", "spread", "seeds"],
        )
