"""Base class for segmentation models that expose intermediate feature maps by stage name."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SegmentationModel(nn.Module):
    """Segmentation network mapping ``(B, C_in, H, W)`` images to ``(B, K, H, W)`` class logits.

    Subclasses fill ``stage_modules``: stage name (``enc1``, ``bottleneck``, ``dec1``, ...) to the
    dotted path of the submodule whose output is that stage's feature map. Feature-level
    distillation pairs teacher and student stages by these names alone, never by module internals.
    """

    stage_modules: dict[str, str] = {}
    in_channels: int = 1
    num_classes: int = 2

    @property
    def stage_names(self) -> list[str]:
        """Stage names in forward order."""
        return list(self.stage_modules)

    def stage_channels(self, image_size: int = 64) -> dict[str, int]:
        """Return the channel count of every stage, measured with one forward pass on zeros."""
        param = next(self.parameters())
        x = torch.zeros(1, self.in_channels, image_size, image_size, device=param.device)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            _, feats = self.forward_stages(x, self.stage_names)
        self.train(was_training)
        return {name: f.shape[1] for name, f in feats.items()}

    def forward_stages(
        self, x: torch.Tensor, stages: Sequence[str]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the model and return ``(logits, {stage: feature map (B, C_s, H_s, W_s)})``.

        Raises KeyError naming the model's stages when a requested stage does not exist.
        """
        unknown = [s for s in stages if s not in self.stage_modules]
        if unknown:
            raise KeyError(
                f"{type(self).__name__} has no stage {unknown}; its stages are {self.stage_names}"
            )

        captured: dict[str, torch.Tensor] = {}
        handles = []
        for stage in stages:
            module = self.get_submodule(self.stage_modules[stage])
            handles.append(module.register_forward_hook(_capture_into(captured, stage)))
        try:
            logits = self(x)
        finally:
            for handle in handles:
                handle.remove()
        return logits, {s: captured[s] for s in stages}


def _capture_into(store: dict[str, torch.Tensor], stage: str):
    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        store[stage] = output

    return hook
