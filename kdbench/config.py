"""Matrix files (TOML) parsed into typed, validated dataclasses.

Every error names the file, the key and the bad value. Nothing downstream reads raw TOML.
See docs/configuration.md for every key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from kdbench.errors import ConfigError
from kdbench.train.settings import TrainSettings

DATA_ROOT_ENV = "KDBENCH_DATA_ROOT"
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_.+=-]+$")


@dataclass(frozen=True)
class DataConfig:
    """Dataset choice, options and patient split."""

    dataset: str = "synthetic"  # dataset registry name
    image_size: int = 128  # slices are resized to image_size x image_size pixels
    options: dict = field(default_factory=dict)  # keyword options for the dataset factory
    split: dict = field(default_factory=lambda: {"train": 0.6, "val": 0.2, "test": 0.2})
    split_seed: int = 0  # seed of the patient-to-split assignment
    overlay_slices: int = 8  # test slices whose predictions are kept for overlay plots


@dataclass(frozen=True)
class ModelSpec:
    """A teacher or student: a registered model with options, a label and optional overrides."""

    label: str  # name shown in leaderboards and cell ids
    model: str  # model registry name
    options: dict = field(default_factory=dict)  # keyword options for the model factory
    checkpoint: str | None = None  # teachers only: load weights instead of training
    train: TrainSettings | None = None  # settings for this model, when they differ from [train]
    seed: int | None = None  # teachers only: training seed (default: the first run seed)


@dataclass(frozen=True)
class StrategySpec:
    """A distillation strategy of the matrix: a weighted list of terms, or none (student alone)."""

    label: str
    terms: tuple = ()  # dicts {"kind": registry name, "weight": float, **options}

    @property
    def uses_teacher(self) -> bool:
        return any(t["kind"] != "none" for t in self.terms)


@dataclass(frozen=True)
class ProfileConfig:
    """Profiler settings applied to every cell."""

    batch_sizes: tuple = (1, 8)  # latency batch sizes
    warmup: int = 3  # untimed runs before timing
    repeats: int = 20  # timed runs per latency record
    threads: int | None = None  # CPU threads for latency; None uses torch's current setting
    export_onnx: bool = True  # write and check ONNX fp32, fp16 and int8 artifacts
    variants: tuple = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class RunConfig:
    """Run-level settings."""

    name: str = "kdbench"
    seeds: tuple = (0,)  # student seeds; each (teacher, student, strategy) runs once per seed
    output_dir: str = "runs/default"  # relative paths resolve against the working directory
    device: str = "auto"  # "auto" (cuda when available), "cpu" or "cuda"
    threads: int | None = None  # torch intra-op threads for training; None keeps torch's default
    teacher_cache: str = "memory"  # teacher-output cache: "memory", "disk" or "off"


@dataclass(frozen=True)
class MatrixConfig:
    """A whole matrix file."""

    source: str  # path of the TOML file, or "<embedded default>"
    run: RunConfig
    data: DataConfig
    train: TrainSettings
    teachers: tuple[ModelSpec, ...]
    students: tuple[ModelSpec, ...]
    strategies: tuple[StrategySpec, ...]
    profile: ProfileConfig
    check: dict = field(default_factory=dict)  # tolerances for `kdbench check`


DEFAULT_CONFIG = "default.toml"


def load_config(path: str | Path | None = None, data_root: str | None = None) -> MatrixConfig:
    """Read and validate a matrix file; ``None`` loads the embedded default matrix.

    ``data_root`` (or the ``KDBENCH_DATA_ROOT`` environment variable) replaces
    ``data.options.root``.
    """
    if path is None:
        text = resources.files("kdbench.configs").joinpath(DEFAULT_CONFIG).read_text()
        source = "<embedded default>"
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: matrix file not found. Pass an existing TOML file.")
        text = path.read_text(encoding="utf-8")
        source = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}. Fix the syntax at that line.") from None
    return parse_config(raw, source, data_root=data_root)


def parse_config(raw: dict, source: str, data_root: str | None = None) -> MatrixConfig:
    """Validate a decoded TOML mapping and build a :class:`MatrixConfig`."""
    p = _Parser(source)
    p.keys(
        raw, "", {"run", "data", "train", "teachers", "students", "strategies", "profile", "check"}
    )

    run = p.dataclass(RunConfig, raw.get("run", {}), "run")
    if not run.seeds:
        p.fail("run.seeds", run.seeds, "give at least one seed, e.g. seeds = [0, 1, 2]")
    if run.device not in ("auto", "cpu", "cuda"):
        p.fail("run.device", run.device, "use 'auto', 'cpu' or 'cuda'")
    if run.teacher_cache not in ("memory", "disk", "off"):
        p.fail("run.teacher_cache", run.teacher_cache, "use 'memory', 'disk' or 'off'")

    data = p.dataclass(DataConfig, raw.get("data", {}), "data")
    data = _resolve_data_root(data, source, data_root)
    p.split(data.split)

    train = p.train_settings(raw.get("train", {}), "train")
    teachers = tuple(
        p.model_spec(t, f"teachers[{i}]", train) for i, t in enumerate(raw.get("teachers", []))
    )
    students = tuple(
        p.model_spec(s, f"students[{i}]", train) for i, s in enumerate(raw.get("students", []))
    )
    strategies = tuple(
        p.strategy(s, f"strategies[{i}]") for i, s in enumerate(raw.get("strategies", ["none"]))
    )
    profile = p.dataclass(ProfileConfig, raw.get("profile", {}), "profile")
    check = raw.get("check", {})
    if not isinstance(check, dict):
        p.fail("check", check, "make [check] a table of tolerances")

    if not students:
        p.fail("students", [], "add at least one [[students]] table")
    for kind, specs in (("teachers", teachers), ("students", students), ("strategies", strategies)):
        labels = [s.label for s in specs]
        duplicates = sorted({x for x in labels if labels.count(x) > 1})
        if duplicates:
            p.fail(kind, duplicates, "give every entry a distinct name")
    if any(s.uses_teacher for s in strategies) and not teachers:
        p.fail("teachers", [], "a distillation strategy needs at least one [[teachers]] table")

    if run.teacher_cache != "off" and any(s.uses_teacher for s in strategies):
        for i, student in enumerate(students):
            if (student.train or train).augment:
                p.fail(
                    f"students[{i}].train.augment" if student.train else "train.augment",
                    True,
                    "random augmentation changes the teacher's input, so cached teacher outputs "
                    'would be stale: set augment = false or run.teacher_cache = "off"',
                )

    return MatrixConfig(source, run, data, train, teachers, students, strategies, profile, check)


def config_hash(settings: Any) -> str:
    """Return the sha256 of the canonical JSON of ``settings`` (dataclasses, dicts, lists)."""
    canonical = json.dumps(to_jsonable(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, tuples and paths into plain JSON types."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _resolve_data_root(data: DataConfig, source: str, data_root: str | None) -> DataConfig:
    """Apply --data-root or KDBENCH_DATA_ROOT; resolve a relative root against the matrix file."""
    root = data_root or os.environ.get(DATA_ROOT_ENV) or data.options.get("root")
    if root is None:
        return data
    root_path = Path(os.path.expanduser(str(root)))
    if not root_path.is_absolute() and not (data_root or os.environ.get(DATA_ROOT_ENV)):
        if source != "<embedded default>":
            root_path = Path(source).resolve().parent / root_path
    return dataclasses.replace(data, options={**data.options, "root": str(root_path)})


class _Parser:
    """Validation helpers that raise ConfigError naming ``source``, the key and the value."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: Any, fix: str) -> None:
        raise ConfigError(f"{self.source}: invalid value for '{key}': {value!r}. {fix}.")

    def keys(self, table: Any, where: str, allowed: set[str]) -> None:
        if not isinstance(table, dict):
            self.fail(where or "<top level>", table, "expected a table")
        unknown = sorted(set(table) - allowed)
        if unknown:
            prefix = f"{where}." if where else ""
            raise ConfigError(
                f"{self.source}: unknown key '{prefix}{unknown[0]}'. "
                f"Allowed keys{' in [' + where + ']' if where else ''}: "
                f"{', '.join(sorted(allowed))}."
            )

    def dataclass(self, cls: type, table: Any, where: str):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        self.keys(table, where, set(fields))
        values = {}
        for name, value in table.items():
            values[name] = self.coerce(value, fields[name], f"{where}.{name}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.source}: invalid [{where}]: {exc}.") from None

    def coerce(self, value: Any, f: dataclasses.Field, key: str) -> Any:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = str(f.type)
        if isinstance(default, bool) or kind == "bool":
            if not isinstance(value, bool):
                self.fail(key, value, "use true or false")
            return value
        if isinstance(default, float) or kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(key, value, "use a number")
            return float(value)
        if isinstance(default, int) or "int" in kind and "tuple" not in kind:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(key, value, "use a whole number")
            if value < 0:
                self.fail(key, value, "use a number >= 0")
            return value
        if isinstance(default, str) or kind.startswith("str"):
            if not isinstance(value, str):
                self.fail(key, value, "use a string")
            return value
        if isinstance(default, tuple):
            if not isinstance(value, list):
                self.fail(key, value, "use a list, e.g. [0, 1, 2]")
            return tuple(value)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                self.fail(key, value, "use a table")
            return dict(value)
        return value

    def train_settings(self, table: Any, where: str, base: TrainSettings | None = None):
        fields = {f.name: f for f in dataclasses.fields(TrainSettings)}
        self.keys(table, where, set(fields))
        values = {n: self.coerce(v, fields[n], f"{where}.{n}") for n, v in table.items()}
        try:
            return dataclasses.replace(base, **values) if base else TrainSettings(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.source}: invalid [{where}]: {exc}.") from None

    def split(self, split: dict) -> None:
        self.keys(split, "data.split", {"train", "val", "test"})
        for side in ("train", "val", "test"):
            value = split.get(side)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                self.fail(
                    f"data.split.{side}",
                    value,
                    "give each of train, val, test a fraction in (0, 1)",
                )
        total = sum(split.values())
        if abs(total - 1.0) > 1e-6:
            self.fail("data.split", split, f"fractions must sum to 1 (they sum to {total:g})")

    def label(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not LABEL_PATTERN.match(value) or "__" in value:
            self.fail(key, value, "use letters, digits and _ . + = - only, without '__'")
        return value

    def model_spec(self, table: Any, where: str, train: TrainSettings) -> ModelSpec:
        self.keys(table, where, {"name", "model", "options", "checkpoint", "train", "seed"})
        if "model" not in table:
            self.fail(f"{where}.model", None, "name a registered model (see `kdbench list models`)")
        model = table["model"]
        label = self.label(table.get("name", model), f"{where}.name")
        options = table.get("options", {})
        if not isinstance(options, dict):
            self.fail(f"{where}.options", options, "use a table of model options")
        checkpoint = table.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            self.fail(f"{where}.checkpoint", checkpoint, "use a file path string")
        if checkpoint and not where.startswith("teachers"):
            self.fail(
                f"{where}.checkpoint", checkpoint, "only teachers can be loaded from a checkpoint"
            )
        overrides = table.get("train")
        settings = self.train_settings(overrides, f"{where}.train", train) if overrides else None
        seed = table.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            self.fail(f"{where}.seed", seed, "use a whole number")
        return ModelSpec(label, model, dict(options), checkpoint or None, settings, seed)

    def strategy(self, entry: Any, where: str) -> StrategySpec:
        if isinstance(entry, str):
            entry = (
                {"name": entry} if entry == "none" else {"name": entry, "terms": [{"kind": entry}]}
            )
        self.keys(entry, where, {"name", "terms"})
        terms = entry.get("terms", [])
        if not isinstance(terms, list):
            self.fail(
                f"{where}.terms",
                terms,
                "use a list of tables, e.g. [{kind = 'logit', weight = 1.0}]",
            )
        checked = []
        for i, term in enumerate(terms):
            key = f"{where}.terms[{i}]"
            if not isinstance(term, dict) or not isinstance(term.get("kind"), str):
                self.fail(
                    key,
                    term,
                    "each term needs kind = '<strategy name>' (see `kdbench list strategies`)",
                )
            weight = term.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                self.fail(f"{key}.weight", weight, "use a number >= 0")
            checked.append({**term, "weight": float(weight)})
        default_label = "+".join(t["kind"] for t in checked) or "none"
        label = self.label(entry.get("name", default_label), f"{where}.name")
        return StrategySpec(label, tuple(checked))
