"""Regression gate: compare a results folder with a committed baseline file.

A baseline is a JSON file written by ``kdbench check --update-baseline``::

    {"format": "kdbench-baseline", "version": 1, "kdbench_version": "0.1.0",
     "created": "2025-01-01T00:00:00+00:00",
     "config_hash": {row_id: hash},
     "rows": {row_id: {"mean_iou", "mean_iou_std", "n_seeds", "state_dict_bytes",
                       "onnx_fp32_bytes", "onnx_int8_bytes", "params", "gmacs",
                       "latency_ms" (optional)}}}

Row ids and values come from ``kdbench.report.aggregate.aggregate_rows``. A row's config hash is
the cells' shared ``config_hash``, or a digest of all (seed, hash) pairs when they differ.

Guarded metrics and their rules (``Tolerances``):

- ``mean_iou`` may drop by at most ``max_iou_drop + k * sqrt(se_b**2 + se_c**2)``, where
  ``se = std / sqrt(n_seeds)`` is the standard error of each side's mean over seeds (0 with one
  seed) and ``k`` is ``iou_stderr_multiplier``;
- ``state_dict_bytes``, ``onnx_fp32_bytes``, ``onnx_int8_bytes``, ``params`` and ``gmacs`` may grow
  by at most ``max_size_growth_pct`` percent;
- ``latency_ms`` (torch backend, batch 1, median) may grow by at most ``max_latency_growth_pct``
  percent, and is not checked when that tolerance is None (the default), because latency depends
  on the machine.

A baseline row missing from the results is reported and fails only in strict mode. A row found
only in the results is reported and never fails.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import importlib.metadata
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer

from kdbench.errors import ConfigError, DataError, KdbenchError
from kdbench.report.aggregate import aggregate_rows
from kdbench.report.load import CELLS_FOLDER, load_cells

BASELINE_FORMAT = "kdbench-baseline"
BASELINE_VERSION = 1
SIZE_METRICS = ("state_dict_bytes", "onnx_fp32_bytes", "onnx_int8_bytes", "params", "gmacs")
LATENCY_METRIC = "latency_ms"
EXIT_PASSED, EXIT_REGRESSION, EXIT_BAD_INPUT = 0, 1, 2

# Entry statuses; only FAIL, and MISSING in strict mode, make the check fail.
PASS, FAIL, SKIP, NEW, MISSING = "pass", "FAIL", "skip", "new", "missing"


@dataclass(frozen=True)
class Tolerances:
    """Limits of the regression gate; the module docstring gives each rule."""

    max_iou_drop: float = 0.02  # absolute mean IoU, before the seed-noise allowance
    iou_stderr_multiplier: float = 2.0  # k: standard errors of the difference added to the drop
    max_size_growth_pct: float = 1.0  # percent, for file sizes, parameters and GMACs
    max_latency_growth_pct: float | None = None  # percent; None leaves latency unchecked

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], source: str | Path | None = None
    ) -> Tolerances:
        """Build tolerances from a ``[check]`` table; keys left out keep their defaults.

        Raises ConfigError naming ``source``, the key and the value for an unknown key or a value
        that is not a number >= 0.
        """
        where = f"{source}: [check]" if source is not None else "[check]"
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{where} must be a table of tolerances, got {mapping!r}.")

        known = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, float] = {}
        for key, value in mapping.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" Did you mean {close[0]}?" if close else ""
                raise ConfigError(
                    f"{where} has unknown key '{key}'.{hint} Known keys: {', '.join(known)}."
                )
            values[key] = _non_negative_number(value, f"{where}.{key}")
        return cls(**values)

    def with_overrides(self, **overrides: float | None) -> Tolerances:
        """Return a copy with every override that is not None applied (command-line flags).

        Raises ConfigError naming the field for a value that is not a number >= 0.
        """
        for key, value in overrides.items():
            if value is not None:
                _non_negative_number(value, key)
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def allowed_iou_drop(
        self, baseline_row: Mapping[str, Any], current_row: Mapping[str, Any]
    ) -> float:
        """Return the largest mean IoU drop that passes for this pair of rows."""
        combined = math.hypot(_standard_error(baseline_row), _standard_error(current_row))
        return self.max_iou_drop + self.iou_stderr_multiplier * combined


@dataclass(frozen=True)
class CheckEntry:
    """One line of the check table.

    ``change`` is ``current - baseline`` for ``mean_iou`` and the growth in percent for the
    other metrics. ``limit`` is the lowest allowed IoU change (a negative number) or the highest
    allowed growth in percent.
    """

    row_id: str
    metric: str
    baseline: float | str | None
    current: float | str | None
    change: float | None
    limit: float | None
    status: str
    note: str = ""


@dataclass
class CheckResult:
    """All check entries plus the load problems and notes (config or seed changes) found."""

    entries: list[CheckEntry]
    tolerances: Tolerances
    strict: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckEntry]:
        """Entries that make the check fail."""
        failing = {FAIL, MISSING} if self.strict else {FAIL}
        return [entry for entry in self.entries if entry.status in failing]

    @property
    def passed(self) -> bool:
        """Whether every guarded metric is within tolerance."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (NaN becomes None)."""
        return {
            "passed": self.passed,
            "strict": self.strict,
            "tolerances": dataclasses.asdict(self.tolerances),
            "entries": [_json_ready(dataclasses.asdict(entry)) for entry in self.entries],
            "problems": self.problems,
            "notes": self.notes,
        }


