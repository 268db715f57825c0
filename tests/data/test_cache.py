"""Dataset cache: a hit decodes no NIfTI file, and changed files or settings miss."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kdbench.data.nifti import load_nifti_folder
from kdbench.errors import DataError


def write_dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for case_id in ("p1_a", "p2_a", "p3_a"):
        image = rng.integers(-500, 800, size=(8, 8, 2)).astype(np.int16)
        label = rng.integers(0, 2, size=(8, 8, 2)).astype(np.uint8)
        for folder, array in (("images", image), ("labels", label)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, np.eye(4)), root / folder / f"{case_id}.nii.gz")
    (root / "labels.json").write_text(json.dumps({"labels": {"0": "background", "1": "heart"}}))
    return root


def corrupt_keeping_stat(path: Path) -> None:
    """Overwrite a file with zeros of the same size and restore its modification time."""
    stat = path.stat()
    path.write_bytes(b"\0" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_cache_hit_reads_no_nifti(tmp_path):
    root = write_dataset(tmp_path / "ds")
    cache = tmp_path / "cache"
    first = load_nifti_folder(root, image_size=8, cache_dir=cache)
    for path in (root / "images").iterdir():
        corrupt_keeping_stat(path)

    second = load_nifti_folder(root, image_size=8, cache_dir=cache)

    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)
    assert second.case_ids == first.case_ids
    assert second.patient_ids == first.patient_ids
    assert second.class_names == first.class_names
    assert second.meta == first.meta


def test_cache_corrupt_files_fail_without_cache(tmp_path):
    root = write_dataset(tmp_path / "ds")
    for path in (root / "images").iterdir():
        corrupt_keeping_stat(path)

    with pytest.raises(DataError):
        load_nifti_folder(root, image_size=8)


def test_cache_miss_after_file_change(tmp_path):
    root = write_dataset(tmp_path / "ds")
    cache = tmp_path / "cache"
    load_nifti_folder(root, image_size=8, cache_dir=cache)
    changed = root / "images" / "p1_a.nii.gz"
    corrupt_keeping_stat(changed)
    os.utime(changed, ns=(0, changed.stat().st_mtime_ns + 1_000_000_000))

    with pytest.raises(DataError) as info:
        load_nifti_folder(root, image_size=8, cache_dir=cache)

    assert "p1_a.nii.gz" in str(info.value)


def test_cache_one_entry_per_setting(tmp_path):
    root = write_dataset(tmp_path / "ds")
    cache = tmp_path / "cache"

    load_nifti_folder(root, image_size=8, cache_dir=cache)
    load_nifti_folder(root, image_size=4, cache_dir=cache)
    load_nifti_folder(root, image_size=8, cache_dir=cache)

    assert len(list(cache.glob("*.npz"))) == 2


def test_cache_unreadable_entry_is_rebuilt(tmp_path):
    root = write_dataset(tmp_path / "ds")
    cache = tmp_path / "cache"
    first = load_nifti_folder(root, image_size=8, cache_dir=cache)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(b"not an npz file")

    second = load_nifti_folder(root, image_size=8, cache_dir=cache)

    np.testing.assert_array_equal(second.images, first.images)
    assert np.load(entry)["images"].shape == first.images.shape
