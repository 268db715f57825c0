"""Specification of latency records: summary statistics, labels, thread handling, CUDA path."""

from __future__ import annotations

import importlib.metadata
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn

from kdbench.errors import ConfigError
from kdbench.profile.device import cpu_name, resolve_device
from kdbench.profile.export import FILE_NAMES, export_variants
from kdbench.profile.latency import summarize_times, time_onnxruntime, time_torch

FIELDS = {
    "backend",
    "variant",
    "device",
    "device_name",
    "threads",
    "batch",
    "median_ms",
    "p95_ms",
    "mean_ms",
    "cv",
    "warmup",
    "repeats",
    "versions",
}
TIMES = [1.0, 2.0, 3.0, 4.0, 100.0]


def small_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()


def test_summarize_times_median():
    assert summarize_times(TIMES)["median_ms"] == 3.0


def test_summarize_times_p95_linear_interpolation():
    # rank 0.95 * (5 - 1) = 3.8 lies between 4.0 and 100.0
    assert summarize_times(TIMES)["p95_ms"] == pytest.approx(4.0 + 0.8 * (100.0 - 4.0))


def test_summarize_times_mean_and_cv():
    summary = summarize_times(TIMES)
    assert summary["mean_ms"] == pytest.approx(22.0)
    assert summary["cv"] == pytest.approx(statistics.stdev(TIMES) / 22.0)


def test_summarize_times_single_run_has_zero_cv():
    assert summarize_times([5.0])["cv"] == 0.0


def test_summarize_times_empty_raises():
    with pytest.raises(ValueError, match="repeats"):
        summarize_times([])


def test_time_torch_cpu_record_fields():
    record = time_torch(
        small_model(), (2, 1, 16, 16), torch.device("cpu"), threads=1, warmup=1, repeats=3
    )
    assert FIELDS <= set(record)
    assert record["backend"] == "torch"
    assert record["device"] == "cpu"
    assert record["device_name"] == cpu_name()
    assert record["batch"] == 2
    assert record["timer"] == "time.perf_counter"


def test_time_torch_cpu_numbers_positive():
    record = time_torch(
        small_model(), (1, 1, 16, 16), torch.device("cpu"), threads=1, warmup=1, repeats=3
    )
    for key in ("median_ms", "p95_ms", "mean_ms", "min_ms"):
        assert record[key] > 0, key
    assert record["cv"] >= 0
    assert record["p95_ms"] >= record["median_ms"]


def test_time_torch_sets_and_restores_threads():
    before = torch.get_num_threads()
    record = time_torch(
        small_model(), (1, 1, 16, 16), torch.device("cpu"), threads=1, warmup=0, repeats=1
    )
    assert record["threads"] == 1
    assert torch.get_num_threads() == before


def test_time_torch_versions_label():
    record = time_torch(
        small_model(), (1, 1, 16, 16), torch.device("cpu"), threads=1, warmup=0, repeats=1
    )
    assert record["versions"]["torch"] == importlib.metadata.version("torch")
    assert record["versions"]["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert record["versions"]["thop"] == importlib.metadata.version("ultralytics-thop")


def test_time_onnxruntime_record(tmp_path: Path):
    export_variants(small_model(), (1, 16, 16), tmp_path, ("fp32",), threads=1)
    record = time_onnxruntime(
        tmp_path / FILE_NAMES["fp32"], (3, 1, 16, 16), threads=1, warmup=1, repeats=3
    )
    assert FIELDS <= set(record)
    assert record["backend"] == "onnxruntime"
    assert record["threads"] == 1
    assert record["batch"] == 3
    assert record["provider"] == "CPUExecutionProvider"
    assert record["median_ms"] > 0


def test_resolve_device_unknown_name_raises():
    with pytest.raises(ConfigError, match="tpu"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_resolve_device_cuda_without_cuda_raises():
    with pytest.raises(ConfigError, match="cuda"):
        resolve_device("cuda")


def test_resolve_device_auto():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA timing needs a CUDA device")
def test_time_torch_cuda_uses_events():
    device = torch.device("cuda")
    record = time_torch(
        small_model().to(device), (2, 1, 32, 32), device, threads=1, warmup=2, repeats=5
    )
    assert record["timer"] == "torch.cuda.Event"
    assert record["device"] == "cuda"
    assert record["device_name"] == torch.cuda.get_device_name(device)
    assert record["median_ms"] > 0
