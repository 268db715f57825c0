"""Training of one matrix cell: losses, seeding and the trainer."""

from kdbench.train.settings import TrainSettings
from kdbench.train.trainer import TrainResult, train_model

__all__ = ["TrainResult", "TrainSettings", "train_model"]
