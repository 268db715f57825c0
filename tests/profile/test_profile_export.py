"""Specification of the exported artifacts: files exist, load in onnxruntime, match PyTorch."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto
from torch import nn

from kdbench.profile.export import FILE_NAMES, export_variants, write_state_dict
from kdbench.profile.fp16 import convert_to_float16

CHW = (1, 32, 32)
VARIANTS = ("fp32", "fp16", "int8")


class SmallSegmenter(nn.Module):
    """Conv, batch norm, PReLU, a strided and a dilated depthwise conv, a transposed conv and
    bilinear interpolation: every operator kind the built-in models use."""

    in_channels = 1

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.PReLU(16)
        )
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.context = nn.Conv2d(32, 32, 3, padding=2, dilation=2, groups=32)
        self.up = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.head = nn.Conv2d(48, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.stem(x)
        deep = torch.relu(self.context(self.down(skip)))
        resized = F.interpolate(deep, scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(torch.cat([self.up(deep) + skip, resized], dim=1))


def run_onnx(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = SmallSegmenter().eval()
    folder = tmp_path_factory.mktemp("onnx")
    records = export_variants(model, CHW, folder, VARIANTS, threads=1)
    images = np.random.default_rng(7).standard_normal((2, *CHW), dtype=np.float32)
    with torch.inference_mode():
        reference = model(torch.from_numpy(images)).numpy()
    return model, folder, records, images, reference


@pytest.mark.parametrize("variant", VARIANTS)
def test_export_variants_file_exists(exported, variant):
    _, folder, records, _, _ = exported
    path = folder / FILE_NAMES[variant]
    assert records[variant]["error"] is None
    assert path.is_file()
    assert records[variant]["bytes"] == path.stat().st_size
    assert records[variant]["path"] == str(path)


def test_export_variants_fp32_matches_torch(exported):
    _, folder, records, images, reference = exported
    output = run_onnx(folder / FILE_NAMES["fp32"], images)
    assert np.max(np.abs(output - reference)) < 1e-4
    assert records["fp32"]["max_abs_diff"] < 1e-4


def test_export_variants_fp16_matches_torch_loosely(exported):
    _, folder, records, images, reference = exported
    output = run_onnx(folder / FILE_NAMES["fp16"], images)
    tolerance = 1e-2 * max(1.0, float(np.max(np.abs(reference))))
    assert output.dtype == np.float32  # float32 interface around the float16 graph
    assert np.max(np.abs(output - reference)) < tolerance
    assert records["fp16"]["max_abs_diff"] < tolerance


def test_export_variants_int8_runs_with_matching_shape(exported):
    _, folder, records, images, reference = exported
    output = run_onnx(folder / FILE_NAMES["int8"], images)
    assert output.shape == reference.shape
    assert np.isfinite(output).all()
    assert records["int8"]["max_abs_diff"] is not None


def test_export_variants_int8_uses_integer_convolution(exported):
    _, folder, _, _, _ = exported
    operators = {node.op_type for node in onnx.load(str(folder / FILE_NAMES["int8"])).graph.node}
    assert "ConvInteger" in operators


@pytest.mark.parametrize("variant", VARIANTS)
def test_export_variants_batch_axis_dynamic(exported, variant):
    _, folder, _, _, _ = exported
    images = np.zeros((5, *CHW), dtype=np.float32)
    assert run_onnx(folder / FILE_NAMES[variant], images).shape == (5, 3, 32, 32)


def test_export_variants_fp16_weights_are_half_size(exported):
    _, _, records, _, _ = exported
    assert records["fp16"]["bytes"] < 0.7 * records["fp32"]["bytes"]


def test_export_variants_fp16_graph_is_float16_inside(exported):
    _, folder, _, _, _ = exported
    graph = onnx.load(str(folder / FILE_NAMES["fp16"])).graph
    weight_types = {i.data_type for i in graph.initializer if i.name.endswith("weight")}
    assert graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert weight_types == {TensorProto.FLOAT16}


def test_convert_to_float16_keeps_resize_scales_float32():
    graph_source = SmallSegmenter().eval()
    model_proto = _export_in_memory(graph_source)

    converted, _ = convert_to_float16(model_proto)

    graph = converted.graph
    types = {i.name: i.data_type for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    resize = next(node for node in graph.node if node.op_type == "Resize")
    scales = resize.input[2]
    scales_type = types.get(scales)
    if scales_type is None:  # a Constant node or a Cast back to float32
        node = producers[scales]
        is_float32 = (node.op_type == "Cast" and node.attribute[0].i == TensorProto.FLOAT) or (
            node.op_type == "Constant" and node.attribute[0].t.data_type == TensorProto.FLOAT
        )
    else:
        is_float32 = scales_type == TensorProto.FLOAT
    assert is_float32


def test_convert_to_float16_clips_out_of_range_weights():
    layer = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1e6)
    converted, counts = convert_to_float16(_export_in_memory(layer))
    assert counts["clipped_values"] == 1
    weight = next(i for i in converted.graph.initializer if i.data_type == TensorProto.FLOAT16)
    assert np.isfinite(onnx.numpy_helper.to_array(weight)).all()


def _export_in_memory(model: nn.Module) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(
            model.eval(), (torch.zeros(2, *CHW),), buffer, dynamo=False, opset_version=17
        )
    return onnx.load_from_string(buffer.getvalue())


def test_export_variants_score_called_per_variant(tmp_path):
    torch.manual_seed(0)
    model = SmallSegmenter().eval()
    images = np.random.default_rng(3).standard_normal((4, *CHW), dtype=np.float32)
    with torch.inference_mode():
        labels = model(torch.from_numpy(images)).argmax(1).numpy()
    calls = []

    def score(predict) -> float:
        calls.append(predict)
        predicted = predict(images).argmax(1)
        ious = []
        for k in range(3):
            union = np.logical_or(predicted == k, labels == k).sum()
            if union:
                ious.append(np.logical_and(predicted == k, labels == k).sum() / union)
        return float(np.mean(ious))

    records = export_variants(model, CHW, tmp_path, VARIANTS, threads=1, score=score)

    assert len(calls) == 3
    assert records["fp32"]["mean_iou"] == pytest.approx(1.0)
    assert 0.0 <= records["int8"]["mean_iou"] <= 1.0


def test_export_variants_score_failure_recorded(tmp_path):
    def score(_predict) -> float:
        raise ValueError("labels missing")

    records = export_variants(SmallSegmenter(), CHW, tmp_path, ("fp32",), threads=1, score=score)

    assert "labels missing" in records["fp32"]["error"]
    assert records["fp32"]["max_abs_diff"] < 1e-4


def test_export_variants_without_fp32_request_removes_fp32_file(tmp_path):
    records = export_variants(SmallSegmenter(), CHW, tmp_path, ("int8",), threads=1)
    assert records["int8"]["error"] is None
    assert not (tmp_path / FILE_NAMES["fp32"]).exists()
    assert set(records) == {"int8"}


def test_write_state_dict_equals_plain_torch_save(tmp_path):
    # torch.save names the archive's folder after the file, so both files get the same name.
    model = SmallSegmenter()
    (tmp_path / "plain").mkdir()
    (tmp_path / "written").mkdir()
    torch.save(model.state_dict(), tmp_path / "plain" / "model.pt")

    size = write_state_dict(model, tmp_path / "written" / "model.pt")

    assert size == (tmp_path / "plain" / "model.pt").stat().st_size


class FourierMagnitude(nn.Module):
    """Uses torch.fft.fft2, which the TorchScript exporter rejects and the dynamo exporter maps
    to the ONNX DFT operator."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft2(self.conv(x)).real


def test_export_variants_dynamo_fallback(tmp_path):
    records = export_variants(FourierMagnitude(), (1, 8, 8), tmp_path, ("fp32",), threads=1)
    assert records["fp32"]["exporter"] == "dynamo"
    assert records["fp32"]["error"] is None
    assert records["fp32"]["max_abs_diff"] < 1e-4


def test_export_variants_removes_stale_files(tmp_path):
    stale = tmp_path / FILE_NAMES["fp16"]
    stale.write_bytes(b"left by an earlier run")
    export_variants(SmallSegmenter(), CHW, tmp_path, ("fp32",), threads=1)
    assert not stale.exists()
