"""Parameter counts of the model passed in."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Count the parameters of ``model``: ``{"total": int, "trainable": int}``.

    Parameters shared between submodules are counted once (``nn.Module.parameters`` removes
    duplicates). Buffers such as batch-norm running statistics are not parameters and are not
    counted. Only the module passed in is counted, so a caller profiling a distilled student
    passes the student alone, without the strategy's adapter modules.
    """
    params = list(model.parameters())
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }
