"""Intensity scaling and resizing helpers."""

from __future__ import annotations

import numpy as np

from kdbench.data.preprocess import resize_slices, scale_minmax, window_hu


def test_window_hu_known_values():
    hu = np.array([-1000.0, -200.0, 200.0, 600.0, 3000.0])

    np.testing.assert_array_equal(window_hu(hu, -200.0, 600.0), [0.0, 0.0, 0.5, 1.0, 1.0])


def test_scale_minmax_known_values():
    values = np.array([[10, 20], [30, 50]], np.int16)

    np.testing.assert_allclose(scale_minmax(values), [[0.0, 0.25], [0.5, 1.0]])


def test_scale_minmax_constant_is_zero():
    np.testing.assert_array_equal(scale_minmax(np.full((3, 3), 7.0)), np.zeros((3, 3)))


def test_resize_slices_constant_image_stays_constant():
    images = np.full((2, 12, 20), 0.25, np.float32)
    labels = np.ones((2, 12, 20), np.int64)

    resized_images, resized_labels = resize_slices(images, labels, 8)

    np.testing.assert_allclose(resized_images, np.full((2, 1, 8, 8), 0.25), atol=1e-6)
    np.testing.assert_array_equal(resized_labels, np.ones((2, 8, 8)))


def test_resize_slices_nearest_labels_sample_centres():
    # Downsizing 8 -> 4 with nearest-exact takes source column 2 * c + 1 (the centre rounds up).
    labels = np.tile(np.arange(8), (8, 1))[None]
    images = np.zeros((1, 8, 8), np.float32)

    _, resized_labels = resize_slices(images, labels, 4)

    np.testing.assert_array_equal(resized_labels[0, 0], [1, 3, 5, 7])
