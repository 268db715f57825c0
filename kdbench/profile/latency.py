"""Inference latency of PyTorch models and onnxruntime sessions.

Each measurement runs ``warmup`` untimed forward passes, then ``repeats`` timed ones, and keeps
every single run's time, so the record contains the median, the 95th percentile, the mean and the
coefficient of variation (sample standard deviation / mean) in milliseconds.

- CPU: ``time.perf_counter`` around each call, with torch's intra-op thread count set for the
  measurement and restored afterwards.
- CUDA: a pair of ``torch.cuda.Event`` around each call, with a synchronization before the
  start event and after the end event, so each run is timed alone on the GPU, launch overhead
  included, as a single request would be.
- onnxruntime: ``time.perf_counter`` around ``InferenceSession.run`` (CPU execution provider,
  ``intra_op_num_threads`` set to the same thread count), host-to-output copies included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdbench.profile.device import cpu_name, device_name, library_versions, torch_threads
from kdbench.profile.export import make_session


def summarize_times(times_ms: Sequence[float]) -> dict[str, float]:
    """Summarize per-run times (ms): median, 95th percentile (linear), mean, std, cv, min, max.

    ``cv`` is the sample standard deviation divided by the mean, a dimensionless number; it is
    0 for a single run. Raises ValueError on an empty sequence.
    """
    if len(times_ms) == 0:
        raise ValueError("no timed runs to summarize; repeats must be at least 1")
    times = np.asarray(times_ms, dtype=np.float64)
    mean = float(times.mean())
    std = float(times.std(ddof=1)) if len(times) > 1 else 0.0
    return {
        "median_ms": float(np.median(times)),
        "p95_ms": float(np.percentile(times, 95)),
        "mean_ms": mean,
        "std_ms": std,
        "cv": std / mean if mean > 0 else 0.0,
        "min_ms": float(times.min()),
        "max_ms": float(times.max()),
    }


def time_torch(
    model: nn.Module,
    input_shape: Sequence[int],
    device: torch.device,
    threads: int,
    warmup: int,
    repeats: int,
) -> dict[str, Any]:
    """Time ``model`` (already on ``device``, in eval mode) on a random input of ``input_shape``.

    Returns a latency record of the profile schema (backend ``"torch"``, variant ``"fp32"``),
    labelled with device, device name, thread count and library versions.
    """
    x = torch.randn(tuple(input_shape), generator=torch.Generator().manual_seed(0)).to(device)

    def run() -> None:
        model(x)

    with torch_threads(threads), torch.inference_mode():
        if device.type == "cuda":
            times, timer = _time_cuda(run, device, warmup, repeats), "torch.cuda.Event"
        else:
            times, timer = _time_host(run, warmup, repeats), "time.perf_counter"

    return {
        "backend": "torch",
        "variant": "fp32",
        "device": device.type,
        "device_name": device_name(device),
        "threads": threads,
        "batch": int(input_shape[0]),
        "input_shape": [int(d) for d in input_shape],
        **summarize_times(times),
        "warmup": warmup,
        "repeats": repeats,
        "timer": timer,
        "versions": library_versions(),
    }


def time_onnxruntime(
    path: Path,
    input_shape: Sequence[int],
    threads: int,
    warmup: int,
    repeats: int,
    variant: str = "fp32",
) -> dict[str, Any]:
    """Time an ONNX file in onnxruntime's CPU execution provider; return a latency record."""
    session = make_session(path, threads)
    feed = {
        session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(
            tuple(input_shape), dtype=np.float32
        )
    }

    def run() -> None:
        session.run(None, feed)

    times = _time_host(run, warmup, repeats)
    return {
        "backend": "onnxruntime",
        "variant": variant,
        "device": "cpu",
        "device_name": cpu_name(),
        "threads": threads,
        "batch": int(input_shape[0]),
        "input_shape": [int(d) for d in input_shape],
        **summarize_times(times),
        "warmup": warmup,
        "repeats": repeats,
        "timer": "time.perf_counter",
        "provider": session.get_providers()[0],
        "versions": library_versions(),
    }


def _time_host(run: Callable[[], None], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return times


# NOTE: not yet run on a CUDA machine. Its tests are skipped without CUDA.
def _time_cuda(
    run: Callable[[], None], device: torch.device, warmup: int, repeats: int
) -> list[float]:
    with torch.cuda.device(device):
        for _ in range(warmup):
            run()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize(device)
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(float(start.elapsed_time(end)))
    return times
