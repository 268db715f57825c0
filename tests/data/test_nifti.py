"""NIfTI folder reader on small files written into tmp_path: values, slicing, labels, errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kdbench.data.nifti import load_nifti_folder
from kdbench.errors import DataError

LABELS = {"0": "background", "1": "aorta", "2": "pulmonary_artery"}


def write_nifti(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)


def write_dataset(
    root: Path, cases: dict[str, tuple[np.ndarray, np.ndarray]], labels: dict | None = None
) -> Path:
    for case_id, (image, label) in cases.items():
        write_nifti(root / "images" / f"{case_id}.nii.gz", image)
        write_nifti(root / "labels" / f"{case_id}.nii.gz", label)
    (root / "labels.json").write_text(json.dumps({"labels": labels or LABELS}))
    return root


def ramp_slice(size: int = 16, offset: int = 0) -> np.ndarray:
    """Return an int16 (size, size, 1) image whose voxel (i, j) is offset + 3 * i + j."""
    rows, columns = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return (offset + 3 * rows + columns).astype(np.int16)[:, :, None]


def half_label(size: int = 16, value: int = 1) -> np.ndarray:
    """Return a uint8 (size, size, 1) label map with ``value`` in the top half, 0 below."""
    label = np.zeros((size, size, 1), np.uint8)
    label[: size // 2] = value
    return label


def test_reader_2d_shapes_and_dtypes(tmp_path):
    root = write_dataset(tmp_path / "ds", {"p1_a": (ramp_slice(), half_label())})

    slices = load_nifti_folder(root, image_size=16)

    assert slices.images.shape == (1, 1, 16, 16)
    assert slices.images.dtype == np.float32
    assert slices.labels.shape == (1, 16, 16)
    assert slices.labels.dtype == np.int64


def test_reader_2d_minmax_exact(tmp_path):
    image = ramp_slice(offset=-50)
    root = write_dataset(tmp_path / "ds", {"p1_a": (image, half_label())})

    slices = load_nifti_folder(root, image_size=16, intensity="minmax")

    raw = image[:, :, 0].astype(np.float64)
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    assert slices.images[0, 0, 0, 0] == 0.0
    assert slices.images[0, 0, 15, 15] == 1.0
    np.testing.assert_allclose(slices.images[0, 0], expected, atol=1e-6)


def test_reader_2d_labels_survive(tmp_path):
    label = half_label(value=2)
    root = write_dataset(tmp_path / "ds", {"p1_a": (ramp_slice(), label)})

    slices = load_nifti_folder(root, image_size=16)

    np.testing.assert_array_equal(slices.labels[0], label[:, :, 0])


def test_reader_class_names_from_labels_json(tmp_path):
    root = write_dataset(tmp_path / "ds", {"p1_a": (ramp_slice(), half_label())})

    slices = load_nifti_folder(root, image_size=16)

    assert slices.class_names == ["background", "aorta", "pulmonary_artery"]


def test_reader_2d_file_without_third_axis(tmp_path):
    root = write_dataset(tmp_path / "ds", {"p1_a": (ramp_slice()[:, :, 0], half_label()[:, :, 0])})

    slices = load_nifti_folder(root, image_size=16)

    assert slices.images.shape == (1, 1, 16, 16)


def test_reader_3d_slices_along_axis_2(tmp_path):
    i, j, k = np.meshgrid(np.arange(16), np.arange(16), np.arange(5), indexing="ij")
    volume = (i + 16 * j + 256 * k).astype(np.int16)
    label = (k % 3).astype(np.uint8)
    root = write_dataset(tmp_path / "ds", {"vol": (volume, label)})

    slices = load_nifti_folder(root, image_size=16, intensity="minmax")

    expected_voxel = (3 + 16 * 7 + 256 * 2) / volume.max()
    assert slices.images.shape == (5, 1, 16, 16)
    assert slices.images[2, 0, 3, 7] == pytest.approx(expected_voxel, abs=1e-6)
    assert slices.labels[4, 0, 0] == 4 % 3


def test_reader_3d_minmax_over_whole_volume(tmp_path):
    volume = np.zeros((8, 8, 3), np.int16)
    volume[:, :, 0] = 100
    volume[:, :, 2] = 300
    root = write_dataset(tmp_path / "ds", {"vol": (volume, np.zeros((8, 8, 3), np.uint8))})

    slices = load_nifti_folder(root, image_size=8, intensity="minmax")

    assert slices.images[0, 0, 0, 0] == pytest.approx(100 / 300)
    assert slices.images[1, 0, 0, 0] == 0.0
    assert slices.images[2, 0, 0, 0] == 1.0


def test_reader_3d_slices_along_axis_0(tmp_path):
    i, j, k = np.meshgrid(np.arange(4), np.arange(8), np.arange(8), indexing="ij")
    volume = (i + 4 * j + 32 * k).astype(np.int16)
    root = write_dataset(tmp_path / "ds", {"vol": (volume, np.zeros(volume.shape, np.uint8))})

    slices = load_nifti_folder(root, image_size=8, slice_axis=0)

    expected_voxel = (1 + 4 * 5 + 32 * 6) / volume.max()  # voxel (1, 5, 6) is slice 1, row 5, col 6
    assert slices.images.shape == (4, 1, 8, 8)
    assert slices.images[1, 0, 5, 6] == pytest.approx(expected_voxel, abs=1e-6)


def test_reader_3d_case_id_on_every_slice(tmp_path):
    volume = np.zeros((8, 8, 3), np.int16)
    root = write_dataset(tmp_path / "ds", {"ts_aorta": (volume, np.zeros(volume.shape, np.uint8))})

    slices = load_nifti_folder(root, image_size=8)

    assert slices.case_ids == ["ts_aorta"] * 3
    assert slices.patient_ids == ["ts"] * 3


def test_reader_hu_window_ends(tmp_path):
    image = np.array([[-1000, -200], [200, 600]], np.int16)[:, :, None]
    root = write_dataset(tmp_path / "ds", {"p1_a": (image, np.zeros((2, 2, 1), np.uint8))})

    slices = load_nifti_folder(root, image_size=2, intensity="hu", hu_window=(-200, 600))

    assert slices.images[0, 0, 0, 0] == 0.0
    assert slices.images[0, 0, 0, 1] == 0.0
    assert slices.images[0, 0, 1, 0] == 0.5
    assert slices.images[0, 0, 1, 1] == 1.0


def test_reader_resize_shapes_and_nearest_labels(tmp_path):
    root = write_dataset(tmp_path / "ds", {"p1_a": (ramp_slice(16), half_label(16))})

    slices = load_nifti_folder(root, image_size=8)

    expected_labels = np.zeros((8, 8), np.int64)
    expected_labels[:4] = 1
    assert slices.images.shape == (1, 1, 8, 8)
    assert slices.images.min() >= 0.0
    assert slices.images.max() <= 1.0
    np.testing.assert_array_equal(slices.labels[0], expected_labels)


def test_reader_remaps_values_to_contiguous_classes(tmp_path):
    label = np.zeros((4, 4, 1), np.uint8)
    label[0] = 7
    label[1] = 3
    table = {"0": "background", "3": "left_atrium", "7": "pulmonary_artery"}
    root = write_dataset(tmp_path / "ds", {"p1_a": (ramp_slice(4), label)}, labels=table)

    slices = load_nifti_folder(root, image_size=4)

    assert slices.class_names == ["background", "left_atrium", "pulmonary_artery"]
    assert slices.labels[0, 0, 0] == 2
    assert slices.labels[0, 1, 0] == 1
    assert slices.meta["label_to_class"] == {"0": 0, "3": 1, "7": 2}


def test_reader_classes_keeps_selected_values(tmp_path):
    label = np.zeros((4, 4, 1), np.uint8)
    label[0] = 1
    label[1] = 2
    root = write_dataset(tmp_path / "ds", {"p1_a": (ramp_slice(4), label)})

    slices = load_nifti_folder(root, image_size=4, classes=[2])

    assert slices.class_names == ["background", "pulmonary_artery"]
    assert slices.labels[0, 0, 0] == 0
    assert slices.labels[0, 1, 0] == 1


def test_reader_skip_empty_slices(tmp_path):
    label = np.zeros((8, 8, 4), np.uint8)
    label[2, 2, 1] = 1
    label[3, 3, 3] = 2
    root = write_dataset(tmp_path / "ds", {"vol": (np.zeros((8, 8, 4), np.int16), label)})

    slices = load_nifti_folder(root, image_size=8, skip_empty_slices=True)

    assert len(slices) == 2
    assert slices.labels[0, 2, 2] == 1
    assert slices.labels[1, 3, 3] == 2


def test_reader_patient_pattern(tmp_path):
    cases = {name: (ramp_slice(4), half_label(4)) for name in ("p1_a", "p1_b", "solo", "p2_a")}
    root = write_dataset(tmp_path / "ds", cases)

    default = load_nifti_folder(root, image_size=4)
    custom = load_nifti_folder(root, image_size=4, patient_pattern=r"^(p\d)")

    assert default.case_ids == ["p1_a", "p1_b", "p2_a", "solo"]
    assert default.patient_ids == ["p1", "p1", "p2", "solo"]
    assert custom.patient_ids == ["p1", "p1", "p2", "solo"]


def test_reader_uncompressed_nii(tmp_path):
    root = tmp_path / "ds"
    write_nifti(root / "images" / "p1_a.nii", ramp_slice(4))
    write_nifti(root / "labels" / "p1_a.nii", half_label(4))
    (root / "labels.json").write_text(json.dumps({"labels": LABELS}))

    slices = load_nifti_folder(root, image_size=4)

    assert slices.case_ids == ["p1_a"]


# Errors: each raises DataError whose message names the offending path or value.


def valid_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "ds", {"p1_a": (ramp_slice(8), half_label(8))})


def test_error_missing_root(tmp_path):
    missing = tmp_path / "nowhere"

    with pytest.raises(DataError) as info:
        load_nifti_folder(missing)

    assert str(missing) in str(info.value)
    assert "--data-root" in str(info.value)
    assert "KDBENCH_DATA_ROOT" in str(info.value)


@pytest.mark.parametrize("folder", ["images", "labels"])
def test_error_missing_folder(tmp_path, folder):
    root = valid_dataset(tmp_path)
    for path in (root / folder).iterdir():
        path.unlink()
    (root / folder).rmdir()

    with pytest.raises(DataError) as info:
        load_nifti_folder(root)

    assert str(root / folder) in str(info.value)


def test_error_missing_labels_json(tmp_path):
    root = valid_dataset(tmp_path)
    (root / "labels.json").unlink()

    with pytest.raises(DataError) as info:
        load_nifti_folder(root)

    assert "labels.json" in str(info.value)


def test_error_labels_json_without_labels_key(tmp_path):
    root = valid_dataset(tmp_path)
    (root / "labels.json").write_text(json.dumps({"names": LABELS}))

    with pytest.raises(DataError) as info:
        load_nifti_folder(root)

    assert "labels.json" in str(info.value)
    assert '"labels"' in str(info.value)


def test_error_image_without_label(tmp_path):
    root = valid_dataset(tmp_path)
    write_nifti(root / "images" / "orphan_1.nii.gz", ramp_slice(8))

    with pytest.raises(DataError) as info:
        load_nifti_folder(root)

    assert "orphan_1.nii.gz" in str(info.value)


def test_error_label_without_image(tmp_path):
    root = valid_dataset(tmp_path)
    write_nifti(root / "labels" / "orphan_2.nii.gz", half_label(8))

    with pytest.raises(DataError) as info:
        load_nifti_folder(root)

    assert "orphan_2.nii.gz" in str(info.value)


def test_error_shape_mismatch(tmp_path):
    root = write_dataset(tmp_path / "ds", {"p1_bad": (ramp_slice(8), half_label(6))})

    with pytest.raises(DataError) as info:
        load_nifti_folder(root)

    assert "p1_bad.nii.gz" in str(info.value)
    assert "(8, 8, 1)" in str(info.value)
    assert "(6, 6, 1)" in str(info.value)


def test_error_label_value_not_in_labels_json(tmp_path):
    label = half_label(8, value=9)
    root = write_dataset(tmp_path / "ds", {"p1_odd": (ramp_slice(8), label)})

    with pytest.raises(DataError) as info:
        load_nifti_folder(root)

    assert "p1_odd.nii.gz" in str(info.value)
    assert "[9]" in str(info.value)


@pytest.mark.parametrize("window", [(600.0, -200.0), (0.0, 0.0), (float("nan"), 1.0), (1.0,)])
def test_error_invalid_hu_window(tmp_path, window):
    root = valid_dataset(tmp_path)

    with pytest.raises(DataError) as info:
        load_nifti_folder(root, intensity="hu", hu_window=window)

    assert repr(window) in str(info.value)


def test_error_unknown_intensity(tmp_path):
    root = valid_dataset(tmp_path)

    with pytest.raises(DataError) as info:
        load_nifti_folder(root, intensity="auto")

    assert "'auto'" in str(info.value)


def test_error_no_cases(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "labels.json").write_text(json.dumps({"labels": LABELS}))

    with pytest.raises(DataError) as info:
        load_nifti_folder(root)

    assert str(root / "images") in str(info.value)


def test_error_unknown_class_value(tmp_path):
    root = valid_dataset(tmp_path)

    with pytest.raises(DataError) as info:
        load_nifti_folder(root, classes=[1, 42])

    assert "[42]" in str(info.value)


def test_error_pattern_without_group(tmp_path):
    root = valid_dataset(tmp_path)

    with pytest.raises(DataError) as info:
        load_nifti_folder(root, patient_pattern=r"^p\d")

    assert "'^p\\\\d'" in str(info.value)
