"""The ``kdbench profile`` command: profile a registered model or a saved checkpoint.

A checkpoint is a ``torch.save`` file of a dict with the keys

- ``"model"``: the model registry name, e.g. ``"cfpnet_m"``;
- ``"model_options"``: keyword options for ``kdbench.models.create_model`` (``in_channels``,
  ``num_classes``, ...), optional;
- ``"state_dict"``: the model's state dict.

Other keys (the trainer adds ``teacher`` and ``kdbench``) are ignored. The file is read with
``torch.load(weights_only=True)``, so it may hold only tensors and plain Python values.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from torch import nn

from kdbench.errors import ConfigError
from kdbench.profile.render import FORMATS, render_profile

logger = logging.getLogger(__name__)

DEFAULT_SECOND_BATCH = 8


def parse_input_size(text: str) -> tuple[int, int, int, int]:
    """Parse ``"BxCxHxW"`` (e.g. ``"1x1x256x256"``) into four positive integers.

    Raises ConfigError naming the value when it has another form.
    """
    parts = text.strip().lower().split("x")
    if len(parts) != 4 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            f"invalid --input-size '{text}': expected BxCxHxW, four positive integers such as "
            "1x1x256x256"
        )
    batch, channels, height, width = (int(p) for p in parts)
    return batch, channels, height, width


def load_checkpoint(path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """Read a checkpoint file; return (model name, model options, state dict).

    Raises ConfigError naming the file when it is missing, unreadable or lacks a key.
    """
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} not found; give the path of a .pt checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as error:
        raise ConfigError(
            f"checkpoint {path} cannot be read with torch.load(weights_only=True): {error}"
        ) from None
    if not isinstance(payload, dict):
        raise ConfigError(
            f"checkpoint {path} contains a {type(payload).__name__}; expected a dict with keys "
            "'model', 'model_options' and 'state_dict'"
        )
    for key in ("model", "state_dict"):
        if key not in payload:
            raise ConfigError(
                f"checkpoint {path} has no '{key}' key; expected keys 'model', 'model_options' "
                "and 'state_dict'"
            )
    options = payload.get("model_options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"checkpoint {path}: 'model_options' is not a dict: {options!r}")
    return str(payload["model"]), dict(options), payload["state_dict"]


def build_model(
    model: str | None, checkpoint: Path | None, in_channels: int, num_classes: int
) -> tuple[nn.Module, str]:
    """Build the model to profile; return it with a label for the output.

    Without a checkpoint, ``model`` is a registry name built with ``in_channels`` and
    ``num_classes``. With one, the checkpoint's name and options are used, ``model`` must be
    None or the checkpoint's name, and ``in_channels`` must match the checkpoint's.
    """
    from kdbench.models import create_model

    if checkpoint is None:
        if model is None:
            raise ConfigError("no model given; pass a registered model name or a checkpoint")
        return create_model(model, in_channels=in_channels, num_classes=num_classes), model

    name, options, state_dict = load_checkpoint(checkpoint)
    if model is not None and model != name:
        raise ConfigError(
            f"checkpoint {checkpoint} contains model '{name}' but '{model}' was requested; "
            f"pass '{name}' or the checkpoint path alone"
        )
    stored_channels = options.setdefault("in_channels", in_channels)
    if stored_channels != in_channels:
        raise ConfigError(
            f"--input-size has {in_channels} channels but checkpoint {checkpoint} was trained "
            f"with in_channels = {stored_channels}; use an input size Bx{stored_channels}xHxW"
        )
    try:
        net = create_model(name, **options)
    except TypeError as error:
        raise ConfigError(
            f"checkpoint {checkpoint}: invalid model_options {options}: {error}"
        ) from None
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as error:
        raise ConfigError(
            f"checkpoint {checkpoint}: state_dict does not fit model '{name}' with options "
            f"{options}: {error}"
        ) from None
    return net, f"{name} ({checkpoint.name})"


def profile_command(
    model: str,
    input_size: str = "1x1x256x256",
    batch: list[int] | None = None,
    checkpoint: Path | None = None,
    num_classes: int = 8,
    fmt: str = "table",
    output_dir: Path | None = None,
    threads: int | None = None,
    repeats: int = 30,
    warmup: int = 5,
    device: str = "auto",
    onnx: bool = True,
) -> str:
    """Profile a registered model or a checkpoint and return the rendered profile.

    ``model`` is a registry name, or the path of a ``.pt`` checkpoint file when ``checkpoint``
    is None. ``input_size`` is ``BxCxHxW``; MACs are counted per image (B = 1), and latency runs
    at the ``batch`` sizes, by default B and 8. Raises ConfigError for an invalid input size,
    format, batch size or checkpoint, and UnknownNameError for an unknown model name.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format '{fmt}': use one of {', '.join(FORMATS)}")
    first_batch, channels, height, width = parse_input_size(input_size)
    if batch:
        invalid = [b for b in batch if b < 1]
        if invalid:
            raise ConfigError(f"invalid --batch {invalid[0]}: batch sizes must be >= 1")
        batch_sizes = tuple(dict.fromkeys(batch))
    else:
        batch_sizes = tuple(dict.fromkeys((first_batch, DEFAULT_SECOND_BATCH)))

    name: str | None = model
    if checkpoint is None and model.endswith(".pt") and Path(model).is_file():
        checkpoint, name = Path(model), None
    net, label = build_model(name, checkpoint, channels, num_classes)
    divisor = getattr(net, "size_divisor", 1)
    if height % divisor or width % divisor:
        raise ConfigError(
            f"--input-size {input_size}: {label} needs a height and width that are multiples "
            f"of {divisor}, e.g. 1x{channels}x256x256"
        )

    # Imported here so that `kdbench --help` does not load fvcore, thop and onnxruntime.
    from kdbench.profile.profiler import ProfileOptions, profile_model

    options = ProfileOptions(
        input_size=(channels, height, width),
        batch_sizes=batch_sizes,
        warmup=warmup,
        repeats=repeats,
        threads=threads,
        device=device,
        export_onnx=onnx,
    )
    profile = profile_model(net, options, output_dir)
    return render_profile(profile, fmt, title=f"kdbench profile: {label}")


