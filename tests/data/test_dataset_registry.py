"""Dataset registry: names, wildcards and errors for unknown names and options."""

from __future__ import annotations

import pytest

from kdbench.data import create_dataset, list_datasets
from kdbench.errors import ConfigError, UnknownNameError


def test_list_datasets_builtin():
    assert list_datasets() == ["nifti", "synthetic"]


def test_list_datasets_wildcard():
    assert list_datasets("syn*") == ["synthetic"]


def test_create_dataset_unknown_name():
    with pytest.raises(UnknownNameError) as info:
        create_dataset("synthtic")

    assert "synthetic" in str(info.value)


def test_create_dataset_unknown_option():
    with pytest.raises(ConfigError) as info:
        create_dataset("synthetic", imagesize=32)

    assert "imagesize" in str(info.value)


def test_create_dataset_missing_root():
    with pytest.raises(ConfigError) as info:
        create_dataset("nifti")

    assert "root" in str(info.value)


def test_create_dataset_synthetic_options():
    slices = create_dataset("synthetic", n_patients=3, slices_per_patient=2, image_size=16)

    assert slices.images.shape == (6, 1, 16, 16)
