"""Builders of cell JSON files with fixed numbers, for the regression-gate tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_row(
    results_dir: Path,
    *,
    teacher: str | None = "unet_small",
    student: str = "cfpnet_m",
    strategy: str = "logit",
    ious: tuple[float, ...] = (0.80, 0.82, 0.84),
    state_dict_bytes: int = 2_000_000,
    onnx_fp32_bytes: int = 2_100_000,
    onnx_int8_bytes: int | None = 600_000,
    params: int = 500_000,
    gmacs: float = 0.5,
    latency_ms: float = 5.0,
) -> list[Path]:
    """Write one schema-version-1 cell per seed (seed i gets ``ious[i]``) and return the paths."""
    paths = []
    for seed, iou in enumerate(ious):
        cell_id = f"{teacher or '-'}__{student}__{strategy}__s{seed}"
        cell: dict[str, Any] = {
            "schema_version": 1,
            "cell_id": cell_id,
            "status": "ok",
            "error": None,
            "role": "student",
            "teacher": teacher,
            "student": student,
            "model": student,
            "strategy": strategy,
            "strategy_terms": [],
            "seed": seed,
            "config": {"seed": seed},
            "config_hash": f"hash-{seed}",
            "metrics": {
                "mean_iou": iou,
                "mean_dice": iou + 0.08,
                "n_cases": 2,
                "per_structure": {"LV": {"iou": iou, "dice": iou + 0.08}},
                "per_case": [
                    {
                        "case_id": f"case{i}",
                        "iou": {},
                        "dice": {},
                        "mean_iou": iou,
                        "mean_dice": iou,
                    }
                    for i in range(2)
                ],
            },
            "profile": {
                "params": {"total": params, "trainable": params},
                "macs": {"headline_gmacs": gmacs},
                "sizes": {
                    "state_dict_bytes": state_dict_bytes,
                    "onnx_fp32_bytes": onnx_fp32_bytes,
                    "onnx_fp16_bytes": None,
                    "onnx_int8_bytes": onnx_int8_bytes,
                },
                "latency": [
                    {
                        "backend": "torch",
                        "variant": "fp32",
                        "device": "cpu",
                        "batch": 1,
                        "median_ms": latency_ms,
                        "p95_ms": latency_ms * 1.2,
                    }
                ],
                "memory": {"device": "cpu", "method": "rss", "peak_bytes": 1_000_000},
            },
        }
        path = results_dir / "cells" / f"{cell_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cell), encoding="utf-8")
        paths.append(path)
    return paths
