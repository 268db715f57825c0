"""Specification of the model registry: built-in names, wildcards and unknown-name errors."""

from __future__ import annotations

import pytest

from kdbench.errors import UnknownNameError
from kdbench.models import create_model, list_models
from kdbench.models.cfpnet_m import CFPNetM
from kdbench.models.unet import UNet


def test_list_models_contains_builtins():
    names = list_models()
    assert "unet" in names
    assert "cfpnet_m" in names


def test_list_models_wildcard():
    assert list_models("u*") == ["unet"]


def test_create_model_builds_registered_class():
    assert isinstance(create_model("unet", base_width=4, depth=2), UNet)
    assert isinstance(create_model("cfpnet_m"), CFPNetM)


def test_create_model_passes_options():
    model = create_model("unet", in_channels=3, num_classes=5, base_width=4, depth=2)
    assert model.in_channels == 3
    assert model.num_classes == 5


def test_create_model_unknown_name_suggests_close_match():
    with pytest.raises(UnknownNameError) as info:
        create_model("unet2")
    message = str(info.value)
    assert "'unet2'" in message
    assert "Did you mean: unet?" in message
