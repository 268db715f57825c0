"""Matrix expansion, resume and cell scheduling for `kdbench run`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import kdbench
from kdbench.config import MatrixConfig, ModelSpec, StrategySpec, config_hash, to_jsonable
from kdbench.data import create_dataset, split_by_patient
from kdbench.data.base import SliceSet
from kdbench.errors import ConfigError, DataError, KdbenchError, UnknownNameError
from kdbench.evaluate import evaluate_model, evaluate_predictions, predict_labels
from kdbench.models import create_model
from kdbench.train import TrainSettings, train_model
from kdbench.train.seeding import seed_everything

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Cell:
    """One unit of work: a teacher to train, or a student with a strategy and a seed."""

    cell_id: str
    role: str  # "teacher" or "student"
    model: ModelSpec
    seed: int
    strategy: StrategySpec
    teacher: ModelSpec | None = None


@dataclass
class RunSummary:
    """Outcome of a run: finished, skipped and failed cell ids, and the output folder."""

    output_dir: Path
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


NONE_STRATEGY = StrategySpec("none", ())


def expand_cells(config: MatrixConfig) -> list[Cell]:
    """Return the matrix's cells in execution order: teachers first, then students by seed.

    A strategy that needs no teacher (``none``) runs once per student and seed, not once per
    teacher. Its cell id has ``-`` in the teacher position.
    """
    cells = []
    for teacher in config.teachers:
        seed = teacher.seed if teacher.seed is not None else config.run.seeds[0]
        cells.append(
            Cell(f"teacher__{teacher.label}__s{seed}", "teacher", teacher, seed, NONE_STRATEGY)
        )
    for seed in config.run.seeds:
        for student in config.students:
            for strategy in config.strategies:
                teachers = config.teachers if strategy.uses_teacher else (None,)
                for teacher in teachers:
                    t_label = teacher.label if teacher else "-"
                    cell_id = f"{t_label}__{student.label}__{strategy.label}__s{seed}"
                    cells.append(Cell(cell_id, "student", student, seed, strategy, teacher))
    return cells


class Runner:
    """Execute the cells of a matrix into ``output_dir``, skipping cells already finished."""

    def __init__(
        self,
        config: MatrixConfig,
        output_dir: Path,
        *,
        progress: Callable[[str, dict], None] | None = None,
        only: Callable[[Cell], bool] | None = None,
    ) -> None:
        self.config = config
        self.out = Path(output_dir)
        self.progress = progress
        self.only = only
        self.device = _select_device(config.run.device)
        self.data: SliceSet | None = None
        self.split: dict[str, list[int]] = {}
        self.teachers: dict[str, tuple[torch.nn.Module, Path, str]] = {}

    # --- public -----------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Run every cell not yet finished and return what was done.

        Finished cells are never rewritten.
        """
        summary = RunSummary(self.out)
        if self.config.run.threads:
            torch.set_num_threads(self.config.run.threads)
        self._validate_names()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "cells").mkdir(exist_ok=True)
        self._write_matrix_record()
        self._load_data()

        for cell in expand_cells(self.config):
            if self.only is not None and not self.only(cell):
                continue
            if self._is_finished(cell):
                summary.skipped.append(cell.cell_id)
                log.info("skipping finished cell %s", cell.cell_id)
                continue
            self._notify(
                "cell_start", {"cell_id": cell.cell_id, "epochs": self._settings(cell).epochs}
            )
            try:
                record = self._run_cell(cell)
            except KdbenchError:
                raise
            except Exception as exc:  # a crash in one cell must not lose the others
                log.exception("cell %s failed", cell.cell_id)
                record = self._failed_record(cell, exc)
            write_json_atomic(self._cell_path(cell), record)
            (summary.finished if record["status"] == "ok" else summary.failed).append(cell.cell_id)
            self._notify(
                "cell_end",
                {
                    "cell_id": cell.cell_id,
                    "status": record["status"],
                    "mean_iou": record.get("metrics", {}).get("mean_iou"),
                },
            )
        return summary

    def _validate_names(self) -> None:
        """Fail before any work when a model, dataset or strategy name or option is unknown."""
        from kdbench.data import DATASETS
        from kdbench.distill import build_strategy
        from kdbench.models import MODELS

        src = self.config.source
        checks = [("data.dataset", lambda: DATASETS.get(self.config.data.dataset))]
        for kind in ("teachers", "students"):
            for i, spec in enumerate(getattr(self.config, kind)):
                checks.append((f"{kind}[{i}].model", lambda spec=spec: MODELS.get(spec.model)))
                checks.append((f"{kind}[{i}]", lambda spec=spec: self._check_model(spec)))
        for i, strategy in enumerate(self.config.strategies):
            terms = list(strategy.terms)
            checks.append(
                (f"strategies[{i}] ({strategy.label})", lambda t=terms: build_strategy(t))
            )
        for key, check in checks:
            try:
                check()
            except UnknownNameError as exc:
                raise UnknownNameError(f"{src}: {key}: {exc}") from None
            except ConfigError as exc:
                raise ConfigError(f"{src}: {key}: {exc}") from None

    def _check_model(self, spec: ModelSpec) -> None:
        """Build the model once to reject unknown options and image sizes it cannot take."""
        try:
            model = create_model(spec.model, **spec.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid options {spec.options}: {exc}") from None
        size = self.config.data.image_size
        divisor = getattr(model, "size_divisor", 1)
        if size % divisor:
            raise ConfigError(
                f"data.image_size = {size} is not a multiple of {divisor}, which model "
                f"'{spec.model}' needs; use a multiple such as {size - size % divisor or divisor}"
            )

    # --- data -------------------------------------------------------------------------------

    def _load_data(self) -> None:
        cfg = self.config.data
        try:
            self.data = create_dataset(cfg.dataset, image_size=cfg.image_size, **cfg.options)
        except TypeError as exc:
            raise ConfigError(
                f"{self.config.source}: invalid option in [data.options] for dataset "
                f"'{cfg.dataset}': {exc}. See `kdbench list datasets` and docs/configuration.md."
            ) from None
        self.split = split_by_patient(self.data.patient_ids, cfg.split, cfg.split_seed)
        for side in ("train", "val", "test"):
            if not self.split.get(side):
                raise DataError(
                    f"the {side} split of dataset '{cfg.dataset}' is empty; add patients"
                )

        split_record = {
            side: sorted({self.data.case_ids[i] for i in idx}) for side, idx in self.split.items()
        }
        split_record["patients"] = {
            side: sorted({self.data.patient_ids[i] for i in idx})
            for side, idx in self.split.items()
        }
        split_path = self.out / "split.json"
        if split_path.exists():
            previous = json.loads(split_path.read_text())
            if previous != split_record:
                raise ConfigError(
                    f"{split_path}: the data split differs from the one this output folder was "
                    "created with (data or data.split changed). Use a new --output folder."
                )
        else:
            write_json_atomic(split_path, split_record)
        self._write_overlay_inputs()

    def _write_overlay_inputs(self) -> None:
        idx = self.split["test"][: self.config.data.overlay_slices]
        path = self.out / "overlay_inputs.npz"
        if path.exists():
            return
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            images=self.data.images[idx, 0],
            labels=self.data.labels[idx].astype(np.uint8),
            case_ids=np.array([self.data.case_ids[i] for i in idx]),
            class_names=np.array(self.data.class_names),
        )
        os.replace(tmp, path)

    # --- cells ------------------------------------------------------------------------------

    def _settings(self, cell: Cell) -> TrainSettings:
        return cell.model.train or self.config.train

    def _cell_path(self, cell: Cell) -> Path:
        return self.out / "cells" / f"{cell.cell_id}.json"

    def _cell_config(self, cell: Cell) -> dict:
        cfg = {
            "role": cell.role,
            "model": to_jsonable(cell.model),
            "seed": cell.seed,
            "strategy": to_jsonable(cell.strategy),
            "teacher": to_jsonable(cell.teacher) if cell.teacher else None,
            "train": to_jsonable(self._settings(cell)),
            "data": to_jsonable(self.config.data),
            "profile": to_jsonable(self.config.profile),
        }
        if cell.teacher is not None:
            cfg["teacher_train"] = to_jsonable(cell.teacher.train or self.config.train)
        return cfg

    def _is_finished(self, cell: Cell) -> bool:
        path = self._cell_path(cell)
        if not path.exists():
            return False
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("%s is unreadable; the cell runs again", path)
            return False
        if record.get("status") != "ok":
            return False
        if record.get("config_hash") != config_hash(self._cell_config(cell)):
            raise ConfigError(
                f"{path}: this cell was computed with different settings than the matrix file "
                "now gives. Use a new --output folder, or delete that cell file to recompute it."
            )
        return True

    def _run_cell(self, cell: Cell) -> dict:
        from kdbench.distill import build_strategy  # late import keeps `kdbench list` light

        settings = self._settings(cell)
        teacher_model = teacher_ref = None
        strategy = None
        cache = None
        loaded_from = None
        if cell.strategy.uses_teacher:
            teacher_model, teacher_path, teacher_sha = self._teacher(cell.teacher)
            teacher_ref = {"checkpoint": _relative(teacher_path, self.out), "sha256": teacher_sha}

        # Seed right before any weight is initialised (student, adapters), after the teacher is
        # loaded, so that a cell's result does not depend on which cells ran earlier in this
        # process. A resumed run therefore reproduces an uninterrupted one.
        seed_everything(cell.seed, settings.deterministic)
        model = create_model(cell.model.model, **self._model_kwargs(cell.model))

        if cell.role == "teacher" and cell.model.checkpoint:
            loaded_from = self._load_checkpoint_into(model, Path(cell.model.checkpoint))
            result = None
        else:
            if teacher_model is not None:
                strategy = build_strategy(list(cell.strategy.terms))
                size = self.config.data.image_size
                strategy.setup(model.stage_channels(size), teacher_model.stage_channels(size))
                cache = self._teacher_cache(cell, strategy, teacher_model, teacher_sha, settings)
            result = train_model(
                model,
                self.data,
                self.split,
                settings,
                seed=cell.seed,
                strategy=strategy,
                teacher=teacher_model,
                teacher_cache=cache,
                device=self.device,
                progress=lambda rec: self._notify("epoch", {"cell_id": cell.cell_id, **rec}),
            )

        checkpoint = self.out / "checkpoints" / f"{cell.cell_id}.pt"
        sha = save_checkpoint(checkpoint, cell.model, model, teacher_ref)
        test = self.data.subset(self.split["test"])
        metrics, pred = evaluate_model(
            model.to(self.device), test, settings.eval_batch_size, self.device
        )
        predictions = self._save_predictions(cell, pred)
        profile = self._profile(cell, model, test)

        return {
            "schema_version": SCHEMA_VERSION,
            "cell_id": cell.cell_id,
            "status": "ok",
            "error": None,
            "role": cell.role,
            "teacher": cell.teacher.label if cell.teacher else None,
            "student": cell.model.label,
            "model": cell.model.model,
            "strategy": cell.strategy.label,
            "strategy_terms": list(cell.strategy.terms),
            "strategy_description": strategy.describe() if strategy is not None else "none",
            "seed": cell.seed,
            "config": self._cell_config(cell),
            "config_hash": config_hash(self._cell_config(cell)),
            "dataset": self._dataset_record(),
            "training": self._training_record(result, settings, loaded_from),
            "metrics": metrics,
            "profile": profile,
            "artifacts": {
                "checkpoint": _relative(checkpoint, self.out),
                "checkpoint_sha256": sha,
                "predictions": predictions,
            },
            "teacher_ref": teacher_ref,
            "environment": environment_record(self.device),
        }

    def _model_kwargs(self, spec: ModelSpec) -> dict:
        return {
            "in_channels": self.data.images.shape[1],
            "num_classes": self.data.num_classes,
            **spec.options,
        }

    def _teacher(self, spec: ModelSpec) -> tuple[torch.nn.Module, Path, str]:
        """Return the run's trained (or loaded) teacher, its checkpoint path and sha256."""
        if spec.label in self.teachers:
            return self.teachers[spec.label]
        seed = spec.seed if spec.seed is not None else self.config.run.seeds[0]
        teacher_cell = f"teacher__{spec.label}__s{seed}"
        path = self.out / "checkpoints" / f"{teacher_cell}.pt"
        if not path.exists():
            cell_file = self.out / "cells" / f"{teacher_cell}.json"
            if cell_file.exists() and '"status": "failed"' in cell_file.read_text():
                raise KdbenchError(
                    f"teacher cell {teacher_cell} failed, so no student can learn from it; "
                    f"read the error in {cell_file}, fix the cause and run again"
                )
            raise KdbenchError(
                f"teacher checkpoint {path} is missing although a student needs it; "
                f"delete {cell_file} and run again"
            )
        model = create_model(spec.model, **self._model_kwargs(spec))
        self._load_checkpoint_into(model, path)
        model.to(self.device).eval()
        entry = (model, path, file_sha256(path))
        self.teachers[spec.label] = entry
        return entry

    def _teacher_cache(self, cell, strategy, teacher_model, teacher_sha, settings):
        mode = self.config.run.teacher_cache
        if mode == "off" or not strategy.needs_teacher:
            return None
        from kdbench.distill.cache import shared_cache

        return shared_cache(
            teacher_model,
            torch.from_numpy(self.data.images),
            strategy.teacher_stages(),
            keep_logits=strategy.needs_teacher_logits(),
            rows=self.split["train"],
            storage=mode,
            directory=self.out / "teacher_cache" if mode == "disk" else None,
            key=teacher_sha,
            augment=settings.augment,
        )

    def _load_checkpoint_into(self, model: torch.nn.Module, path: Path) -> str:
        if not path.is_file():
            raise ConfigError(f"teacher checkpoint {path} not found. Fix teachers[].checkpoint.")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            state = payload["state_dict"] if "state_dict" in payload else payload
            model.load_state_dict(state)
        except (RuntimeError, KeyError, OSError, ValueError) as exc:
            raise ConfigError(
                f"{path}: cannot load into model {type(model).__name__}: {exc}. "
                "Check that the checkpoint's model and options match the matrix entry."
            ) from None
        return str(path)

    def _save_predictions(self, cell: Cell, pred: np.ndarray) -> str | None:
        n = self.config.data.overlay_slices
        if n == 0:
            return None
        path = self.out / "predictions" / f"{cell.cell_id}.npz"
        path.parent.mkdir(exist_ok=True)
        idx = self.split["test"][:n]
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            case_ids=np.array([self.data.case_ids[i] for i in idx]),
            pred=pred[:n].astype(np.uint8),
        )
        os.replace(tmp, path)
        return _relative(path, self.out)

    def _profile(self, cell: Cell, model: torch.nn.Module, test: SliceSet) -> dict:
        from kdbench.profile import ProfileOptions, profile_model

        cfg = self.config.profile
        size = self.config.data.image_size
        options = ProfileOptions(
            input_size=(self.data.images.shape[1], size, size),
            batch_sizes=tuple(cfg.batch_sizes),
            warmup=cfg.warmup,
            repeats=cfg.repeats,
            threads=cfg.threads,
            device=self.device,
            export_onnx=cfg.export_onnx,
            variants=tuple(cfg.variants),
        )

        def score(predict) -> float | None:
            def torch_predict(x: torch.Tensor) -> torch.Tensor:
                return torch.from_numpy(predict(x.numpy()))

            pred = predict_labels(torch_predict, test.images, batch_size=8)
            return evaluate_predictions(pred, test.labels, test.case_ids, test.class_names)[
                "mean_iou"
            ]

        model = model.cpu() if self.device == "cpu" else model
        return profile_model(
            model.eval(), options, self.out / "artifacts" / cell.cell_id, score=score
        )

    # --- records ----------------------------------------------------------------------------

    def _dataset_record(self) -> dict:
        cfg = self.config.data
        return {
            "name": cfg.dataset,
            "source": self.data.source,
            "class_names": list(self.data.class_names),
            "image_size": cfg.image_size,
            "split": {
                side: sorted({self.data.case_ids[i] for i in idx})
                for side, idx in self.split.items()
            },
        }

    def _training_record(self, result, settings: TrainSettings, loaded_from: str | None) -> dict:
        if result is None:
            return {
                "epochs": 0,
                "selection": "loaded",
                "selected_epoch": None,
                "seconds": 0.0,
                "history": [],
                "loaded_from": loaded_from,
            }
        return {
            "epochs": settings.epochs,
            "selection": result.selection,
            "selected_epoch": result.selected_epoch,
            "seconds": result.seconds,
            "history": result.history,
        }

    def _failed_record(self, cell: Cell, exc: BaseException) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "cell_id": cell.cell_id,
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "role": cell.role,
            "teacher": cell.teacher.label if cell.teacher else None,
            "student": cell.model.label,
            "model": cell.model.model,
            "strategy": cell.strategy.label,
            "seed": cell.seed,
            "config": self._cell_config(cell),
            "config_hash": config_hash(self._cell_config(cell)),
            "environment": environment_record(self.device),
        }

    def _write_matrix_record(self) -> None:
        record = {
            "source": self.config.source,
            "config": to_jsonable(self.config),
            "kdbench": kdbench.__version__,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(self.out / "matrix.json", record)

    def _notify(self, event: str, payload: dict) -> None:
        if self.progress is not None:
            self.progress(event, payload)


def save_checkpoint(
    path: Path, spec: ModelSpec, model: torch.nn.Module, teacher_ref: dict | None
) -> str:
    """Write a student-only checkpoint atomically; return its sha256.

    The file contains ``{"model", "model_options", "state_dict", "teacher", "kdbench"}``. The
    teacher is referenced by path and hash, never embedded. Distillation adapters are never
    included.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": spec.model,
        "model_options": {
            "in_channels": model.in_channels,
            "num_classes": model.num_classes,
            **spec.options,
        },
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "teacher": teacher_ref,
        "kdbench": kdbench.__version__,
    }
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return file_sha256(path)


def write_json_atomic(path: Path, record: dict) -> None:
    """Write JSON to a temporary file in the same folder, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(_finite(record), fh, indent=2, allow_nan=False, default=_json_default)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    """Return the sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def environment_record(device: str) -> dict:
    """Return versions and hardware that produced a cell."""
    return {
        "kdbench": kdbench.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": device,
        "cuda": torch.cuda.get_device_name(0) if device == "cuda" else None,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _select_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "run.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'"
        )
    return requested


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _finite(value):
    """Replace NaN and infinities by None so every cell file is strict JSON."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value):
        return to_jsonable(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
