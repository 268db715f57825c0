"""Model registry: ``list_models``, ``create_model`` and the built-in segmentation networks."""

from __future__ import annotations

from typing import Any

from kdbench.models.base import SegmentationModel
from kdbench.registry import Registry

MODELS: Registry[SegmentationModel] = Registry("model")
register_model = MODELS.register


def list_models(pattern: str = "*") -> list[str]:
    """Return registered model names matching a shell-style wildcard."""
    return MODELS.list(pattern)


def create_model(name: str, **kwargs: Any) -> SegmentationModel:
    """Build the registered model ``name`` with keyword options (``in_channels``, ...)."""
    return MODELS.create(name, **kwargs)


# Built-in models register themselves on import.
from kdbench.models import cfpnet_m, unet  # noqa: E402,F401

__all__ = ["MODELS", "SegmentationModel", "create_model", "list_models", "register_model"]
