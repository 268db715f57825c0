"""Distillation strategy interface: the inputs a strategy reads, its helper modules, its loss."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ModelOutputs:
    """A model's logits ``(B, K, H, W)`` and the feature maps of the stages a strategy requested."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)


class Strategy(nn.Module):
    """One distillation term. Subclasses set what they need and implement :meth:`loss`.

    A strategy is an ``nn.Module`` so that its helper modules (adapters) are trained with the
    student through the same optimizer. They are never part of the student: the student's
    checkpoint, parameter count, FLOPs, file size and latency exclude them.
    """

    needs_teacher: bool = True

    def teacher_stages(self) -> list[str]:
        """Teacher stage names whose feature maps this strategy reads."""
        return []

    def student_stages(self) -> list[str]:
        """Student stage names whose feature maps this strategy reads."""
        return []

    def needs_teacher_logits(self) -> bool:
        """Return True when this strategy reads the teacher's logits."""
        return self.needs_teacher

    def setup(self, student_channels: dict[str, int], teacher_channels: dict[str, int]) -> None:
        """Build helper modules once the channel counts of every stage are known."""

    def loss(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: torch.Tensor
    ) -> torch.Tensor:
        """Return the scalar distillation loss; ``target`` is the int64 label map ``(B, H, W)``."""
        raise NotImplementedError
