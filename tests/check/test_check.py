"""The regression gate: baseline files, tolerances and `kdbench check` exit codes."""

from __future__ import annotations

import json
import math

import pytest
import typer
from typer.testing import CliRunner

from kdbench.check import Tolerances, check, check_cli, read_baseline, write_baseline
from kdbench.errors import ConfigError, DataError

from . import write_row


@pytest.fixture
def app():
    application = typer.Typer()
    application.command("check")(check_cli)
    application.command("unused")(lambda: None)  # two commands keep "check" as a subcommand
    return application


@pytest.fixture
def baseline(tmp_path):
    """Baseline of the row unet_small|cfpnet_m|logit with seed IoUs 0.80, 0.82, 0.84."""
    results = tmp_path / "baseline_results"
    write_row(results)
    path = tmp_path / "baseline.json"
    write_baseline(results, path)
    return path


def run_check(app, baseline, results, *options):
    arguments = ["check", "--baseline", str(baseline), "--results", str(results), *options]
    return CliRunner().invoke(app, arguments)


def test_write_baseline_document(baseline):
    document = json.loads(baseline.read_text())
    row = document["rows"]["unet_small|cfpnet_m|logit"]

    assert document["format"] == "kdbench-baseline"
    assert document["version"] == 1
    assert "kdbench_version" in document
    assert "created" in document
    assert row["mean_iou"] == pytest.approx(0.82)
    assert row["mean_iou_std"] == pytest.approx(0.02)
    assert row["n_seeds"] == 3
    assert row["state_dict_bytes"] == 2_000_000
    assert row["latency_ms"] == pytest.approx(5.0)
    assert len(document["config_hash"]["unet_small|cfpnet_m|logit"]) == 64


def test_check_equal_results_pass(app, baseline, tmp_path):
    write_row(tmp_path / "now")

    result = run_check(app, baseline, tmp_path / "now")

    assert result.exit_code == 0
    assert "passed" in result.output


def test_check_iou_drop_beyond_tolerance_fails(app, baseline, tmp_path):
    write_row(tmp_path / "now", ious=(0.70, 0.72, 0.74))

    result = run_check(app, baseline, tmp_path / "now")

    assert result.exit_code == 1
    assert "FAILED" in result.output
    assert "unet_small|cfpnet_m|logit mean_iou" in result.output


def test_check_bigger_file_fails(app, baseline, tmp_path):
    write_row(tmp_path / "now", onnx_fp32_bytes=2_200_000)  # +4.8 %

    result = run_check(app, baseline, tmp_path / "now")

    assert result.exit_code == 1
    assert "unet_small|cfpnet_m|logit onnx_fp32_bytes" in result.output


def test_check_growth_within_limit_passes(app, baseline, tmp_path):
    write_row(tmp_path / "now", state_dict_bytes=2_010_000)  # +0.5 %, limit 1 %

    assert run_check(app, baseline, tmp_path / "now").exit_code == 0


def test_check_size_flag_loosens_limit(app, baseline, tmp_path):
    write_row(tmp_path / "now", onnx_fp32_bytes=2_200_000)

    assert run_check(app, baseline, tmp_path / "now", "--max-size-growth", "5").exit_code == 0


def test_check_seed_aware_iou_limit(baseline, tmp_path):
    # Both sides: sd 0.02 over 3 seeds, so each standard error is 0.02 / sqrt(3) and the
    # allowed drop is 0.02 + 2 * sqrt(2) * 0.02 / sqrt(3) = 0.05266.
    allowed = 0.02 + 2 * math.sqrt(2) * 0.02 / math.sqrt(3)
    write_row(tmp_path / "inside", ious=(0.75, 0.77, 0.79))  # drop 0.05
    write_row(tmp_path / "outside", ious=(0.74, 0.76, 0.78))  # drop 0.06

    inside = check(baseline, tmp_path / "inside")
    outside = check(baseline, tmp_path / "outside")
    entry = next(e for e in inside.entries if e.metric == "mean_iou")

    assert entry.limit == pytest.approx(-allowed)
    assert inside.passed
    assert not outside.passed


def test_check_drop_inside_tolerance_passes(app, baseline, tmp_path):
    write_row(tmp_path / "now", ious=(0.79, 0.81, 0.83))

    assert run_check(app, baseline, tmp_path / "now").exit_code == 0


def test_check_new_row_reported_not_failed(app, baseline, tmp_path):
    write_row(tmp_path / "now")
    write_row(tmp_path / "now", strategy="at")

    result = run_check(app, baseline, tmp_path / "now")

    assert result.exit_code == 0
    assert "unet_small|cfpnet_m|at" in result.output
    assert "new" in result.output


def test_check_missing_row_fails_only_when_strict(app, tmp_path):
    write_row(tmp_path / "base")
    write_row(tmp_path / "base", strategy="at")
    write_baseline(tmp_path / "base", tmp_path / "baseline.json")
    write_row(tmp_path / "now")

    relaxed = run_check(app, tmp_path / "baseline.json", tmp_path / "now")
    strict = run_check(app, tmp_path / "baseline.json", tmp_path / "now", "--strict")

    assert relaxed.exit_code == 0
    assert "missing" in relaxed.output
    assert strict.exit_code == 1


def test_check_latency_unchecked_by_default(app, baseline, tmp_path):
    write_row(tmp_path / "now", latency_ms=50.0)

    assert run_check(app, baseline, tmp_path / "now").exit_code == 0


