"""Report figures, each saved as PNG and SVG under ``<report>/plots/``.

- ``pareto.png``: mean IoU (95% t interval as error bars) against state-dict size, latency and
  GMACs, three panels with the Pareto frontier of each drawn as a dashed step line;
- ``per_structure_iou.png``: grouped bars of per-structure IoU, mean over seeds with sample-std
  whiskers, for teachers, students alone and each strategy;
- ``training/<row>.png``: train loss and validation mean IoU per epoch, one line per cell (seed);
- ``overlays.png``: the fixed test slices as CT, ground truth, teacher, student alone and the best
  distilled student, with one fixed colour per structure.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas and never touch
pyplot's global state, so the module works in headless runs and threads. A figure whose inputs are
missing is skipped with a logged warning.
"""

from __future__ import annotations

import logging
import math
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from kdbench.report.aggregate import STUDENT_ALONE_STRATEGY, row_id_of
from kdbench.report.pareto import PARETO_AXES, frontier_points

logger = logging.getLogger(__name__)

PLOTS_FOLDER = "plots"
FORMATS = ("png", "svg")
DPI = 120
OVERLAY_INPUTS = "overlay_inputs.npz"
PREDICTIONS_FOLDER = "predictions"
# Colour of class index k (k >= 1) is STRUCTURE_COLOURS[(k - 1) % 10]; background stays clear.
STRUCTURE_COLOURS = tuple(sns.color_palette("tab10", 10))
OVERLAY_ALPHA = 0.55
_MIB = 1024**2
# np.load raises these for a truncated or foreign file, KeyError for a missing array.
_NPZ_ERRORS = (OSError, ValueError, KeyError, zipfile.BadZipFile)
# Pareto panels: (frontier column, x label, value of a row on the x axis).
_PARETO_PANELS = (
    ("pareto_size", "state dict size (MiB)", lambda row: row["state_dict_bytes"] / _MIB),
    ("pareto_latency", "latency, torch batch 1 (ms)", lambda row: row["latency_median_ms"]),
    ("pareto_gmacs", "GMACs per image", lambda row: row["gmacs"]),
)


def write_plots(
    rows: Sequence[Mapping[str, Any]],
    cells: Sequence[Mapping[str, Any]],
    results_dir: Path,
    out_dir: Path,
) -> list[Path]:
    """Draw every report figure into ``out_dir/plots`` and return the files written."""
    plots_dir = out_dir / PLOTS_FOLDER
    ok_cells = [cell for cell in cells if cell["status"] == "ok"]
    figures = [
        ("Pareto plot", lambda: plot_pareto(rows, plots_dir)),
        ("Per-structure IoU plot", lambda: plot_per_structure_iou(rows, ok_cells, plots_dir)),
        ("Training curves", lambda: plot_training_curves(rows, ok_cells, plots_dir / "training")),
        ("Overlay plot", lambda: plot_overlays(rows, ok_cells, results_dir, plots_dir)),
    ]

    written: list[Path] = []
    for name, draw in figures:
        try:
            written += draw()
        except (KeyError, TypeError, ValueError, IndexError) as error:
            # Malformed values inside a valid cell file (a history entry without "epoch", ...)
            # cost one figure, not the whole report.
            logger.warning(
                "%s skipped: unexpected input (%s: %s).", name, type(error).__name__, error
            )
            logger.debug("%s failed", name, exc_info=True)
    return written


def plot_pareto(rows: Sequence[Mapping[str, Any]], plots_dir: Path) -> list[Path]:
    """Plot mean IoU against size, latency and GMACs with each Pareto frontier.

    Needs rows marked by ``kdbench.report.pareto.mark_pareto``.
    """
    ranked = [row for row in rows if row["status"] == "ok" and not math.isnan(row["mean_iou"])]
    if not ranked:
        logger.warning("Pareto plot skipped: no row has a mean IoU.")
        return []

    colours = _row_colours(ranked)
    figure = _new_figure(width=15.0, height=5.0)
    axes = figure.subplots(1, len(_PARETO_PANELS), sharey=True)
    for ax, (column, label, x_of) in zip(axes, _PARETO_PANELS, strict=True):
        _draw_pareto_panel(ax, ranked, colours, column, label, x_of)
    axes[0].set_ylabel("mean IoU (95% CI over seeds)")

    handles = [
        Patch(color=colours[row["row_id"]], label=row["row_id"]) for row in _plot_order(ranked)
    ]
    figure.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), frameon=False)
    figure.subplots_adjust(bottom=0.18 + 0.05 * math.ceil(len(handles) / 4), wspace=0.08)
    return _save(figure, plots_dir, "pareto")


