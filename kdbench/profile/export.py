"""Deployable artifacts and their file sizes: state dict, ONNX float32, float16 and int8.

Every ONNX file is loaded in an onnxruntime ``InferenceSession``, and its output is compared
with PyTorch's on a check input. That input differs from the export input in values and batch
size, so a graph that froze a value or the batch size during export shows a large difference.
An export, conversion, onnxruntime or scoring failure is recorded in that variant's ``error``
instead of being raised.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn

from kdbench.profile.fp16 import convert_to_float16

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
VARIANTS = ("fp32", "fp16", "int8")
FILE_NAMES = {
    "state_dict": "state_dict_fp32.pt",
    "fp32": "model_fp32.onnx",
    "fp16": "model_fp16.onnx",
    "int8": "model_int8.onnx",
}
EXPORT_BATCH = 2  # torch.export specializes a dimension of size 1, so the example batch is 2
CHECK_BATCH = 3  # a batch size the export never saw, to prove the batch axis is dynamic

METHODS = {
    "fp32": "torch.onnx.export, opset {opset}, dynamic batch axis",
    "fp16": "float32 ONNX graph converted with onnx's API: float initializers and constants cast "
    "to float16, Cast nodes at float32 graph inputs and outputs",
    "int8": "onnxruntime.quantization.quantize_dynamic, weights QUInt8 per tensor, activations "
    "quantized to uint8 at run time (DynamicQuantizeLinear, ConvInteger, MatMulInteger)",
}

Predict = Callable[[np.ndarray], np.ndarray]
Score = Callable[[Predict], "float | None"]


class OnnxExportError(RuntimeError):
    """Neither the TorchScript-based nor the dynamo-based exporter produced an ONNX file."""


def write_state_dict(model: nn.Module, path: Path) -> int:
    """Save ``model.state_dict()`` with ``torch.save`` and return the file size in bytes.

    Tensors are moved to the CPU and floating-point ones cast to float32, so the file is the
    float32 checkpoint whatever device the model is on. The state dict's version metadata is
    kept, so for a float32 CPU model the file equals ``torch.save(model.state_dict(), path)``.
    """
    state = model.state_dict()
    cpu_state = type(state)(
        (k, v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu())
        for k, v in state.items()
    )
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        cpu_state._metadata = metadata
    torch.save(cpu_state, path)
    return path.stat().st_size


def export_fp32(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> str:
    """Export ``model`` to ONNX with a dynamic batch axis; return the exporter that succeeded.

    The TorchScript-based exporter (``dynamo=False``) runs first because it is the more stable of
    the two for convolutional networks; the dynamo-based exporter is the fallback. Raises
    :class:`OnnxExportError` naming both failures when neither succeeds.
    """
    failures = []
    with _quiet_exporter():
        try:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
            return "torchscript"
        except Exception as error:  # the exporters raise many unrelated exception types
            failures.append(f"torchscript exporter: {error_summary(error)}")
            logger.info("TorchScript ONNX export failed, trying dynamo: %s", failures[-1])
        try:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                verbose=False,
            )
            return "dynamo"
        except Exception as error:
            failures.append(f"dynamo exporter: {error_summary(error)}")
    path.unlink(missing_ok=True)
    raise OnnxExportError("; ".join(failures))


def error_summary(error: BaseException, limit: int = 400) -> str:
    """Return ``Type: first line`` of the innermost cause of ``error``, without terminal colors."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    text = re.sub(r"\x1b\[[0-9;]*m", "", lines[0] if lines else "")
    summary = f"{type(root).__name__}: {text}" if text else type(root).__name__
    return summary if len(summary) <= limit else summary[: limit - 3] + "..."


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Route the exporters' own printing and warnings into the debug log."""
    buffer = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buffer):
        warnings.simplefilter("always")
        yield
    for warning in caught:
        logger.debug("ONNX export warning: %s", warning.message)
    if buffer.getvalue().strip():
        logger.debug("ONNX exporter output:\n%s", buffer.getvalue())


