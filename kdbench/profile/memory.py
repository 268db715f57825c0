"""Peak memory that inference adds on top of the resident model and input.

- CUDA: ``torch.cuda.reset_peak_memory_stats``, then ``torch.cuda.max_memory_allocated`` during
  one forward pass minus ``torch.cuda.memory_allocated`` before it. This counts tensors that
  PyTorch's caching allocator hands out (activations, cuDNN workspaces, the output). It does
  not count the CUDA context or memory the allocator reserved but did not hand out.
- CPU: the growth of the process's resident set size (RSS) during one forward pass, sampled
  with psutil every millisecond in a background thread. One untimed pass first creates thread
  pools and kernel caches. Before each measured pass, ``gc.collect`` and glibc's
  ``malloc_trim(0)`` return freed heap pages to the system, so memory kept from earlier work
  cannot absorb the pass's allocations. The result is the maximum over ``runs`` passes.

Limits of the CPU method. A spike shorter than the sampling interval can be missed, and more
passes make that less likely. RSS is process-wide, so allocations by other threads count.
RSS counts pages, so allocator fragmentation counts and the result is not a sum of tensor
bytes. Without ``malloc_trim`` (non-glibc systems), freed memory that the allocator keeps can
hide part of the growth.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
from collections.abc import Sequence
from typing import Any

import psutil
import torch
from torch import nn

from kdbench.profile.device import device_name, torch_threads

SAMPLE_INTERVAL_S = 0.001

CUDA_METHOD = (
    "cuda-allocator: torch.cuda.max_memory_allocated during one forward pass minus "
    "torch.cuda.memory_allocated before it (model and input resident); excludes the CUDA "
    "context and reserved but unallocated memory"
)
CPU_METHOD = (
    "rss-sampling: process RSS sampled with psutil every {interval_ms:g} ms in a background "
    "thread during one forward pass, minus the RSS just before it (model and input resident); "
    "the maximum over {runs} such passes, each after gc and{trim}, following one warm-up pass"
)


def measure_peak_memory(
    model: nn.Module,
    input_shape: Sequence[int],
    device: torch.device,
    threads: int,
    runs: int = 3,
) -> dict[str, Any]:
    """Measure the peak memory (bytes) that inference of ``model`` adds for ``input_shape``.

    ``model`` must already be on ``device`` and in eval mode. Returns the ``memory`` record of
    the profile schema: ``device``, ``device_name``, ``method`` (how the number was measured,
    see the module docstring), ``peak_bytes`` (growth, never negative), ``baseline_bytes``,
    ``batch`` and ``threads``. The CPU record adds ``runs``, ``window_peaks`` (growth of each
    measured pass), ``samples`` and ``sample_interval_ms``.
    """
    x = torch.randn(tuple(input_shape), generator=torch.Generator().manual_seed(0)).to(device)
    with torch_threads(threads), torch.inference_mode():
        if device.type == "cuda":
            record = _measure_cuda(model, x, device)
        else:
            record = _measure_cpu(model, x, runs)
    return {
        "device": device.type,
        "device_name": device_name(device),
        **record,
        "batch": int(input_shape[0]),
        "threads": threads,
    }


# NOTE: not yet run on a CUDA machine. Its test is skipped without CUDA.
def _measure_cuda(model: nn.Module, x: torch.Tensor, device: torch.device) -> dict[str, Any]:
    model(x)  # warm-up: cuDNN algorithm selection and lazy initialization
    torch.cuda.synchronize(device)
    gc.collect()
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)

    output = model(x)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del output
    return {
        "method": CUDA_METHOD,
        "peak_bytes": max(0, peak - baseline),
        "baseline_bytes": baseline,
    }


class _RssSampler(threading.Thread):
    """Background thread that records the maximum RSS of this process until stopped."""

    def __init__(self, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.samples = 1
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._sample()
            self._stop_event.wait(self.interval_s)
        self._sample()

    def _sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)
        self.samples += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _measure_cpu(model: nn.Module, x: torch.Tensor, runs: int) -> dict[str, Any]:
    model(x)  # warm-up: thread pools, kernel caches and lazy initialization
    window_peaks = []
    samples = 0
    trimmed = False
    for _ in range(runs):
        # Each window starts from a trimmed heap, so memory that an earlier pass freed but the
        # allocator kept cannot absorb this pass's allocations.
        gc.collect()
        trimmed = _release_free_heap()
        baseline = psutil.Process().memory_info().rss
        sampler = _RssSampler(SAMPLE_INTERVAL_S)
        sampler.start()
        try:
            output = model(x)
        finally:
            sampler.stop()
        del output
        window_peaks.append(max(0, sampler.peak - baseline))
        samples += sampler.samples

    trim_note = " malloc_trim(0)" if trimmed else " no malloc_trim (unavailable)"
    method = CPU_METHOD.format(interval_ms=SAMPLE_INTERVAL_S * 1e3, runs=runs, trim=trim_note)
    return {
        "method": method,
        "peak_bytes": max(window_peaks),
        "window_peaks": window_peaks,
        "baseline_bytes": baseline,
        "runs": runs,
        "samples": samples,
        "sample_interval_ms": SAMPLE_INTERVAL_S * 1e3,
    }


def _release_free_heap() -> bool:
    """Return freed heap memory to the system with glibc's ``malloc_trim(0)``; True if it ran."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True