def test_check_latency_flag_guards_latency(app, baseline, tmp_path):
    write_row(tmp_path / "now", latency_ms=50.0)

    result = run_check(app, baseline, tmp_path / "now", "--max-latency-growth", "20")

    assert result.exit_code == 1
    assert "latency_ms" in result.output


def test_check_missing_baseline_exits_2(app, tmp_path):
    write_row(tmp_path / "now")

    result = run_check(app, tmp_path / "absent.json", tmp_path / "now")

    assert result.exit_code == 2
    assert "absent.json not found" in result.output
    assert "--update-baseline" in result.output


def test_check_malformed_baseline_exits_2(app, tmp_path):
    write_row(tmp_path / "now")
    (tmp_path / "baseline.json").write_text('{"format": "kdbench-baseline", "rows": ')

    result = run_check(app, tmp_path / "baseline.json", tmp_path / "now")

    assert result.exit_code == 2
    assert "baseline.json is not valid JSON" in result.output


def test_check_wrong_format_baseline_exits_2(app, tmp_path):
    write_row(tmp_path / "now")
    (tmp_path / "baseline.json").write_text('{"format": "other", "version": 1, "rows": {}}')

    result = run_check(app, tmp_path / "baseline.json", tmp_path / "now")

    assert result.exit_code == 2
    assert "is not a kdbench baseline" in result.output


def test_read_baseline_row_without_iou_names_row(tmp_path):
    path = tmp_path / "baseline.json"
    rows = {"a|b|c": {"n_seeds": 3}}
    path.write_text(json.dumps({"format": "kdbench-baseline", "version": 1, "rows": rows}))

    with pytest.raises(DataError, match=r"row 'a\|b\|c': 'mean_iou'"):
        read_baseline(path)


def test_check_results_without_cells_exits_2(app, baseline, tmp_path):
    result = run_check(app, baseline, tmp_path / "empty")

    assert result.exit_code == 2
    assert "not found" in result.output


def test_check_update_baseline_writes_file(app, tmp_path):
    write_row(tmp_path / "now")

    result = run_check(app, tmp_path / "new.json", tmp_path / "now", "--update-baseline")

    assert result.exit_code == 0
    assert read_baseline(tmp_path / "new.json")["rows"]


def test_check_results_default_to_baseline_folder(app, tmp_path):
    write_row(tmp_path)
    write_baseline(tmp_path, tmp_path / "baseline.json")

    result = CliRunner().invoke(app, ["check", "--baseline", str(tmp_path / "baseline.json")])

    assert result.exit_code == 0


def test_check_json_and_md_formats(app, baseline, tmp_path):
    write_row(tmp_path / "now")

    as_json = run_check(app, baseline, tmp_path / "now", "--format", "json")
    as_md = run_check(app, baseline, tmp_path / "now", "--format", "md")

    assert json.loads(as_json.output)["passed"] is True
    assert as_md.output.startswith("### kdbench check: passed")


def test_check_config_table_sets_tolerances(app, baseline, tmp_path):
    write_row(tmp_path / "now", onnx_fp32_bytes=2_200_000)
    config = tmp_path / "matrix.toml"
    config.write_text("[check]\nmax_size_growth_pct = 10.0\n")

    assert run_check(app, baseline, tmp_path / "now", "--config", str(config)).exit_code == 0


def test_check_config_unknown_key_exits_2(app, baseline, tmp_path):
    write_row(tmp_path / "now")
    config = tmp_path / "matrix.toml"
    config.write_text("[check]\nmax_size_growth = 10.0\n")

    result = run_check(app, baseline, tmp_path / "now", "--config", str(config))

    assert result.exit_code == 2
    assert "max_size_growth" in result.output
    assert "matrix.toml" in result.output


def test_tolerances_from_mapping_defaults():
    assert Tolerances.from_mapping({}) == Tolerances()


def test_tolerances_from_mapping_unknown_key_names_key():
    with pytest.raises(ConfigError, match="unknown key 'max_iou'.*max_iou_drop"):
        Tolerances.from_mapping({"max_iou": 0.1}, source="m.toml")


def test_tolerances_from_mapping_negative_value_names_key():
    with pytest.raises(ConfigError, match=r"m.toml: \[check\].max_iou_drop = -0.1"):
        Tolerances.from_mapping({"max_iou_drop": -0.1}, source="m.toml")


def test_tolerances_from_mapping_rejects_text():
    with pytest.raises(ConfigError, match="expected a number"):
        Tolerances.from_mapping({"max_latency_growth_pct": "5%"})


def test_check_failed_row_fails(baseline, tmp_path):
    paths = write_row(tmp_path / "now")
    for path in paths:
        cell = json.loads(path.read_text())
        cell.update(status="failed", error="out of memory")
        path.write_text(json.dumps(cell))

    result = check(baseline, tmp_path / "now")

    assert not result.passed
    assert result.failures[0].metric == "status"


def test_check_missing_size_in_results_fails(baseline, tmp_path):
    write_row(tmp_path / "now", onnx_int8_bytes=None)

    result = check(baseline, tmp_path / "now")

    assert [(e.metric, e.note) for e in result.failures] == [
        ("onnx_int8_bytes", "missing in the results")
    ]


def test_check_corrupt_cell_is_listed(baseline, tmp_path):
    write_row(tmp_path / "now")
    (tmp_path / "now" / "cells" / "broken.json").write_text("{")

    result = check(baseline, tmp_path / "now")

    assert any("broken.json" in problem for problem in result.problems)
