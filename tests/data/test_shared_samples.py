"""NIfTI reader on the real CT samples beside the checkout (chd68-slices, chest-ct-3d)."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from kdbench.data import create_dataset


@pytest.fixture(scope="module")
def chd68(shared_data):
    return create_dataset("nifti", root=shared_data / "chd68-slices", image_size=64)


def test_chd68_slice_count(chd68):
    assert len(chd68) == 36


def test_chd68_shapes(chd68):
    assert chd68.images.shape == (36, 1, 64, 64)
    assert chd68.labels.shape == (36, 64, 64)


def test_chd68_value_ranges(chd68):
    assert chd68.images.dtype == np.float32
    assert chd68.images.min() >= 0.0
    assert chd68.images.max() <= 1.0
    assert chd68.labels.min() == 0
    assert chd68.labels.max() == 7


def test_chd68_class_names_from_labels_json(chd68, shared_data):
    table = json.loads((shared_data / "chd68-slices" / "labels.json").read_text())["labels"]
    expected = [table[key] for key in sorted(table, key=int)]

    assert chd68.class_names == expected
    assert chd68.num_classes == 8


def test_chd68_case_and_patient_ids(chd68, shared_data):
    files = sorted((shared_data / "chd68-slices" / "images").glob("*.nii.gz"))
    expected_cases = [path.name[: -len(".nii.gz")] for path in files]

    assert chd68.case_ids == expected_cases
    assert sorted(set(chd68.patient_ids)) == [f"100{n}" for n in range(1, 8)]


def test_chd68_labels_match_manifest_at_full_size(shared_data):
    folder = shared_data / "chd68-slices"
    with open(folder / "manifest.csv", newline="") as handle:
        present = {row["case"]: row["labels_present"] for row in csv.DictReader(handle)}

    slices = create_dataset("nifti", root=folder, image_size=512)

    for index, case_id in enumerate(slices.case_ids):
        found = " ".join(str(v) for v in np.unique(slices.labels[index]))
        assert found == present[case_id], case_id


def test_chest_ct_slices_along_axis_2(shared_data):
    slices = create_dataset(
        "nifti", root=shared_data / "chest-ct-3d", image_size=32, intensity="hu"
    )

    assert len(slices) == 164 + 112  # ts_aorta is 120x126x164, ts_pulmonary 122x102x112
    assert slices.case_ids.count("ts_aorta") == 164
    assert set(slices.patient_ids) == {"ts"}
    assert slices.class_names[2:] == ["aorta", "pulmonary_artery"]


def test_chest_ct_slices_along_axis_0(shared_data):
    slices = create_dataset(
        "nifti", root=shared_data / "chest-ct-3d", image_size=32, intensity="hu", slice_axis=0
    )

    assert len(slices) == 120 + 122


def source_blocks(volume_slice: np.ndarray, size: int, condition) -> tuple[int, int]:
    """Find an output pixel whose 4x4 source neighbourhood all meets ``condition``.

    Bilinear resizing with align_corners=False samples output pixel r at source coordinate
    (r + 0.5) * H / size - 0.5, so the output value is a weighted mean of source pixels within
    two pixels of it.
    """
    height, width = volume_slice.shape
    for row in range(size):
        source_row = int(np.floor((row + 0.5) * height / size - 0.5))
        for column in range(size):
            source_column = int(np.floor((column + 0.5) * width / size - 0.5))
            block = volume_slice[
                max(source_row - 1, 0) : source_row + 3,
                max(source_column - 1, 0) : source_column + 3,
            ]
            if np.all(condition(block)):
                return row, column
    raise AssertionError("no output pixel with a uniform source neighbourhood")


def test_chest_ct_hu_window_maps_ends(shared_data):
    folder = shared_data / "chest-ct-3d"
    volume = np.asanyarray(nib.load(folder / "images" / "ts_aorta.nii.gz").dataobj)
    middle = volume.shape[2] // 2
    air = source_blocks(volume[:, :, middle], 128, lambda block: block <= -200)
    bone = source_blocks(volume[:, :, middle], 128, lambda block: block >= 600)

    slices = create_dataset(
        "nifti", root=folder, image_size=128, intensity="hu", hu_window=(-200.0, 600.0)
    )

    assert slices.case_ids[middle] == "ts_aorta"
    assert slices.images[middle, 0][air] == pytest.approx(0.0, abs=1e-6)
    assert slices.images[middle, 0][bone] == pytest.approx(1.0, abs=1e-6)
