"""Builders of schema-version-1 cell JSON files with fixed numbers, for the report tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

CLASS_NAMES = ["background", "LV", "RV", "myocardium"]


def cell_id_for(role: str, teacher: str | None, student: str, strategy: str, seed: int) -> str:
    """Return the cell id the runner gives a cell (docs/design.md, "Cell JSON")."""
    if role == "teacher":
        return f"teacher__{student}__s{seed}"
    return f"{teacher or '-'}__{student}__{strategy}__s{seed}"


def make_cell(
    *,
    role: str = "student",
    teacher: str | None = None,
    student: str = "cfpnet_m",
    strategy: str = "none",
    seed: int = 0,
    mean_iou: float = 0.80,
    mean_dice: float | None = None,
    case_ious: list[float] | None = None,
    structure_iou: dict[str, float] | None = None,
    params: int = 500_000,
    gmacs: float = 0.5,
    state_dict_bytes: int = 2_000_000,
    onnx_fp32_bytes: int | None = 2_100_000,
    onnx_int8_bytes: int | None = 600_000,
    latency_ms: float | None = 5.0,
    latency_p95_ms: float | None = None,
    peak_bytes: int = 50_000_000,
    history: list[dict[str, Any]] | None = None,
    status: str = "ok",
    error: str | None = None,
    predictions: str | None = None,
) -> dict[str, Any]:
    """Build one cell dict; per-case IoUs default to three cases all equal to ``mean_iou``."""
    cell_id = cell_id_for(role, teacher, student, strategy, seed)
    case_ious = case_ious if case_ious is not None else [mean_iou] * 3
    structure_iou = structure_iou or {
        "LV": mean_iou + 0.05,
        "RV": mean_iou,
        "myocardium": mean_iou - 0.05,
    }
    latency = []
    if latency_ms is not None:
        latency.append(
            {
                "backend": "torch",
                "variant": "fp32",
                "device": "cpu",
                "device_name": "test cpu",
                "threads": 1,
                "batch": 1,
                "median_ms": latency_ms,
                "p95_ms": latency_p95_ms if latency_p95_ms is not None else 1.2 * latency_ms,
                "mean_ms": latency_ms,
                "cv": 0.01,
                "warmup": 3,
                "repeats": 10,
                "versions": {},
            }
        )
    config = {"teacher": teacher, "student": student, "strategy": strategy, "seed": seed}

    cell: dict[str, Any] = {
        "schema_version": 1,
        "cell_id": cell_id,
        "status": status,
        "error": error,
        "role": role,
        "teacher": teacher,
        "student": student,
        "model": student,
        "strategy": strategy,
        "strategy_terms": []
        if strategy == "none"
        else [{"kind": strategy, "weight": 1.0, "options": {}}],
        "seed": seed,
        "config": config,
        "config_hash": f"hash-{cell_id}",
        "dataset": {
            "name": "phantom",
            "source": "synthetic",
            "class_names": CLASS_NAMES,
            "split": {"train": [], "val": [], "test": []},
            "image_size": 32,
        },
        "training": {
            "epochs": len(history or []),
            "selection": "best_val",
            "selected_epoch": (history or [{"epoch": None}])[-1]["epoch"],
            "seconds": 1.0,
            "history": history or [],
        },
        "artifacts": {"checkpoint": f"checkpoints/{cell_id}.pt", "predictions": predictions},
        "teacher_ref": None,
        "environment": {"kdbench": "0.1.0"},
    }
    if status != "ok":
        return cell

    cell["metrics"] = {
        "mean_iou": mean_iou,
        "mean_dice": mean_dice if mean_dice is not None else mean_iou + 0.08,
        "n_cases": len(case_ious),
        "per_structure": {name: {"iou": v, "dice": v + 0.05} for name, v in structure_iou.items()},
        "per_case": [
            {"case_id": f"case{i:02d}", "iou": {}, "dice": {}, "mean_iou": v, "mean_dice": v + 0.05}
            for i, v in enumerate(case_ious)
        ],
    }
    cell["profile"] = {
        "input_shape": [1, 1, 32, 32],
        "headline_unit": "GMACs",
        "params": {"total": params, "trainable": params},
        "macs": {
            "headline_gmacs": gmacs,
            "fvcore_gmacs": gmacs,
            "thop_gmacs": gmacs,
            "disagreement_pct": 0.0,
            "flagged": False,
            "per_operator": [],
            "skipped": {"fvcore": [], "thop": []},
        },
        "sizes": {
            "state_dict_bytes": state_dict_bytes,
            "onnx_fp32_bytes": onnx_fp32_bytes,
            "onnx_fp16_bytes": None,
            "onnx_int8_bytes": onnx_int8_bytes,
        },
        "onnx": {},
        "latency": latency,
        "memory": {"device": "cpu", "method": "rss", "peak_bytes": peak_bytes},
    }
    return cell


def write_cell(results_dir: Path, cell: dict[str, Any]) -> Path:
    """Write ``cell`` to ``<results_dir>/cells/<cell_id>.json`` and return the path."""
    path = results_dir / "cells" / f"{cell['cell_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cell, indent=1), encoding="utf-8")
    return path


def write_matrix(results_dir: Path, *, with_history: bool = False) -> list[dict[str, Any]]:
    """Write a small three-seed matrix and return its cells.

    Rows: teacher ``unet_small`` (IoU 0.88-0.90), ``cfpnet_m`` alone (0.80, 0.82, 0.84) and
    ``cfpnet_m`` distilled with ``logit`` (0.83, 0.85, 0.87; its cases 0.02, 0.03 and 0.04 above
    the same cases of the student alone).
    """
    history = None
    if with_history:
        history = [
            {
                "epoch": e,
                "train_loss": 1.0 / e,
                "train_sup_loss": 0.8 / e,
                "train_kd_loss": 0.2 / e,
                "val_mean_iou": 0.5 + 0.1 * e,
                "seconds": 0.1,
            }
            for e in (1, 2, 3)
        ]
    cells = []
    for seed, (alone, distilled, teacher_iou) in enumerate(
        [(0.80, 0.83, 0.88), (0.82, 0.85, 0.89), (0.84, 0.87, 0.90)]
    ):
        cells.append(
            make_cell(
                role="teacher",
                student="unet_small",
                seed=seed,
                mean_iou=teacher_iou,
                params=8_000_000,
                gmacs=12.0,
                state_dict_bytes=32_000_000,
                onnx_fp32_bytes=32_100_000,
                onnx_int8_bytes=8_100_000,
                latency_ms=40.0,
                history=history,
            )
        )
        cells.append(
            make_cell(
                seed=seed,
                mean_iou=alone,
                case_ious=[alone - 0.01, alone, alone + 0.01],
                history=history,
            )
        )
        cells.append(
            make_cell(
                teacher="unet_small",
                strategy="logit",
                seed=seed,
                mean_iou=distilled,
                case_ious=[alone + 0.01, alone + 0.03, alone + 0.05],
                history=history,
            )
        )
    for cell in cells:
        write_cell(results_dir, cell)
    return cells


def phantom_labels(n: int = 3, size: int = 32, shift: int = 0) -> np.ndarray:
    """Return label maps (n, size, size) uint8 with three nested squares (classes 3, 2, 1)."""
    labels = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):
        for k, half in ((3, 12), (2, 8), (1, 4)):
            centre = size // 2 + shift + i
            labels[i, centre - half : centre + half, centre - half : centre + half] = k
    return labels


def write_overlay_inputs(results_dir: Path, n: int = 3, size: int = 32) -> Path:
    """Write ``overlay_inputs.npz`` with images, labels, case ids and class names."""
    labels = phantom_labels(n, size)
    images = (labels.astype(np.float32) / 4.0 + 0.1).clip(0.0, 1.0)
    path = results_dir / "overlay_inputs.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        images=images,
        labels=labels,
        case_ids=np.array([f"case{i:02d}" for i in range(n)]),
        class_names=np.array(CLASS_NAMES),
    )
    return path


def write_predictions(results_dir: Path, cell_id: str, shift: int, n: int = 3) -> Path:
    """Write ``predictions/<cell_id>.npz``: the phantom labels moved by ``shift`` pixels."""
    path = results_dir / "predictions" / f"{cell_id}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        case_ids=np.array([f"case{i:02d}" for i in range(n)]),
        pred=phantom_labels(n, 32, shift),
    )
    return path
