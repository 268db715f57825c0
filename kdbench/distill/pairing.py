"""Stage pairing, spatial alignment and channel adapters shared by feature-level strategies.

Pairing rule: a strategy pairs a teacher stage with a student stage by the stage names the models
expose (``SegmentationModel.stage_modules``), for example teacher ``enc3`` with student ``enc2``.

Alignment rule: when a paired student map and teacher map differ in height or width, the student
map is resized to the teacher map's size by bilinear interpolation (``align_corners=False``) before
the strategy compares them. A size mismatch therefore never fails. Down-sampling a larger student
map this way uses no anti-aliasing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.distill.base import ModelOutputs, Strategy
from kdbench.errors import ConfigError

StagePair = tuple[str, str]  # (teacher stage, student stage)


def parse_pairs(pairs: Any, strategy: str) -> list[StagePair]:
    """Return ``pairs`` as a list of ``(teacher_stage, student_stage)`` tuples.

    Accepts a list of two-item lists ``[["enc3", "enc2"], ...]`` or a dict teacher -> student
    ``{"enc3": "enc2"}``. Raises ConfigError naming ``strategy`` when the value is missing, has
    another form, is empty, or repeats a pair.
    """
    if pairs is None:
        raise ConfigError(
            f"strategy '{strategy}' needs option 'pairs': a list of [teacher_stage, "
            'student_stage], e.g. pairs = [["enc3", "enc2"]]'
        )
    if isinstance(pairs, Mapping):
        items = list(pairs.items())
    elif isinstance(pairs, Sequence) and not isinstance(pairs, str):
        items = list(pairs)
    else:
        raise ConfigError(
            f"strategy '{strategy}': option 'pairs' must be a list of [teacher_stage, "
            f"student_stage] or a dict teacher_stage -> student_stage, got {pairs!r}"
        )
    if not items:
        raise ConfigError(
            f"strategy '{strategy}': option 'pairs' is empty; give at least one "
            '[teacher_stage, student_stage], e.g. pairs = [["enc3", "enc2"]]'
        )

    parsed: list[StagePair] = []
    for item in items:
        valid = (
            isinstance(item, Sequence)
            and not isinstance(item, str)
            and len(item) == 2
            and all(isinstance(name, str) and name for name in item)
        )
        if not valid:
            raise ConfigError(
                f"strategy '{strategy}': each entry of 'pairs' must be [teacher_stage, "
                f"student_stage] with two stage names, got {item!r}"
            )
        pair = (item[0], item[1])
        if pair in parsed:
            raise ConfigError(f"strategy '{strategy}': 'pairs' lists {list(pair)} twice")
        parsed.append(pair)
    return parsed


def resize_to(student_map: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize ``(B, C, h, w)`` to ``(B, C, *size)`` bilinearly; return it unchanged if it fits."""
    if tuple(student_map.shape[-2:]) == tuple(size):
        return student_map
    return F.interpolate(student_map, size=tuple(size), mode="bilinear", align_corners=False)


def check_number(value: Any, name: str, strategy: str, *, positive: bool = True) -> float:
    """Return ``value`` as a float; raise ConfigError unless it is a (positive) real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"strategy '{strategy}': option '{name}' must be a number, got {value!r}")
    if positive and not value > 0:
        raise ConfigError(f"strategy '{strategy}': option '{name}' must be > 0, got {value!r}")
    return float(value)


def check_choice(value: Any, name: str, strategy: str, choices: Sequence[str]) -> str:
    """Return ``value``; raise ConfigError listing ``choices`` when it is not one of them."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(
            f"strategy '{strategy}': option '{name}' must be one of {allowed}, got {value!r}"
        )
    return value


def format_label(kind: str, settings: Sequence[str]) -> str:
    """Return ``kind`` or ``kind(a,b)``: the short label of one term, e.g. ``logit(T=4)``."""
    return f"{kind}({','.join(settings)})" if settings else kind


def adapter_key(pair: StagePair) -> str:
    """Return the ``nn.ModuleDict`` key of a pair's adapter (stage names contain no dots)."""
    return f"{pair[0]}__{pair[1]}"


