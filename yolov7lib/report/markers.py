"""What it takes to reproduce a cell: the "not reproduced here" marker of a table cell.

A cell of a model the kit does not build is cited from another paper and stays the paper's. A cell of
a kit model (or of an ablation variant the kit trains) names the command that produces it: #Param and
FLOPs are counted exactly on any machine, AP needs COCO-scale training (and a CUDA GPU for Table 10's FP16
rows), FPS needs the paper's V100 GPU.
The pipeline passes its own :class:`Commands` where its stages differ from the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from yolov7lib import paper

# Tables whose rows are comparisons with other detectors; a row the kit does not build is cited.
COMPARISON_TABLES = (1, 2, 9)


@dataclass(frozen=True)
class Commands:
    """Commands named by the markers, one per kind of quantity. Templates may use ``{model}`` (the
    registry name, else the paper's row name), ``{table}`` and ``{row}``."""

    architecture: str = "dvc repro (the default profile counts #Param and FLOPs of {model} on this CPU)"
    accuracy: str = "dvc exp run -S profile=paper (trains {model} on COCO 2017, 300 epochs, on GPUs)"
    speed: str = "dvc exp run -S profile=paper on a V100 GPU (batch-1 frame rate of {model})"


def is_cited(r: paper.Row) -> bool:
    """A row the kit does not build: another detector's result, cited by the paper."""
    return r.kind == "model" and r.registry is None and r.table in COMPARISON_TABLES


def what_it_takes(r: paper.Row, column: str, commands: Commands | None = None) -> str:
    """The marker of a cell with no reproduced value: why, and the command that would produce it."""
    commands = commands or Commands()
    if r.kind == "improvement":
        return f"derived from {r.candidate} and {r.baseline} once both are reproduced"
    if is_cited(r):
        cited = f"reference [{r.ref}]" if r.ref is not None else "another paper"
        return f"not reproduced here: the kit does not build {r.name} (result of {cited})"
    kind = paper.COLUMNS[column].kind
    model = r.registry or f"the Table {r.table} variant '{r.name}'"
    fields = {"model": model, "table": r.table, "row": r.id}
    if kind == "architecture":
        return f"not reproduced yet: exact count by `{commands.architecture.format(**fields)}`"
    if kind == "speed":
        return f"not reproduced here: needs the paper's GPU; `{commands.speed.format(**fields)}`"
    if "precision" in r.columns and r.cell("precision").printed.upper().startswith("FP16"):
        return (
            "not reproduced here: FP16 evaluation needs a CUDA GPU (on a CPU the evaluation runs FP32 only), "
            f"the paper's value also COCO-scale training; `{commands.accuracy.format(**fields)}`"
        )
    return f"not reproduced here: needs COCO-scale training; `{commands.accuracy.format(**fields)}`"
