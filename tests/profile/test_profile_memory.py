"""Specification of peak inference memory: growth over the resident model and input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdbench.profile.memory import measure_peak_memory

MIB = 1024 * 1024


class WideOutput(nn.Module):
    """A 1x1 convolution to 64 channels: its output alone is 64 * 256 * 256 * 4 B = 16 MiB."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


OUTPUT_BYTES = 64 * 256 * 256 * 4


def test_measure_peak_memory_cpu_sees_output_allocation():
    record = measure_peak_memory(
        WideOutput().eval(), (1, 1, 256, 256), torch.device("cpu"), threads=1
    )
    assert record["peak_bytes"] >= 0.9 * OUTPUT_BYTES


def test_measure_peak_memory_cpu_bounded():
    record = measure_peak_memory(
        WideOutput().eval(), (1, 1, 256, 256), torch.device("cpu"), threads=1
    )
    # Room for a convolution backend that writes a blocked-layout copy before the output.
    assert record["peak_bytes"] < 3 * OUTPUT_BYTES


def test_measure_peak_memory_cpu_record_fields():
    record = measure_peak_memory(
        WideOutput().eval(), (2, 1, 32, 32), torch.device("cpu"), threads=1, runs=2
    )
    assert record["device"] == "cpu"
    assert record["method"].startswith("rss-sampling")
    assert record["batch"] == 2
    assert record["runs"] == 2
    assert len(record["window_peaks"]) == 2
    assert record["peak_bytes"] == max(record["window_peaks"])
    assert record["baseline_bytes"] > 0
    assert record["samples"] >= 2


def test_measure_peak_memory_restores_threads():
    before = torch.get_num_threads()
    measure_peak_memory(WideOutput().eval(), (1, 1, 16, 16), torch.device("cpu"), threads=1)
    assert torch.get_num_threads() == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA memory needs a CUDA device")
def test_measure_peak_memory_cuda_counts_output():
    device = torch.device("cuda")
    record = measure_peak_memory(
        WideOutput().to(device).eval(), (1, 1, 256, 256), device, threads=1
    )
    assert record["device"] == "cuda"
    assert record["method"].startswith("cuda-allocator")
    assert record["peak_bytes"] >= OUTPUT_BYTES
    assert record["peak_bytes"] < 4 * OUTPUT_BYTES
