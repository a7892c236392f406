"""The architecture cells of Tables 1, 2, 3 and 9 (#Param and FLOPs), counted on this kit's models.

Every #Param and FLOPs cell of a YOLOv7 row or of a baseline the kit builds (YOLOv4-CSP, YOLOR) and
the four Table 3 scaling variants is counted at the paper's convention:

- #Param: the fused deploy graph (BatchNorms, RepConvs and implicit knowledge folded, auxiliary head
  dropped), which is what official-figures.md shows the paper reports. Baselines keep their implicit
  vectors (their official fused count does). YOLOv7-D6 is counted on its training graph (auxiliary
  head kept, BatchNorms fused): the paper's 154.7M is that graph's (Section 5, Tables 1, 2, 9; see
  ``paper.KNOWN_INCONSISTENCIES`` "d6-params-training-graph").
- FLOPs: 2 x multiply-accumulates at the row's input size counted with ``FlopCounterMode`` (the
  convention of official-figures.md), on the same graph; YOLOv7-D6 on its training graph in training
  mode. The paper counted with thop, which also counts one addition per output element of every
  convolution with a bias: :func:`conv_bias_gflops` gives that count beside the main one.

Everything is built on the meta device: no memory, no arithmetic, the whole set in well under a minute.
:func:`architecture_counts` returns one :class:`ArchitectureCount` per cell;
:func:`architecture_reproductions` turns them into a :class:`~yolov7lib.report.Reproductions` written
as ``reports/metrics/architecture.json`` with scale :data:`SCALE`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.func import functional_call

from yolov7lib import paper
from yolov7lib.report.reproduced import Reproductions

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ARCHITECTURE_TABLES",
    "FLAGS",
    "SCALE",
    "TABLE3_MODELS",
    "ArchitectureCount",
    "architecture_counts",
    "architecture_frame",
    "architecture_reproductions",
    "conv_bias_gflops",
    "count_model",
    "write_architecture_json",
]

SCALE = "exact (architecture, nc=80)"
SOURCE = "notebooks/06-architecture-tables.ipynb"
ARCHITECTURE_TABLES = (1, 2, 3, 9)
COLUMNS = ("params", "flops")

# Table 3 rows (Section 5.4.1) and the registry models that build them with models/scaling.py.
TABLE3_MODELS: dict[str, str] = {
    "base-v7-x-light": "yolov7x-light",
    "width-only-1.25-w": "yolov7x-light-width1.25",
    "depth-only-2.0-d": "yolov7x-light-depth2.0",
    "compound-v7-x": "yolov7x",
}
TRAINING_GRAPH_MODELS = ("yolov7-d6",)  # the paper counts these on the training graph (flagged row)

_TOOL = (
    "counting tool: the paper used thop, which also counts the bias addition of every biased "
    "convolution; the kit counts with FlopCounterMode as official-figures.md does (0.1-0.3 % lower)"
)
_TABLE3 = (
    "this kit's reading of Section 3.2 (models/scaling.py; the official repository has no cfg for this "
    "variant), plus the counting tool: " + _TOOL
)
_D6 = (
    "paper inconsistency d6-params-training-graph: counted on the training graph (auxiliary head), as "
    "the paper does; the deploy graph that every other P6 row reports has 133.8M / 701.7G"
)

# Cells whose kit value is expected NOT to agree with the paper at its rounding, and why, keyed by
# (kit model, input size, column). Every other cell agrees; tests check both directions.
FLAGS: dict[tuple[str, int, str], str] = {
    **{
        (m, s, "flops"): _TOOL
        for m, s in (
            ("yolov7-tiny-silu", 640),
            ("yolov7", 640),
            ("yolov7x", 640),
            ("yolov7-w6", 1280),
            ("yolov7-e6", 1280),
            ("yolov7-e6e", 1280),
            ("yolov4-csp", 640),
            ("yolor-csp", 640),
            ("yolor-csp-x", 640),
            ("yolor-p6", 1280),
            ("yolor-w6", 1280),
            ("yolor-e6", 1280),
            ("yolor-d6", 1280),
            ("yolov7x-light", 640),
        )
    },
    ("yolov7-tiny", 320, "flops"): _TOOL
    + "; the paper's 3.5 fits its 13.8G at 640 px divided by 4 (3.45) rounded up, while the count at 320 "
    "px rounds to 3.4 either way",
    ("yolov7x-light-width1.25", 640, "flops"): _TABLE3,
    ("yolov7x-light-depth2.0", 640, "flops"): _TABLE3,
    ("yolov7-d6", 1280, "flops"): _D6 + "; and the " + _TOOL,
}

# Notes on how a cell is counted (shown with every cell of the model, flagged or not).
NOTES: dict[str, str] = {
    "yolov7-d6": _D6,
    **{
        m: "baseline: fused, implicit vectors kept (the official fused count)"
        for m in ("yolov4-csp", "yolor-csp", "yolor-csp-x", "yolor-p6", "yolor-w6", "yolor-e6", "yolor-d6")
    },
    **{m: "Table 3 variant built by models/scaling.py" for m in list(TABLE3_MODELS.values())[:3]},
}


@dataclass(frozen=True)
class ArchitectureCount:
    """One #Param or FLOPs cell: the paper's value and decimals, the kit's value in the column's unit
    (M or G), the graph it was counted on, whether it agrees at the paper's rounding, the official
    count where official-figures.md has one, the thop-style FLOPs, and the flag / note if any."""

    table: int
    row: str
    model: str
    size: int
    column: str
    paper: float
    decimals: int
    kit: float
    graph: str
    official: float | None = None
    thop_style: float | None = None
    flag: str = ""
    note: str = ""

    @property
    def difference(self) -> float:
        """kit - paper, in the column's unit."""
        return self.kit - self.paper

    @property
    def agrees(self) -> bool:
        """The kit's value rounds to the paper's printed value (either rounding of a half)."""
        return abs(self.kit - self.paper) <= 0.5 * 10.0**-self.decimals + 1e-9


