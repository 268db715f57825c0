"""One registry idiom for models, distillation strategies and datasets.

A registry maps a name to a factory. Register with the decorator, list with shell-style wildcards,
build with ``create``::

    MODELS = Registry("model")

    @MODELS.register()
    def unet(**kwargs): ...

    MODELS.list("u*")            # ['unet']
    MODELS.create("unet", in_channels=1)

An unknown name raises :class:`~kdbench.errors.UnknownNameError` listing the close matches.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from kdbench.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name-to-factory table for one kind of component (``kind`` is used in messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register a factory under ``name``, or under its ``__name__`` when ``name`` is None.

        Raises ValueError when the name is already taken, so two plugins cannot shadow each other.
        """

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            key = name or factory.__name__
            if key in self._factories:
                raise ValueError(f"{self.kind} '{key}' is already registered")
            self._factories[key] = factory
            return factory

        return decorator

    def list(self, pattern: str = "*") -> list[str]:
        """Return the sorted registered names matching a shell-style wildcard pattern."""
        return sorted(n for n in self._factories if fnmatch.fnmatchcase(n, pattern))

    def get(self, name: str) -> Callable[..., T]:
        """Return the factory registered under ``name``."""
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the component registered under ``name`` with keyword options."""
        return self.get(name)(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._factories, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(self._factories)) or "none"
        return f"unknown {self.kind} '{name}'.{hint} Registered: {known}."
