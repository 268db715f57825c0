"""Per-case, per-structure IoU (Jaccard) and Dice for label maps.

Counts accumulate over all pixels of a case (a 2D slice file, or every slice cut from one volume),
scores are computed per case and structure, then averaged over cases. Empty cases:

* a structure absent from both the ground truth and the prediction of a case is excluded from that
  case's scores (it is neither 1 nor 0);
* a structure absent from the ground truth but predicted is a false positive: IoU and Dice are 0.

This differs from MONAI's ``ignore_empty=True``, which drops every case whose ground truth is
empty, so it cannot see false positives there.

The headline ``mean_iou`` is the mean over foreground structures of each structure's case-averaged
IoU; ``mean_dice`` likewise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from kdbench.data.base import SliceSet


def confusion_counts(
    pred: np.ndarray, target: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per-class ``(intersection, predicted, ground_truth)`` pixel counts, each ``(K,)``.

    ``pred`` and ``target`` are integer label maps of equal shape (any number of dimensions).
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction and target shapes differ: got {pred.shape} and {target.shape}"
        )
    pred = pred.reshape(-1).astype(np.int64)
    target = target.reshape(-1).astype(np.int64)
    predicted = np.bincount(pred, minlength=num_classes)[:num_classes]
    truth = np.bincount(target, minlength=num_classes)[:num_classes]
    intersection = np.bincount(target[pred == target], minlength=num_classes)[:num_classes]
    return intersection, predicted, truth


def scores_from_counts(
    intersection: np.ndarray, predicted: np.ndarray, truth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(iou, dice)`` per class from counts; NaN where a class is absent from both sides."""
    union = predicted + truth - intersection
    total = predicted + truth
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, intersection / np.maximum(union, 1), np.nan)
        dice = np.where(total > 0, 2.0 * intersection / np.maximum(total, 1), np.nan)
    return iou.astype(np.float64), dice.astype(np.float64)


def iou_dice(
    pred: np.ndarray, target: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return per-class IoU and Dice ``(K,)`` for one case; NaN marks a class absent from both."""
    return scores_from_counts(*confusion_counts(pred, target, num_classes))


def evaluate_predictions(
    pred: np.ndarray, target: np.ndarray, case_ids: Sequence[str], class_names: Sequence[str]
) -> dict:
    """Score predicted label maps ``(N, H, W)`` against ``target`` ``(N, H, W)``, slice ``i`` in
    case ``case_ids[i]``. Returns the ``metrics`` record of a cell (see docs/design.md).

    Class 0 is background and is not scored. With no slices, every score is NaN (JSON null).
    """
    num_classes = len(class_names)
    structures = list(class_names[1:])

    counts: dict[str, np.ndarray] = {}
    for i, case in enumerate(case_ids):
        stacked = np.stack(confusion_counts(pred[i], target[i], num_classes))
        counts[case] = counts[case] + stacked if case in counts else stacked

    per_case = []
    case_iou = []
    case_dice = []
    for case, (inter, predicted, truth) in counts.items():
        iou, dice = scores_from_counts(inter, predicted, truth)
        iou, dice = iou[1:], dice[1:]
        case_iou.append(iou)
        case_dice.append(dice)
        per_case.append(
            {
                "case_id": case,
                "iou": {s: _json_float(v) for s, v in zip(structures, iou, strict=True)},
                "dice": {s: _json_float(v) for s, v in zip(structures, dice, strict=True)},
                "mean_iou": _json_float(_nanmean(iou)),
                "mean_dice": _json_float(_nanmean(dice)),
            }
        )

    iou_matrix = np.array(case_iou).reshape(-1, len(structures))  # (cases, structures)
    dice_matrix = np.array(case_dice).reshape(-1, len(structures))
    structure_iou = [_nanmean(iou_matrix[:, j]) for j in range(len(structures))]
    structure_dice = [_nanmean(dice_matrix[:, j]) for j in range(len(structures))]
    return {
        "mean_iou": _json_float(_nanmean(np.array(structure_iou))),
        "mean_dice": _json_float(_nanmean(np.array(structure_dice))),
        "n_cases": len(per_case),
        "per_structure": {
            s: {"iou": _json_float(i), "dice": _json_float(d)}
            for s, i, d in zip(structures, structure_iou, structure_dice, strict=True)
        },
        "per_case": per_case,
    }


@torch.no_grad()
def predict_labels(
    predict: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, batch_size: int = 16
) -> np.ndarray:
    """Return argmax label maps ``(N, H, W)`` uint8 from a logits function over ``(B, C, H, W)``."""
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
        outputs.append(predict(batch).argmax(dim=1).to(torch.uint8).cpu().numpy())
    if not outputs:
        return np.zeros((0, *images.shape[2:]), dtype=np.uint8)
    return np.concatenate(outputs)


def evaluate_model(
    model: torch.nn.Module, data: SliceSet, batch_size: int = 16, device: str = "cpu"
) -> tuple[dict, np.ndarray]:
    """Evaluate ``model`` in eval mode on every slice of ``data``.

    Returns ``(metrics, predictions)``.
    """
    was_training = model.training
    model.eval()
    try:
        pred = predict_labels(lambda x: model(x.to(device)), data.images, batch_size)
    finally:
        model.train(was_training)
    return evaluate_predictions(pred, data.labels, data.case_ids, data.class_names), pred


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _json_float(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
