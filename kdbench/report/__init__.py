"""Reports of a results folder: load cell JSONs, aggregate over seeds, leaderboards and figures.

``build_report(results_dir)`` does everything; the modules can also be used one by one::

    cells, problems = load_cells("results/chd68")
    rows = aggregate_rows(cells)
    mark_pareto(rows)
"""

from __future__ import annotations

from kdbench.report.aggregate import aggregate_rows, row_id_of
from kdbench.report.build import ReportSummary, build_report
from kdbench.report.load import load_cells
from kdbench.report.pareto import mark_pareto, pareto_optimal

__all__ = [
    "ReportSummary",
    "aggregate_rows",
    "build_report",
    "load_cells",
    "mark_pareto",
    "pareto_optimal",
    "row_id_of",
]
