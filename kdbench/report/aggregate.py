"""Aggregate cells over seeds into one leaderboard row per (teacher, student, strategy).

Rows are plain dicts (one per combination, keys in ``ROW_COLUMNS`` order followed by one
``iou_<structure>`` key per structure), so they serialise to CSV and JSON without pandas.
Missing or undefined numbers are ``math.nan``; missing labels are None.

Row ids mirror cell ids without the seed: ``teacher|<teacher>`` for a teacher row and
``<teacher or ->|<student>|<strategy>`` for a student row, e.g. ``unet_small|cfpnet_m|logit`` or
``-|cfpnet_m|none`` for the student trained alone.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kdbench.report.stats import compare_paired, summarize_seeds

STUDENT_ALONE_STRATEGY = "none"
STRUCTURE_PREFIX = "iou_"

# Column order of a row; per-structure IoU columns (``iou_<structure>``) follow these.
ROW_COLUMNS = (
    "row_id",
    "status",
    "role",
    "teacher",
    "student",
    "model",
    "strategy",
    "strategy_terms",
    "n_seeds",
    "seeds",
    "n_failed",
    "mean_iou",
    "mean_iou_std",
    "mean_iou_ci_low",
    "mean_iou_ci_high",
    "mean_iou_ci_half_width",
    "mean_dice",
    "mean_dice_std",
    "mean_dice_ci_low",
    "mean_dice_ci_high",
    "mean_dice_ci_half_width",
    "alone_row_id",
    "delta_iou",
    "paired_n",
    "paired_mean_diff",
    "p_wilcoxon",
    "paired_ci_low",
    "paired_ci_high",
    "params",
    "gmacs",
    "state_dict_bytes",
    "onnx_fp32_bytes",
    "onnx_int8_bytes",
    "onnx_fp32_iou",
    "onnx_fp16_iou",
    "onnx_int8_iou",
    "latency_median_ms",
    "latency_p95_ms",
    "latency_device",
    "peak_memory_bytes",
    "reference_teacher",
    "size_ratio",
    "params_ratio",
    "macs_ratio",
    "speedup",
    "config_hash",
    "error",
)
# Cost columns taken from each cell's ``profile``; a row contains the median over its seeds.
COST_COLUMNS = (
    "params",
    "gmacs",
    "state_dict_bytes",
    "onnx_fp32_bytes",
    "onnx_int8_bytes",
    "latency_median_ms",
    "latency_p95_ms",
    "peak_memory_bytes",
)


# ONNX variants whose test-split mean IoU is averaged over seeds (``onnx_<variant>_iou``).
ONNX_VARIANTS = ("fp32", "fp16", "int8")


def _onnx_iou(cell: Mapping[str, Any], variant: str) -> float:
    """Return the test mean IoU of one exported ONNX variant of a cell, NaN when not measured."""
    record = ((cell.get("profile") or {}).get("onnx") or {}).get(variant) or {}
    return _number(record.get("mean_iou"))


def row_id_of(cell: Mapping[str, Any]) -> str:
    """Return the leaderboard row id of a cell (its cell id without the seed)."""
    if cell["role"] == "teacher":
        return f"teacher|{teacher_row_label(cell)}"
    return f"{cell['teacher'] or '-'}|{cell['student']}|{cell['strategy']}"


def teacher_row_label(cell: Mapping[str, Any]) -> str:
    """Return the teacher label of a teacher cell, which the schema stores in ``student``."""
    return cell.get("student") or cell.get("teacher") or "?"


def cell_costs(cell: Mapping[str, Any]) -> dict[str, Any]:
    """Extract the cost numbers of one cell from its ``profile``; absent values are NaN.

    Latency is the torch backend at batch 1, preferring the ``fp32`` variant when several torch
    entries exist, otherwise the first one listed. ``latency_device`` names its device.
    """
    profile = cell.get("profile") or {}
    params = profile.get("params") or {}
    macs = profile.get("macs") or {}
    sizes = profile.get("sizes") or {}
    memory = profile.get("memory") or {}
    latency = _torch_batch1_latency(profile.get("latency") or [])

    return {
        "params": _number(params.get("total")),
        "gmacs": _number(macs.get("headline_gmacs")),
        "state_dict_bytes": _number(sizes.get("state_dict_bytes")),
        "onnx_fp32_bytes": _number(sizes.get("onnx_fp32_bytes")),
        "onnx_int8_bytes": _number(sizes.get("onnx_int8_bytes")),
        "latency_median_ms": _number(latency.get("median_ms")),
        "latency_p95_ms": _number(latency.get("p95_ms")),
        "latency_device": latency.get("device"),
        "peak_memory_bytes": _number(memory.get("peak_bytes")),
    }


def aggregate_rows(cells: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate cells into one row per combination, in first-seen order of the combinations.

    Only cells with status "ok" enter the statistics. A combination whose cells all failed gives
    a row with status "failed", NaN metrics and the cells' errors in ``error``. Each row holds:

    - ``mean_iou``/``mean_dice``: mean, sample std and 95% t interval over seeds
      (see ``kdbench.report.stats.summarize_seeds``; NaN intervals with one seed);
    - ``iou_<structure>``: the mean over seeds of each cell's per-structure IoU;
    - ``delta_iou``: this row's mean IoU minus the mean IoU of the same student trained alone
      (row ``alone_row_id``), and the paired comparison over (seed, case_id) pairs:
      ``p_wilcoxon`` (the p-value column), ``paired_mean_diff`` and its bootstrap interval
      ``paired_ci_low``/``paired_ci_high``;
    - costs (``COST_COLUMNS``): the median over seeds;
    - ratios against ``reference_teacher``: ``size_ratio`` (state dict bytes), ``params_ratio``,
      ``macs_ratio`` and ``speedup`` (latency), each teacher / row, so 4.0 means four times
      smaller or faster.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for cell in cells:
        groups.setdefault(row_id_of(cell), []).append(cell)

    rows = [_summarize_group(row_id, members) for row_id, members in groups.items()]
    cells_by_row = {
        row_id: [c for c in members if c["status"] == "ok"] for row_id, members in groups.items()
    }

    _add_gain_over_alone(rows, cells_by_row)
    _add_teacher_ratios(rows)
    return rows


def structure_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Return the ``iou_<structure>`` column names present in ``rows``, in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key.startswith(STRUCTURE_PREFIX):
                columns[key] = None
    return list(columns)


def _summarize_group(row_id: str, members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    ok = sorted((c for c in members if c["status"] == "ok"), key=lambda c: c["seed"])
    failed = [c for c in members if c["status"] != "ok"]
    first = members[0]
    teacher = None if first["role"] == "teacher" else first.get("teacher")
    student = teacher_row_label(first) if first["role"] == "teacher" else first["student"]
    errors = [f"{c['cell_id']}: {c.get('error') or 'no message'}" for c in failed]

    row: dict[str, Any] = dict.fromkeys(ROW_COLUMNS, math.nan)
    row.update(
        row_id=row_id,
        status="ok" if ok else "failed",
        role=first["role"],
        teacher=teacher,
        student=student,
        model=first.get("model"),
        strategy=first["strategy"],
        strategy_terms=_format_terms(first.get("strategy_terms") or []),
        n_seeds=len(ok),
        seeds=" ".join(str(c["seed"]) for c in ok),
        n_failed=len(failed),
        alone_row_id=None,
        latency_device=None,
        reference_teacher=None,
        config_hash=_combined_config_hash(ok),
        error="; ".join(errors) or None,
    )

    for metric in ("mean_iou", "mean_dice"):
        summary = summarize_seeds([_number(c["metrics"].get(metric)) for c in ok])
        row[metric] = summary.mean
        row[f"{metric}_std"] = summary.std
        row[f"{metric}_ci_low"] = summary.ci_low
        row[f"{metric}_ci_high"] = summary.ci_high
        row[f"{metric}_ci_half_width"] = summary.ci_half_width

    costs = [cell_costs(c) for c in ok]
    for column in COST_COLUMNS:
        row[column] = _median([cost[column] for cost in costs])
    row["latency_device"] = next(
        (cost["latency_device"] for cost in costs if cost["latency_device"]), None
    )

    for variant in ONNX_VARIANTS:
        scores = [_onnx_iou(c, variant) for c in ok]
        row[f"onnx_{variant}_iou"] = summarize_seeds(scores).mean if scores else math.nan

    for name, values in _per_structure_iou(ok).items():
        row[f"{STRUCTURE_PREFIX}{name}"] = summarize_seeds(values).mean
    return row


def _per_structure_iou(cells: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Collect each structure's IoU over cells, in class order (``dataset.class_names``)."""
    values: dict[str, list[float]] = {}
    for cell in cells:
        class_names = (cell.get("dataset") or {}).get("class_names") or []
        per_structure = cell["metrics"].get("per_structure") or {}
        ordered = [n for n in class_names if n in per_structure]
        ordered += [n for n in per_structure if n not in ordered]
        for name in ordered:
            scores = per_structure[name] or {}
            values.setdefault(name, []).append(_number(scores.get("iou")))
    return values


