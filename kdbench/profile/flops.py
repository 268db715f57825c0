"""Multiply-accumulate (MAC) counts from two independent counters, fvcore and thop.

Both counters report MACs: fvcore counts one fused multiply-add as one "flop", and thop
(package ``ultralytics-thop``, import name ``thop``) reports MACs. The headline number is
fvcore's, in GMACs (1 GMAC = 1e9 MACs, and GFLOPs = 2 x GMACs). The two counters see a model
differently, and every difference is reported, never hidden:

- fvcore traces the model with ``torch.jit.trace`` and counts the aten operators it has a rule
  for. Operators without a rule count zero; :func:`count_macs` lists them by name from
  ``unsupported_ops()``. Operators fvcore deliberately ignores (``relu``, ``cat``, ``max_pool2d``
  and other data movement) are not listed.
- thop registers forward hooks on modules, so it counts ``nn.Upsample`` but misses a
  functional call such as ``F.interpolate`` made in a ``forward`` method. A recording pass
  (:class:`_UncountedCallRecorder`) lists those calls by name as skipped by thop.
- They use different costs for some layers. Batch norm in eval mode is 2 MACs per element in
  fvcore and 4 in thop. Bilinear up-sampling is 4 per output element in fvcore and 11 in thop
  (``nn.Upsample`` only). PReLU is 1 per element in thop and unsupported in fvcore.

Counting runs on a deep copy of the model on the CPU in eval mode with a fixed input shape, so
neither counter's hooks or attributes can reach the caller's model or its state dict.
"""

from __future__ import annotations

import copy
import importlib
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import thop
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

with warnings.catch_warnings():
    # fvcore.nn compiles a loss with torch.jit.script on import, which torch 2.14 deprecates.
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import conv_flop_count, get_shape

logger = logging.getLogger(__name__)

GIGA = 1e9
DISAGREEMENT_LIMIT_PCT = 1.0  # counters further apart than this (percent) are flagged
FUNCTIONAL_PRODUCTS = "functional products"  # thop's matmul/einsum/linear calls outside modules

# thop's module-type rules. The package exports a function named ``profile`` that shadows its
# submodule of the same name, so the submodule is imported by its dotted path.
_THOP_RULES: dict[type, Any] = importlib.import_module("thop.profile").register_hooks
_THOP_ZERO_RULE = importlib.import_module("thop.vision.basic_hooks").zero_ops

# Functions with arithmetic cost that thop counts only when an nn.Module with a rule calls them.
# Names are canonical: in-place and operator forms (add_, __add__, __radd__) map to "add".
_UNCOUNTED_FUNCTIONS = {
    "interpolate": "interpolate",
    "upsample": "interpolate",
    "upsample_bilinear": "interpolate",
    "upsample_nearest": "interpolate",
    "conv1d": "conv1d",
    "conv2d": "conv2d",
    "conv3d": "conv3d",
    "conv_transpose1d": "conv_transpose1d",
    "conv_transpose2d": "conv_transpose2d",
    "conv_transpose3d": "conv_transpose3d",
    "batch_norm": "batch_norm",
    "instance_norm": "instance_norm",
    "layer_norm": "layer_norm",
    "group_norm": "group_norm",
    "prelu": "prelu",
    "avg_pool1d": "avg_pool1d",
    "avg_pool2d": "avg_pool2d",
    "avg_pool3d": "avg_pool3d",
    "adaptive_avg_pool1d": "adaptive_avg_pool1d",
    "adaptive_avg_pool2d": "adaptive_avg_pool2d",
    "adaptive_avg_pool3d": "adaptive_avg_pool3d",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "grid_sample": "grid_sample",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
}
for _name in ("add", "sub", "mul", "div"):
    for _form in (_name, f"{_name}_", f"__{_name}__", f"__i{_name}__", f"__r{_name}__"):
        _UNCOUNTED_FUNCTIONS[_form] = _name
_UNCOUNTED_FUNCTIONS.update(
    {"__truediv__": "div", "__itruediv__": "div", "__rtruediv__": "div", "true_divide": "div"}
)


