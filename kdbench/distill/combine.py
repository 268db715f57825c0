"""Weighted combination of distillation terms, and its construction from config dicts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from kdbench.distill.base import ModelOutputs, Strategy
from kdbench.errors import ConfigError, UnknownNameError


def term_label(strategy: Strategy) -> str:
    """Return the strategy's short label (``describe()``), or its class name if it has none."""
    describe = getattr(strategy, "describe", None)
    return describe() if callable(describe) else type(strategy).__name__


def format_weight(weight: float) -> str:
    """Return ``weight`` as the shortest decimal text (``0.5``, ``50``, ``0.001``)."""
    return f"{weight:g}"


class CombinedStrategy(Strategy):
    """Weighted sum of distillation terms: ``sum_i weight_i * term_i(student, teacher, target)``.

    ``terms`` is a list of ``(weight, strategy, label)``; weights are finite and >= 0, and labels
    are unique because they key the per-term losses. The combination reads the union of its
    terms' stages and needs the teacher when any term does. Its helper modules (the terms and
    their adapters) live here, never in the student.

    An empty combination is the student trained alone: ``needs_teacher`` is False, ``losses``
    returns ``{}`` and ``loss`` returns a zero scalar. Its label is ``none``.
    """

    def __init__(self, terms: Sequence[tuple[float, Strategy, str]]) -> None:
        super().__init__()
        weights: list[float] = []
        labels: list[str] = []
        for index, (weight, strategy, label) in enumerate(terms):
            if not isinstance(strategy, Strategy):
                raise TypeError(f"term {index} is not a Strategy: {type(strategy).__name__}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ConfigError(f"distill term {index}: weight must be a number, got {weight!r}")
            if not (math.isfinite(weight) and weight >= 0):
                raise ConfigError(
                    f"distill term {index}: weight must be finite and >= 0, got {weight!r}"
                )
            if label in labels:
                raise ConfigError(
                    f"distill terms {labels.index(label)} and {index} have the same label "
                    f"'{label}'; merge their stage pairs into one term"
                )
            weights.append(float(weight))
            labels.append(label)
        self.weights = weights
        self.labels = labels
        self.terms = nn.ModuleList(strategy for _, strategy, _ in terms)

    @property
    def needs_teacher(self) -> bool:  # type: ignore[override]
        """True when any term reads teacher outputs."""
        return any(term.needs_teacher for term in self.terms)

    def teacher_stages(self) -> list[str]:
        """Union of the terms' teacher stages, in term order, without repeats."""
        return list(dict.fromkeys(s for term in self.terms for s in term.teacher_stages()))

    def student_stages(self) -> list[str]:
        """Union of the terms' student stages, in term order, without repeats."""
        return list(dict.fromkeys(s for term in self.terms for s in term.student_stages()))

    def needs_teacher_logits(self) -> bool:
        """Return True when any term reads the teacher's logits."""
        return any(term.needs_teacher and term.needs_teacher_logits() for term in self.terms)

    def setup(self, student_channels: dict[str, int], teacher_channels: dict[str, int]) -> None:
        """Call ``setup`` of every term (builds adapters; call before moving to a device)."""
        for term in self.terms:
            term.setup(student_channels, teacher_channels)

    def losses(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return the unweighted scalar loss of every term, keyed by label, in term order."""
        if self.needs_teacher and teacher is None:
            raise ValueError(f"'{self.describe()}' needs teacher outputs, got None")
        return {
            label: term.loss(student, teacher, target)
            for label, term in zip(self.labels, self.terms, strict=True)
        }

    def weighted_sum(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Return ``sum_i weight_i * losses[label_i]``; ``losses`` comes from :meth:`losses`."""
        if not self.labels:
            return torch.zeros(())
        return sum(w * losses[label] for w, label in zip(self.weights, self.labels, strict=True))

    def loss(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: torch.Tensor
    ) -> torch.Tensor:
        """Return the weighted sum of all terms (zero on the student's device when empty)."""
        if not self.labels:
            return student.logits.new_zeros(())
        return self.weighted_sum(self.losses(student, teacher, target))

    def forward(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: torch.Tensor
    ) -> torch.Tensor:
        """Return the weighted sum of all terms, as :meth:`loss` does."""
        return self.loss(student, teacher, target)

    def describe(self) -> str:
        """Readable label such as ``logit(T=4)+0.5*attention``; ``none`` when empty.

        A weight of 1 is left out. Stage pairs are not part of the label.
        """
        parts = [
            label if weight == 1.0 else f"{format_weight(weight)}*{label}"
            for weight, label in zip(self.weights, self.labels, strict=True)
        ]
        return "+".join(parts) or "none"

    def term_records(self) -> list[dict[str, Any]]:
        """Return ``[{kind, weight, options}]`` per term, the cell JSON's ``strategy_terms``."""
        records = []
        for weight, term in zip(self.weights, self.terms, strict=True):
            options = term.options() if callable(getattr(term, "options", None)) else {}
            kind = getattr(term, "kind", type(term).__name__)
            records.append({"kind": kind, "weight": weight, "options": options})
        return records


def build_strategy(terms: Sequence[Mapping[str, Any]]) -> CombinedStrategy:
    """Build a :class:`CombinedStrategy` from config dicts.

    Each dict has ``kind`` (a registered strategy name), an optional ``weight`` (default 1.0)
    and the strategy's options, either as further keys or under ``options``::

        [{"kind": "logit", "weight": 1.0, "temperature": 4.0},
         {"kind": "attention", "weight": 50.0, "pairs": [["enc3", "enc2"]]}]

    ``none`` terms add nothing, so ``[{"kind": "none"}]`` and ``[]`` give an empty combination.
    Raises ConfigError naming the term index and the key at fault, also when ``none`` is
    combined with other terms.
    """
    from kdbench.distill import create_strategy  # the registry module imports this one

    if isinstance(terms, (str, Mapping)) or not isinstance(terms, Sequence):
        raise ConfigError(f"distill terms must be a list of tables, got {terms!r}")

    built: list[tuple[float, Strategy, str]] = []
    kinds: list[str] = []
    for index, spec in enumerate(terms):
        kind, weight, options = _parse_term(index, spec)
        try:
            strategy = create_strategy(kind, **options)
        except UnknownNameError as error:
            raise ConfigError(f"distill term {index}, key 'kind': {error}") from None
        except ConfigError as error:
            raise ConfigError(f"distill term {index} ({kind}): {error}") from None
        kinds.append(kind)
        if kind != "none":
            built.append((weight, strategy, term_label(strategy)))

    if "none" in kinds and len(kinds) > 1:
        raise ConfigError(
            f"distill term {kinds.index('none')}, key 'kind': 'none' cannot be combined with "
            "other terms; remove it or the other terms"
        )
    return CombinedStrategy(built)


def _parse_term(index: int, spec: Any) -> tuple[str, float, dict[str, Any]]:
    """Split one term dict into ``(kind, weight, options)``, raising ConfigError on bad keys."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"distill term {index} must be a table with key 'kind', got {spec!r}")
    if "kind" not in spec:
        raise ConfigError(
            f"distill term {index} is missing key 'kind' (one of the registered strategies)"
        )
    kind = spec["kind"]
    if not isinstance(kind, str):
        raise ConfigError(f"distill term {index}, key 'kind': expected a name, got {kind!r}")

    weight = spec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise ConfigError(f"distill term {index}, key 'weight': expected a number, got {weight!r}")
    if not (math.isfinite(weight) and weight >= 0):
        raise ConfigError(
            f"distill term {index}, key 'weight': must be finite and >= 0, got {weight!r}"
        )

    options = {key: value for key, value in spec.items() if key not in ("kind", "weight")}
    nested = options.pop("options", {})
    if not isinstance(nested, Mapping):
        raise ConfigError(f"distill term {index}, key 'options': expected a table, got {nested!r}")
    for key, value in nested.items():
        if key in options:
            raise ConfigError(
                f"distill term {index}: option '{key}' is given both directly and under "
                "'options'; keep one"
            )
        options[key] = value
    return kind, float(weight), options