def baseline_from_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Build the baseline document from aggregated rows, leaving out rows whose cells all failed."""
    baseline_rows: dict[str, dict[str, Any]] = {}
    config_hashes: dict[str, str | None] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        entry = {
            "mean_iou": row["mean_iou"],
            "mean_iou_std": row["mean_iou_std"],
            "n_seeds": row["n_seeds"],
            **{metric: row[metric] for metric in SIZE_METRICS},
        }
        if not math.isnan(row["latency_median_ms"]):
            entry[LATENCY_METRIC] = row["latency_median_ms"]
        baseline_rows[row["row_id"]] = _json_ready(entry)
        config_hashes[row["row_id"]] = row["config_hash"]

    return {
        "format": BASELINE_FORMAT,
        "version": BASELINE_VERSION,
        "kdbench_version": _kdbench_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_hash": config_hashes,
        "rows": baseline_rows,
    }


def write_baseline(results_dir: str | Path, path: str | Path) -> dict[str, Any]:
    """Write the baseline of ``results_dir`` to ``path`` (replacing it) and return the document.

    Raises DataError when the results folder contains no readable cell.
    """
    rows, _ = _current_rows(Path(results_dir))
    baseline = baseline_from_rows(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(baseline, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    temporary.replace(path)
    return baseline


def read_baseline(path: str | Path) -> dict[str, Any]:
    """Read and validate a baseline file.

    Raises DataError naming the file when it is missing, not valid JSON, not a kdbench baseline of
    version 1, or when a row lacks ``mean_iou`` or ``n_seeds`` or has a non-numeric value.
    """
    path = Path(path)
    recreate = f"Create it with `kdbench check --baseline {path} --results DIR --update-baseline`."
    if not path.is_file():
        raise DataError(f"baseline file {path} not found. {recreate}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read baseline file {path}: {error}.") from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"baseline file {path} is not valid JSON (line {error.lineno}, column {error.colno}: "
            f"{error.msg}). Restore it from version control or recreate it. {recreate}"
        ) from None

    if not isinstance(document, dict) or document.get("format") != BASELINE_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise DataError(
            f'{path} is not a kdbench baseline: expected "format": "{BASELINE_FORMAT}", '
            f"found {found!r}. {recreate}"
        )
    if document.get("version") != BASELINE_VERSION:
        raise DataError(
            f"baseline file {path} has version {document.get('version')!r}; this kdbench reads "
            f"version {BASELINE_VERSION}. {recreate}"
        )
    rows = document.get("rows")
    if not isinstance(rows, dict):
        raise DataError(f'baseline file {path}: "rows" must be an object of row id to values.')
    for row_id, values in rows.items():
        _validate_baseline_row(path, row_id, values)
    return document


def check(
    baseline_path: str | Path,
    results_dir: str | Path,
    tolerances: Tolerances | None = None,
    *,
    strict: bool = False,
) -> CheckResult:
    """Compare the results folder with the baseline and return every guarded metric's verdict.

    Raises DataError when the baseline is missing or malformed, or when the results folder
    contains no readable cell.
    """
    tolerances = tolerances or Tolerances()
    baseline = read_baseline(baseline_path)
    rows, problems = _current_rows(Path(results_dir))
    current = {row["row_id"]: row for row in rows}
    result = CheckResult(entries=[], tolerances=tolerances, strict=strict, problems=problems)

    for row_id, base_row in baseline["rows"].items():
        if row_id not in current:
            note = "row in the baseline but not in the results"
            result.entries.append(
                CheckEntry(row_id, "row", "present", None, None, None, MISSING, note)
            )
            continue
        result.entries.extend(_compare_row(row_id, base_row, current[row_id], tolerances))
        result.notes.extend(_row_notes(row_id, baseline, base_row, current[row_id]))

    for row_id in current:
        if row_id not in baseline["rows"]:
            note = "row not in the baseline; add it with --update-baseline"
            result.entries.append(CheckEntry(row_id, "row", None, "present", None, None, NEW, note))
    return result


def _compare_row(
    row_id: str, base: Mapping[str, Any], current: Mapping[str, Any], tolerances: Tolerances
) -> list[CheckEntry]:
    if current["status"] != "ok":
        note = f"all cells failed: {current['error']}"
        return [CheckEntry(row_id, "status", "ok", "failed", None, None, FAIL, note)]

    entries = [_compare_iou(row_id, base, current, tolerances)]
    for metric in SIZE_METRICS:
        entries.append(
            _compare_growth(
                row_id, metric, base.get(metric), current[metric], tolerances.max_size_growth_pct
            )
        )
    if tolerances.max_latency_growth_pct is not None:
        entries.append(
            _compare_growth(
                row_id,
                LATENCY_METRIC,
                base.get(LATENCY_METRIC),
                current["latency_median_ms"],
                tolerances.max_latency_growth_pct,
            )
        )
    return entries


def _compare_iou(
    row_id: str, base: Mapping[str, Any], current: Mapping[str, Any], tolerances: Tolerances
) -> CheckEntry:
    allowed = tolerances.allowed_iou_drop(base, current)
    value = current["mean_iou"]
    if math.isnan(value):
        return CheckEntry(
            row_id, "mean_iou", base["mean_iou"], None, None, -allowed, FAIL, "no mean IoU"
        )

    change = value - base["mean_iou"]
    status = PASS if change >= -allowed else FAIL
    noise = allowed - tolerances.max_iou_drop
    note = f"allowed drop {tolerances.max_iou_drop:g} + seed noise {noise:.4f}"
    return CheckEntry(row_id, "mean_iou", base["mean_iou"], value, change, -allowed, status, note)


def _compare_growth(
    row_id: str, metric: str, base: float | None, current: float, limit_pct: float
) -> CheckEntry:
    if base is None:
        return CheckEntry(
            row_id, metric, None, _or_none(current), None, limit_pct, SKIP, "not in the baseline"
        )
    if math.isnan(current):
        note = "missing in the results"
        return CheckEntry(row_id, metric, base, None, None, limit_pct, FAIL, note)

    if base == 0:
        growth = 0.0 if current == 0 else math.inf
    else:
        growth = (current - base) / base * 100.0
    status = PASS if growth <= limit_pct else FAIL
    note = "grew from 0" if math.isinf(growth) else ""
    return CheckEntry(row_id, metric, base, current, growth, limit_pct, status, note)


def _row_notes(
    row_id: str, baseline: Mapping[str, Any], base: Mapping[str, Any], current: Mapping[str, Any]
) -> list[str]:
    notes = []
    base_hash = (baseline.get("config_hash") or {}).get(row_id)
    if base_hash and current["config_hash"] and base_hash != current["config_hash"]:
        notes.append(f"{row_id}: config hash differs from the baseline; the settings changed.")
    if base["n_seeds"] != current["n_seeds"]:
        notes.append(
            f"{row_id}: {base['n_seeds']} seeds in the baseline, {current['n_seeds']} now."
        )
    if current["n_failed"]:
        notes.append(f"{row_id}: {current['n_failed']} failed cells left out: {current['error']}")
    return notes


def _current_rows(results_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    if not results_dir.is_dir():
        raise DataError(
            f"results folder {results_dir} not found. Pass the output folder of `kdbench run`."
        )
    cells, problems = load_cells(results_dir)
    if not cells:
        details = f" Problems: {' | '.join(problems)}" if problems else ""
        raise DataError(
            f"no readable cell JSON in {results_dir / CELLS_FOLDER}. Run `kdbench run` into "
            f"this folder first, or pass the folder that contains {CELLS_FOLDER}/." + details
        )
    return aggregate_rows(cells), problems


def _validate_baseline_row(path: Path, row_id: str, values: Any) -> None:
    where = f"baseline file {path}, row '{row_id}'"
    if not isinstance(values, dict):
        raise DataError(f"{where}: expected an object of metric values, got {values!r}.")
    for key in ("mean_iou", "n_seeds"):
        if not _is_number(values.get(key)):
            raise DataError(f"{where}: '{key}' is {values.get(key)!r}; expected a number.")
    for key in ("mean_iou_std", *SIZE_METRICS, LATENCY_METRIC):
        if values.get(key) is not None and not _is_number(values[key]):
            raise DataError(f"{where}: '{key}' is {values[key]!r}; expected a number or null.")


def _standard_error(row: Mapping[str, Any]) -> float:
    """Return std / sqrt(n) of a row's mean IoU, or 0 when undefined (one seed, no std)."""
    std, n = row.get("mean_iou_std"), row.get("n_seeds") or 0
    if std is None or math.isnan(std) or n < 2:
        return 0.0
    return std / math.sqrt(n)


