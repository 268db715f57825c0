"""Specification of the `kdbench profile` command: parsing, model sources and output formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from kdbench.errors import ConfigError, UnknownNameError
from kdbench.models import create_model
from kdbench.profile import ProfileOptions, profile_model
from kdbench.profile.command import parse_input_size, profile_cli, profile_command
from kdbench.profile.render import render_profile

FAST = dict(threads=1, repeats=2, warmup=0)


@pytest.fixture(scope="module")
def profile():
    model = create_model("cfpnet_m", in_channels=1, num_classes=3)
    options = ProfileOptions(input_size=(1, 32, 32), batch_sizes=(1,), memory_runs=1, **FAST)
    return profile_model(model, options)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, int]:
    model = create_model("cfpnet_m", in_channels=1, num_classes=3)
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    torch.save(
        {
            "model": "cfpnet_m",
            "model_options": {"in_channels": 1, "num_classes": 3},
            "state_dict": model.state_dict(),
        },
        path,
    )
    return path, sum(p.numel() for p in model.parameters())


def test_parse_input_size_valid():
    assert parse_input_size("2x1x64x128") == (2, 1, 64, 128)


@pytest.mark.parametrize(
    "text", ["1x1x256", "1x1x256x256x1", "1x1x0x256", "axbxcxd", "", "1,1,8,8"]
)
def test_parse_input_size_invalid_names_value(text):
    with pytest.raises(ConfigError) as caught:
        parse_input_size(text)
    assert f"'{text}'" in str(caught.value)


def test_profile_command_unknown_format_raises():
    with pytest.raises(ConfigError, match="'yaml'"):
        profile_command("cfpnet_m", input_size="1x1x32x32", fmt="yaml")


def test_profile_command_bad_input_size_raises():
    with pytest.raises(ConfigError, match="'1x1x256'"):
        profile_command("cfpnet_m", input_size="1x1x256")


def test_profile_command_unknown_model_raises():
    with pytest.raises(UnknownNameError, match="cfpnet_m"):
        profile_command("cfpnet", input_size="1x1x32x32", onnx=False, **FAST)


def test_render_profile_json_round_trip(profile):
    parsed = json.loads(render_profile(profile, "json"))
    assert parsed["params"] == profile["params"]
    assert parsed["macs"]["headline_gmacs"] == pytest.approx(profile["macs"]["headline_gmacs"])


def test_render_profile_csv_long_format(profile):
    rows = list(csv.DictReader(io.StringIO(render_profile(profile, "csv"))))
    by_metric = {(r["section"], r["item"], r["metric"]): r for r in rows}
    assert set(rows[0]) == {"section", "item", "metric", "value", "unit"}
    assert int(by_metric[("params", "", "total")]["value"]) == profile["params"]["total"]
    assert by_metric[("macs", "", "headline_gmacs")]["unit"] == "GMACs"


def test_render_profile_markdown_tables(profile):
    text = render_profile(profile, "md", title="cfpnet_m")
    assert text.startswith("## cfpnet_m")
    assert "| operator | fvcore | thop |" in text
    assert "| backend | variant | device |" in text


def test_render_profile_table_contains_headline(profile):
    text = render_profile(profile, "table")
    headline = next(line for line in text.splitlines() if line.startswith("GMACs (fvcore"))
    assert f"{profile['macs']['headline_gmacs']:.5g}" in headline


def test_render_profile_table_lists_skipped_operators(profile):
    text = render_profile(profile, "table")
    assert "aten::prelu" in text


def test_profile_command_registered_model_json():
    text = profile_command(
        "cfpnet_m", input_size="1x1x32x32", batch=[1], num_classes=3, fmt="json", onnx=False, **FAST
    )
    parsed = json.loads(text)
    model = create_model("cfpnet_m", in_channels=1, num_classes=3)
    assert parsed["params"]["total"] == sum(p.numel() for p in model.parameters())
    assert parsed["input_shape"] == [1, 1, 32, 32]
    assert [r["batch"] for r in parsed["latency"]] == [1]


def test_profile_command_default_batches_first_and_eight():
    text = profile_command("cfpnet_m", input_size="2x1x32x32", fmt="json", onnx=False, **FAST)
    assert [r["batch"] for r in json.loads(text)["latency"]] == [2, 8]


def test_profile_command_checkpoint(checkpoint):
    path, parameters = checkpoint
    text = profile_command(
        "cfpnet_m",
        input_size="1x1x32x32",
        batch=[1],
        checkpoint=path,
        fmt="json",
        onnx=False,
        **FAST,
    )
    assert json.loads(text)["params"]["total"] == parameters


def test_profile_command_checkpoint_path_as_model(checkpoint):
    path, parameters = checkpoint
    text = profile_command(
        str(path), input_size="1x1x32x32", batch=[1], fmt="json", onnx=False, **FAST
    )
    assert json.loads(text)["params"]["total"] == parameters


def test_profile_command_checkpoint_name_mismatch_raises(checkpoint):
    path, _ = checkpoint
    with pytest.raises(ConfigError, match="unet"):
        profile_command("unet", input_size="1x1x32x32", checkpoint=path, onnx=False, **FAST)


def test_profile_command_checkpoint_channel_mismatch_raises(checkpoint):
    path, _ = checkpoint
    with pytest.raises(ConfigError, match="in_channels = 1"):
        profile_command("cfpnet_m", input_size="1x3x32x32", checkpoint=path, onnx=False, **FAST)


def test_profile_command_checkpoint_missing_raises(tmp_path):
    missing = tmp_path / "missing.pt"
    with pytest.raises(ConfigError, match="missing.pt"):
        profile_command("cfpnet_m", input_size="1x1x32x32", checkpoint=missing, **FAST)


def test_profile_command_checkpoint_without_state_dict_raises(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"model": "cfpnet_m"}, path)
    with pytest.raises(ConfigError, match="state_dict"):
        profile_command("cfpnet_m", input_size="1x1x32x32", checkpoint=path, **FAST)


def test_profile_command_writes_artifacts(tmp_path):
    profile_command(
        "cfpnet_m", input_size="1x1x32x32", batch=[1], output_dir=tmp_path, fmt="json", **FAST
    )
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [
        "model_fp16.onnx",
        "model_fp32.onnx",
        "model_int8.onnx",
        "state_dict_fp32.pt",
    ]


def test_profile_cli_bad_input_size_raises_config_error():
    app = typer.Typer()
    app.command()(profile_cli)
    result = CliRunner().invoke(app, ["cfpnet_m", "--input-size", "1x1x256"])
    assert isinstance(result.exception, ConfigError)


def test_profile_cli_prints_markdown():
    app = typer.Typer()
    app.command()(profile_cli)
    result = CliRunner().invoke(
        app,
        [
            "cfpnet_m",
            "--input-size",
            "1x1x32x32",
            "--batch",
            "1",
            "--format",
            "md",
            "--no-onnx",
            "--threads",
            "1",
            "--repeats",
            "2",
            "--warmup",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "### Latency" in result.output


def test_profile_command_size_model_cannot_take_raises():
    with pytest.raises(ConfigError, match="multiples of 8"):
        profile_command("cfpnet_m", input_size="1x1x60x60", onnx=False, repeats=1)


def test_render_profile_md_headers_match_columns(profile):
    lines = render_profile(profile, "md").splitlines()
    separators = [i for i, line in enumerate(lines) if line.startswith("| ---")]

    assert separators
    for i in separators:
        assert lines[i - 1].count("|") == lines[i].count("|"), lines[i - 1]
