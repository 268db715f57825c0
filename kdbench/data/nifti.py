"""NIfTI folder reader: 2D slice files or 3D volumes with label maps, cut into 2D slices.

Folder layout::

    ROOT/images/<case>.nii.gz     image: a 2D slice (H, W) or (H, W, 1), or a 3D volume (I, J, K)
    ROOT/labels/<case>.nii.gz     integer label map of the same shape
    ROOT/labels.json              {"labels": {"0": "background", "1": "left_ventricle", ...}}

Uncompressed ``.nii`` files are read too. Voxel axes are used as stored: the affine is not
applied and volumes are not reoriented to a canonical orientation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from kdbench.data import register_dataset
from kdbench.data.base import SliceSet
from kdbench.data.cache import cache_key, load_cached, save_cached
from kdbench.data.preprocess import (
    INTENSITY_MODES,
    resize_slices,
    scale_minmax,
    volume_to_slices,
    window_hu,
)
from kdbench.errors import DataError

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ROOT_HINT = "Set the dataset path with --data-root or the KDBENCH_DATA_ROOT environment variable."


@dataclass(frozen=True)
class _Case:
    case_id: str
    image_path: Path
    label_path: Path


@dataclass(frozen=True)
class _LabelTable:
    """Label values kept as classes, their names, and the class index of every known value."""

    known_values: np.ndarray  # sorted label values listed in labels.json
    class_of_value: np.ndarray  # class index per entry of known_values (0 for values not kept)
    kept_values: list[int]
    class_names: list[str]


@register_dataset("nifti")
def load_nifti_folder(
    root: str | Path,
    image_size: int = 128,
    intensity: str = "minmax",
    hu_window: Sequence[float] = (-200.0, 600.0),
    slice_axis: int = 2,
    patient_pattern: str = r"^([^_]+)_",
    classes: Sequence[int] | None = None,
    skip_empty_slices: bool = False,
    cache_dir: str | Path | None = None,
) -> SliceSet:
    """Read a NIfTI folder into a :class:`SliceSet` of ``image_size x image_size`` slices.

    Args:
        root: folder with ``images/``, ``labels/`` and ``labels.json``.
        image_size: output height and width in pixels.
        intensity: ``"hu"`` clips Hounsfield units to ``hu_window`` and scales the window to
            [0, 1]. ``"minmax"`` scales each case (a whole volume, or one slice file) from its
            minimum to its maximum, for images that are not in Hounsfield units such as 8-bit
            slices. The mode is never guessed from the data.
        hu_window: ``(low, high)`` in HU for ``intensity="hu"``. The default (-200, 600) is
            window width 800 at level 200, which covers contrast-filled blood, myocardium and
            soft tissue.
        slice_axis: axis along which 3D volumes are cut. For axis 2, voxel ``(i, j, k)`` becomes
            row ``i``, column ``j`` of slice ``k``. A file of shape ``(H, W)`` or ``(H, W, 1)``
            is one slice whatever the axis.
        patient_pattern: regular expression searched in each case id. Group 1 is the patient id.
            A case id that does not match is its own patient.
        classes: label values to keep as classes, default all values in ``labels.json``. Value
            0 is always kept as background, and values not kept become background.
        skip_empty_slices: drop slices whose label map is all background after the class
            selection.
        cache_dir: folder for a cache of the decoded, resized arrays. A process that finds an
            entry there (keyed by the file names, sizes and modification times, the label table
            and these settings) reads one ``.npz`` and decodes no NIfTI file.

    Returns:
        Images float32 ``(N, 1, image_size, image_size)`` in [0, 1] and labels int64
        ``(N, image_size, image_size)`` with classes ``0 .. K-1`` in the sorted order of the
        kept label values. ``case_ids`` are file names without the suffix, repeated for every
        slice of a volume. ``meta`` records the settings and the label value to class mapping.

    Raises:
        DataError: for a missing or inconsistent folder, file, label table or setting. The
            message names the path or value and what to do.
    """
    window = _validate_settings(image_size, intensity, hu_window, slice_axis)
    pattern = _compile_patient_pattern(patient_pattern)
    root = Path(root).expanduser()
    _check_layout(root)
    labels_json = root / "labels.json"
    table = _read_label_table(labels_json, classes)
    cases = _pair_cases(root)

    settings = {
        "reader": "nifti",
        "root": str(root.resolve()),
        "image_size": int(image_size),
        "intensity": intensity,
        "hu_window": list(window) if intensity == "hu" else None,
        "slice_axis": slice_axis,
        "patient_pattern": patient_pattern,
        "label_values": table.kept_values,
        "skip_empty_slices": skip_empty_slices,
    }
    cache_path = None
    if cache_dir is not None:
        labels_digest = hashlib.sha256(labels_json.read_bytes()).hexdigest()
        files = [path for case in cases for path in (case.image_path, case.label_path)]
        key = cache_key(files, {**settings, "labels_json_sha256": labels_digest})
        cache_path = Path(cache_dir).expanduser() / f"nifti-{root.resolve().name}-{key}.npz"
        cached = load_cached(cache_path)
        if cached is not None:
            logger.info("loaded %d slices of %s from cache %s", len(cached), root, cache_path)
            return cached

    started = time.perf_counter()
    slice_set = _decode_cases(cases, table, pattern, settings, window)
    logger.info(
        "decoded %d slices from %d cases in %s in %.2f s",
        len(slice_set),
        len(cases),
        root,
        time.perf_counter() - started,
    )
    if cache_path is not None:
        save_cached(cache_path, slice_set)
        logger.info("wrote dataset cache %s", cache_path)
    return slice_set


def _validate_settings(
    image_size: int, intensity: str, hu_window: Sequence[float], slice_axis: int
) -> tuple[float, float]:
    if intensity not in INTENSITY_MODES:
        raise DataError(
            f"unknown intensity mode '{intensity}'. Use 'hu' for images in Hounsfield units "
            f"or 'minmax' for other images (for example 8-bit slices)."
        )
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or image_size < 1
    ):
        raise DataError(f"image_size must be a positive integer (pixels), got {image_size!r}")
    if slice_axis not in (0, 1, 2):
        raise DataError(f"slice_axis must be 0, 1 or 2, got {slice_axis!r}")

    try:
        low, high = (float(value) for value in hu_window)
    except (TypeError, ValueError):
        raise DataError(
            f"invalid hu_window {hu_window!r}: give two numbers (low, high) in HU, "
            f"for example (-200, 600)"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise DataError(
            f"invalid hu_window {hu_window!r}: low and high must be finite with low < high, "
            f"for example (-200, 600)"
        )
    return low, high


def _compile_patient_pattern(patient_pattern: str) -> re.Pattern:
    try:
        pattern = re.compile(patient_pattern)
    except re.error as error:
        raise DataError(f"invalid patient_pattern {patient_pattern!r}: {error}") from None
    if pattern.groups < 1:
        raise DataError(
            f"patient_pattern {patient_pattern!r} has no capturing group. Add one that "
            f"captures the patient id, for example r'^([^_]+)_'"
        )
    return pattern


def _check_layout(root: Path) -> None:
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}. {ROOT_HINT}")
    for name in ("images", "labels"):
        if not (root / name).is_dir():
            raise DataError(
                f"missing folder {root / name}: a NIfTI dataset needs images/ and labels/ "
                f"folders with one <case>.nii.gz per case."
            )
    if not (root / "labels.json").is_file():
        raise DataError(
            f"missing label table {root / 'labels.json'}: create it with "
            f'{{"labels": {{"0": "background", "1": "<structure>", ...}}}}'
        )


def _read_label_table(path: Path, classes: Sequence[int] | None) -> _LabelTable:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"failed to read label table {path}: {error}") from None
    entries = document.get("labels") if isinstance(document, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise DataError(
            f'label table {path} has no "labels" object; add one mapping each label value '
            f'to a name, for example {{"labels": {{"0": "background", "1": "aorta"}}}}'
        )

    names: dict[int, str] = {}
    for key, name in entries.items():
        try:
            names[int(key)] = str(name)
        except ValueError:
            raise DataError(
                f"label table {path}: key {key!r} is not an integer label value"
            ) from None
    if 0 not in names:
        raise DataError(f'label table {path} has no value "0"; add "0": "background"')

    if classes is None:
        kept = sorted(names)
    else:
        unknown = sorted({int(value) for value in classes} - set(names))
        if unknown:
            raise DataError(
                f"classes {unknown} are not in label table {path}; known values: {sorted(names)}"
            )
        kept = sorted({0, *(int(value) for value in classes)})

    known_values = np.array(sorted(names), dtype=np.int64)
    class_index = {value: index for index, value in enumerate(kept)}
    class_of_value = np.array([class_index.get(v, 0) for v in known_values], dtype=np.int64)
    return _LabelTable(
        known_values=known_values,
        class_of_value=class_of_value,
        kept_values=kept,
        class_names=[names[value] for value in kept],
    )


def _case_id(path: Path) -> str | None:
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _list_nifti(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        case_id = _case_id(path)
        if case_id is None or not path.is_file():
            continue
        if case_id in found:
            raise DataError(
                f"two files for case '{case_id}': {found[case_id]} and {path}. Keep one of them."
            )
        found[case_id] = path
    return found


def _pair_cases(root: Path) -> list[_Case]:
    images = _list_nifti(root / "images")
    labels = _list_nifti(root / "labels")

    images_only = sorted(set(images) - set(labels))
    if images_only:
        first = images[images_only[0]]
        raise DataError(
            f"no label file for {len(images_only)} image(s), first {first}: expected "
            f"{root / 'labels' / first.name}. Add the label maps or remove the images."
        )
    labels_only = sorted(set(labels) - set(images))
    if labels_only:
        first = labels[labels_only[0]]
        raise DataError(
            f"no image file for {len(labels_only)} label map(s), first {first}: expected "
            f"{root / 'images' / first.name}. Add the images or remove the label maps."
        )
    if not images:
        raise DataError(
            f"no cases found in {root / 'images'}: expected <case>.nii.gz files there "
            f"with matching files in {root / 'labels'}"
        )
    return [_Case(case_id, images[case_id], labels[case_id]) for case_id in sorted(images)]


def _decode_cases(
    cases: list[_Case],
    table: _LabelTable,
    pattern: re.Pattern,
    settings: dict,
    window: tuple[float, float],
) -> SliceSet:
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    case_ids: list[str] = []
    patient_ids: list[str] = []

    uint8_cases: list[str] = []
    for case in cases:
        case_images, case_labels, stored_dtype = _decode_case(case, table, settings, window)
        if stored_dtype == np.uint8:
            uint8_cases.append(case.case_id)
        match = pattern.search(case.case_id)
        patient = match.group(1) if match and match.group(1) else case.case_id
        images.append(case_images)
        labels.append(case_labels)
        case_ids.extend([case.case_id] * len(case_images))
        patient_ids.extend([patient] * len(case_images))

    if settings["intensity"] == "hu" and uint8_cases:
        logger.warning(
            "%d of %d images (first: %s) are stored as uint8, which is rarely Hounsfield units; "
            "intensity='minmax' may be intended",
            len(uint8_cases),
            len(cases),
            uint8_cases[0],
        )
    if not case_ids:
        raise DataError(
            f"every slice in {settings['root']} is background only with "
            f"skip_empty_slices=True; set skip_empty_slices=False or check the label maps"
        )
    return SliceSet(
        images=np.concatenate(images),
        labels=np.concatenate(labels),
        case_ids=case_ids,
        patient_ids=patient_ids,
        class_names=list(table.class_names),
        source=settings["root"],
        meta={
            **settings,
            "label_to_class": {
                str(value): int(index)
                for value, index in zip(table.known_values, table.class_of_value, strict=True)
            },
            "n_cases": len(cases),
        },
    )


def _decode_case(
    case: _Case, table: _LabelTable, settings: dict, window: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Decode one case into float32 ``(S, 1, size, size)`` images and int64 ``(S, size, size)``.

    Also returns the stored image data type, so the caller can flag 8-bit images read as HU.
    """
    image_file = _load_header(case.image_path)
    label_file = _load_header(case.label_path)
    if image_file.shape != label_file.shape:
        raise DataError(
            f"image {case.image_path} has shape {image_file.shape} but label map "
            f"{case.label_path} has shape {label_file.shape}. They must match voxel for voxel."
        )

    if settings["intensity"] == "hu":
        scaled = window_hu(_as_volume(image_file.get_fdata(dtype=np.float32), case), *window)
    else:
        scaled = scale_minmax(_as_volume(image_file.get_fdata(dtype=np.float32), case))
    classes = _to_classes(_as_volume(np.asanyarray(label_file.dataobj), case), table, case)

    image_slices = _cut(scaled, settings["slice_axis"])
    label_slices = _cut(classes, settings["slice_axis"])
    if settings["skip_empty_slices"]:
        keep = label_slices.reshape(len(label_slices), -1).any(axis=1)
        image_slices, label_slices = image_slices[keep], label_slices[keep]
    resized_images, resized_labels = resize_slices(
        image_slices, label_slices, settings["image_size"]
    )
    return resized_images, resized_labels, image_file.get_data_dtype()