def _non_negative_number(value: Any, where: str) -> float:
    if not _is_number(value) or math.isnan(value) or value < 0:
        raise ConfigError(f"{where} = {value!r} is invalid; expected a number >= 0.")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value


def _json_ready(values: Mapping[str, Any]) -> dict[str, Any]:
    """Replace NaN and infinity with None and integral floats of counts with ints, for JSON."""
    ready = {}
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, float) and key.endswith(("_bytes", "params")) and value.is_integer():
            value = int(value)
        ready[key] = value
    return ready


def _kdbench_version() -> str:
    try:
        return importlib.metadata.version("kdbench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------
# Output and command line


class OutputFormat(str, enum.Enum):
    """Output formats of ``kdbench check``."""

    table = "table"
    md = "md"
    json = "json"


_HEADER = ("row", "metric", "baseline", "current", "change", "limit", "status")


def format_result(
    result: CheckResult, output_format: OutputFormat | str = OutputFormat.table
) -> str:
    """Render a check result as an aligned text table, a Markdown table or JSON."""
    output_format = OutputFormat(output_format)
    if output_format is OutputFormat.json:
        return json.dumps(result.to_dict(), indent=2)

    lines = [_display_line(entry) for entry in result.entries]
    if output_format is OutputFormat.md:
        text = [
            f"### kdbench check: {_verdict(result)}\n",
            _md_row(_HEADER),
            _md_row(["---"] * len(_HEADER)),
        ]
        text += [_md_row(line) for line in lines]
        text += [""] + [f"- {message}" for message in result.notes + result.problems]
        return "\n".join(text).rstrip() + "\n"

    widths = [
        max(len(str(cell)) for cell in column) for column in zip(_HEADER, *lines, strict=True)
    ]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [_HEADER, *lines]
    ]
    text += [""] + [f"note: {message}" for message in result.notes]
    text += [f"warning: {message}" for message in result.problems]
    text.append(_verdict(result))
    return "\n".join(text) + "\n"


