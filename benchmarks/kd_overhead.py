"""Measure the training-time overhead of each distillation strategy, with and without the cache.

For every built-in strategy the script trains the default kdbench student (CFPNet-M) with the
default teacher (U-Net, base width 16, depth 4, as in the embedded default matrix). Each
strategy runs twice: once computing the teacher's outputs at every step, and once reading them
from a :class:`~kdbench.distill.TeacherOutputCache`. It divides the median epoch time of each
run by the median epoch time of the same student trained alone, and prints a Markdown table:

    python benchmarks/kd_overhead.py --epochs 3 --threads 2 --output kd_overhead.md

The teacher keeps its random initial weights, because the time of a forward pass does not depend
on the values of the weights. Validation is off, so epoch times cover training steps only. The
cache's build time is a one-off cost per teacher and data set, reported in its own column.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from kdbench.data import create_dataset, split_by_patient
from kdbench.distill import TeacherOutputCache, build_strategy
from kdbench.models import create_model
from kdbench.train import TrainSettings, train_model

TEACHER = ("unet", {"base_width": 16, "depth": 4})
STUDENT = ("cfpnet_m", {})

# Pairs match stages of equal resolution: U-Net enc2/enc3/enc4 are at H/2, H/4, H/8 like
# CFPNet-M enc1/enc2/bottleneck.
TERMS = {
    "logit": [{"kind": "logit", "temperature": 4.0}],
    "feature": [{"kind": "feature", "pairs": [["enc3", "enc2"]]}],
    "attention": [
        {"kind": "attention", "pairs": [["enc2", "enc1"], ["enc3", "enc2"], ["enc4", "bottleneck"]]}
    ],
    "cwd": [{"kind": "cwd", "temperature": 4.0}],
    "pairwise": [{"kind": "pairwise", "pairs": [["enc4", "bottleneck"]], "pool_size": 2}],
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (median is kept)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--image-size", type=int, default=128, help="slice size in pixels")
    parser.add_argument("--n-patients", type=int, default=12, help="synthetic patients")
    parser.add_argument("--slices-per-patient", type=int, default=6, help="slices per patient")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per optimiser step")
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=list(TERMS),
        choices=list(TERMS),
        help="strategies to measure",
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    return parser.parse_args()


def median_epoch_seconds(result) -> float:
    """Median of the per-epoch training times of a TrainResult, in seconds."""
    return statistics.median(record["seconds"] for record in result.history)


def new_models(data):
    in_channels, num_classes = data.images.shape[1], data.num_classes
    torch.manual_seed(0)
    teacher = create_model(
        TEACHER[0], in_channels=in_channels, num_classes=num_classes, **TEACHER[1]
    )
    torch.manual_seed(1)
    student = create_model(
        STUDENT[0], in_channels=in_channels, num_classes=num_classes, **STUDENT[1]
    )
    return teacher, student


def time_alone(data, split, settings) -> float:
    """Median epoch time of the student trained alone, in seconds."""
    _, student = new_models(data)
    return median_epoch_seconds(train_model(student, data, split, settings, seed=0))


def measure(kind, data, split, settings, image_size) -> dict:
    """Train one strategy without and with the cache; return the row of the table, no ratios."""
    teacher, student = new_models(data)
    strategy = build_strategy(TERMS[kind])
    strategy.setup(student.stage_channels(image_size), teacher.stage_channels(image_size))
    uncached = train_model(
        student, data, split, settings, seed=0, strategy=strategy, teacher=teacher
    )

    teacher, student = new_models(data)
    strategy = build_strategy(TERMS[kind])
    strategy.setup(student.stage_channels(image_size), teacher.stage_channels(image_size))
    started = time.perf_counter()
    cache = TeacherOutputCache(
        teacher,
        data.images,
        strategy.teacher_stages(),
        rows=split["train"],
        keep_logits=strategy.needs_teacher_logits(),
    )
    build_seconds = time.perf_counter() - started
    cached = train_model(
        student,
        data,
        split,
        settings,
        seed=0,
        strategy=strategy,
        teacher=teacher,
        teacher_cache=cache,
    )

    return {
        "strategy": strategy.describe(),
        "uncached_s": median_epoch_seconds(uncached),
        "cached_s": median_epoch_seconds(cached),
        "build_s": build_seconds,
        "cache_mib": cache.nbytes / 2**20,
        "bytes_per_sample": cache.bytes_per_sample,
    }


def markdown(rows, alone_times, args, n_train) -> str:
    before, after = alone_times
    lines = [
        f"Student {STUDENT[0]} alone: {before:.2f} s per epoch before the strategies and "
        f"{after:.2f} s after (medians of {args.epochs} epochs; ratios divide by their mean); "
        f"{n_train} training slices of {args.image_size}x{args.image_size}, batch "
        f"{args.batch_size}, {args.threads} threads, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, teacher {TEACHER[0]} {TEACHER[1]}.",
        "",
        "| strategy | epoch s | ratio | epoch s, cached | ratio, cached | cache build s "
        "| cache MiB | cache bytes/sample |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['strategy']} | {row['uncached_s']:.2f} | {row['uncached_ratio']:.2f} "
            f"| {row['cached_s']:.2f} | {row['cached_ratio']:.2f} | {row['build_s']:.2f} "
            f"| {row['cache_mib']:.1f} | {row['bytes_per_sample']:,} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    data = create_dataset(
        "synthetic",
        n_patients=args.n_patients,
        slices_per_patient=args.slices_per_patient,
        image_size=args.image_size,
    )
    split = split_by_patient(data.patient_ids, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
    settings = TrainSettings(
        epochs=args.epochs, batch_size=args.batch_size, select="last", val_every=0
    )

    # One discarded epoch warms up the allocator and kernels, so the first timed run is not
    # slower than the rest. The student alone is timed before and after the strategies, and the
    # mean of the two medians is the denominator, so slow drift of the machine cancels out.
    _, student = new_models(data)
    train_model(
        student,
        data,
        split,
        TrainSettings(epochs=1, batch_size=args.batch_size, select="last", val_every=0),
        seed=0,
    )
    alone_times = [time_alone(data, split, settings)]
    rows = [measure(kind, data, split, settings, args.image_size) for kind in args.strategies]
    alone_times.append(time_alone(data, split, settings))
    alone = statistics.mean(alone_times)
    for row in rows:
        row["uncached_ratio"] = row["uncached_s"] / alone
        row["cached_ratio"] = row["cached_s"] / alone

    table = markdown(rows, alone_times, args, len(split["train"]))
    print(table, end="")
    if args.output is not None:
        args.output.write_text(table)


if __name__ == "__main__":
    main()
