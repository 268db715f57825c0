"""Leaderboard files: ``leaderboard.csv``, ``leaderboard.md`` and ``cells.csv``.

The CSV files keep full precision (Python ``repr`` of each float) and write NaN and None as empty
fields and booleans as ``true``/``false``. The Markdown file is rounded for reading, and its
legend states the rounding.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kdbench.report.aggregate import (
    ROW_COLUMNS,
    STRUCTURE_PREFIX,
    STUDENT_ALONE_STRATEGY,
    cell_costs,
    row_id_of,
    structure_columns,
)
from kdbench.report.pareto import PARETO_AXES

CELL_COLUMNS = (
    "cell_id",
    "row_id",
    "status",
    "error",
    "role",
    "teacher",
    "student",
    "model",
    "strategy",
    "seed",
    "config_hash",
    "mean_iou",
    "mean_dice",
    "n_cases",
    "epochs",
    "selected_epoch",
    "training_seconds",
    "params",
    "gmacs",
    "state_dict_bytes",
    "onnx_fp32_bytes",
    "onnx_int8_bytes",
    "latency_median_ms",
    "latency_p95_ms",
    "latency_device",
    "peak_memory_bytes",
)
_KIB = 1024
_MIB = 1024**2
_GIB = 1024**3


def sort_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Sort rows by mean IoU, highest first; rows without a mean IoU (failed) go last."""

    def key(row: Mapping[str, Any]) -> tuple[bool, float, str]:
        iou = row.get("mean_iou", math.nan)
        missing = iou is None or math.isnan(iou)
        return (missing, 0.0 if missing else -iou, row["row_id"])

    return sorted(rows, key=key)


def write_leaderboard_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write one CSV line per row with every column at full precision, sorted like the Markdown."""
    columns = [*ROW_COLUMNS, *PARETO_AXES, *structure_columns(rows)]
    _write_csv(path, columns, sort_rows(rows))
    return path


def write_cells_csv(cells: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write one CSV line per cell (per seed) with its raw metrics and costs, sorted by cell id."""
    lines = [_cell_line(cell) for cell in sorted(cells, key=lambda c: c["cell_id"])]
    columns = [*CELL_COLUMNS, *structure_columns(lines)]
    _write_csv(path, columns, lines)
    return path


def write_leaderboard_md(
    rows: Sequence[Mapping[str, Any]], path: Path, title: str = "kdbench leaderboard"
) -> Path:
    """Write the rounded Markdown leaderboard, a per-structure table, failed cells and a legend."""
    ordered = sort_rows(rows)
    sections = [
        f"# {title}\n",
        _main_table(ordered),
        _structure_table(ordered),
        _export_table(ordered),
    ]
    failed = [row for row in ordered if row.get("error")]
    if failed:
        sections.append(_failed_list(failed))
    sections.append(_LEGEND)
    path.write_text("\n".join(s for s in sections if s), encoding="utf-8")
    return path


def _main_table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = [
        "Pareto",
        "Row",
        "Seeds",
        "Mean IoU ± sd",
        "95% CI",
        "Mean Dice",
        "ΔIoU vs alone",
        "p (Wilcoxon)",
        "Params",
        "GMACs",
        "State dict",
        "ONNX fp32",
        "ONNX int8",
        "Latency p50 / p95 (ms)",
        "Peak memory",
        "Size ×",
        "Speed-up",
    ]
    lines = [_md_line(header), _md_line(["---"] * len(header))]
    for row in rows:
        lines.append(_md_line(_main_cells(row)))
    return "\n".join(lines) + "\n"


def _main_cells(row: Mapping[str, Any]) -> list[str]:
    if row["status"] != "ok":
        return ["", f"`{row['row_id']}`", f"0 ({row['n_failed']} failed)"] + ["failed"] + [""] * 13

    seeds = str(row["n_seeds"]) + (f" ({row['n_failed']} failed)" if row["n_failed"] else "")
    if math.isnan(row["mean_iou_std"]):
        iou = f"{_fixed(row['mean_iou'], 3)} (1 seed)"
        interval = "n/a"
    else:
        iou = f"{_fixed(row['mean_iou'], 3)} ± {_fixed(row['mean_iou_std'], 3)}"
        interval = f"[{_fixed(row['mean_iou_ci_low'], 3)}, {_fixed(row['mean_iou_ci_high'], 3)}]"

    return [
        _pareto_marks(row),
        f"`{row['row_id']}`",
        seeds,
        iou,
        interval,
        _fixed(row["mean_dice"], 3),
        _delta(row),
        _p_value(row["p_wilcoxon"]),
        _count(row["params"]),
        _significant(row["gmacs"]),
        _bytes(row["state_dict_bytes"]),
        _bytes(row["onnx_fp32_bytes"]),
        _bytes(row["onnx_int8_bytes"]),
        f"{_fixed(row['latency_median_ms'], 2)} / {_fixed(row['latency_p95_ms'], 2)}",
        _bytes(row["peak_memory_bytes"]),
        _times(row["size_ratio"]),
        _times(row["speedup"]),
    ]


