"""The registry idiom shared by models, strategies and datasets."""

import pytest

from kdbench.errors import UnknownNameError
from kdbench.registry import Registry


def make_registry():
    registry = Registry("widget")

    @registry.register()
    def round_widget(size=1):
        return ("round", size)

    @registry.register("square")
    def _square(size=1):
        return ("square", size)

    return registry


def test_registry_create_passes_options():
    assert make_registry().create("square", size=3) == ("square", 3)


def test_registry_list_filters_with_wildcards():
    registry = make_registry()

    assert registry.list() == ["round_widget", "square"]
    assert registry.list("r*") == ["round_widget"]


def test_registry_unknown_name_lists_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean: square"):
        make_registry().create("sqare")


def test_registry_duplicate_name_rejected():
    registry = make_registry()

    with pytest.raises(ValueError, match="already registered"):
        registry.register("square")(lambda: None)
