"""Loading cell JSON files: bad files become problems, the rest still loads."""

from __future__ import annotations

import json

from kdbench.report.load import load_cells

from . import make_cell, write_cell


def test_load_cells_reads_valid_cells_sorted(tmp_path):
    write_cell(tmp_path, make_cell(seed=1))
    write_cell(tmp_path, make_cell(seed=0))

    cells, problems = load_cells(tmp_path)

    assert [c["cell_id"] for c in cells] == ["-__cfpnet_m__none__s0", "-__cfpnet_m__none__s1"]
    assert problems == []


def test_load_cells_corrupt_json_is_problem(tmp_path):
    write_cell(tmp_path, make_cell(seed=0))
    broken = write_cell(tmp_path, make_cell(seed=1))
    broken.write_text(broken.read_text()[:50])

    cells, problems = load_cells(tmp_path)

    assert [c["seed"] for c in cells] == [0]
    assert len(problems) == 1
    assert str(broken) in problems[0]
    assert "invalid JSON" in problems[0]
    assert "kdbench run" in problems[0]


def test_load_cells_wrong_schema_version_is_problem(tmp_path):
    cell = make_cell()
    cell["schema_version"] = 2
    path = write_cell(tmp_path, cell)

    cells, problems = load_cells(tmp_path)

    assert cells == []
    assert str(path) in problems[0]
    assert "schema_version is 2" in problems[0]


def test_load_cells_missing_metric_key_is_problem(tmp_path):
    cell = make_cell()
    del cell["metrics"]["per_case"]
    path = write_cell(tmp_path, cell)

    _, problems = load_cells(tmp_path)

    assert str(path) in problems[0]
    assert "metrics.per_case" in problems[0]


def test_load_cells_non_object_is_problem(tmp_path):
    path = tmp_path / "cells" / "list.json"
    path.parent.mkdir()
    path.write_text(json.dumps([1, 2]))

    _, problems = load_cells(tmp_path)

    assert "expected a JSON object" in problems[0]


def test_load_cells_keeps_failed_cells_without_metrics(tmp_path):
    write_cell(tmp_path, make_cell(status="failed", error="CUDA out of memory"))

    cells, problems = load_cells(tmp_path)

    assert cells[0]["status"] == "failed"
    assert problems == []


def test_load_cells_duplicate_cell_id_is_problem(tmp_path):
    path = write_cell(tmp_path, make_cell())
    copy = path.with_name("copy.json")
    copy.write_text(path.read_text())

    cells, problems = load_cells(tmp_path)

    assert len(cells) == 1
    assert "already loaded" in problems[0]


def test_load_cells_missing_folder_is_problem(tmp_path):
    cells, problems = load_cells(tmp_path / "nothing")

    assert cells == []
    assert "folder not found" in problems[0]


def test_load_cells_wrong_type_is_problem(tmp_path):
    cell = make_cell()
    cell["metrics"]["per_case"] = {"case00": 0.8}
    path = write_cell(tmp_path, cell)

    _, problems = load_cells(tmp_path)

    assert str(path) in problems[0]
    assert "metrics.per_case must be a list" in problems[0]


def test_load_cells_non_string_cell_id_is_problem(tmp_path):
    cell = make_cell()
    cell["cell_id"] = ["a"]
    write_cell(tmp_path, {**cell, "cell_id": "x"}).write_text(json.dumps(cell))

    _, problems = load_cells(tmp_path)

    assert "cell_id is ['a']" in problems[0]