def count_macs(
    model: nn.Module,
    input_shape: Sequence[int],
    disagreement_limit_pct: float = DISAGREEMENT_LIMIT_PCT,
) -> dict[str, Any]:
    """Count the MACs of one forward pass of ``model`` on an input of ``input_shape`` (B, C, H, W).

    Returns the ``macs`` record of the profile schema: ``headline_gmacs`` (fvcore),
    ``headline_gflops`` (2 x headline), ``fvcore_gmacs``, ``thop_gmacs``, the exact integer
    counts ``fvcore_macs`` and ``thop_macs``, ``disagreement_pct`` (100 x |fvcore - thop| / the
    larger of the two; 0 when both are 0), ``flagged`` (disagreement above
    ``disagreement_limit_pct``), ``per_operator`` rows, ``skipped`` operator names per counter and
    ``skipped_calls`` (name to number of calls). A flagged disagreement is also logged as a
    warning. The model itself is not modified: each counter gets its own deep copy.
    """
    shape = tuple(int(d) for d in input_shape)
    example = torch.randn(shape, generator=torch.Generator().manual_seed(0))

    fvcore_total, fvcore_ops, fvcore_skipped = _count_fvcore(_cpu_copy(model), example)
    thop_total, thop_ops = _count_thop(_cpu_copy(model), example)
    thop_skipped = _record_thop_blind_spots(_cpu_copy(model), example)

    disagreement = _disagreement_pct(fvcore_total, thop_total)
    flagged = disagreement > disagreement_limit_pct
    per_operator = _per_operator_rows(fvcore_ops, thop_ops)
    if flagged:
        differing = ", ".join(
            f"{row['operator']} (fvcore {row['fvcore_macs']}, thop {row['thop_macs']})"
            for row in per_operator
            if row["fvcore_macs"] != row["thop_macs"]
        )
        logger.warning(
            "MAC counters disagree by %.2f%% (fvcore %.6f GMACs, thop %.6f GMACs) for input %s; "
            "operators counted differently: %s",
            disagreement,
            fvcore_total / GIGA,
            thop_total / GIGA,
            list(shape),
            differing,
        )

    return {
        "input_shape": list(shape),
        "headline_counter": "fvcore",
        "headline_gmacs": fvcore_total / GIGA,
        "headline_gflops": 2 * fvcore_total / GIGA,
        "fvcore_gmacs": fvcore_total / GIGA,
        "thop_gmacs": thop_total / GIGA,
        "fvcore_macs": fvcore_total,
        "thop_macs": thop_total,
        "disagreement_pct": disagreement,
        "disagreement_limit_pct": disagreement_limit_pct,
        "flagged": flagged,
        "per_operator": per_operator,
        "skipped": {"fvcore": sorted(fvcore_skipped), "thop": sorted(thop_skipped)},
        "skipped_calls": {
            "fvcore": dict(sorted(fvcore_skipped.items())),
            "thop": dict(sorted(thop_skipped.items())),
        },
    }


def _cpu_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()


def _disagreement_pct(a: int, b: int) -> float:
    larger = max(abs(a), abs(b))
    return 0.0 if larger == 0 else 100.0 * abs(a - b) / larger


# --- fvcore ------------------------------------------------------------------------------------


def _fvcore_convolution(inputs: list, outputs: list) -> Counter:
    """Count ``aten::_convolution`` like fvcore, but name transposed convolutions apart."""
    transposed = bool(inputs[6].toIValue())
    macs = conv_flop_count(
        get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0]), transposed=transposed
    )
    return Counter({"conv_transpose" if transposed else "conv": macs})


def _count_fvcore(model: nn.Module, example: torch.Tensor) -> tuple[int, Counter, Counter]:
    """Return fvcore's total MACs, MACs per operator, and unsupported operators with call counts."""
    analysis = FlopCountAnalysis(model, (example,))
    analysis.set_op_handle("aten::_convolution", _fvcore_convolution)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with warnings.catch_warnings():
        # torch.jit.trace, which fvcore uses, is deprecated in recent torch releases.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        total = int(analysis.total())
    by_operator = Counter({op: int(n) for op, n in analysis.by_operator().items()})
    return total, by_operator, Counter(analysis.unsupported_ops())


# --- thop --------------------------------------------------------------------------------------


def _count_thop(model: nn.Module, example: torch.Tensor) -> tuple[int, Counter]:
    """Return thop's total MACs and MACs per operator, derived from its per-module tree."""
    total, _params, tree = thop.profile(
        model, inputs=(example,), verbose=False, ret_layer_info=True
    )
    total = int(round(total))

    by_operator: Counter = Counter()
    seen: set[int] = set()

    def walk(parent: nn.Module, subtree: dict) -> None:
        for name, (ops, _p, children) in subtree.items():
            child = parent.get_submodule(name)
            own = int(round(ops - sum(c[0] for c in children.values())))
            if id(child) not in seen:
                seen.add(id(child))
                if own:
                    by_operator[_thop_operator(child)] += own
            walk(child, children)

    walk(model, tree)

    # What the module tree does not hold is the root's own rule (when the model is a single
    # layer) or thop's functional counter (matmul, einsum, linear called outside modules).
    remainder = total - sum(ops for ops, _p, _c in tree.values())
    if remainder:
        key = _thop_operator(model) if _thop_rule(type(model)) else FUNCTIONAL_PRODUCTS
        by_operator[key] += remainder
    return total, by_operator