def architecture_rows() -> Iterator[tuple[paper.Row, str]]:
    """Every (row, kit model) of Tables 1, 2, 3 and 9 whose #Param / FLOPs the kit counts."""
    for number in ARCHITECTURE_TABLES:
        for r in paper.get_table(number).models:
            model = TABLE3_MODELS.get(r.id) if number == 3 else r.registry
            if model is not None and any(c in r.columns for c in COLUMNS):
                yield r, model


def conv_bias_gflops(model: nn.Module, img_size: int, train: bool = False) -> float:
    """GFLOPs the way thop counts a fused model: per output element of every convolution, its
    multiply-accumulates plus one for the bias if it has one, times 2 (other layers count 0)."""
    counts: list[int] = []

    def hook(m: nn.Conv2d, _: object, out: torch.Tensor) -> None:
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
        counts.append(out.numel() * (k + (m.bias is not None)))

    state = {
        k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]
    }
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.train(train)
    try:
        with torch.no_grad():
            functional_call(model, state, (torch.zeros(1, 3, img_size, img_size, device="meta"),))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return 2 * sum(counts) / 1e9


@cache
def count_model(model: str, sizes: tuple[int, ...]) -> dict[str, object]:
    """Parameters (the paper's graph) and, per size, FlopCounterMode and thop-style GFLOPs of a kit
    model, built on the meta device: ``{"graph", "params", "gflops": {size: g}, "thop": {size: g}}``."""
    from yolov7lib.models import create_model, reparameterize
    from yolov7lib.models.info import count_params, model_flops

    with torch.device("meta"):
        training = create_model(model, nc=80)
        if model in TRAINING_GRAPH_MODELS:
            graph, train = "training graph, fused", True
            counted = reparameterize(training, drop_aux=False, fold_implicit=False)
        elif not model.startswith("yolov7"):
            graph, train = "fused, implicit kept", False
            counted = reparameterize(training, drop_aux=False, fold_implicit=False)
        else:
            graph, counted, train = "fused deploy graph", reparameterize(training), False
    gflops = {s: model_flops(counted, s, train=train) / 1e9 for s in sizes}
    thop = {s: conv_bias_gflops(counted, s, train=train) for s in sizes}
    return {"graph": graph, "params": count_params(counted), "gflops": gflops, "thop": thop}


