"""Patient-level splits: whole patients per side, counts by largest remainder, seeded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kdbench.data import SliceSet, split_by_patient, write_split
from kdbench.errors import ConfigError, DataError


def patients_with_slices(n_patients: int, slices_each: int = 3) -> list[str]:
    """Return interleaved patient ids, p0 p1 ... p0 p1 ..., so slices of a patient are apart."""
    return [f"p{p}" for _ in range(slices_each) for p in range(n_patients)]


def patients_on(split: dict[str, list[int]], patient_ids: list[str]) -> dict[str, set[str]]:
    return {side: {patient_ids[i] for i in indices} for side, indices in split.items()}


def test_split_no_patient_on_two_sides():
    patient_ids = patients_with_slices(10)

    sides = patients_on(split_by_patient(patient_ids, seed=3), patient_ids)

    assert not sides["train"] & sides["val"]
    assert not sides["train"] & sides["test"]
    assert not sides["val"] & sides["test"]


def test_split_covers_every_index_once():
    patient_ids = patients_with_slices(10)

    split = split_by_patient(patient_ids, seed=3)

    all_indices = split["train"] + split["val"] + split["test"]
    assert sorted(all_indices) == list(range(len(patient_ids)))


def test_split_indices_ascending():
    split = split_by_patient(patients_with_slices(10), seed=3)

    for side, indices in split.items():
        assert indices == sorted(indices), side


def test_split_fractions_respected():
    patient_ids = patients_with_slices(10)

    sides = patients_on(split_by_patient(patient_ids), patient_ids)

    assert len(sides["train"]) == 6
    assert len(sides["val"]) == 2
    assert len(sides["test"]) == 2


def test_split_largest_remainder_rounding():
    # 7 patients at 0.6/0.2/0.2: ideal 4.2/1.4/1.4, floors 4/1/1, the one left over goes to
    # val (remainder 0.4 ties with test, and val comes first).
    patient_ids = patients_with_slices(7)

    sides = patients_on(split_by_patient(patient_ids), patient_ids)

    assert [len(sides[side]) for side in ("train", "val", "test")] == [4, 2, 1]


def test_split_three_patients_one_per_side():
    patient_ids = patients_with_slices(3)
    fractions = {"train": 0.8, "val": 0.1, "test": 0.1}

    sides = patients_on(split_by_patient(patient_ids, fractions), patient_ids)

    assert [len(sides[side]) for side in ("train", "val", "test")] == [1, 1, 1]


def test_split_custom_fractions():
    patient_ids = patients_with_slices(20)
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}

    sides = patients_on(split_by_patient(patient_ids, fractions), patient_ids)

    assert [len(sides[side]) for side in ("train", "val", "test")] == [10, 5, 5]


def test_split_deterministic_per_seed():
    patient_ids = patients_with_slices(20)

    assert split_by_patient(patient_ids, seed=7) == split_by_patient(patient_ids, seed=7)


def test_split_seed_changes_assignment():
    patient_ids = patients_with_slices(20)

    assert split_by_patient(patient_ids, seed=0) != split_by_patient(patient_ids, seed=1)


def test_split_independent_of_slice_order():
    patient_ids = patients_with_slices(8)
    grouped = sorted(patient_ids)

    interleaved = patients_on(split_by_patient(patient_ids, seed=5), patient_ids)
    sorted_order = patients_on(split_by_patient(grouped, seed=5), grouped)

    assert interleaved == sorted_order


def test_split_too_few_patients():
    with pytest.raises(DataError) as info:
        split_by_patient(["a", "a", "b"])

    assert "got 2" in str(info.value)


@pytest.mark.parametrize(
    "fractions",
    [
        {"train": 0.6, "val": 0.2},
        {"train": 0.6, "val": 0.2, "test": 0.3},
        {"train": 1.0, "val": 0.0, "test": 0.0},
        {"train": 0.6, "valid": 0.2, "test": 0.2},
    ],
)
def test_split_invalid_fractions(fractions):
    with pytest.raises(ConfigError):
        split_by_patient(patients_with_slices(5), fractions)


def test_write_split_json(tmp_path):
    slice_set = SliceSet(
        images=np.zeros((6, 1, 4, 4), np.float32),
        labels=np.zeros((6, 4, 4), np.int64),
        case_ids=["b_1", "b_1", "a_1", "c_1", "c_2", "d_1"],
        patient_ids=["b", "b", "a", "c", "c", "d"],
        class_names=["background", "heart"],
    )
    split = {"train": [0, 1, 3, 4], "val": [2], "test": [5]}
    path = tmp_path / "run" / "split.json"

    write_split(path, split, slice_set)

    record = json.loads(path.read_text())
    assert record["train"] == ["b_1", "c_1", "c_2"]
    assert record["val"] == ["a_1"]
    assert record["test"] == ["d_1"]
    assert record["patients"] == {"train": ["b", "c"], "val": ["a"], "test": ["d"]}
    assert record["slices"] == {"train": 4, "val": 1, "test": 1}
