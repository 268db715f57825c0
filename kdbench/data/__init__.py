"""Dataset registry: ``list_datasets``, ``create_dataset`` and patient-level splits.

Every dataset is a factory that returns a :class:`SliceSet`. Built in:

- ``nifti``: a folder of NIfTI images and label maps (2D slice files or 3D volumes).
- ``synthetic``: a seeded cardiac CT phantom for tests and smoke runs.
"""

from __future__ import annotations

import inspect
from typing import Any

from kdbench.data.base import SliceSet
from kdbench.data.splits import split_by_patient, split_case_ids, write_split
from kdbench.errors import ConfigError
from kdbench.registry import Registry

DATASETS: Registry[SliceSet] = Registry("dataset")
register_dataset = DATASETS.register


def list_datasets(pattern: str = "*") -> list[str]:
    """Return registered dataset names matching a shell-style wildcard."""
    return DATASETS.list(pattern)


def create_dataset(name: str, **kwargs: Any) -> SliceSet:
    """Build the registered dataset ``name`` with keyword options (``image_size``, ``root``...).

    Raises UnknownNameError for an unknown name, and ConfigError for an option the factory does
    not take or a required option that is missing, listing the options it takes.
    """
    factory = DATASETS.get(name)
    parameters = inspect.signature(factory).parameters
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        raise ConfigError(
            f"dataset '{name}' has no option(s) {unknown}; its options are {sorted(parameters)}"
        )
    missing = sorted(
        key
        for key, parameter in parameters.items()
        if parameter.default is inspect.Parameter.empty and key not in kwargs
    )
    if missing:
        raise ConfigError(f"dataset '{name}' needs the option(s) {missing}")
    return factory(**kwargs)


# Built-in datasets register themselves on import.
from kdbench.data import nifti, phantom  # noqa: E402,F401

__all__ = [
    "DATASETS",
    "SliceSet",
    "create_dataset",
    "list_datasets",
    "register_dataset",
    "split_by_patient",
    "split_case_ids",
    "write_split",
]
