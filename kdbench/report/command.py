"""``kdbench report``: the command-line entry point of the report (mounted by ``kdbench.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdbench.errors import KdbenchError
from kdbench.report.build import build_report


def report_cli(
    results_dir: Annotated[
        Path,
        typer.Argument(help="Output folder of `kdbench run`, the folder that contains cells/."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for the report files. Default: RESULTS_DIR, next to cells/."
        ),
    ] = None,
    plots: Annotated[
        bool,
        typer.Option(
            "--plots/--no-plots", help="Draw the figures (PNG and SVG) as well as the tables."
        ),
    ] = True,
) -> None:
    """Aggregate the cells of a results folder into leaderboards and figures.

    Writes leaderboard.md, leaderboard.csv, cells.csv and plots/ (PNG and SVG).

    Unreadable cell files are listed as warnings, and the other cells are still reported.

    Exit status 2 when the folder does not exist or contains no readable cell.
    """
    try:
        summary = build_report(results_dir, out, plots=plots)
    except KdbenchError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None

    for problem in summary.problems:
        typer.echo(f"warning: {problem}", err=True)
    for row in summary.failed_rows:
        typer.echo(f"warning: failed cells in {row['row_id']}: {row['error']}", err=True)
    typer.echo(f"Leaderboard: {summary.leaderboard_md}")
    typer.echo(f"{len(summary.rows)} rows, {len(summary.files)} files in {summary.out_dir}")