def _add_gain_over_alone(
    rows: list[dict[str, Any]], cells_by_row: Mapping[str, list[Mapping[str, Any]]]
) -> None:
    """Fill ``delta_iou`` and the paired-test columns of every distilled student row."""
    alone_by_student: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["role"] == "student" and row["strategy"] == STUDENT_ALONE_STRATEGY:
            # Prefer the row without a teacher; a "none" row that names a teacher is a fallback.
            if row["student"] not in alone_by_student or row["teacher"] is None:
                alone_by_student[row["student"]] = row

    for row in rows:
        alone = alone_by_student.get(row["student"])
        if row["role"] != "student" or row["strategy"] == STUDENT_ALONE_STRATEGY or alone is None:
            continue

        row["alone_row_id"] = alone["row_id"]
        row["delta_iou"] = row["mean_iou"] - alone["mean_iou"]
        differences = paired_case_differences(
            cells_by_row[row["row_id"]], cells_by_row[alone["row_id"]]
        )
        comparison = compare_paired(differences)
        row["paired_n"] = comparison.n_pairs
        row["paired_mean_diff"] = comparison.mean_difference
        row["p_wilcoxon"] = comparison.p_value
        row["paired_ci_low"] = comparison.ci_low
        row["paired_ci_high"] = comparison.ci_high