def make_session(path: Path, threads: int) -> ort.InferenceSession:
    """Open ``path`` in onnxruntime's CPU execution provider with ``threads`` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_predictor(session: ort.InferenceSession) -> Predict:
    """Wrap a session as ``predict(images float32 (B, C, H, W)) -> logits float32 (B, K, H, W)``."""
    input_name = session.get_inputs()[0].name

    def predict(images: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(images, dtype=np.float32)
        return np.asarray(session.run(None, {input_name: batch})[0], dtype=np.float32)

    return predict


def export_variants(
    model: nn.Module,
    input_chw: Sequence[int],
    folder: Path,
    variants: Sequence[str],
    threads: int,
    opset: int = ONNX_OPSET,
    score: Score | None = None,
    keep_paths: bool = True,
) -> dict[str, dict[str, Any]]:
    """Write the requested ONNX ``variants`` of ``model`` into ``folder`` and check each one.

    ``input_chw`` is the (C, H, W) input shape. Returns ``{variant: record}`` with ``path`` (None
    when ``keep_paths`` is False, i.e. the folder is temporary), ``bytes``, ``max_abs_diff``
    (max |onnxruntime - PyTorch| over the check input), ``ref_max_abs`` (max |PyTorch output|,
    to judge that difference), ``mean_iou`` (``score`` applied to the variant's predictor, None
    without ``score``), ``error`` (None or the reason the variant failed), ``exporter``,
    ``opset``, ``method`` and ``check_input_shape``. The float32 file is written whenever any
    variant is requested, because float16 and int8 are derived from it.
    """
    cpu_model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    channels, height, width = (int(d) for d in input_chw)
    example = torch.randn(
        (EXPORT_BATCH, channels, height, width), generator=torch.Generator().manual_seed(0)
    )
    check_input = torch.randn(
        (CHECK_BATCH, channels, height, width), generator=torch.Generator().manual_seed(1)
    )
    with torch.inference_mode():
        reference = cpu_model(check_input).numpy()

    records = {v: _empty_record(v, opset, check_input.shape) for v in variants}
    paths = {v: folder / FILE_NAMES[v] for v in VARIANTS}
    for path in paths.values():  # a file left by an earlier run must not pass for this one
        path.unlink(missing_ok=True)

    try:
        exporter = export_fp32(cpu_model, example, paths["fp32"], opset)
    except OnnxExportError as error:
        logger.warning("ONNX export failed, no ONNX variant made: %s", error)
        for record in records.values():
            record["error"] = f"float32 ONNX export failed: {error}"
        return records
    written_opset = _default_domain_opset(paths["fp32"])
    for record in records.values():
        record["exporter"] = exporter
        record["opset"] = written_opset

    builders = {
        "fp32": lambda: None,
        "fp16": lambda: _write_fp16(paths),
        "int8": lambda: _write_int8(paths),
    }
    for variant in variants:
        record = records[variant]
        try:
            builders[variant]()
        except Exception as error:  # onnx and onnxruntime raise many unrelated types
            paths[variant].unlink(missing_ok=True)
            record["error"] = f"{variant} conversion failed: {error_summary(error)}"
            logger.warning("ONNX %s variant failed: %s", variant, record["error"])
            continue
        record["bytes"] = paths[variant].stat().st_size
        record["path"] = str(paths[variant]) if keep_paths else None
        _check_variant(record, paths[variant], check_input.numpy(), reference, threads, score)

    if "fp32" not in variants:
        paths["fp32"].unlink(missing_ok=True)
    return records


def _default_domain_opset(path: Path) -> int | None:
    """Return the ONNX operator set the file declares (the dynamo exporter may raise it)."""
    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _empty_record(variant: str, opset: int, check_shape: torch.Size) -> dict[str, Any]:
    return {
        "path": None,
        "bytes": None,
        "max_abs_diff": None,
        "ref_max_abs": None,
        "mean_iou": None,
        "error": None,
        "exporter": None,
        "opset": opset,
        "method": METHODS[variant].format(opset=opset),
        "check_input_shape": list(check_shape),
    }


def _write_fp16(paths: dict[str, Path]) -> None:
    converted, counts = convert_to_float16(onnx.load(str(paths["fp32"])))
    logger.debug("float16 conversion: %s", counts)
    onnx.save(converted, str(paths["fp16"]))


class _QuantizerChatter(logging.Filter):
    """Drop the root-logger records that onnxruntime's quantizer emits on every call.

    They are per-tensor INFO lines and a pre-processing advice (symbolic shape inference before
    quantization), which kdbench does not take; see docs/profiling.md.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from_quantizer = "onnxruntime" in record.pathname and "quantization" in record.pathname
        advice = "pre-processing before quantization" in record.getMessage()
        return not (from_quantizer and (record.levelno <= logging.INFO or advice))


def _write_int8(paths: dict[str, Path]) -> None:
    chatter = _QuantizerChatter()
    root = logging.getLogger()
    root.addFilter(chatter)
    try:
        # Weights as uint8: older onnxruntime releases implement the CPU ConvInteger kernel for
        # uint8 weights only (1.32 accepts both), so uint8 keeps the file loadable there too.
        quantize_dynamic(str(paths["fp32"]), str(paths["int8"]), weight_type=QuantType.QUInt8)
    finally:
        root.removeFilter(chatter)


def _check_variant(
    record: dict[str, Any],
    path: Path,
    check_input: np.ndarray,
    reference: np.ndarray,
    threads: int,
    score: Score | None,
) -> None:
    """Run ``path`` in onnxruntime on ``check_input``, compare with ``reference``, then score it."""
    try:
        predict = session_predictor(make_session(path, threads))
        output = predict(check_input)
    except Exception as error:  # onnxruntime raises its own exception types
        record["error"] = f"onnxruntime could not run the file: {error_summary(error)}"
        logger.warning("ONNX file %s: %s", path.name, record["error"])
        return
    if output.shape != reference.shape:
        record["error"] = (
            f"onnxruntime output shape {list(output.shape)} differs from PyTorch's "
            f"{list(reference.shape)}"
        )
        logger.warning("ONNX file %s: %s", path.name, record["error"])
        return
    record["max_abs_diff"] = float(np.max(np.abs(output - reference)))
    record["ref_max_abs"] = float(np.max(np.abs(reference)))

    if score is not None:
        try:
            value = score(predict)
        except Exception as error:  # the caller's scoring code may raise anything
            record["error"] = f"scoring failed: {error_summary(error)}"
            logger.warning("ONNX file %s: %s", path.name, record["error"], exc_info=True)
            return
        record["mean_iou"] = None if value is None else float(value)