def _verdict(result: CheckResult) -> str:
    if result.passed:
        return f"passed: {sum(e.status == PASS for e in result.entries)} metrics within tolerance"
    names = ", ".join(f"{e.row_id} {e.metric}" for e in result.failures)
    return f"FAILED: {len(result.failures)} regressions ({names})"


def _display_line(entry: CheckEntry) -> tuple[str, ...]:
    status = entry.status if not entry.note else f"{entry.status} ({entry.note})"
    if entry.metric == "mean_iou":
        change = "" if entry.change is None else f"{entry.change:+.4f}"
        limit = "" if entry.limit is None else f">= {entry.limit:+.4f}"
    else:
        change = "" if entry.change is None else f"{entry.change:+.2f}%"
        limit = "" if entry.limit is None else f"<= +{entry.limit:g}%"
    return (
        entry.row_id,
        entry.metric,
        _display_value(entry.metric, entry.baseline),
        _display_value(entry.metric, entry.current),
        change,
        limit,
        status,
    )


def _display_value(metric: str, value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if metric == "mean_iou":
        return f"{value:.4f}"
    if metric == "gmacs":
        return f"{value:.4g}"
    if metric == LATENCY_METRIC:
        return f"{value:.2f} ms"
    return f"{value:,.0f}"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def load_tolerances(config_path: str | Path) -> Tolerances:
    """Read the ``[check]`` table of a matrix TOML file; defaults when the table is absent.

    Raises ConfigError naming the file when it is missing, not valid TOML, or has a bad
    ``[check]`` key or value.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(config_path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found. Pass the matrix TOML with --config."
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}.") from None
    return Tolerances.from_mapping(document.get("check", {}), source=path)


def check_cli(
    baseline: Annotated[
        Path,
        typer.Option(
            "--baseline", help="Baseline JSON to compare with, or to write with --update-baseline."
        ),
    ],
    results: Annotated[
        Path | None,
        typer.Option(
            "--results", help="Results folder of `kdbench run`. Default: the baseline's folder."
        ),
    ] = None,
    max_iou_drop: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Allowed absolute drop of mean IoU before seed noise is added. Default 0.02.",
        ),
    ] = None,
    iou_stderr_multiplier: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Standard errors of the IoU difference added to the allowed drop. Default 2.",
        ),
    ] = None,
    max_size_growth: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Allowed growth in percent of file sizes, parameters and GMACs. Default 1.",
        ),
    ] = None,
    max_latency_growth: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Allowed growth in percent of torch batch-1 median latency. Default: unchecked.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Matrix TOML file whose check table sets the tolerances. Flags override it.",
        ),
    ] = None,
    update_baseline: Annotated[
        bool,
        typer.Option("--update-baseline", help="Write the baseline from the results and exit."),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Also fail when a baseline row is missing from the results."),
    ] = False,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Output format of the comparison table.")
    ] = OutputFormat.table,
) -> None:
    """Compare a results folder with a baseline and fail on accuracy or size regressions.

    Exit status: 0 within tolerance, 1 on a regression, 2 on invalid input.

    Invalid input is a missing or malformed baseline, results folder or config file.
    """
    results_dir = results if results is not None else baseline.parent
    try:
        if update_baseline:
            written = write_baseline(results_dir, baseline)
            typer.echo(
                f"Baseline written: {baseline} ({len(written['rows'])} rows from {results_dir})"
            )
            raise typer.Exit(EXIT_PASSED)

        tolerances = load_tolerances(config) if config is not None else Tolerances()
        tolerances = tolerances.with_overrides(
            max_iou_drop=max_iou_drop,
            iou_stderr_multiplier=iou_stderr_multiplier,
            max_size_growth_pct=max_size_growth,
            max_latency_growth_pct=max_latency_growth,
        )
        result = check(baseline, results_dir, tolerances, strict=strict)
    except KdbenchError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None

    typer.echo(format_result(result, output_format), nl=False)
    raise typer.Exit(EXIT_PASSED if result.passed else EXIT_REGRESSION)
