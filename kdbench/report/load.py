"""Read the per-cell result files (``<results>/cells/*.json``) that ``kdbench run`` writes.

An unreadable or malformed file becomes one line in the returned problem list, naming the file
and the fix, and the other cells still load.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CELLS_FOLDER = "cells"

# Keys every cell file must have, whatever its status. ``teacher`` may be null.
REQUIRED_KEYS = (
    "schema_version",
    "cell_id",
    "status",
    "role",
    "teacher",
    "student",
    "strategy",
    "seed",
)
# Keys a cell with status "ok" must also have, as (parent key, child key or None).
REQUIRED_OK_KEYS = (
    ("metrics", None),
    ("metrics", "mean_iou"),
    ("metrics", "mean_dice"),
    ("metrics", "per_case"),
)
STATUSES = ("ok", "failed")
ROLES = ("teacher", "student")

_RERUN = "Delete the file and run the same matrix again with `kdbench run` to recompute the cell."


def load_cells(results_dir: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Load every cell JSON under ``<results_dir>/cells`` and return ``(cells, problems)``.

    ``cells`` contains the parsed JSON objects unchanged, sorted by ``cell_id``. Cells with status
    "failed" are included, and aggregation reports them as failed rows. ``problems`` contains one
    message per file that could not be used: unreadable, invalid JSON, wrong ``schema_version``,
    missing required keys (see ``REQUIRED_KEYS``), values of the wrong JSON type, or a ``cell_id``
    already loaded from another file. A missing ``cells`` folder is one problem and returns no
    cells.
    """
    cells_dir = Path(results_dir) / CELLS_FOLDER
    if not cells_dir.is_dir():
        return [], [
            f"{cells_dir}: folder not found. Point the command at the output folder of "
            "`kdbench run`, the folder that contains cells/."
        ]

    cells: dict[str, dict[str, Any]] = {}
    sources: dict[str, Path] = {}
    problems: list[str] = []
    for path in sorted(cells_dir.glob("*.json")):
        cell, problem = _read_cell(path)
        if problem is not None:
            problems.append(problem)
            continue

        cell_id = cell["cell_id"]
        if cell_id in cells:
            problems.append(
                f"{path}: cell_id '{cell_id}' was already loaded from {sources[cell_id]}; "
                "this file is skipped. Remove the copy that does not belong to this run."
            )
            continue
        cells[cell_id] = cell
        sources[cell_id] = path

    for problem in problems:
        logger.warning("%s", problem)
    return [cells[cell_id] for cell_id in sorted(cells)], problems


def _read_cell(path: Path) -> tuple[dict[str, Any], None] | tuple[None, str]:
    """Parse and validate one cell file; return ``(cell, None)`` or ``(None, problem)``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return None, f"{path}: cannot read the file ({error}). {_RERUN}"

    try:
        cell = json.loads(text)
    except json.JSONDecodeError as error:
        return None, (
            f"{path}: invalid JSON at line {error.lineno}, column {error.colno} ({error.msg}); "
            f"the file is probably truncated. {_RERUN}"
        )

    problem = validate_cell(cell)
    if problem is not None:
        return None, f"{path}: {problem}"
    return cell, None


def validate_cell(cell: Any) -> str | None:
    """Return a message naming the first schema violation of ``cell``, or None when it is valid.

    Checks the schema version, the required keys, the values of ``status`` and ``role``, and the
    JSON types of the values that the report reads.
    """
    if not isinstance(cell, Mapping):
        return f"expected a JSON object, got {type(cell).__name__}. {_RERUN}"

    version = cell.get("schema_version")
    if version != SCHEMA_VERSION:
        return (
            f"schema_version is {version!r}, but this kdbench reads schema_version "
            f"{SCHEMA_VERSION}. Report this folder with the kdbench version that wrote it, "
            "or rerun the cell with this version."
        )

    missing = [key for key in REQUIRED_KEYS if key not in cell]
    if cell.get("status") == "ok":
        missing += [
            _dotted(parent, child)
            for parent, child in REQUIRED_OK_KEYS
            if not _has(cell, parent, child)
        ]
    if missing:
        return f"missing required keys {missing}. {_RERUN}"

    if cell["status"] not in STATUSES:
        return f"status is {cell['status']!r}; expected one of {list(STATUSES)}. {_RERUN}"
    if cell["role"] not in ROLES:
        return f"role is {cell['role']!r}; expected one of {list(ROLES)}. {_RERUN}"
    if not isinstance(cell["seed"], int) or isinstance(cell["seed"], bool):
        return f"seed is {cell['seed']!r}; expected an integer. {_RERUN}"
    return _type_problem(cell)


def _type_problem(cell: Mapping[str, Any]) -> str | None:
    """Return a message naming the first value of the wrong JSON type, or None."""
    for key in ("cell_id", "student", "strategy"):
        if not isinstance(cell[key], str):
            return f"{key} is {cell[key]!r}; expected a string. {_RERUN}"
    if cell["teacher"] is not None and not isinstance(cell["teacher"], str):
        return f"teacher is {cell['teacher']!r}; expected a string or null. {_RERUN}"

    for key in ("profile", "training", "artifacts", "dataset"):
        if cell.get(key) is not None and not isinstance(cell[key], Mapping):
            return f"{key} is {cell[key]!r}; expected an object or null. {_RERUN}"
    history = (cell.get("training") or {}).get("history")
    if history is not None and not isinstance(history, list):
        return f"training.history is {history!r}; expected a list. {_RERUN}"

    if cell["status"] != "ok":
        return None
    per_structure = cell["metrics"].get("per_structure")
    if per_structure is not None and not isinstance(per_structure, Mapping):
        return f"metrics.per_structure is {per_structure!r}; expected an object. {_RERUN}"
    per_case = cell["metrics"]["per_case"]
    if not isinstance(per_case, list) or not all(
        isinstance(case, Mapping) and "case_id" in case for case in per_case
    ):
        return f"metrics.per_case must be a list of objects with a case_id. {_RERUN}"
    return None


def _has(cell: Mapping[str, Any], parent: str, child: str | None) -> bool:
    value = cell.get(parent)
    if child is None:
        return isinstance(value, Mapping)
    return isinstance(value, Mapping) and child in value


def _dotted(parent: str, child: str | None) -> str:
    return parent if child is None else f"{parent}.{child}"
