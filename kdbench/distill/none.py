"""``none``: the student trained alone, with no distillation term."""

from __future__ import annotations

from typing import Any

import torch

from kdbench.distill import register_strategy
from kdbench.distill.base import ModelOutputs, Strategy


@register_strategy("none")
class NoDistillation(Strategy):
    """Student alone: reads no teacher output and contributes a zero loss.

    :func:`kdbench.distill.combine.build_strategy` drops ``none`` terms, so a cell configured with
    ``none`` gets an empty combination with no terms and no teacher. This class exists so that
    ``create_strategy("none")`` works like every other name. Its loss is a zero scalar on the
    device of the student logits, with no gradient.
    """

    kind = "none"
    needs_teacher = False

    def loss(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: torch.Tensor
    ) -> torch.Tensor:
        """Return ``0.0`` as a scalar tensor on the student logits' device."""
        return student.logits.new_zeros(())

    def describe(self) -> str:
        """Short label of this term: ``none``."""
        return "none"

    def options(self) -> dict[str, Any]:
        """Resolved options (none)."""
        return {}
