"""Distillation strategies: the registry, ``create_strategy`` and the built-in strategies.

Built-in names: ``none``, ``logit``, ``feature``, ``attention``, ``cwd``, ``pairwise`` (see
``docs/strategies.md``). Terms combine with :func:`build_strategy`, and teacher outputs can be
computed once per training sample with :class:`TeacherOutputCache`.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from kdbench.distill.base import ModelOutputs, Strategy
from kdbench.errors import ConfigError
from kdbench.registry import Registry

STRATEGIES: Registry[Strategy] = Registry("strategy")
register_strategy = STRATEGIES.register


def list_strategies(pattern: str = "*") -> list[str]:
    """Return registered strategy names matching a shell-style wildcard."""
    return STRATEGIES.list(pattern)


def strategy_options(name: str) -> list[str]:
    """Return the option names that strategy ``name`` accepts, in signature order."""
    parameters = inspect.signature(STRATEGIES.get(name)).parameters.values()
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def create_strategy(name: str, **options: Any) -> Strategy:
    """Build the registered strategy ``name`` with keyword options.

    Raises UnknownNameError for an unknown name, and ConfigError naming the option and the
    strategy's accepted options for an unknown option (factories take no ``**kwargs``) or an
    invalid value.
    """
    accepted = strategy_options(name)
    for option in options:
        if option not in accepted:
            close = difflib.get_close_matches(option, accepted, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            listed = ", ".join(accepted) or "none"
            raise ConfigError(
                f"strategy '{name}' has no option '{option}'.{hint} Its options are: {listed}."
            )
    return STRATEGIES.create(name, **options)


# Built-in strategies register themselves on import.
from kdbench.distill import attention, cwd, feature, logit, none, pairwise  # noqa: E402,F401
from kdbench.distill.cache import (  # noqa: E402
    TeacherOutputCache,
    check_cache_allowed,
    clear_shared_caches,
    shared_cache,
)
from kdbench.distill.combine import CombinedStrategy, build_strategy  # noqa: E402

__all__ = [
    "STRATEGIES",
    "CombinedStrategy",
    "ModelOutputs",
    "Strategy",
    "TeacherOutputCache",
    "build_strategy",
    "check_cache_allowed",
    "clear_shared_caches",
    "create_strategy",
    "list_strategies",
    "register_strategy",
    "shared_cache",
    "strategy_options",
]