def _draw_pareto_panel(ax, rows, colours, column, label, x_of) -> None:
    cost = PARETO_AXES[column]
    present = [row for row in rows if not math.isnan(row[cost])]
    ax.set_xlabel(label)
    ax.grid(True, alpha=0.3)
    if not present:
        ax.text(0.5, 0.5, f"no {cost} values", transform=ax.transAxes, ha="center")
        return

    for row in present:
        half_width = row["mean_iou_ci_half_width"]
        ax.errorbar(
            x_of(row),
            row["mean_iou"],
            yerr=None if math.isnan(half_width) else half_width,
            fmt="o",
            color=colours[row["row_id"]],
            capsize=3,
            markersize=7,
        )

    frontier = frontier_points(present, column)
    ax.plot(
        [x_of(row) for row in frontier],
        [row["mean_iou"] for row in frontier],
        drawstyle="steps-post",
        linestyle="--",
        color="0.3",
        linewidth=1,
    )
    values = [x_of(row) for row in present]
    if min(values) > 0 and max(values) / min(values) > 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def plot_per_structure_iou(
    rows: Sequence[Mapping[str, Any]], cells: Sequence[Mapping[str, Any]], plots_dir: Path
) -> list[Path]:
    """Plot grouped bars of per-structure IoU for every row (mean over seeds, sd whiskers)."""
    records = []
    for cell in cells:
        for structure, scores in (cell["metrics"].get("per_structure") or {}).items():
            iou = (scores or {}).get("iou")
            if iou is not None:
                records.append({"row": row_id_of(cell), "structure": structure, "iou": iou})
    if not records:
        logger.warning("Per-structure IoU plot skipped: no cell has metrics.per_structure.")
        return []

    data = pd.DataFrame.from_records(records)
    ranked = [row for row in _plot_order(rows) if row["row_id"] in set(data["row"])]
    colours = _row_colours(ranked)
    order = [row["row_id"] for row in ranked]

    figure = _new_figure(
        width=max(8.0, 1.2 * data["structure"].nunique() * len(order) ** 0.5), height=5.0
    )
    ax = figure.subplots()
    sns.barplot(
        data=data,
        x="structure",
        y="iou",
        hue="row",
        hue_order=order,
        palette=[colours[r] for r in order],
        errorbar="sd",
        capsize=0.1,
        ax=ax,
    )
    ax.set_ylim(0, 1)
    ax.set_xlabel("")
    ax.set_ylabel("IoU (mean over seeds, whiskers: sample sd)")
    ax.legend(title=None, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.subplots_adjust(right=0.72)
    return _save(figure, plots_dir, "per_structure_iou")


def plot_training_curves(
    rows: Sequence[Mapping[str, Any]], cells: Sequence[Mapping[str, Any]], training_dir: Path
) -> list[Path]:
    """Plot train loss and validation mean IoU per epoch, one figure per row, one line per cell.

    A round marker shows the epoch each cell selected (``training.selected_epoch``).
    """
    written: list[Path] = []
    for row in _plot_order(rows):
        members = sorted(
            (c for c in cells if row_id_of(c) == row["row_id"]), key=lambda c: c["seed"]
        )
        members = [c for c in members if (c.get("training") or {}).get("history")]
        if members:
            written += _plot_row_training(row["row_id"], members, training_dir)
    if not written:
        logger.warning("Training-curve plots skipped: no cell has training.history.")
    return written


def _plot_row_training(
    row_id: str, cells: Sequence[Mapping[str, Any]], training_dir: Path
) -> list[Path]:
    figure = _new_figure(width=11.0, height=4.0)
    loss_ax, iou_ax = figure.subplots(1, 2)
    for cell in cells:
        history = cell["training"]["history"]
        epochs = [entry["epoch"] for entry in history]
        losses = [_nan_if_none(entry.get("train_loss")) for entry in history]
        ious = [_nan_if_none(entry.get("val_mean_iou")) for entry in history]
        (line,) = loss_ax.plot(epochs, losses, label=f"seed {cell['seed']}")
        iou_ax.plot(epochs, ious, color=line.get_color(), label=f"seed {cell['seed']}")

        selected = cell["training"].get("selected_epoch")
        if selected in epochs:
            iou_ax.plot(selected, ious[epochs.index(selected)], "o", color=line.get_color())

    loss_ax.set(xlabel="epoch", ylabel="train loss", title=row_id)
    iou_ax.set(xlabel="epoch", ylabel="validation mean IoU", title="● selected epoch")
    for ax in (loss_ax, iou_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    iou_ax.legend(fontsize="small")
    figure.tight_layout()
    return _save(figure, training_dir, _slug(row_id))


def plot_overlays(
    rows: Sequence[Mapping[str, Any]],
    cells: Sequence[Mapping[str, Any]],
    results_dir: Path,
    plots_dir: Path,
) -> list[Path]:
    """Plot CT, ground truth and predictions of teacher, student alone and best distilled row.

    Reads ``<results>/overlay_inputs.npz`` (``images`` (N, H, W) float32 in [0, 1], ``labels``
    (N, H, W), ``case_ids``, ``class_names``) and each chosen cell's predictions npz (``case_ids``,
    ``pred`` (N, H, W) uint8). The best distilled row is the student row with the highest mean IoU
    among rows with a strategy other than "none". Each column uses the lowest-seed cell of its row
    that has a predictions file. Slices are matched by position and kept while the case ids agree.
    """
    inputs_path = results_dir / OVERLAY_INPUTS
    if not inputs_path.is_file():
        logger.warning("Overlay plot skipped: %s not found.", inputs_path)
        return []
    try:
        with np.load(inputs_path, allow_pickle=False) as inputs:
            images = np.asarray(inputs["images"], dtype=np.float32)
            labels = np.asarray(inputs["labels"])
            case_ids = [str(c) for c in inputs["case_ids"]]
            class_names = [str(c) for c in inputs["class_names"]]
    except _NPZ_ERRORS as error:
        logger.warning("Overlay plot skipped: cannot read %s (%s).", inputs_path, error)
        return []

    columns = []
    for title, row in _overlay_rows(rows):
        prediction = _load_prediction(row, cells, results_dir, case_ids)
        if prediction is not None:
            columns.append((f"{title}\n{row['row_id']} (seed {prediction[1]})", prediction[0]))
    if not columns:
        logger.warning("Overlay plot skipped: no predictions npz found for the chosen rows.")
        return []

    n_slices = min(len(case_ids), *(len(pred) for _, pred in columns))
    panels = [("CT image", None), ("ground truth", labels), *columns]
    figure = _new_figure(width=2.6 * len(panels), height=2.6 * n_slices + 0.8)
    axes = np.atleast_2d(figure.subplots(n_slices, len(panels), squeeze=False))
    for i in range(n_slices):
        for j, (title, masks) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if masks is not None:
                ax.imshow(label_overlay(masks[i], len(class_names)), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize="small")
            if j == 0:
                ax.set_ylabel(case_ids[i], fontsize="small")

    legend = [
        Patch(color=STRUCTURE_COLOURS[(k - 1) % len(STRUCTURE_COLOURS)], label=name)
        for k, name in enumerate(class_names)
        if k > 0
    ]
    figure.legend(handles=legend, loc="lower center", ncol=min(len(legend), 8), frameon=False)
    figure.subplots_adjust(
        bottom=0.6 / figure.get_figheight(), top=1 - 0.5 / figure.get_figheight()
    )
    return _save(figure, plots_dir, "overlays")


def label_overlay(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Return an RGBA image (H, W, 4) colouring class k >= 1 of a label map (H, W).

    Background (0) is transparent; class k gets ``STRUCTURE_COLOURS[(k - 1) % 10]`` at
    ``OVERLAY_ALPHA``. Labels at or above ``num_classes`` are drawn like any other class.
    """
    rgba = np.zeros((*labels.shape, 4), dtype=np.float32)
    for k in range(1, max(num_classes, int(labels.max(initial=0)) + 1)):
        colour = to_rgba(STRUCTURE_COLOURS[(k - 1) % len(STRUCTURE_COLOURS)], OVERLAY_ALPHA)
        rgba[labels == k] = colour
    return rgba


def _overlay_rows(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """Choose (title, row) for the overlay columns: teacher, student alone, best distilled."""
    ok = [row for row in rows if row["status"] == "ok"]
    teachers = [row for row in ok if row["role"] == "teacher"]
    alone = [
        row for row in ok if row["role"] == "student" and row["strategy"] == STUDENT_ALONE_STRATEGY
    ]
    distilled = [
        row
        for row in ok
        if row["role"] == "student"
        and row["strategy"] != STUDENT_ALONE_STRATEGY
        and not math.isnan(row["mean_iou"])
    ]

    chosen = []
    if teachers:
        chosen.append(("teacher", teachers[0]))
    if alone:
        chosen.append(("student alone", alone[0]))
    if distilled:
        chosen.append(("best distilled", max(distilled, key=lambda row: row["mean_iou"])))
    return chosen


def _load_prediction(
    row: Mapping[str, Any],
    cells: Sequence[Mapping[str, Any]],
    results_dir: Path,
    case_ids: Sequence[str],
) -> tuple[np.ndarray, int] | None:
    """Return ``(pred (N, H, W), seed)`` of the row's lowest-seed cell with a predictions file."""
    members = sorted((c for c in cells if row_id_of(c) == row["row_id"]), key=lambda c: c["seed"])
    for cell in members:
        path = _prediction_path(cell, results_dir)
        if path is None:
            continue
        try:
            with np.load(path, allow_pickle=False) as data:
                pred = np.asarray(data["pred"])
                pred_ids = [str(c) for c in data["case_ids"]]
        except _NPZ_ERRORS as error:
            logger.warning("Overlay column %s: cannot read %s (%s).", row["row_id"], path, error)
            continue

        matching = 0
        while (
            matching < min(len(pred_ids), len(case_ids))
            and pred_ids[matching] == case_ids[matching]
        ):
            matching += 1
        if matching == 0:
            logger.warning(
                "Overlay column %s skipped: the case ids in %s do not match %s.",
                row["row_id"],
                path,
                OVERLAY_INPUTS,
            )
            return None
        return pred[:matching], cell["seed"]

    logger.warning("Overlay column %s skipped: no predictions npz for any seed.", row["row_id"])
    return None


def _prediction_path(cell: Mapping[str, Any], results_dir: Path) -> Path | None:
    relative = (cell.get("artifacts") or {}).get("predictions")
    candidates = [results_dir / relative] if relative else []
    candidates.append(results_dir / PREDICTIONS_FOLDER / f"{cell['cell_id']}.npz")
    return next((path for path in candidates if path.is_file()), None)


def _plot_order(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Order rows as teachers, students alone, then distilled rows by mean IoU (highest first)."""

    def key(row: Mapping[str, Any]) -> tuple[int, float, str]:
        if row["role"] == "teacher":
            group = 0
        elif row["strategy"] == STUDENT_ALONE_STRATEGY:
            group = 1
        else:
            group = 2
        iou = row["mean_iou"]
        return (group, 0.0 if math.isnan(iou) else -iou, row["row_id"])

    return sorted((row for row in rows if row["status"] == "ok"), key=key)


def _row_colours(rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple]:
    """Give teachers black, students alone grey and distilled rows tab10 colours in plot order."""
    palette = sns.color_palette("tab10", 10)
    colours: dict[str, tuple] = {}
    distilled = 0
    for row in _plot_order(rows):
        if row["role"] == "teacher":
            colours[row["row_id"]] = (0.0, 0.0, 0.0)
        elif row["strategy"] == STUDENT_ALONE_STRATEGY:
            colours[row["row_id"]] = (0.55, 0.55, 0.55)
        else:
            colours[row["row_id"]] = palette[distilled % len(palette)]
            distilled += 1
    return colours


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, folder: Path, stem: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for extension in FORMATS:
        path = folder / f"{stem}.{extension}"
        # No date and a fixed SVG id salt keep reruns on the same data byte-identical.
        metadata = {"Date": None} if extension == "svg" else {"Software": None}
        with matplotlib.rc_context({"svg.hashsalt": "kdbench"}):
            figure.savefig(path, dpi=DPI, metadata=metadata)
        paths.append(path)
    logger.info("Wrote %s", ", ".join(str(p) for p in paths))
    return paths


def _slug(text: str) -> str:
    """Turn a row id into a file name: ``|`` becomes ``__``, other unsafe characters ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text.replace("|", "__"))


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)
