"""Patient-level train/val/test splits, so that no patient's slices land on two sides."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from kdbench.data.base import SliceSet
from kdbench.errors import ConfigError, DataError

SIDES = ("train", "val", "test")
DEFAULT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def split_by_patient(
    patient_ids: Sequence[str],
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
) -> dict[str, list[int]]:
    """Assign whole patients to train, val and test and return the slice indices of each side.

    ``patient_ids[i]`` is the patient of slice ``i``. The sorted unique patient ids are shuffled
    with ``numpy.random.default_rng(seed)``; the first ``n_train`` go to train, the next ``n_val``
    to val and the rest to test. Indices within a side are ascending, and every index appears on
    exactly one side.

    Patient counts come from ``fractions`` (default 0.6 / 0.2 / 0.2 under the keys ``train``,
    ``val``, ``test``) by largest remainder. Each side gets ``floor(f * n)`` patients. The
    patients left over go one each to the sides with the largest fractional parts, and ties go
    in the order train, val, test. A side that still has no patient then takes one from the
    side with the most patients, so all three sides are non-empty. Fractions split patients,
    not slices, so slice proportions differ when patients have different slice counts.

    Raises DataError for fewer than 3 patients and ConfigError for invalid fractions.
    """
    fractions = _validate_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    patients = sorted(set(patient_ids))
    if len(patients) < 3:
        raise DataError(
            f"a patient-level split needs at least 3 patients (one per side), got "
            f"{len(patients)}: {patients}. Add data, or check the patient id pattern."
        )

    counts = _patient_counts(len(patients), fractions)
    order = np.random.default_rng(seed).permutation(len(patients))
    shuffled = [patients[i] for i in order]

    side_of_patient: dict[str, str] = {}
    start = 0
    for side in SIDES:
        for patient in shuffled[start : start + counts[side]]:
            side_of_patient[patient] = side
        start += counts[side]

    split: dict[str, list[int]] = {side: [] for side in SIDES}
    for index, patient in enumerate(patient_ids):
        split[side_of_patient[patient]].append(index)
    return split


def split_case_ids(split: Mapping[str, Sequence[int]], slice_set: SliceSet) -> dict[str, list[str]]:
    """Return the sorted unique case ids on each side of ``split``, a map to slice indices."""
    return {
        side: sorted({slice_set.case_ids[i] for i in indices}) for side, indices in split.items()
    }


def write_split(path: str | Path, split: Mapping[str, Sequence[int]], slice_set: SliceSet) -> None:
    """Write a split as JSON: case ids, patients and slice counts per side.

    Layout: ``{"train": [case ids], "val": [...], "test": [...], "patients": {side: [patient
    ids]}, "slices": {side: count}}``, all lists sorted. The file is written to a temporary name
    and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    record: dict = split_case_ids(split, slice_set)
    record["patients"] = {
        side: sorted({slice_set.patient_ids[i] for i in indices}) for side, indices in split.items()
    }
    record["slices"] = {side: len(indices) for side, indices in split.items()}

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _validate_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    if set(fractions) != set(SIDES):
        raise ConfigError(
            f"split fractions need exactly the keys {list(SIDES)}, got {sorted(fractions)}"
        )
    checked = {side: float(fractions[side]) for side in SIDES}
    for side, value in checked.items():
        if not (math.isfinite(value) and 0.0 < value < 1.0):
            raise ConfigError(
                f"split fraction '{side}' must be between 0 and 1 (exclusive), got {value}"
            )
    total = sum(checked.values())
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must sum to 1, got {total} from {checked}")
    return checked


def _patient_counts(n_patients: int, fractions: dict[str, float]) -> dict[str, int]:
    ideal = {side: fractions[side] * n_patients for side in SIDES}
    counts = {side: math.floor(ideal[side]) for side in SIDES}

    leftover = n_patients - sum(counts.values())
    by_remainder = sorted(SIDES, key=lambda side: -(ideal[side] - counts[side]))
    for side in by_remainder[:leftover]:
        counts[side] += 1

    for side in SIDES:
        if counts[side] == 0:
            donor = max(SIDES, key=lambda other: counts[other])
            counts[donor] -= 1
            counts[side] += 1
    return counts
