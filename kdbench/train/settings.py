"""Training settings shared by every cell of a matrix (a model may override some of them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings for one cell."""

    epochs: int = 20  # passes over the training split
    batch_size: int = 8  # slices per optimiser step
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    dice_weight: float = 1.0  # weight of soft Dice against cross-entropy in the supervised loss
    supervised_weight: float = 1.0  # weight of the supervised loss against distillation terms
    select: str = "best_val"  # "best_val": epoch with the best validation mean IoU; "last"
    val_every: int = 1  # validate every N epochs; 0 validates never (requires select = "last")
    augment: bool = False  # random horizontal and vertical flips of training batches
    deterministic: bool = True  # torch deterministic algorithms (bitwise repeatable on CPU)
    eval_batch_size: int = 16  # slices per forward pass when validating

    def __post_init__(self) -> None:
        if self.select not in ("best_val", "last"):
            raise ValueError(f"select must be 'best_val' or 'last', got {self.select!r}")
        if self.val_every == 0 and self.select == "best_val":
            raise ValueError("select = 'best_val' needs validation: set val_every >= 1")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
