"""Seeding and determinism for repeatable cells."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch; with ``deterministic``, ask torch for deterministic kernels.

    On CPU this makes a cell bitwise repeatable for a given torch build and thread count. On CUDA
    some kernels have no deterministic version; torch then warns instead of failing.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
