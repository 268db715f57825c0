"""``cwd``: channel-wise distillation for dense prediction.

Shu, Liu, Gao, Yan and Shen, 2021, "Channel-wise Knowledge Distillation for Dense Prediction"
(ICCV). Each channel of a map is turned into a distribution over its ``H * W`` locations by a
softmax with temperature ``tau``, and the student's distribution is pulled towards the teacher's
with ``KL(teacher || student)``. The paper applies the loss to the final logits. Feature stages
(``on="features"`` or ``"both"``) are an extension that kdbench offers for comparison.
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
    check_number,
    format_label,
    resize_to,
)
from kdbench.errors import ConfigError

TARGETS = ("logits", "features", "both")


def channelwise_kl(
    student_map: torch.Tensor, teacher_map: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Return ``tau**2 / (B * C) * sum_{b,c} KL(phi(T_bc) || phi(S_bc))`` for ``(B, C, H, W)`` maps.

    ``phi`` is the softmax over the ``H * W`` locations of one channel, at temperature ``tau``.
    """
    student_flat = student_map.flatten(start_dim=2) / temperature  # (B, C, H*W)
    teacher_flat = teacher_map.flatten(start_dim=2) / temperature
    log_p_student = F.log_softmax(student_flat, dim=2)
    log_p_teacher = F.log_softmax(teacher_flat, dim=2)
    kl_per_channel = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=2)  # (B, C)
    return kl_per_channel.mean() * temperature**2


@register_strategy("cwd")
class ChannelWiseDistillation(PairedStrategy):
    """Channel-wise distillation (Shu et al., 2021) on logits, paired feature maps, or both.

    Per channel ``c`` of sample ``b``: ``KL(softmax(T_bc / tau) || softmax(S_bc / tau))`` summed
    over the locations, then averaged over channels and batch and multiplied by ``tau**2``.
    Logits must have the same class count. A feature pair whose channel counts differ gets a 1x1
    convolution adapter (student -> teacher channels, built in :meth:`setup`). A pair with equal
    counts is compared directly. The student map is resized to the teacher map's ``(H, W)``.
    With ``on="both"`` the logit term and the feature terms add up, and several feature pairs
    add up too.

    Options: ``temperature`` (tau > 0, default 4.0); ``on`` (``"logits"`` default,
    ``"features"`` or ``"both"``); ``pairs`` (required unless ``on="logits"``, where it must be
    left out).
    """

    kind = "cwd"

    def __init__(self, temperature: float = 4.0, on: str = "logits", pairs: Any = None) -> None:
        on = check_choice(on, "on", self.kind, TARGETS)
        if on == "logits" and pairs is not None:
            raise ConfigError(
                "strategy 'cwd': option 'pairs' is only read with on = \"features\" or "
                '"both"; remove it or set on'
            )
        super().__init__(pairs, required=on != "logits")
        self.on = on
        self.temperature = check_number(temperature, "temperature", self.kind)
        self.adapters = nn.ModuleDict()

    def needs_teacher_logits(self) -> bool:
        """Return True when the logit term is on (``on`` is ``"logits"`` or ``"both"``)."""
        return self.on in ("logits", "both")

    def setup(self, student_channels: dict[str, int], teacher_channels: dict[str, int]) -> None:
        """Build a 1x1 adapter for every feature pair whose channel counts differ."""
        super().setup(student_channels, teacher_channels)
        self.adapters = build_adapters(
            self.pairs, student_channels, teacher_channels, only_when_channels_differ=True
        )

    def loss(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: torch.Tensor
    ) -> torch.Tensor:
        """Return the logit term plus the sum over feature pairs; ``target`` is not read."""
        if teacher is None:
            raise ValueError("strategy 'cwd' needs teacher outputs, got None")
        total = student.logits.new_zeros(())

        if self.on in ("logits", "both"):
            if teacher.logits is None:
                raise ValueError("strategy 'cwd' with on = 'logits' needs the teacher's logits")
            teacher_logits = teacher.logits.detach()
            if student.logits.shape[1] != teacher_logits.shape[1]:
                raise ValueError(
                    "strategy 'cwd' needs the same number of classes in student and teacher "
                    f"logits, got {tuple(student.logits.shape)} and {tuple(teacher_logits.shape)}"
                )
            student_logits = resize_to(student.logits, teacher_logits.shape[-2:])
            total = total + channelwise_kl(student_logits, teacher_logits, self.temperature)

        for pair, student_map, teacher_map in self.paired_maps(student, teacher):
            adapted = resize_to(adapt(self.adapters, pair, student_map), teacher_map.shape[-2:])
            if adapted.shape[1] != teacher_map.shape[1]:
                raise RuntimeError("strategy 'cwd': call setup() before loss()")
            total = total + channelwise_kl(adapted, teacher_map, self.temperature)
        return total

    def describe(self) -> str:
        """Short label, e.g. ``cwd(T=4)`` or ``cwd(T=4,on=both)``."""
        settings = [f"T={self.temperature:g}"]
        if self.on != "logits":
            settings.append(f"on={self.on}")
        return format_label(self.kind, settings)

    def options(self) -> dict[str, Any]:
        """Resolved options as JSON-ready values, for the run record."""
        options: dict[str, Any] = {"temperature": self.temperature, "on": self.on}
        if self.pairs:
            options["pairs"] = [list(pair) for pair in self.pairs]
        return options
