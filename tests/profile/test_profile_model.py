"""Specification of profile_model: the schema, no side effects on the model, failures recorded."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdbench.errors import ConfigError
from kdbench.profile import ProfileOptions, profile_model

FAST = dict(batch_sizes=(1, 2), warmup=1, repeats=3, threads=1, memory_runs=1)


class SmallSegmenter(nn.Module):
    """Conv + BN + PReLU, transposed conv and bilinear interpolation; 1 input channel, 3 classes."""

    in_channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.PReLU(8)
        )
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.stem(x)
        deep = torch.relu(self.down(skip))
        resized = F.interpolate(deep[:, :8], scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(torch.cat([self.up(deep) + skip, resized], dim=1))


@torch.library.custom_op("kdbench_test::double", mutates_args=())
def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_double.register_fake
def _double_fake(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class DoubleWithoutSymbolic(torch.autograd.Function):
    """Custom autograd Function without an ONNX symbolic, around an op no exporter translates."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.kdbench_test.double(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return 2 * grad


class Unexportable(nn.Module):
    in_channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return DoubleWithoutSymbolic.apply(self.conv(x))


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    torch.manual_seed(0)
    model = SmallSegmenter()
    folder = tmp_path_factory.mktemp("profile")
    profile = profile_model(model, ProfileOptions(input_size=(1, 32, 32), **FAST), folder)
    return model, folder, profile


def test_profile_model_schema_top_level(profiled):
    _, _, profile = profiled
    expected = {
        "input_shape",
        "headline_unit",
        "params",
        "macs",
        "sizes",
        "onnx",
        "latency",
        "memory",
    }
    assert expected <= set(profile)
    assert profile["input_shape"] == [1, 1, 32, 32]
    assert profile["headline_unit"] == "GMACs"


def test_profile_model_schema_macs(profiled):
    _, _, profile = profiled
    expected = {
        "headline_gmacs",
        "fvcore_gmacs",
        "thop_gmacs",
        "disagreement_pct",
        "flagged",
        "per_operator",
        "skipped",
    }
    assert expected <= set(profile["macs"])
    assert set(profile["macs"]["skipped"]) == {"fvcore", "thop"}
    assert {"operator", "fvcore_gmacs", "thop_gmacs"} <= set(profile["macs"]["per_operator"][0])


def test_profile_model_schema_sizes(profiled):
    _, folder, profile = profiled
    sizes = profile["sizes"]
    assert set(sizes) == {
        "state_dict_bytes",
        "onnx_fp32_bytes",
        "onnx_fp16_bytes",
        "onnx_int8_bytes",
    }
    assert sizes["state_dict_bytes"] == (folder / "state_dict_fp32.pt").stat().st_size
    assert sizes["onnx_fp32_bytes"] == (folder / "model_fp32.onnx").stat().st_size


def test_profile_model_schema_onnx(profiled):
    _, _, profile = profiled
    assert set(profile["onnx"]) == {"fp32", "fp16", "int8"}
    for variant, record in profile["onnx"].items():
        assert {"path", "bytes", "max_abs_diff", "mean_iou", "error"} <= set(record), variant
        assert record["error"] is None, variant


def test_profile_model_latency_records(profiled):
    _, _, profile = profiled
    seen = {(r["backend"], r["batch"]) for r in profile["latency"]}
    assert seen == {("torch", 1), ("torch", 2), ("onnxruntime", 1), ("onnxruntime", 2)}
    for record in profile["latency"]:
        assert record["median_ms"] > 0
        assert record["threads"] == 1
        assert record["device_name"]


def test_profile_model_memory_record(profiled):
    _, _, profile = profiled
    memory = profile["memory"]
    assert {"device", "method", "peak_bytes"} <= set(memory)
    assert memory["peak_bytes"] > 0
    assert [entry["batch"] for entry in memory["per_batch"]] == [1, 2]


def test_profile_model_params_analytic(profiled):
    _, _, profile = profiled
    stem = 8 * 1 * 9 + 2 * 8 + 8  # conv without bias, batch norm scale and shift, PReLU slopes
    down = 16 * 8 * 9 + 16
    up = 16 * 8 * 4 + 8
    head = 3 * 16 + 3
    assert profile["params"]["total"] == stem + down + up + head
    assert profile["params"]["trainable"] == stem + down + up + head


def test_profile_model_trainable_excludes_frozen():
    model = SmallSegmenter()
    for p in model.stem.parameters():
        p.requires_grad_(False)
    profile = profile_model(model, ProfileOptions(input_size=(16, 16), export_onnx=False, **FAST))
    frozen = 8 * 9 + 2 * 8 + 8
    assert profile["params"]["total"] - profile["params"]["trainable"] == frozen


