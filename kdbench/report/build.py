"""Build the whole report of one results folder: leaderboards, raw cell table and figures."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.errors import DataError
from kdbench.report.aggregate import aggregate_rows
from kdbench.report.leaderboard import write_cells_csv, write_leaderboard_csv, write_leaderboard_md
from kdbench.report.load import CELLS_FOLDER, load_cells
from kdbench.report.pareto import mark_pareto

logger = logging.getLogger(__name__)


@dataclass
class ReportSummary:
    """Outcome of :func:`build_report`.

    ``rows`` are the aggregated leaderboard rows (see ``kdbench.report.aggregate``), ``problems``
    the cell files that could not be used, ``files`` every file written, in writing order.
    """

    out_dir: Path
    rows: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def leaderboard_md(self) -> Path:
        """Path of the Markdown leaderboard."""
        return self.out_dir / "leaderboard.md"

    @property
    def failed_rows(self) -> list[dict[str, Any]]:
        """Rows with at least one failed cell."""
        return [row for row in self.rows if row["n_failed"]]


def build_report(
    results_dir: str | Path, out_dir: str | Path | None = None, *, plots: bool = True
) -> ReportSummary:
    """Aggregate ``<results_dir>/cells/*.json`` and write the report into ``out_dir``.

    ``out_dir`` defaults to ``results_dir`` itself, next to ``cells/``. Writes ``leaderboard.csv``,
    ``leaderboard.md``, ``cells.csv`` and, with ``plots``, the figures of
    ``kdbench.report.plots``. Unusable cell files are listed in ``ReportSummary.problems`` and the
    rest is still reported.

    Raises DataError when ``results_dir`` does not exist or contains no readable cell.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DataError(
            f"results folder {results_dir} not found. Pass the output folder of `kdbench run`, "
            f"the folder that contains {CELLS_FOLDER}/."
        )
    cells, problems = load_cells(results_dir)
    if not cells:
        details = f" Problems: {' | '.join(problems)}" if problems else ""
        raise DataError(
            f"no readable cell JSON in {results_dir / CELLS_FOLDER}. Run `kdbench run` with this "
            f"folder as output first, or point to the folder that contains {CELLS_FOLDER}/."
            + details
        )

    rows = aggregate_rows(cells)
    mark_pareto(rows)

    out_dir = Path(out_dir) if out_dir is not None else results_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [
        write_leaderboard_csv(rows, out_dir / "leaderboard.csv"),
        write_leaderboard_md(
            rows, out_dir / "leaderboard.md", title=f"kdbench leaderboard: {results_dir.name}"
        ),
        write_cells_csv(cells, out_dir / "cells.csv"),
    ]
    if plots:
        # Imported here because matplotlib and seaborn take about a second to import, which
        # `kdbench check` (a user of this package) does not need.
        from kdbench.report.plots import write_plots

        files += write_plots(rows, cells, results_dir, out_dir)

    logger.info("Report of %d cells (%d rows) written to %s", len(cells), len(rows), out_dir)
    return ReportSummary(out_dir=out_dir, rows=rows, problems=problems, files=files)