def _load_header(path: Path) -> nib.Nifti1Image:
    try:
        return nib.load(path)
    except Exception as error:  # nibabel raises several types for unreadable files
        raise DataError(
            f"failed to read NIfTI file {path}: {error}. Replace or remove the file."
        ) from None


def _as_volume(array: np.ndarray, case: _Case) -> np.ndarray:
    """Return ``array`` as 3D: ``(H, W)`` gains a last axis, trailing size-1 axes are dropped."""
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise DataError(
            f"{case.image_path}: expected a 2D slice or a 3D volume, got shape {array.shape}"
        )
    return array


def _to_classes(values: np.ndarray, table: _LabelTable, case: _Case) -> np.ndarray:
    """Map label values to class indices through the label table; int64 of the same shape."""
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise DataError(
                f"label map {case.label_path} contains non-integer values; "
                f"label maps must hold integer label values"
            )
    values = values.astype(np.int64, copy=False)

    low, high = int(values.min()), int(values.max())
    if low >= 0 and high < 2**16:
        # Small non-negative values (the usual case): count them and map through a lookup
        # table, which avoids the sort in np.unique and the search in np.searchsorted.
        present = np.flatnonzero(np.bincount(values.ravel(), minlength=high + 1))
    else:
        present = np.unique(values)
    unknown = np.setdiff1d(present, table.known_values)
    if unknown.size:
        raise DataError(
            f"label map {case.label_path} contains values {unknown.tolist()} that are not in "
            f"labels.json (known: {table.known_values.tolist()}). Add them to labels.json."
        )

    if low >= 0 and high < 2**16:
        lookup = np.zeros(high + 1, np.int64)
        inside = table.known_values <= high
        lookup[table.known_values[inside]] = table.class_of_value[inside]
        return lookup[values]
    return table.class_of_value[np.searchsorted(table.known_values, values)]


def _cut(volume: np.ndarray, slice_axis: int) -> np.ndarray:
    """Return ``(S, H, W)`` slices: one for an ``(H, W, 1)`` array, else cut along the axis."""
    if volume.shape[2] == 1:
        return volume[None, :, :, 0]
    return volume_to_slices(volume, slice_axis)