class PairedStrategy(Strategy):
    """Base for strategies that compare teacher and student feature maps stage pair by stage pair.

    Subclasses set ``kind`` (the registry name) and call ``super().__init__(pairs)``; with
    ``required=False`` a missing ``pairs`` means no pairs. Terms of
    several pairs add up: the loss is the sum over pairs, as in Zagoruyko and Komodakis (2017),
    Eq. 2, and the combination weight scales the total.
    """

    kind = "paired"

    def __init__(self, pairs: Any, *, required: bool = True) -> None:
        super().__init__()
        if pairs is None and not required:
            self.pairs: list[StagePair] = []
        else:
            self.pairs = parse_pairs(pairs, self.kind)

    def teacher_stages(self) -> list[str]:
        """Teacher stages of all pairs, in pair order, without repeats."""
        return list(dict.fromkeys(teacher for teacher, _ in self.pairs))

    def student_stages(self) -> list[str]:
        """Student stages of all pairs, in pair order, without repeats."""
        return list(dict.fromkeys(student for _, student in self.pairs))

    def needs_teacher_logits(self) -> bool:
        """Return False, because feature-level strategies read no teacher logits."""
        return False

    def setup(self, student_channels: dict[str, int], teacher_channels: dict[str, int]) -> None:
        """Check that every paired stage exists; subclasses then build their adapters.

        Raises ConfigError naming the missing stage and the stages the model has.
        """
        for teacher, student in self.pairs:
            if teacher not in teacher_channels:
                raise ConfigError(
                    f"strategy '{self.kind}': the teacher has no stage '{teacher}'; its stages "
                    f"are {sorted(teacher_channels)}"
                )
            if student not in student_channels:
                raise ConfigError(
                    f"strategy '{self.kind}': the student has no stage '{student}'; its stages "
                    f"are {sorted(student_channels)}"
                )

    def paired_maps(
        self, student: ModelOutputs, teacher: ModelOutputs | None
    ) -> list[tuple[StagePair, torch.Tensor, torch.Tensor]]:
        """Return ``(pair, student map, detached teacher map)`` for every pair, unaligned.

        Raises ValueError when the teacher outputs or a requested feature map is missing.
        """
        if teacher is None:
            raise ValueError(f"strategy '{self.kind}' needs teacher outputs, got None")
        maps = []
        for pair in self.pairs:
            teacher_stage, student_stage = pair
            if teacher_stage not in teacher.features or student_stage not in student.features:
                raise ValueError(
                    f"strategy '{self.kind}' needs teacher stage '{teacher_stage}' and student "
                    f"stage '{student_stage}'; got teacher stages {sorted(teacher.features)} "
                    f"and student stages {sorted(student.features)}"
                )
            teacher_map = teacher.features[teacher_stage].detach()
            maps.append((pair, student.features[student_stage], teacher_map))
        return maps

    def options(self) -> dict[str, Any]:
        """Resolved options as JSON-ready values, for the run record."""
        return {"pairs": [list(pair) for pair in self.pairs]}


def build_adapters(
    pairs: Sequence[StagePair],
    student_channels: Mapping[str, int],
    teacher_channels: Mapping[str, int],
    *,
    only_when_channels_differ: bool,
) -> nn.ModuleDict:
    """Build one 1x1 convolution (student channels -> teacher channels, with bias) per pair.

    With ``only_when_channels_differ`` a pair whose channel counts agree gets no adapter, and
    :func:`adapt` passes its student map through unchanged.
    """
    adapters = nn.ModuleDict()
    for pair in pairs:
        teacher, student = pair
        c_in, c_out = student_channels[student], teacher_channels[teacher]
        if only_when_channels_differ and c_in == c_out:
            continue
        adapters[adapter_key(pair)] = nn.Conv2d(c_in, c_out, kernel_size=1)
    return adapters


def adapt(adapters: nn.ModuleDict, pair: StagePair, student_map: torch.Tensor) -> torch.Tensor:
    """Apply the pair's adapter to ``(B, C_s, h, w)``, giving ``(B, C_t, h, w)``, if it has one."""
    key = adapter_key(pair)
    return adapters[key](student_map) if key in adapters else student_map
