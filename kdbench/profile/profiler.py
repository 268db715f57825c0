"""``profile_model``: every cost number of one model, measured on deep copies of it."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdbench.errors import ConfigError
from kdbench.profile.device import device_name, resolve_device, resolve_threads, torch_threads
from kdbench.profile.export import (
    FILE_NAMES,
    ONNX_OPSET,
    VARIANTS,
    Score,
    export_variants,
    write_state_dict,
)
from kdbench.profile.flops import DISAGREEMENT_LIMIT_PCT, count_macs
from kdbench.profile.latency import time_onnxruntime, time_torch
from kdbench.profile.memory import measure_peak_memory
from kdbench.profile.params import count_parameters

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileOptions:
    """Measurement settings of :func:`profile_model`. Invalid values raise ConfigError."""

    # (C, H, W) or (H, W) in pixels; (H, W) takes C from model.in_channels
    input_size: tuple = (1, 256, 256)
    batch_sizes: tuple = (1, 8)  # latency batch sizes; memory is reported for the first
    warmup: int = 5  # untimed runs before each latency measurement
    repeats: int = 30  # timed runs per latency record
    # CPU intra-op threads for torch and onnxruntime; None takes torch's current count
    threads: int | None = None
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
    export_onnx: bool = True  # write and check the ONNX variants
    variants: tuple = VARIANTS  # ONNX variants to write: any of "fp32", "fp16", "int8"
    opset: int = ONNX_OPSET  # ONNX operator set of the float32 export
    onnx_latency: bool = True  # also time the onnxruntime float32 session at every batch size
    memory_runs: int = 3  # forward passes during CPU memory sampling
    disagreement_limit_pct: float = DISAGREEMENT_LIMIT_PCT  # MAC counters further apart are flagged

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(self.input_size))
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        object.__setattr__(self, "variants", tuple(self.variants))
        if len(self.input_size) not in (2, 3) or not _all_positive_ints(self.input_size):
            _invalid("input_size", self.input_size, "give (C, H, W) or (H, W) positive integers")
        if not self.batch_sizes or not _all_positive_ints(self.batch_sizes):
            _invalid("batch_sizes", self.batch_sizes, "give one or more positive integers")
        if not _all_positive_ints([self.repeats]):
            _invalid("repeats", self.repeats, "use an integer >= 1")
        if not _all_positive_ints([self.memory_runs]):
            _invalid("memory_runs", self.memory_runs, "use an integer >= 1")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            _invalid("warmup", self.warmup, "use an integer >= 0")
        if self.threads is not None and not _all_positive_ints([self.threads]):
            _invalid("threads", self.threads, "use a positive integer or None")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            _invalid("variants", self.variants, f"use any of {', '.join(VARIANTS)}")
        if self.disagreement_limit_pct < 0:
            _invalid("disagreement_limit_pct", self.disagreement_limit_pct, "use a value >= 0")


def _all_positive_ints(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def _invalid(name: str, value: Any, hint: str) -> None:
    raise ConfigError(f"invalid profile option {name} = {value!r}: {hint}")


def profile_model(
    model: nn.Module,
    options: ProfileOptions | None = None,
    out_dir: Path | None = None,
    score: Score | None = None,
) -> dict[str, Any]:
    """Measure parameters, MACs, artifact sizes, ONNX fidelity, latency and peak memory.

    ``model`` maps ``(B, C, H, W)`` float32 images to ``(B, K, H, W)`` logits. Every measurement
    runs on a deep copy in eval mode, so the caller's model, its mode and its state dict are
    unchanged. Artifacts are written into ``out_dir``, which is created if needed. When it is None,
    they go to a temporary folder that is removed afterwards, and their sizes are still measured.
    ``score(predict)`` is called once per working ONNX variant with ``predict(images float32
    (B, C, H, W)) -> logits float32 (B, K, H, W)`` (H and W fixed to the profiled size) and its
    result is stored as ``onnx[variant].mean_iou``.

    Returns the ``profile`` record described in docs/design.md, plus ``device``, ``device_name``,
    ``threads``, ``options``, ``output_dir`` and ``seconds``. An ONNX export failure is recorded
    in the variants' ``error`` fields; it does not stop the other measurements.
    """
    options = options or ProfileOptions()
    started = time.perf_counter()
    device = resolve_device(options.device)
    threads = resolve_threads(options.threads)
    chw = _input_chw(model, options.input_size)
    name = type(model).__name__

    # Every step runs with the configured thread count, because an oversubscribed CPU makes
    # even the counting passes slow; the timed steps set it again themselves.
    with torch_threads(threads):
        params = count_parameters(model)
        macs = count_macs(model, (1, *chw), options.disagreement_limit_pct)
        logger.info(
            "%s: %d parameters, %.4f GMACs (fvcore) / %.4f GMACs (thop) at input %s",
            name,
            params["total"],
            macs["fvcore_gmacs"],
            macs["thop_gmacs"],
            [1, *chw],
        )

        with _artifact_folder(out_dir) as (folder, keep_paths):
            state_dict_bytes = write_state_dict(model, folder / FILE_NAMES["state_dict"])
            onnx_records: dict[str, dict[str, Any]] = {}
            if options.export_onnx and options.variants:
                onnx_records = export_variants(
                    model, chw, folder, options.variants, threads, options.opset, score, keep_paths
                )
            fp32 = onnx_records.get("fp32")
            timed_onnx = folder / FILE_NAMES["fp32"]
            if not options.onnx_latency or fp32 is None or fp32["error"] is not None:
                timed_onnx = None
            memory, latency = _measure_runtime(model, chw, device, threads, options, timed_onnx)

    for record in latency:
        logger.info(
            "%s latency %s %s batch %d on %s (%d threads): median %.3f ms, p95 %.3f ms, cv %.3f",
            name,
            record["backend"],
            record["variant"],
            record["batch"],
            record["device"],
            record["threads"],
            record["median_ms"],
            record["p95_ms"],
            record["cv"],
        )

    return {
        "input_shape": [1, *chw],
        "headline_unit": "GMACs",
        "params": params,
        "macs": macs,
        "sizes": {
            "state_dict_bytes": state_dict_bytes,
            **{f"onnx_{v}_bytes": (onnx_records.get(v) or {}).get("bytes") for v in VARIANTS},
        },
        "onnx": onnx_records,
        "latency": latency,
        "memory": memory,
        "device": device.type,
        "device_name": device_name(device),
        "threads": threads,
        "options": dataclasses.asdict(options),
        "output_dir": str(out_dir) if out_dir is not None else None,
        "seconds": time.perf_counter() - started,
    }


def _input_chw(model: nn.Module, input_size: tuple) -> tuple[int, int, int]:
    """Return (C, H, W), taking C from ``model.in_channels`` for an (H, W) input size."""
    model_channels = getattr(model, "in_channels", None)
    if len(input_size) == 2:
        if not isinstance(model_channels, int):
            raise ConfigError(
                f"profile input_size {input_size} gives no channel count and "
                f"{type(model).__name__} has no in_channels attribute; give (C, H, W)"
            )
        return (model_channels, *input_size)
    if isinstance(model_channels, int) and model_channels != input_size[0]:
        raise ConfigError(
            f"profile input_size {input_size} has {input_size[0]} channels but "
            f"{type(model).__name__} expects in_channels = {model_channels}"
        )
    return tuple(input_size)


@contextlib.contextmanager
def _artifact_folder(out_dir: Path | None) -> Iterator[tuple[Path, bool]]:
    """Yield (folder, keep): ``out_dir`` created if needed, or a temporary folder removed after."""
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder, True
        return
    with tempfile.TemporaryDirectory(prefix="kdbench-profile-") as tmp:
        yield Path(tmp), False


def _measure_runtime(
    model: nn.Module,
    chw: tuple,
    device: torch.device,
    threads: int,
    options: ProfileOptions,
    onnx_path: Path | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measure peak memory and latency on a deep copy of ``model`` on ``device``.

    The memory record is the first batch size's, plus ``per_batch`` with ``{batch, peak_bytes}``
    for every batch size. Latency records cover torch at every batch size, then onnxruntime
    float32 at every batch size when ``onnx_path`` is given.
    """
    device_model = copy.deepcopy(model).to(device=device, dtype=torch.float32).eval()
    memories = [
        measure_peak_memory(device_model, (b, *chw), device, threads, options.memory_runs)
        for b in options.batch_sizes
    ]
    memory = {
        **memories[0],
        "per_batch": [{"batch": m["batch"], "peak_bytes": m["peak_bytes"]} for m in memories],
    }

    latency = [
        time_torch(device_model, (b, *chw), device, threads, options.warmup, options.repeats)
        for b in options.batch_sizes
    ]
    del device_model
    if device.type == "cuda":
        torch.cuda.empty_cache()

    if onnx_path is not None:
        latency += [
            time_onnxruntime(onnx_path, (b, *chw), threads, options.warmup, options.repeats)
            for b in options.batch_sizes
        ]
    return memory, latency
