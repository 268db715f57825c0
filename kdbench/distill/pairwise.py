"""``pairwise``: pair-wise (affinity) distillation between pooled feature nodes.

Liu, Chen, Liu, Qin, Luo and Wang, 2019, "Structured Knowledge Distillation for Semantic
Segmentation" (CVPR). Only the pair-wise term is implemented; the pixel-wise term is the
``logit`` strategy and the holistic (adversarial) term is not offered. A map is pooled into
nodes, each a ``k x k`` window, and the cosine similarity of every pair of nodes forms an affinity
matrix. The student's affinity matrix is pulled towards the teacher's by squared error.

Variant: nodes are average pooled by default (``pooling="avg"``). The authors' released code
(``CriterionPairWiseforWholeFeatAfterPool`` in github.com/irfanICMLL/
structure_knowledge_distillation, ``utils/criterion.py``) max pools, with a window of
``int(scale * size)`` pixels; ``pooling="max"`` with ``node_scale`` reproduces that.
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

POOLINGS = ("avg", "max")
DEFAULT_POOL_SIZE = 4


def node_affinity(nodes: torch.Tensor) -> torch.Tensor:
    """Return the cosine similarity ``(B, N, N)`` between all node pairs of ``(B, C, h, w)``.

    ``N = h * w``. A node whose feature vector is zero has similarity 0 with every node.
    """
    flat = F.normalize(nodes.flatten(start_dim=2), p=2, dim=1)  # (B, C, N), unit columns
    return flat.transpose(1, 2) @ flat  # (B, N, N)


@register_strategy("pairwise")
class PairwiseDistillation(PairedStrategy):
    """Pair-wise distillation (Liu et al., 2019) of node affinities between paired stages.

    For each pair the student map is resized to the teacher map's ``(H, W)``. Both maps are
    pooled with a ``k x k`` window and stride ``k`` (``ceil_mode=True``, so border windows that
    run past the map cover only the pixels inside it) into ``N = ceil(H/k) * ceil(W/k)`` nodes.
    The loss is ``mean over b, i, j of (a_S[b,i,j] - a_T[b,i,j])**2`` with ``a`` the cosine
    similarity of nodes i and j, so averaged over the ``N**2`` pairs and the batch, and summed
    over stage pairs. Affinities are channel-free, so channel counts may differ. Memory grows
    with ``N**2`` per sample.

    Options: ``pairs`` (required); ``pool_size`` (k in pixels of the teacher map, default 4) or
    ``node_scale`` (k = max(1, int(node_scale * H)) along H and likewise along W, 0 < scale <= 1),
    not both; ``pooling`` (``"avg"`` default or ``"max"``).
    """

    kind = "pairwise"

    def __init__(
        self,
        pairs: Any = None,
        pool_size: int | None = None,
        node_scale: float | None = None,
        pooling: str = "avg",
    ) -> None:
        super().__init__(pairs)
        if pool_size is not None and node_scale is not None:
            raise ConfigError(
                "strategy 'pairwise': set either option 'pool_size' or 'node_scale', not both"
            )
        if pool_size is not None and (
            isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1
        ):
            raise ConfigError(
                f"strategy 'pairwise': option 'pool_size' must be an integer >= 1, got "
                f"{pool_size!r}"
            )
        if node_scale is not None:
            node_scale = check_number(node_scale, "node_scale", self.kind)
            if node_scale > 1:
                raise ConfigError(
                    f"strategy 'pairwise': option 'node_scale' must be in (0, 1], got {node_scale}"
                )
        if pool_size is None and node_scale is None:
            pool_size = DEFAULT_POOL_SIZE
        self.pool_size = pool_size
        self.node_scale = node_scale
        self.pooling = check_choice(pooling, "pooling", self.kind, POOLINGS)

    def window(self, height: int, width: int) -> tuple[int, int]:
        """Return the pooling window ``(k_h, k_w)`` in pixels for a map of ``height x width``."""
        if self.node_scale is None:
            return self.pool_size, self.pool_size
        return max(1, int(self.node_scale * height)), max(1, int(self.node_scale * width))

    def pool(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Pool ``(B, C, H, W)`` into nodes ``(B, C, ceil(H/k_h), ceil(W/k_w))``."""
        window = self.window(*feature_map.shape[-2:])
        if self.pooling == "avg":
            return F.avg_pool2d(feature_map, window, stride=window, ceil_mode=True)
        return F.max_pool2d(feature_map, window, stride=window, ceil_mode=True)

    def loss(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: torch.Tensor
    ) -> torch.Tensor:
        """Return the sum over pairs of the mean squared affinity difference."""
        total = student.logits.new_zeros(())
        for _pair, student_map, teacher_map in self.paired_maps(student, teacher):
            student_map = resize_to(student_map, teacher_map.shape[-2:])
            affinity_student = node_affinity(self.pool(student_map))  # (B, N, N)
            affinity_teacher = node_affinity(self.pool(teacher_map))
            total = total + (affinity_student - affinity_teacher).pow(2).mean()
        return total

    def describe(self) -> str:
        """Short label: ``pairwise``, with the node size and pooling when not the defaults."""
        settings = []
        if self.node_scale is not None:
            settings.append(f"scale={self.node_scale:g}")
        elif self.pool_size != DEFAULT_POOL_SIZE:
            settings.append(f"pool={self.pool_size}")
        if self.pooling != "avg":
            settings.append(self.pooling)
        return format_label(self.kind, settings)

    def options(self) -> dict[str, Any]:
        """Resolved options as JSON-ready values, for the run record."""
        options: dict[str, Any] = {**super().options(), "pooling": self.pooling}
        if self.node_scale is not None:
            options["node_scale"] = self.node_scale
        else:
            options["pool_size"] = self.pool_size
        return options
