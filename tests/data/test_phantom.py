"""Synthetic cardiac phantom: seeded, with every CHD68 structure somewhere in the default set."""

from __future__ import annotations

import numpy as np
import pytest

from kdbench.data import create_dataset
from kdbench.data.phantom import generate_phantom

EXPECTED_CLASSES = [
    "background",
    "left_ventricle",
    "right_ventricle",
    "left_atrium",
    "right_atrium",
    "myocardium",
    "aorta",
    "pulmonary_artery",
]


@pytest.fixture(scope="module")
def default_set():
    return create_dataset("synthetic")


def test_phantom_shapes_and_dtypes(default_set):
    assert default_set.images.shape == (72, 1, 128, 128)
    assert default_set.images.dtype == np.float32
    assert default_set.labels.shape == (72, 128, 128)
    assert default_set.labels.dtype == np.int64


def test_phantom_image_range(default_set):
    assert default_set.images.min() >= 0.0
    assert default_set.images.max() <= 1.0


def test_phantom_class_names(default_set):
    assert default_set.class_names == EXPECTED_CLASSES


def test_phantom_all_structures_present(default_set):
    assert set(np.unique(default_set.labels)) == set(range(8))


def test_phantom_structures_vary_by_slice(default_set):
    per_slice = [set(np.unique(labels)) for labels in default_set.labels]

    assert any(len(present) < 8 for present in per_slice)
    assert len({frozenset(present) for present in per_slice}) > 1


def test_phantom_ids(default_set):
    assert default_set.patient_ids[:7] == ["synth_p00"] * 6 + ["synth_p01"]
    assert default_set.case_ids[:2] == ["synth_p00_s0", "synth_p00_s1"]
    assert default_set.case_ids[-1] == "synth_p11_s5"
    assert len(set(default_set.case_ids)) == 72


def test_phantom_same_seed_identical():
    first = generate_phantom(n_patients=3, slices_per_patient=2, image_size=32, seed=4)
    second = generate_phantom(n_patients=3, slices_per_patient=2, image_size=32, seed=4)

    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)


def test_phantom_different_seed_differs():
    first = generate_phantom(n_patients=3, slices_per_patient=2, image_size=32, seed=4)
    second = generate_phantom(n_patients=3, slices_per_patient=2, image_size=32, seed=5)

    assert not np.array_equal(first.images, second.images)
    assert not np.array_equal(first.labels, second.labels)


def test_phantom_more_patients_keep_existing():
    small = generate_phantom(n_patients=2, slices_per_patient=3, image_size=32)
    large = generate_phantom(n_patients=4, slices_per_patient=3, image_size=32)

    np.testing.assert_array_equal(large.images[:6], small.images)
    np.testing.assert_array_equal(large.labels[:6], small.labels)


def test_phantom_noise_level():
    # Soft tissue at 40 HU sits inside the (-200, 600) window, so the pixel noise there is
    # noise_hu / 800 in [0, 1] units. The top-left body region far from the heart is soft tissue.
    slices = generate_phantom(n_patients=1, slices_per_patient=4, image_size=128, noise_hu=25.0)
    tissue = slices.images[:, 0][slices.labels == 0]
    tissue = tissue[np.abs(tissue - 240 / 800) < 0.15]

    assert np.std(tissue) == pytest.approx(25.0 / 800, rel=0.15)


def test_phantom_intensities_by_structure(default_set):
    blood = default_set.images[:, 0][default_set.labels == 1].mean()
    myocardium = default_set.images[:, 0][default_set.labels == 5].mean()

    assert blood > myocardium