def _official(model: str, size: int, column: str) -> float | None:
    off = paper.OFFICIAL_COUNTS.get(model)
    if off is None:
        return None
    if column == "params":
        return off.paper_params / 1e6
    if size != off.size:
        return None
    return off.training_gflops if model in TRAINING_GRAPH_MODELS else off.gflops


def architecture_counts(
    models: Iterable[str] | None = None, progress: bool = False
) -> list[ArchitectureCount]:
    """One :class:`ArchitectureCount` per #Param / FLOPs cell of Tables 1, 2, 3 and 9 that the kit
    counts (restricted to `models`, kit model names, if given), in table order."""
    wanted = None if models is None else set(models)
    every = list(architecture_rows())
    unknown = sorted((wanted or set()) - {m for _, m in every})
    if unknown:
        raise ValueError(
            f"no #Param / FLOPs cell of Tables 1, 2, 3, 9 is counted on {', '.join(unknown)}; "
            f"the models counted: {', '.join(sorted({m for _, m in every}))}"
        )
    rows = [(r, m) for r, m in every if wanted is None or m in wanted]
    sizes: dict[str, set[int]] = {}
    for r, m in rows:
        sizes.setdefault(m, set()).add(int(r.size or 640))
    counted: dict[str, dict[str, object]] = {}
    names = list(sizes)
    if progress:
        from tqdm import tqdm  # text bars, as elsewhere (tqdm.auto wants ipywidgets in Jupyter)

        names = tqdm(names, desc="counting", unit="model")
    for m in names:
        counted[m] = count_model(m, tuple(sorted(sizes[m])))
    out = []
    for r, m in rows:
        size, c = int(r.size or 640), counted[m]
        for column in COLUMNS:
            if column not in r.columns or r[column] is None:
                continue
            if column == "params":
                kit, thop = c["params"] / 1e6, None  # type: ignore[operator]
            else:
                kit, thop = c["gflops"][size], c["thop"][size]  # type: ignore[index]
            out.append(
                ArchitectureCount(
                    table=r.table, row=r.id, model=m, size=size, column=column,
                    paper=float(r[column]), decimals=r.cell(column).decimals, kit=float(kit),
                    graph=str(c["graph"]), official=_official(m, size, column), thop_style=thop,
                    flag=FLAGS.get((m, size, column), ""), note=NOTES.get(m, ""),
                )
            )  # fmt: skip
    return out


def architecture_reproductions(counts: Iterable[ArchitectureCount], source: str = SOURCE) -> Reproductions:
    """The counts as reproduced cells at scale :data:`SCALE`; each cell's source names the graph and
    the counting (FLOPs: FlopCounterMode at the row's input size) and, for a flagged cell, the reason."""
    reps = Reproductions()
    for c in counts:
        how = c.graph if c.column == "params" else f"{c.graph}, FlopCounterMode at {c.size} px"
        why = f"; where it differs from the paper: {c.flag}" if c.flag else ""  # the flag's reason, shown
        reps.add(c.table, c.row, c.column, c.kit, SCALE, f"{source} ({how}){why}")
    return reps


def write_architecture_json(path: str | os.PathLike[str], counts: Iterable[ArchitectureCount]) -> Path:
    """Write the counts as a Reproductions JSON file (``reports/metrics/architecture.json``)."""
    return architecture_reproductions(counts).to_json(path)


def architecture_frame(counts: Iterable[ArchitectureCount]) -> pd.DataFrame:
    """One line per cell: table, row, model, size, column, paper, kit, difference, agrees, official,
    thop-style FLOPs, graph, flag, note."""
    import pandas as pd

    records = []
    for c in counts:
        rec = asdict(c)
        rec["difference"], rec["agrees"] = c.difference, c.agrees
        records.append(rec)
    order = ["table", "row", "model", "size", "column", "paper", "kit", "difference", "agrees", "official",
             "thop_style", "graph", "flag", "note"]  # fmt: skip
    return pd.DataFrame.from_records(records, columns=order)
