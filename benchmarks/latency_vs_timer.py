"""Compare kdbench's CPU latency with torch.utils.benchmark.Timer on the same model and input.

For each model, kdbench's ``time_torch`` (median of single timed forward passes) and
``torch.utils.benchmark.Timer.blocked_autorange`` (median over blocks of passes) time the same
module on the same input tensor, in this process, with the same thread count and under
``torch.inference_mode``. Rounds alternate between the two so that drift in machine load hits
both; each side keeps its lowest median over the rounds. The script prints a Markdown table
with the ratio kdbench / Timer, expected between 0.9 and 1.1.

    python benchmarks/latency_vs_timer.py --threads 4 --input-size 1x1x256x256 \\
        --output results/latency_vs_timer.md
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch
import torch.utils.benchmark as benchmark

from kdbench.models import create_model
from kdbench.profile.command import parse_input_size
from kdbench.profile.device import cpu_name, library_versions
from kdbench.profile.latency import time_torch

RATIO_RANGE = (0.9, 1.1)


def time_with_timer(model: torch.nn.Module, x: torch.Tensor, threads: int, min_run_time: float):
    """Return torch.utils.benchmark's median and interquartile range per forward pass, in ms."""
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    with torch.inference_mode():
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return measurement.median * 1e3, measurement.iqr * 1e3


def compare(name: str, options: dict, args: argparse.Namespace) -> dict:
    batch, channels, height, width = parse_input_size(args.input_size)
    model = create_model(name, in_channels=channels, num_classes=args.num_classes, **options)
    model.eval()
    x = torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(0))

    kdbench_medians, timer_medians = [], []
    kdbench_record, timer_iqr = None, None
    for _ in range(args.rounds):
        record = time_torch(
            model, x.shape, torch.device("cpu"), args.threads, args.warmup, args.repeats
        )
        if kdbench_record is None or record["median_ms"] < kdbench_record["median_ms"]:
            kdbench_record = record
        kdbench_medians.append(record["median_ms"])

        median, iqr = time_with_timer(model, x, args.threads, args.min_run_time)
        if not timer_medians or median < min(timer_medians):
            timer_iqr = iqr
        timer_medians.append(median)

    kdbench_ms, timer_ms = min(kdbench_medians), min(timer_medians)
    label = name + "".join(f" {k}={v}" for k, v in options.items())
    return {
        "model": label,
        "kdbench_ms": kdbench_ms,
        "kdbench_p95_ms": kdbench_record["p95_ms"],
        "kdbench_cv": kdbench_record["cv"],
        "timer_ms": timer_ms,
        "timer_iqr_ms": timer_iqr,
        "ratio": kdbench_ms / timer_ms,
    }


def render(rows: list[dict], args: argparse.Namespace) -> str:
    versions = library_versions()
    low, high = RATIO_RANGE
    lines = [
        "# kdbench CPU latency vs torch.utils.benchmark.Timer",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- CPU: {cpu_name()}, threads: {args.threads}",
        f"- input: {args.input_size} (BxCxHxW), {args.num_classes} classes",
        f"- kdbench: {args.warmup} warm-up + {args.repeats} timed passes per round; "
        f"Timer: blocked_autorange(min_run_time={args.min_run_time} s); "
        f"{args.rounds} alternating rounds, lowest median kept",
        f"- torch {versions['torch']}, Python {versions['python']}",
        "",
        "| model | kdbench median (ms) | kdbench p95 (ms) | kdbench cv | Timer median (ms) "
        f"| Timer IQR (ms) | ratio kdbench / Timer | in [{low}, {high}] |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        inside = "yes" if low <= r["ratio"] <= high else "no"
        lines.append(
            f"| {r['model']} | {r['kdbench_ms']:.3f} | {r['kdbench_p95_ms']:.3f} "
            f"| {r['kdbench_cv']:.3f} | {r['timer_ms']:.3f} | {r['timer_iqr_ms']:.3f} "
            f"| {r['ratio']:.3f} | {inside} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both timers")
    parser.add_argument("--input-size", default="1x1x256x256", help="input shape BxCxHxW")
    parser.add_argument("--unet-width", type=int, default=32, help="U-Net base width (channels)")
    parser.add_argument("--num-classes", type=int, default=8, help="output classes of both models")
    parser.add_argument("--warmup", type=int, default=5, help="kdbench untimed passes per round")
    parser.add_argument("--repeats", type=int, default=30, help="kdbench timed passes per round")
    parser.add_argument(
        "--min-run-time", type=float, default=2.0, help="Timer measuring time per round, in seconds"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per model")
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    args = parser.parse_args(argv)

    models = [("unet", {"base_width": args.unet_width}), ("cfpnet_m", {})]
    rows = [compare(name, options, args) for name, options in models]
    text = render(rows, args)
    print(text, end="")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
