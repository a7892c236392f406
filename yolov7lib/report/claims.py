"""The numbers quoted in the paper's text beside what follows from the tables and from reproduced values.

One line per claim of `yolov7lib.paper.CLAIMS`: the number as printed, the number computed from the
paper's own tables (``holds``: whether they agree at the printed rounding), the number computed from
reproduced values once every cell of a kit model that the claim reads is reproduced (cells of models
the kit does not build keep the paper's cited value), and the paper inconsistencies that concern it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from yolov7lib import paper
from yolov7lib.report.markers import is_cited
from yolov7lib.report.render import fmt, markdown_table, write_text_atomic
from yolov7lib.report.reproduced import Reproductions
from yolov7lib.report.tables import agrees_at_rounding

if TYPE_CHECKING:
    import pandas as pd

CLAIM_COLUMNS = ("claim", "where", "quote", "printed", "from_tables", "holds", "reproduced", "difference",
                 "status", "cells", "inconsistencies")  # fmt: skip


def compare_claims(reproductions: Reproductions | None = None) -> pd.DataFrame:
    """Every claim of the text: printed, computed from the tables, computed from `reproductions`."""
    import pandas as pd

    reps = reproductions if reproductions is not None else Reproductions()
    lookup = reps.lookup()
    records = []
    for c in paper.CLAIMS:
        cells = c.cells()
        from_tables = c.evaluate()
        rec: dict[str, object] = {
            "claim": c.id, "where": c.where, "quote": c.quote, "printed": c.printed,
            "from_tables": math.nan if from_tables is None else from_tables, "holds": "",
            "reproduced": math.nan, "difference": math.nan, "status": "",
            "cells": "; ".join(f"{t}:{r}:{col}" for t, r, col in cells),
            "inconsistencies": "; ".join(i.id for i in paper.KNOWN_INCONSISTENCIES if c.id in i.claims),
        }  # fmt: skip
        own = [cell for cell in cells if not is_cited(paper.get_table(cell[0]).by_id(cell[1]))]
        if c.formula is None:
            rec["status"] = "qualitative"
        elif not cells:
            rec["status"] = "text only"
        elif not own:
            rec["status"] = "cited results only (models the kit does not build)"
        elif all(cell in lookup for cell in own):
            reproduced = c.evaluate(lookup)  # cited cells keep the paper's value
            assert reproduced is not None and from_tables is not None
            rec.update(reproduced=reproduced, difference=reproduced - from_tables, status="reproduced")
            if len(own) < len(cells):
                rec["status"] = "reproduced (against the paper's cited values)"
        else:
            missing = [f"{t}:{r}:{col}" for t, r, col in own if (t, r, col) not in lookup]
            rec["status"] = "not reproduced: needs " + ", ".join(missing)
        if from_tables is not None and c.value is not None:
            rec["holds"] = "yes" if agrees_at_rounding(abs(from_tables), c.value, c.decimals) else "no"
        records.append(rec)
    return pd.DataFrame.from_records(records, columns=list(CLAIM_COLUMNS))


def render_claims_markdown(frame: pd.DataFrame) -> str:
    """The claims frame as a markdown document."""
    rows = [
        (r.claim, r.where, r.quote, r.printed, fmt(r.from_tables, 2), r.holds, fmt(r.reproduced, 2),
         fmt(r.difference, 2, signed=True), r.status, r.inconsistencies)
        for r in frame.itertuples(index=False)
    ]  # fmt: skip
    head = (
        "# Claims of the paper's text\n\n"
        "Each number the text quotes, the same number computed from the paper's own tables (*holds*: "
        "they agree at the printed rounding; relative claims in %), and computed from this kit's "
        "reproduced values once every cell it reads is reproduced. Inconsistencies are described in "
        "`yolov7lib.paper.KNOWN_INCONSISTENCIES`.\n\n"
    )
    headers = ("claim", "where", "quote", "printed", "from tables", "holds", "reproduced", "difference",
               "status", "inconsistencies")  # fmt: skip
    return head + markdown_table(headers, rows)


def write_claims(reproductions: Reproductions | None, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``claims.md`` and ``claims.csv`` under `out_dir`; return their paths."""
    frame = compare_claims(reproductions)
    out = Path(out_dir)
    md = write_text_atomic(out / "claims.md", render_claims_markdown(frame))
    csv = write_text_atomic(out / "claims.csv", frame.to_csv(index=False))
    return md, csv
