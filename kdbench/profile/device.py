"""Device selection and the labels every measurement carries: device name, threads, versions."""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
from collections.abc import Iterator
from pathlib import Path

import torch

from kdbench.errors import ConfigError

# Distribution names whose versions label each measurement (the import name differs for thop).
_LIBRARIES = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "numpy": "numpy",
    "fvcore": "fvcore",
    "thop": "ultralytics-thop",
}


def resolve_device(name: str) -> torch.device:
    """Map ``"auto"`` to CUDA when available, else CPU; check ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

    Raises ConfigError when the name is invalid or CUDA is requested on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"invalid profile device '{name}': use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"invalid profile device '{name}': use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"profile device '{name}' requested but torch.cuda.is_available() is False; "
            "use 'cpu' or 'auto'"
        )
    return device


def cpu_name() -> str:
    """Return the CPU model: ``model name`` from /proc/cpuinfo, else ``platform.processor()``."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """Return the hardware name of ``device``: the GPU name on CUDA, the CPU model otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def library_versions() -> dict[str, str | None]:
    """Return the versions of Python, the profiling libraries, and CUDA/cuDNN when present."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for key, distribution in _LIBRARIES.items():
        try:
            versions[key] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = None
    versions["cuda"] = torch.version.cuda
    versions["cudnn"] = (
        str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    )
    return versions


def resolve_threads(threads: int | None) -> int:
    """Return ``threads``, or torch's current intra-op thread count when it is None."""
    return torch.get_num_threads() if threads is None else threads


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Set torch's intra-op thread count for the block and restore the previous count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