def test_profile_model_state_dict_unchanged(tmp_path: Path):
    # torch.save names the archive's folder after the file, so both files get the same name.
    model = SmallSegmenter()
    keys_before = list(model.state_dict())
    values_before = copy.deepcopy(model.state_dict())
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    torch.save(model.state_dict(), tmp_path / "before" / "model.pt")

    profile_model(model, ProfileOptions(input_size=(1, 16, 16), **FAST), tmp_path / "out")

    torch.save(model.state_dict(), tmp_path / "after" / "model.pt")
    size_before = (tmp_path / "before" / "model.pt").stat().st_size
    assert list(model.state_dict()) == keys_before
    assert (tmp_path / "after" / "model.pt").stat().st_size == size_before
    assert all(torch.equal(values_before[k], v) for k, v in model.state_dict().items())


def test_profile_model_leaves_no_counter_attributes():
    model = SmallSegmenter()
    profile_model(model, ProfileOptions(input_size=(1, 16, 16), export_onnx=False, **FAST))
    for module in model.modules():
        assert not hasattr(module, "total_ops"), type(module).__name__
        assert not hasattr(module, "total_params"), type(module).__name__


def test_profile_model_keeps_training_mode():
    model = SmallSegmenter().train()
    profile_model(model, ProfileOptions(input_size=(1, 16, 16), export_onnx=False, **FAST))
    assert model.training is True


def test_profile_model_export_failure_recorded(tmp_path: Path):
    profile = profile_model(
        Unexportable(), ProfileOptions(input_size=(1, 16, 16), **FAST), tmp_path
    )

    for variant in ("fp32", "fp16", "int8"):
        assert "DoubleWithoutSymbolic" in profile["onnx"][variant]["error"], variant
        assert profile["sizes"][f"onnx_{variant}_bytes"] is None
    assert profile["params"]["total"] == 2 * 9 + 2
    assert profile["macs"]["fvcore_macs"] == 2 * 9 * 16 * 16
    assert profile["sizes"]["state_dict_bytes"] > 0
    assert [r["backend"] for r in profile["latency"]] == ["torch", "torch"]
    assert profile["memory"]["peak_bytes"] >= 0


def test_profile_model_without_output_dir_measures_sizes():
    profile = profile_model(SmallSegmenter(), ProfileOptions(input_size=(16, 16), **FAST))
    assert profile["sizes"]["onnx_int8_bytes"] > 0
    assert profile["onnx"]["int8"]["path"] is None
    assert profile["output_dir"] is None


def test_profile_model_height_width_takes_model_channels():
    profile = profile_model(
        SmallSegmenter(), ProfileOptions(input_size=(16, 16), export_onnx=False, **FAST)
    )
    assert profile["input_shape"] == [1, 1, 16, 16]


def test_profile_model_channel_mismatch_raises():
    with pytest.raises(ConfigError, match="in_channels"):
        profile_model(SmallSegmenter(), ProfileOptions(input_size=(3, 16, 16), **FAST))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("variants", ("fp8",)),
        ("batch_sizes", (0,)),
        ("input_size", (1, 2, 3, 4)),
        ("repeats", 0),
        ("warmup", -1),
        ("threads", 0),
    ],
)
def test_profile_options_invalid_value_raises(field, value):
    with pytest.raises(ConfigError, match=field):
        ProfileOptions(**{field: value})


def test_profile_options_lists_become_tuples():
    options = ProfileOptions(input_size=[1, 8, 8], batch_sizes=[1, 4], variants=["fp32"])
    assert options.input_size == (1, 8, 8)
    assert options.batch_sizes == (1, 4)
    assert options.variants == ("fp32",)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA path needs a CUDA device")
def test_profile_model_cuda_path():
    model = SmallSegmenter().cuda()
    profile = profile_model(model, ProfileOptions(input_size=(1, 32, 32), device="auto", **FAST))
    torch_records = [r for r in profile["latency"] if r["backend"] == "torch"]
    assert profile["device"] == "cuda"
    assert {r["device"] for r in torch_records} == {"cuda"}
    assert {r["timer"] for r in torch_records} == {"torch.cuda.Event"}
    assert profile["memory"]["method"].startswith("cuda-allocator")
    assert profile["onnx"]["fp32"]["max_abs_diff"] < 1e-4
    assert next(model.parameters()).is_cuda
