"""In-memory slice set: the one form in which every dataset reaches training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SliceSet:
    """Decoded, preprocessed 2D slices held in memory, so epochs do no file decoding.

    ``images`` is float32 ``(N, C, H, W)`` scaled to [0, 1]; ``labels`` is int64 ``(N, H, W)`` with
    values in ``0 .. len(class_names) - 1`` (0 is background). ``case_ids[i]`` names the source file
    (a 2D slice file, or a 3D volume that several slices were cut from), and metrics accumulate
    pixels per case. ``patient_ids[i]`` is the split unit: all slices of one patient land on one
    side.
    """

    images: np.ndarray
    labels: np.ndarray
    case_ids: list[str]
    patient_ids: list[str]
    class_names: list[str]
    source: str = ""  # folder or generator description, for the run record
    meta: dict = field(default_factory=dict)  # preprocessing settings, for the run record

    def __post_init__(self) -> None:
        n = len(self.images)
        if not (len(self.labels) == len(self.case_ids) == len(self.patient_ids) == n):
            raise ValueError(
                f"SliceSet fields disagree in length: images {n}, labels {len(self.labels)}, "
                f"case_ids {len(self.case_ids)}, patient_ids {len(self.patient_ids)}"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.class_names)

    def subset(self, indices: list[int] | np.ndarray) -> SliceSet:
        """Return the slices at ``indices`` (a copy of the selected rows)."""
        idx = np.asarray(indices, dtype=np.int64)
        return SliceSet(
            images=self.images[idx],
            labels=self.labels[idx],
            case_ids=[self.case_ids[i] for i in idx],
            patient_ids=[self.patient_ids[i] for i in idx],
            class_names=list(self.class_names),
            source=self.source,
            meta=dict(self.meta),
        )
