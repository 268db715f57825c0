"""Supervised segmentation loss: cross-entropy plus soft Dice."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Return 1 minus the mean soft Dice over foreground classes.

    ``logits`` is ``(B, K, H, W)``, ``target`` int64 ``(B, H, W)``. Sums run over the whole batch
    ("batch Dice", as nnU-Net does), so a class absent from one slice does not dominate. Background
    (class 0) is excluded; ``eps`` keeps a class absent from both prediction and target at loss 0.
    """
    probs = logits.softmax(dim=1)[:, 1:]  # (B, K-1, H, W)
    one_hot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    denominator = probs.sum(dims) + one_hot.sum(dims)
    dice = (2.0 * intersection + eps) / (denominator + eps)
    return 1.0 - dice.mean()


def supervised_loss(
    logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0
) -> torch.Tensor:
    """Return pixel-mean cross-entropy plus ``dice_weight`` times the soft Dice loss."""
    loss = F.cross_entropy(logits, target)
    if dice_weight:
        loss = loss + dice_weight * soft_dice_loss(logits, target)
    return loss
