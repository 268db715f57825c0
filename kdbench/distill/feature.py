"""``feature``: hint-based feature distillation through learned 1x1 convolution adapters.

Romero, Ballas, Kahou, Chassang, Gatta and Bengio, 2015, "FitNets: Hints for Thin Deep Nets"
(ICLR). Variant: the hint loss is trained jointly with the supervised loss in one stage, where
FitNets first pre-trains the student up to the guided layer on the hint loss alone and then
trains the whole student with KD. The regressor is a 1x1 convolution (FitNets also uses
convolutional regressors, with a kernel sized so that the spatial sizes match). Here spatial
sizes are matched by the alignment rule of :mod:`kdbench.distill.pairing` instead.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.distill import register_strategy
from kdbench.distill.base import ModelOutputs
from kdbench.distill.pairing import (
    PairedStrategy,
    adapt,
    build_adapters,
    check_choice,
    format_label,
    resize_to,
)

DISTANCES = ("l2", "smooth_l1")


@register_strategy("feature")
class FeatureDistillation(PairedStrategy):
    """FitNets hints (Romero et al., 2015): regress teacher feature maps from student ones.

    For each pair ``(teacher_stage, student_stage)`` a 1x1 convolution ``r`` maps the student map
    ``(B, C_s, h, w)`` to ``(B, C_t, h, w)``. The result is resized to the teacher map's
    ``(H, W)`` and compared with the teacher map ``(B, C_t, H, W)``:

    - ``distance="l2"``: mean squared error, averaged over ``B * C_t * H * W``. FitNets writes
      ``1/2 ||u_h - r(v_g)||^2``, which differs from this by a constant factor.
    - ``distance="smooth_l1"``: ``torch.nn.functional.smooth_l1_loss`` with ``beta=1``, averaged.

    The loss is the sum over pairs. The adapters are created in :meth:`setup` (call it before
    moving the strategy to a device) and are trained with the student, but never belong to it.

    Options: ``pairs`` (required) as ``[[teacher_stage, student_stage], ...]`` or a dict
    teacher -> student; ``distance`` (``"l2"`` default, or ``"smooth_l1"``).
    """

    kind = "feature"

    def __init__(self, pairs: Any = None, distance: str = "l2") -> None:
        super().__init__(pairs)
        self.distance = check_choice(distance, "distance", self.kind, DISTANCES)
        self.adapters = nn.ModuleDict()

    def setup(self, student_channels: dict[str, int], teacher_channels: dict[str, int]) -> None:
        """Build one 1x1 adapter per pair, student channels -> teacher channels."""
        super().setup(student_channels, teacher_channels)
        self.adapters = build_adapters(
            self.pairs, student_channels, teacher_channels, only_when_channels_differ=False
        )

    def loss(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: torch.Tensor
    ) -> torch.Tensor:
        """Return the sum over pairs of the hint distance; ``target`` is not read."""
        if len(self.adapters) != len(self.pairs):
            raise RuntimeError("strategy 'feature': call setup() before loss()")
        total = student.logits.new_zeros(())
        for pair, student_map, teacher_map in self.paired_maps(student, teacher):
            regressed = resize_to(adapt(self.adapters, pair, student_map), teacher_map.shape[-2:])
            if self.distance == "l2":
                total = total + F.mse_loss(regressed, teacher_map)
            else:
                total = total + F.smooth_l1_loss(regressed, teacher_map, beta=1.0)
        return total

    def describe(self) -> str:
        """Short label: ``feature``, or ``feature(smooth_l1)``."""
        return format_label(self.kind, [] if self.distance == "l2" else [self.distance])

    def options(self) -> dict[str, Any]:
        """Resolved options as JSON-ready values, for the run record."""
        return {**super().options(), "distance": self.distance}
