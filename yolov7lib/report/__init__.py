"""The report: the paper's tables and claims beside this kit's reproduced values (issue 8).

`Reproductions` holds what the pipeline measured, keyed like the paper's cells; `compare_table` lays a
table of the paper beside it, `write_table` / `write_tables` render ``reports/tables/table<N>.md`` and
``.csv``; `compare_claims` / `write_claims` do the same for the numbers quoted in the text.
"""

from yolov7lib.report.claims import compare_claims, write_claims
from yolov7lib.report.markers import Commands, what_it_takes
from yolov7lib.report.reproduced import Reproduced, Reproductions
from yolov7lib.report.tables import compare_table, read_table_csv, render_markdown, write_table, write_tables

__all__ = [
    "Commands",
    "Reproduced",
    "Reproductions",
    "compare_claims",
    "compare_table",
    "read_table_csv",
    "render_markdown",
    "what_it_takes",
    "write_claims",
    "write_table",
    "write_tables",
]