def paired_case_differences(
    cells_a: Iterable[Mapping[str, Any]], cells_b: Iterable[Mapping[str, Any]]
) -> list[float]:
    """Return case mean IoU of ``a`` minus that of ``b`` for every (seed, case_id) in both.

    Cases whose mean IoU is null on either side are skipped. Pairs are ordered by seed, then by
    the case order of ``a``.
    """
    scores_b = {
        (cell["seed"], case["case_id"]): _number(case.get("mean_iou"))
        for cell in cells_b
        for case in cell["metrics"]["per_case"]
    }

    differences = []
    for cell in sorted(cells_a, key=lambda c: c["seed"]):
        for case in cell["metrics"]["per_case"]:
            key = (cell["seed"], case["case_id"])
            score_a = _number(case.get("mean_iou"))
            score_b = scores_b.get(key, math.nan)
            if not (math.isnan(score_a) or math.isnan(score_b)):
                differences.append(score_a - score_b)
    return differences


def _add_teacher_ratios(rows: list[dict[str, Any]]) -> None:
    """Fill the compression ratios and speed-up of every row against its teacher.

    A distilled row uses its own teacher. A teacher-free row (student alone) uses the only teacher
    row when there is exactly one, otherwise its ratios stay NaN.
    """
    teachers = {row["student"]: row for row in rows if row["role"] == "teacher"}
    only_teacher = next(iter(teachers.values())) if len(teachers) == 1 else None

    for row in rows:
        if row["role"] == "teacher":
            reference = row
        elif row["teacher"] is not None:
            reference = teachers.get(row["teacher"])
        else:
            reference = only_teacher
        if reference is None:
            continue

        row["reference_teacher"] = reference["row_id"]
        row["size_ratio"] = _ratio(reference["state_dict_bytes"], row["state_dict_bytes"])
        row["params_ratio"] = _ratio(reference["params"], row["params"])
        row["macs_ratio"] = _ratio(reference["gmacs"], row["gmacs"])
        if reference["latency_device"] == row["latency_device"]:
            row["speedup"] = _ratio(reference["latency_median_ms"], row["latency_median_ms"])


def _combined_config_hash(cells: Sequence[Mapping[str, Any]]) -> str | None:
    """Return the cells' shared config hash, or a digest of the (seed, hash) pairs if they differ.

    Cell configs usually include the seed, so a multi-seed row usually gets the digest.
    """
    hashes = sorted({(c["seed"], c.get("config_hash") or "") for c in cells})
    distinct = {h for _, h in hashes}
    if not hashes:
        return None
    if len(distinct) == 1:
        return distinct.pop() or None
    joined = "\n".join(f"{seed}:{digest}" for seed, digest in hashes)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def _format_terms(terms: Sequence[Mapping[str, Any]]) -> str:
    """Render strategy terms as ``kind×weight`` joined by ``+`` (empty for no terms)."""
    return " + ".join(f"{t.get('kind', '?')}×{t.get('weight', 1.0):g}" for t in terms)


def _torch_batch1_latency(entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    candidates = [e for e in entries if e.get("backend") == "torch" and e.get("batch") == 1]
    preferred = [e for e in candidates if e.get("variant") == "fp32"]
    return (preferred or candidates or [{}])[0]


def _number(value: Any) -> float:
    """Convert a JSON number to float; null, missing or non-numeric values become NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _median(values: Sequence[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return float(statistics.median(present)) if present else math.nan


def _ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator
