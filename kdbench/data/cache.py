"""On-disk cache of decoded, preprocessed slice sets, so a second process skips NIfTI decoding.

A cache entry is one ``.npz`` file named by a hash of everything the arrays depend on: the source
files (names, sizes, modification times), the label table and the preprocessing settings. A file
that changes size or modification time therefore gets a new key. Contents changed in place with
size and modification time restored are not detected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from kdbench.data.base import SliceSet

logger = logging.getLogger(__name__)

# Bump when the preprocessing code changes what it produces, so old entries stop matching.
CACHE_FORMAT_VERSION = 1


def cache_key(files: Iterable[Path], settings: dict) -> str:
    """Hash file names, sizes and modification times (ns) with the JSON-serialisable ``settings``.

    Returns 20 hex digits of a SHA-256.
    """
    stats = []
    for path in files:
        stat = path.stat()
        stats.append([str(path), stat.st_size, stat.st_mtime_ns])
    material = {"format": CACHE_FORMAT_VERSION, "files": stats, "settings": settings}
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


def load_cached(path: Path) -> SliceSet | None:
    """Return the slice set stored at ``path``, or None when the file is missing or unreadable.

    An unreadable entry is logged and left for :func:`save_cached` to overwrite.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return SliceSet(
                images=stored["images"],
                labels=stored["labels"],
                case_ids=stored["case_ids"].tolist(),
                patient_ids=stored["patient_ids"].tolist(),
                class_names=stored["class_names"].tolist(),
                source=str(stored["source"]),
                meta=json.loads(str(stored["meta_json"])),
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        logger.warning("ignoring unreadable dataset cache %s: %s", path, error)
        return None


def save_cached(path: Path, slice_set: SliceSet) -> None:
    """Write ``slice_set`` to ``path`` as an uncompressed ``.npz``.

    The arrays go to a temporary file in the same folder, which is then renamed, so concurrent
    readers see either no entry or a complete one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.savez(
                handle,
                images=slice_set.images,
                labels=slice_set.labels,
                case_ids=np.array(slice_set.case_ids, dtype=str),
                patient_ids=np.array(slice_set.patient_ids, dtype=str),
                class_names=np.array(slice_set.class_names, dtype=str),
                source=np.array(slice_set.source),
                meta_json=np.array(json.dumps(slice_set.meta, sort_keys=True)),
            )
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