def _thop_rule(module_type: type) -> Any:
    """Return thop's counting rule for a module type (searched along its MRO), or None."""
    for cls in module_type.__mro__:
        if cls in _THOP_RULES:
            return _THOP_RULES[cls]
    return None


def _thop_operator(module: nn.Module) -> str:
    """Name a thop-counted module with fvcore's operator name, so the two counts share a row."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "conv_transpose"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return "instance_norm"
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return "batch_norm"
    if isinstance(module, nn.GroupNorm):
        return "group_norm"
    if isinstance(module, nn.LayerNorm):
        return "layer_norm"
    if isinstance(module, nn.Upsample):
        return _upsample_operator(module.mode)
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.PReLU):
        return "prelu"
    if isinstance(module, nn.modules.pooling._AdaptiveAvgPoolNd):
        return f"adaptive_avg_pool{_pool_dims(module)}d"
    if isinstance(module, nn.modules.pooling._AvgPoolNd):
        return f"avg_pool{_pool_dims(module)}d"
    if isinstance(module, (nn.Softmax, nn.Softmax2d, nn.Softmin)):
        return "softmax"
    if isinstance(module, nn.LogSoftmax):
        return "log_softmax"
    return type(module).__name__


def _upsample_operator(mode: str) -> str:
    """Return the aten operator name that ``F.interpolate`` dispatches to for ``mode``."""
    return {
        "nearest": "upsample_nearest2d",
        "linear": "upsample_linear1d",
        "bilinear": "upsample_bilinear2d",
        "bicubic": "upsample_bicubic2d",
        "trilinear": "upsample_trilinear3d",
    }.get(mode, f"upsample_{mode}")


def _pool_dims(module: nn.Module) -> int:
    for dims in (1, 2, 3):
        if type(module).__name__.endswith(f"{dims}d"):
            return dims
    return 2


class _UncountedCallRecorder(TorchFunctionMode):
    """Record calls that thop cannot see: costed functions run outside every module thop counts.

    ``active`` is the number of running modules with a non-zero thop rule. Calls made inside one
    of them are that module's own arithmetic, which thop counts.
    """

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.calls: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.active == 0:
            name = _UNCOUNTED_FUNCTIONS.get(getattr(func, "__name__", ""))
            if name == "interpolate":
                mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest")
                name = f"interpolate({mode})"
            if name is not None:
                self.calls[name] += 1
        return func(*args, **kwargs)


def _record_thop_blind_spots(model: nn.Module, example: torch.Tensor) -> Counter:
    """Run ``model`` once and return what thop skips, by name, with the number of calls.

    Two kinds are skipped: costed functional calls outside modules that thop has a rule for
    (``F.interpolate``, ``x + y``, ``F.conv2d``...), and leaf modules without a thop rule
    (listed by class name, e.g. ``Hardswish``).
    """
    recorder = _UncountedCallRecorder()
    skipped: Counter = Counter()
    handles = []

    def enter(_module, _inputs):
        recorder.active += 1

    def leave(_module, _inputs, _output):
        recorder.active -= 1

    def no_rule(module, _inputs, _output):
        skipped[f"module {type(module).__name__}"] += 1

    for module in model.modules():
        rule = _thop_rule(type(module))
        if rule is not None and rule is not _THOP_ZERO_RULE:
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))
        elif rule is None and not list(module.children()):
            handles.append(module.register_forward_hook(no_rule))

    try:
        with torch.no_grad(), recorder:
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    skipped.update(recorder.calls)
    return skipped


# --- table -------------------------------------------------------------------------------------


def _per_operator_rows(fvcore_ops: Counter, thop_ops: Counter) -> list[dict[str, Any]]:
    """Join the two counters' per-operator MACs into rows, largest headline count first."""
    operators = sorted(
        set(fvcore_ops) | set(thop_ops),
        key=lambda op: (-fvcore_ops.get(op, 0), -thop_ops.get(op, 0), op),
    )
    return [
        {
            "operator": op,
            "fvcore_gmacs": fvcore_ops.get(op, 0) / GIGA,
            "thop_gmacs": thop_ops.get(op, 0) / GIGA,
            "fvcore_macs": fvcore_ops.get(op, 0),
            "thop_macs": thop_ops.get(op, 0),
        }
        for op in operators
    ]
