"""Independent reference computations for the distillation tests, written with plain loops and
NumPy so that they share no code with ``kdbench.distill``."""

from __future__ import annotations

import math

import numpy as np


def softmax(values: np.ndarray) -> np.ndarray:
    """Softmax of a 1-D array."""
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) of two 1-D probability vectors, by a loop."""
    return sum(p_i * (math.log(p_i) - math.log(q_i)) for p_i, q_i in zip(p, q, strict=True))


def bilinear_resize(maps: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Resize ``(B, C, h, w)`` to ``(B, C, out_h, out_w)`` with half-pixel centres (the
    ``align_corners=False`` convention): output pixel i samples source x = (i + 0.5) * h / out_h
    - 0.5, clamped at the border."""
    batch, channels, in_h, in_w = maps.shape
    out = np.zeros((batch, channels, out_h, out_w))
    for i in range(out_h):
        y = max((i + 0.5) * in_h / out_h - 0.5, 0.0)
        y0 = min(int(math.floor(y)), in_h - 1)
        y1 = min(y0 + 1, in_h - 1)
        wy = y - y0
        for j in range(out_w):
            x = max((j + 0.5) * in_w / out_w - 0.5, 0.0)
            x0 = min(int(math.floor(x)), in_w - 1)
            x1 = min(x0 + 1, in_w - 1)
            wx = x - x0
            out[:, :, i, j] = (
                (1 - wy) * (1 - wx) * maps[:, :, y0, x0]
                + (1 - wy) * wx * maps[:, :, y0, x1]
                + wy * (1 - wx) * maps[:, :, y1, x0]
                + wy * wx * maps[:, :, y1, x1]
            )
    return out
