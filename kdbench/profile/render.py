"""Render a profile record as a text table, CSV, JSON or Markdown."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from kdbench.errors import ConfigError

FORMATS = ("table", "csv", "json", "md")
MIB = 1024 * 1024

Section = tuple[str, list[str], list[list[str]]]  # title, column headers, rows of cell text


def render_profile(profile: dict[str, Any], fmt: str, title: str = "") -> str:
    """Render ``profile`` in ``fmt``: ``table`` (aligned text), ``csv``, ``json`` or ``md``.

    ``csv`` is long format, one measured value per row: section, item, metric, value, unit.
    Raises ConfigError for any other format.
    """
    if fmt == "json":
        return json.dumps(profile, indent=2, default=str)
    if fmt == "csv":
        return _render_csv(profile)
    if fmt == "table":
        return _render_text(_sections(profile), title)
    if fmt == "md":
        return _render_markdown(_sections(profile), title)
    raise ConfigError(f"unknown output format '{fmt}': use one of {', '.join(FORMATS)}")


def _number(value: Any, digits: int = 5) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.3f}"


def _sections(profile: dict[str, Any]) -> list[Section]:
    macs = profile["macs"]
    params = profile["params"]
    overview = [
        ["input shape (B, C, H, W)", "x".join(str(d) for d in profile["input_shape"])],
        ["parameters (total)", _number(params["total"])],
        ["parameters (trainable)", _number(params["trainable"])],
        ["GMACs (fvcore, headline)", _number(macs["headline_gmacs"])],
        ["GFLOPs (2 x GMACs)", _number(macs["headline_gflops"])],
        ["GMACs (thop)", _number(macs["thop_gmacs"])],
        ["counter disagreement (%)", _number(macs["disagreement_pct"], 3)],
        [f"flagged (> {macs['disagreement_limit_pct']:g}%)", _number(macs["flagged"])],
        ["device", f"{profile['device']} ({profile['device_name']})"],
        ["threads", str(profile["threads"])],
    ]
    operators = [
        [row["operator"], _number(row["fvcore_gmacs"]), _number(row["thop_gmacs"])]
        for row in macs["per_operator"]
    ]
    skipped = [
        [
            counter,
            ", ".join(f"{name} x{calls}" for name, calls in macs["skipped_calls"][counter].items())
            or "none",
        ]
        for counter in ("fvcore", "thop")
    ]

    artifacts = [
        [
            "state dict (float32)",
            _number(profile["sizes"]["state_dict_bytes"]),
            _mib(profile["sizes"]["state_dict_bytes"]),
            "-",
            "-",
            "-",
        ]
    ]
    for variant, record in profile["onnx"].items():
        artifacts.append(
            [
                f"ONNX {variant}",
                _number(record["bytes"]),
                _mib(record["bytes"]),
                _number(record["max_abs_diff"], 3),
                _number(record["mean_iou"], 4),
                record["error"] or "-",
            ]
        )

    latency = [
        [
            r["backend"],
            r["variant"],
            r["device"],
            str(r["threads"]),
            str(r["batch"]),
            _number(r["median_ms"], 4),
            _number(r["p95_ms"], 4),
            _number(r["mean_ms"], 4),
            _number(r["cv"], 3),
        ]
        for r in profile["latency"]
    ]
    memory_record = profile["memory"]
    memory = [
        [
            memory_record["device"],
            str(entry["batch"]),
            _mib(entry["peak_bytes"]),
            _number(entry["peak_bytes"]),
        ]
        for entry in memory_record.get("per_batch", [memory_record])
    ]

    return [
        ("Model", ["quantity", "value"], overview),
        ("MACs per operator (GMACs)", ["operator", "fvcore", "thop"], operators),
        (
            "Operators each counter skipped (counted as zero)",
            ["counter", "operators x calls"],
            skipped,
        ),
        (
            "Artifacts",
            ["artifact", "bytes", "MiB", "max abs(onnx - torch)", "mean IoU", "error"],
            artifacts,
        ),
        (
            "Latency",
            [
                "backend",
                "variant",
                "device",
                "threads",
                "batch",
                "median ms",
                "p95 ms",
                "mean ms",
                "cv",
            ],
            latency,
        ),
        (
            f"Peak inference memory ({memory_record['method'].split(':')[0]})",
            ["device", "batch", "MiB", "bytes"],
            memory,
        ),
    ]


def _render_text(sections: list[Section], title: str) -> str:
    lines = [title, ""] if title else []
    for name, headers, rows in sections:
        widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
        lines.append(name)
        lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
        for row in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _render_markdown(sections: list[Section], title: str) -> str:
    lines = [f"## {title}", ""] if title else []
    for name, headers, rows in sections:
        lines.append(f"### {name}")
        lines.append("")
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join(" --- " for _ in headers) + "|")
        for row in rows:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _render_csv(profile: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, Any, str]] = []
    macs = profile["macs"]
    rows.append(("model", "", "input_shape", "x".join(map(str, profile["input_shape"])), ""))
    rows.append(("params", "", "total", profile["params"]["total"], "count"))
    rows.append(("params", "", "trainable", profile["params"]["trainable"], "count"))
    for key, unit in (
        ("headline_gmacs", "GMACs"),
        ("headline_gflops", "GFLOPs"),
        ("fvcore_gmacs", "GMACs"),
        ("thop_gmacs", "GMACs"),
        ("disagreement_pct", "%"),
        ("flagged", "bool"),
    ):
        rows.append(("macs", "", key, macs[key], unit))
    for row in macs["per_operator"]:
        rows.append(
            ("macs_per_operator", row["operator"], "fvcore_gmacs", row["fvcore_gmacs"], "GMACs")
        )
        rows.append(
            ("macs_per_operator", row["operator"], "thop_gmacs", row["thop_gmacs"], "GMACs")
        )
    for counter, calls in macs["skipped_calls"].items():
        for name, count in calls.items():
            rows.append(("skipped", counter, name, count, "calls"))
    for key, value in profile["sizes"].items():
        rows.append(("sizes", "", key, value, "bytes"))
    for variant, record in profile["onnx"].items():
        for key, unit in (
            ("bytes", "bytes"),
            ("max_abs_diff", "logit"),
            ("mean_iou", ""),
            ("error", ""),
        ):
            rows.append(("onnx", variant, key, record[key], unit))
    for r in profile["latency"]:
        item = (
            f"{r['backend']} {r['variant']} {r['device']} batch={r['batch']} threads={r['threads']}"
        )
        for key, unit in (("median_ms", "ms"), ("p95_ms", "ms"), ("mean_ms", "ms"), ("cv", "")):
            rows.append(("latency", item, key, r[key], unit))
    memory = profile["memory"]
    for entry in memory.get("per_batch", [memory]):
        rows.append(
            (
                "memory",
                f"{memory['device']} batch={entry['batch']}",
                "peak_bytes",
                entry["peak_bytes"],
                "bytes",
            )
        )
    rows.append(("memory", memory["device"], "method", memory["method"], ""))

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", "item", "metric", "value", "unit"])
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buffer.getvalue()
