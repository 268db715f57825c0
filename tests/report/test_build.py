"""build_report and the `report` command on whole results folders."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from kdbench.errors import DataError
from kdbench.report.build import build_report
from kdbench.report.command import report_cli

from . import write_matrix


@pytest.fixture
def app():
    application = typer.Typer()
    application.command("report")(report_cli)
    application.command("unused")(lambda: None)  # two commands keep "report" as a subcommand
    return application


def test_build_report_skips_corrupt_cell(tmp_path):
    write_matrix(tmp_path)
    corrupt = tmp_path / "cells" / "unet_small__cfpnet_m__logit__s2.json"
    corrupt.write_text('{"schema_version": 1, "cell_id": ')

    summary = build_report(tmp_path, plots=False)

    assert len(summary.problems) == 1
    assert str(corrupt) in summary.problems[0]
    assert {row["row_id"]: row["n_seeds"] for row in summary.rows}["unet_small|cfpnet_m|logit"] == 2
    assert summary.leaderboard_md.is_file()


def test_build_report_writes_tables_and_plots(tmp_path):
    write_matrix(tmp_path, with_history=True)

    summary = build_report(tmp_path, tmp_path / "out")
    names = {path.name for path in summary.files}

    assert {"leaderboard.csv", "leaderboard.md", "cells.csv", "pareto.png", "pareto.svg"} <= names
    assert all(path.is_file() for path in summary.files)
    assert summary.out_dir == tmp_path / "out"


def test_build_report_missing_folder_raises(tmp_path):
    with pytest.raises(DataError, match="not found"):
        build_report(tmp_path / "absent")


def test_report_cli_prints_leaderboard_and_problems(app, tmp_path):
    write_matrix(tmp_path)
    (tmp_path / "cells" / "broken.json").write_text("{")

    result = CliRunner().invoke(app, ["report", str(tmp_path), "--no-plots"])

    assert result.exit_code == 0
    assert str(tmp_path / "leaderboard.md") in result.output
    assert "broken.json" in result.output


def test_report_cli_missing_folder_exits_2(app, tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "absent")])

    assert result.exit_code == 2
    assert "not found" in result.output


def test_report_cli_folder_without_cells_exits_2(app, tmp_path):
    (tmp_path / "cells").mkdir()

    result = CliRunner().invoke(app, ["report", str(tmp_path)])

    assert result.exit_code == 2
    assert "no readable cell JSON" in result.output
    assert "kdbench run" in result.output
