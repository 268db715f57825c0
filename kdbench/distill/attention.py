"""``attention``: activation-based attention transfer.

Zagoruyko and Komodakis, 2017, "Paying More Attention to Attention: Improving the Performance of
Convolutional Neural Networks via Attention Transfer" (ICLR). Two variants, selected by ``mode``:

- ``"paper"`` (Eq. 2 of the paper): ``Q = sum_c |A_c|**p`` flattened to ``(B, H*W)``, L2
  normalised per sample, and the distance is the L2 norm ``||Q_S/||Q_S|| - Q_T/||Q_T|| ||_2`` of
  each sample, averaged over the batch.
- ``"code"`` (``at``/``at_loss`` in the authors' ``cifar.py``, github.com/szagoruyko/
  attention-transfer): ``Q = mean_c A_c**p`` (signed power, no absolute value), L2 normalised,
  and the distance is the squared difference averaged over ``B * H * W``.

Sum against mean over channels makes no difference after the L2 normalisation, so the variants
differ in the distance (norm against mean square) and, for odd ``p``, in the absolute value.

Both sum over pairs, as Eq. 2 does. Eq. 2 multiplies the sum by ``beta / 2``, and ``cifar.py``
(commit 084890a) by its ``--beta`` option. kdbench has no separate ``beta``: the combination
weight of the term plays its role (weight = beta / 2 reproduces the paper's scaling).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kdbench.distill import register_strategy
from kdbench.distill.base import ModelOutputs
from kdbench.distill.pairing import (
    PairedStrategy,
    check_choice,
    check_number,
    format_label,
    resize_to,
)
from kdbench.errors import ConfigError

MODES = ("paper", "code")


def attention_map(feature_map: torch.Tensor, p: float, mode: str) -> torch.Tensor:
    """Return the L2-normalised spatial attention ``(B, H*W)`` of a map ``(B, C, H, W)``.

    ``mode="paper"`` sums ``|A|**p`` over channels and ``mode="code"`` averages ``A**p``. An
    all-zero map gives an all-zero attention vector (the norm is clamped at 1e-12).
    """
    if mode == "paper":
        powered = feature_map.abs().pow(p).sum(dim=1)  # (B, H, W)
    else:
        powered = feature_map.pow(p).mean(dim=1)  # (B, H, W)
    return F.normalize(powered.flatten(start_dim=1), p=2, dim=1)  # (B, H*W)


@register_strategy("attention")
class AttentionTransfer(PairedStrategy):
    """Attention transfer (Zagoruyko and Komodakis, 2017) between paired stages.

    Attention maps are channel-free, so no adapter is needed and the paired stages may have any
    channel counts. The student map is resized to the teacher map's ``(H, W)`` before its
    attention map is computed. The loss is zero when the paired maps are equal (also when they
    differ only by a positive factor, because of the normalisation).

    Options: ``pairs`` (required), ``p`` (power > 0, default 2; an integer with ``mode="code"``),
    ``mode`` (``"paper"`` default or ``"code"``; see the module docstring for what each computes).
    """

    kind = "attention"

    def __init__(self, pairs: Any = None, p: float = 2.0, mode: str = "paper") -> None:
        super().__init__(pairs)
        self.p = check_number(p, "p", self.kind)
        self.mode = check_choice(mode, "mode", self.kind, MODES)
        if self.mode == "code" and not self.p.is_integer():
            raise ConfigError(
                f"strategy 'attention': mode = \"code\" raises activations to the power p "
                f"without an absolute value, so p must be an integer (got {self.p}); use "
                'mode = "paper" for a fractional p'
            )

    def loss(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: torch.Tensor
    ) -> torch.Tensor:
        """Return the sum over pairs of the attention distance; ``target`` is not read."""
        total = student.logits.new_zeros(())
        for _pair, student_map, teacher_map in self.paired_maps(student, teacher):
            student_map = resize_to(student_map, teacher_map.shape[-2:])
            q_student = attention_map(student_map, self.p, self.mode)  # (B, H*W)
            q_teacher = attention_map(teacher_map, self.p, self.mode)
            difference = q_student - q_teacher
            if self.mode == "paper":
                total = total + torch.linalg.vector_norm(difference, ord=2, dim=1).mean()
            else:
                total = total + difference.pow(2).mean()
        return total

    def describe(self) -> str:
        """Short label: ``attention``, with ``p`` and ``mode`` when not the defaults."""
        settings = []
        if self.p != 2.0:
            settings.append(f"p={self.p:g}")
        if self.mode != "paper":
            settings.append(f"mode={self.mode}")
        return format_label(self.kind, settings)

    def options(self) -> dict[str, Any]:
        """Resolved options as JSON-ready values, for the run record."""
        return {**super().options(), "p": self.p, "mode": self.mode}