def _export_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Return the table of test IoU per exported ONNX variant, or "" when none was measured."""
    columns = ("onnx_fp32_iou", "onnx_fp16_iou", "onnx_int8_iou")
    measured = [r for r in rows if r["status"] == "ok" and any(not _missing(r[c]) for c in columns)]
    if not measured:
        return ""
    header = ["Row", "PyTorch", "ONNX fp32", "ONNX fp16", "ONNX int8", "int8 − PyTorch"]
    lines = ["## Mean IoU of the exported models (mean over seeds)\n", _md_line(header)]
    lines.append(_md_line(["---"] * len(header)))
    for row in measured:
        loss = row["onnx_int8_iou"] - row["mean_iou"]
        cells = [f"`{row['row_id']}`", _fixed(row["mean_iou"], 3)]
        cells += [_fixed(row[c], 3) for c in columns]
        cells.append("—" if _missing(loss) else f"{loss:+.3f}")
        lines.append(_md_line(cells))
    return "\n".join(lines) + "\n"


def _structure_table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = structure_columns(rows)
    if not columns:
        return ""
    names = [column[len(STRUCTURE_PREFIX) :] for column in columns]
    lines = ["## IoU per structure (mean over seeds)\n", _md_line(["Row", *names])]
    lines.append(_md_line(["---"] * (len(names) + 1)))
    for row in rows:
        if row["status"] == "ok":
            values = [_fixed(row.get(column, math.nan), 3) for column in columns]
            lines.append(_md_line([f"`{row['row_id']}`", *values]))
    return "\n".join(lines) + "\n"


def _failed_list(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["## Failed cells\n"]
    lines.extend(f"- `{row['row_id']}`: {row['error']}" for row in rows)
    return "\n".join(lines) + "\n"


_LEGEND = """## Legend

- Rows are sorted by mean IoU over seeds, highest first. Row ids read `teacher|student|strategy`
  (`-` when no teacher is used) or `teacher|<model>` for a teacher.
- Pareto: ★ marks rows on the IoU–state-dict-size frontier; `lat` and `macs` mark the
  IoU–latency and IoU–GMACs frontiers. No other row is at least as accurate and at least as cheap.
- Mean IoU ± sample standard deviation over seeds; 95% CI is the Student t interval over seeds
  (n/a with one seed). IoU, Dice and ΔIoU are rounded to 3 decimals.
- ΔIoU vs alone: mean IoU minus that of the same student trained without a teacher (`ref` on that
  row). p is the two-sided Wilcoxon signed-rank test over (seed, test case) pairs.
- Params in millions (M) or thousands (k); GMACs to 3 significant digits; file sizes and peak
  memory in KiB/MiB (1 MiB = 1024² bytes).
- Latency: torch backend, batch 1, median and 95th percentile in ms, median over seeds.
- Size × and Speed-up: teacher state-dict size and latency divided by the row's (4× = four times
  smaller or faster).
- Every column is explained in docs/metrics.md; leaderboard.csv has all columns at full precision.
"""


def _cell_line(cell: Mapping[str, Any]) -> dict[str, Any]:
    metrics = cell.get("metrics") or {}
    training = cell.get("training") or {}
    line: dict[str, Any] = {
        "cell_id": cell["cell_id"],
        "row_id": row_id_of(cell),
        "status": cell["status"],
        "error": cell.get("error"),
        "role": cell["role"],
        "teacher": cell.get("teacher"),
        "student": cell["student"],
        "model": cell.get("model"),
        "strategy": cell["strategy"],
        "seed": cell["seed"],
        "config_hash": cell.get("config_hash"),
        "mean_iou": metrics.get("mean_iou"),
        "mean_dice": metrics.get("mean_dice"),
        "n_cases": metrics.get("n_cases"),
        "epochs": training.get("epochs"),
        "selected_epoch": training.get("selected_epoch"),
        "training_seconds": training.get("seconds"),
    }
    line.update(cell_costs(cell))
    for name, scores in (metrics.get("per_structure") or {}).items():
        line[f"{STRUCTURE_PREFIX}{name}"] = (scores or {}).get("iou")
    return line


def _write_csv(path: Path, columns: Sequence[str], lines: Iterable[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for line in lines:
            writer.writerow([_csv_value(line.get(column)) for column in columns])


def _csv_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _md_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _pareto_marks(row: Mapping[str, Any]) -> str:
    marks = ["★"] if row.get("pareto_size") else []
    if row.get("pareto_latency"):
        marks.append("lat")
    if row.get("pareto_gmacs"):
        marks.append("macs")
    return " ".join(marks)


def _delta(row: Mapping[str, Any]) -> str:
    if row["role"] == "student" and row["strategy"] == STUDENT_ALONE_STRATEGY:
        return "ref"
    value = row["delta_iou"]
    return "—" if _missing(value) else f"{value:+.3f}"


def _p_value(value: float) -> str:
    if _missing(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _fixed(value: Any, decimals: int) -> str:
    return "—" if _missing(value) else f"{value:.{decimals}f}"


def _significant(value: Any) -> str:
    return "—" if _missing(value) else f"{value:.3g}"


def _count(value: Any) -> str:
    if _missing(value):
        return "—"
    if value >= 1e6:
        return f"{value / 1e6:.3g} M"
    if value >= 1e3:
        return f"{value / 1e3:.3g} k"
    return f"{value:.0f}"


def _bytes(value: Any) -> str:
    if _missing(value):
        return "—"
    if value >= _GIB:
        return f"{value / _GIB:.2f} GiB"
    if value >= _MIB:
        return f"{value / _MIB:.2f} MiB"
    if value >= _KIB:
        return f"{value / _KIB:.1f} KiB"
    return f"{value:.0f} B"


def _times(value: Any) -> str:
    return "—" if _missing(value) else f"{value:.3g}×"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