def profile_cli(
    model: Annotated[
        str,
        typer.Argument(
            help="Registered model name (see `kdbench list models`) or a checkpoint .pt file."
        ),
    ],
    input_size: Annotated[
        str,
        typer.Option(
            "--input-size",
            help="Input tensor shape BxCxHxW in pixels, e.g. 1x1x256x256. MACs are per image; "
            "B is the default first latency batch size and C the model's input channels.",
        ),
    ] = "1x1x256x256",
    batch: Annotated[
        list[int] | None,
        typer.Option(
            "--batch",
            min=1,
            help="Latency batch size in images per forward pass; repeat for several. "
            "Default: B of --input-size and 8.",
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Checkpoint .pt file (keys model, model_options, state_dict) whose weights "
            "are profiled; MODEL must be its model name.",
        ),
    ] = None,
    num_classes: Annotated[
        int,
        typer.Option(
            "--num-classes",
            min=1,
            help="Output classes of a registered model (ignored with a checkpoint).",
        ),
    ] = 8,
    fmt: Annotated[
        str, typer.Option("--format", help="Output format: table, csv, json or md.")
    ] = "table",
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            help="Folder for the state dict and ONNX files. Default: a temporary folder that "
            "is removed afterwards (sizes are still measured).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="CPU threads for torch and onnxruntime. Default: torch's current count.",
        ),
    ] = None,
    repeats: Annotated[
        int, typer.Option("--repeats", min=1, help="Timed runs per latency measurement.")
    ] = 30,
    warmup: Annotated[
        int, typer.Option("--warmup", min=0, help="Untimed runs before each latency measurement.")
    ] = 5,
    device: Annotated[
        str, typer.Option("--device", help="auto (CUDA when available), cpu, cuda or cuda:N.")
    ] = "auto",
    onnx: Annotated[
        bool,
        typer.Option(
            "--onnx/--no-onnx", help="Write and check the ONNX fp32, fp16 and int8 files."
        ),
    ] = True,
) -> None:
    """Measure a model's parameters, GMACs, file sizes, latency (ms) and peak memory (bytes)."""
    text = profile_command(
        model,
        input_size=input_size,
        batch=batch,
        checkpoint=checkpoint,
        num_classes=num_classes,
        fmt=fmt,
        output_dir=output_dir,
        threads=threads,
        repeats=repeats,
        warmup=warmup,
        device=device,
        onnx=onnx,
    )
    typer.echo(text, nl=False)
