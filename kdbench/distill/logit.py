"""``logit``: pixel-wise distillation of temperature-softened class distributions.

Hinton, Vinyals and Dean, 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531).
The image-classification loss is applied at every pixel of the segmentation logits, as in the
pixel-wise term of Liu et al. (2019, "Structured Knowledge Distillation for Semantic
Segmentation"). The ``T**2`` factor keeps the gradient scale independent of the temperature, as
Hinton et al. recommend (Section 2).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kdbench.distill import register_strategy
from kdbench.distill.base import ModelOutputs, Strategy
from kdbench.distill.pairing import check_number, format_label, resize_to


def pixelwise_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Return ``T**2 * mean over B*H*W of KL(p_T || p_S)`` with ``p = softmax(logits / T)``.

    Both logits are ``(B, K, H, W)``; the KL divergence sums over the K classes at each pixel.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)  # (B, K, H, W)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl_per_pixel = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)  # (B, H, W)
    return kl_per_pixel.mean() * temperature**2


@register_strategy("logit")
class LogitDistillation(Strategy):
    """Pixel-wise KD (Hinton, Vinyals and Dean, 2015): ``T**2 * mean_{b,h,w} KL(p_T || p_S)``.

    ``p_T = softmax(z_T / T)`` and ``p_S = softmax(z_S / T)`` over the K classes of the logits
    ``(B, K, H, W)``. The loss is zero when the student logits equal the teacher logits. If the
    logits differ in height or width, the student logits are resized bilinearly to the teacher's.

    Options: ``temperature`` (T > 0, default 4.0).
    """

    kind = "logit"

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = check_number(temperature, "temperature", self.kind)

    def loss(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: torch.Tensor
    ) -> torch.Tensor:
        """Return the scalar KD loss; ``target`` is not read."""
        if teacher is None or teacher.logits is None:
            raise ValueError("strategy 'logit' needs the teacher's logits, got none")
        teacher_logits = teacher.logits.detach()
        if student.logits.shape[1] != teacher_logits.shape[1]:
            raise ValueError(
                "strategy 'logit' needs the same number of classes in student and teacher "
                f"logits, got {tuple(student.logits.shape)} and {tuple(teacher_logits.shape)}"
            )
        student_logits = resize_to(student.logits, teacher_logits.shape[-2:])
        return pixelwise_kl(student_logits, teacher_logits, self.temperature)

    def describe(self) -> str:
        """Short label, e.g. ``logit(T=4)``."""
        return format_label(self.kind, [f"T={self.temperature:g}"])

    def options(self) -> dict[str, Any]:
        """Resolved options as JSON-ready values, for the run record."""
        return {"temperature": self.temperature}
