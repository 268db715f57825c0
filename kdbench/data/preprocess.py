"""Intensity scaling, slicing and resizing shared by the dataset readers.

All functions are pure: they take arrays and return new arrays, so each step can be tested alone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

INTENSITY_MODES = ("hu", "minmax")


def window_hu(volume: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip Hounsfield units to the window ``[low, high]`` and scale it linearly to [0, 1].

    ``low`` maps to 0 and ``high`` to 1. Returns float32 of the input's shape. The caller
    checks that ``low < high``.
    """
    clipped = np.clip(volume.astype(np.float32), low, high)
    return (clipped - np.float32(low)) / np.float32(high - low)


def scale_minmax(volume: np.ndarray) -> np.ndarray:
    """Scale a whole case linearly so that its minimum is 0 and its maximum is 1.

    Returns float32 of the input's shape. A constant case has no range to scale, so it maps to
    all zeros.
    """
    values = volume.astype(np.float32)
    low = values.min()
    value_range = values.max() - low
    if value_range == 0:
        return np.zeros_like(values)
    return (values - low) / value_range


def volume_to_slices(volume: np.ndarray, slice_axis: int) -> np.ndarray:
    """Cut a 3D array into 2D slices along ``slice_axis``: ``(I, J, K)`` to ``(S, A, B)``.

    The two remaining axes keep their order, so for ``slice_axis=2`` voxel ``(i, j, k)`` lands in
    slice ``k`` at row ``i``, column ``j``. Returns a view, not a copy.
    """
    return np.moveaxis(volume, slice_axis, 0)


def resize_slices(
    images: np.ndarray, labels: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resize slices to ``size x size`` with torch.nn.functional.interpolate.

    ``images`` float32 ``(S, H, W)`` in [0, 1] becomes ``(S, 1, size, size)``: bilinear with
    ``align_corners=False`` and ``antialias=True``, so that downsizing 512 to 128 averages over
    the source pixels instead of sampling noise. ``labels`` integer ``(S, H, W)`` becomes int64
    ``(S, size, size)`` by ``nearest-exact``, which samples at pixel centres like the bilinear
    grid (plain ``nearest`` is shifted by half a source pixel). Slices already at ``size x size``
    are returned unchanged, so their values are exact. The aspect ratio is not preserved.
    """
    if images.shape[1:] == (size, size):
        return images[:, None].astype(np.float32, copy=False), labels.astype(np.int64, copy=False)

    image_tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    resized = F.interpolate(
        image_tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    resized_images = np.clip(resized.numpy(), 0.0, 1.0)

    label_tensor = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))[:, None]
    resized_labels = F.interpolate(label_tensor, size=(size, size), mode="nearest-exact")
    # Nearest-neighbour output copies input values, so the small integers convert back exactly.
    return resized_images, resized_labels[:, 0].to(torch.int64).numpy()
