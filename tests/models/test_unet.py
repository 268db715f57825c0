"""Specification of the U-Net teacher: shapes, stages, parameter counts, input checks, export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdbench.models import create_model
from kdbench.models.unet import UNet, unet


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def expected_unet_parameters(
    in_channels: int, num_classes: int, base_width: int, depth: int, batch_norm: bool
) -> int:
    """Count parameters layer by layer: double 3x3 convs, 2x2 transposed convs, 1x1 head."""

    def double_conv(c_in: int, c_out: int) -> int:
        weights = 9 * c_in * c_out + 9 * c_out * c_out
        # Batch norm contributes a scale and a shift per channel and replaces the conv bias.
        per_layer_extra = 2 * c_out if batch_norm else c_out
        return weights + 2 * per_layer_extra

    widths = [base_width * 2**i for i in range(depth + 1)]
    total = double_conv(in_channels, widths[0])
    for level in range(1, depth + 1):
        total += double_conv(widths[level - 1], widths[level])
    for level in range(depth):
        up_in, up_out = widths[level + 1], widths[level + 1] // 2
        total += 4 * up_in * up_out + up_out  # 2x2 transposed conv with bias
        total += double_conv(up_out + widths[level], widths[level])
    total += widths[0] * num_classes + num_classes  # 1x1 head
    return total


@pytest.mark.parametrize("in_channels", [1, 3])
def test_unet_output_shape(in_channels):
    model = unet(in_channels=in_channels, num_classes=4, base_width=8).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, in_channels, 64, 64))
    assert logits.shape == (2, 4, 64, 64)


def test_unet_bilinear_output_shape():
    model = unet(num_classes=3, base_width=8, transposed_upsampling=False).eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 1, 64, 64))
    assert logits.shape == (1, 3, 64, 64)


def test_unet_non_square_input():
    model = unet(base_width=4, depth=3).eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 1, 32, 48))
    assert logits.shape == (1, 8, 32, 48)


def test_unet_paper_size_parameter_count():
    model = unet(in_channels=1, num_classes=2, base_width=64, depth=4)
    assert count_parameters(model) == 31_036_546
    assert count_parameters(model) == expected_unet_parameters(1, 2, 64, 4, batch_norm=True)
    assert abs(count_parameters(model) - 31.04e6) / 31.04e6 < 0.01  # commonly quoted size


def test_unet_without_batch_norm_parameter_count():
    model = unet(in_channels=1, num_classes=2, batch_norm=False)
    assert count_parameters(model) == expected_unet_parameters(1, 2, 64, 4, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize(("in_channels", "base_width", "depth"), [(3, 8, 2), (1, 16, 5)])
def test_unet_small_parameter_count(in_channels, base_width, depth):
    model = unet(in_channels=in_channels, num_classes=5, base_width=base_width, depth=depth)
    expected = expected_unet_parameters(in_channels, 5, base_width, depth, batch_norm=True)
    assert count_parameters(model) == expected


def test_unet_stage_names():
    model = unet(base_width=4, depth=3)
    assert model.stage_names == [
        "enc1",
        "enc2",
        "enc3",
        "bottleneck",
        "dec1",
        "dec2",
        "dec3",
    ]


def test_unet_forward_stages_shapes():
    model = unet(in_channels=1, num_classes=2, base_width=8, depth=4).eval()
    with torch.no_grad():
        logits, features = model.forward_stages(torch.rand(2, 1, 64, 64), model.stage_names)

    expected = {
        "enc1": (2, 8, 64, 64),
        "enc2": (2, 16, 32, 32),
        "enc3": (2, 32, 16, 16),
        "enc4": (2, 64, 8, 8),
        "bottleneck": (2, 128, 4, 4),
        "dec1": (2, 64, 8, 8),
        "dec2": (2, 32, 16, 16),
        "dec3": (2, 16, 32, 32),
        "dec4": (2, 8, 64, 64),
    }
    assert logits.shape == (2, 2, 64, 64)
    for stage, shape in expected.items():
        assert tuple(features[stage].shape) == shape, stage


def test_unet_stage_channels():
    model = unet(base_width=4, depth=2)
    assert model.stage_channels(image_size=16) == {
        "enc1": 4,
        "enc2": 8,
        "bottleneck": 16,
        "dec1": 8,
        "dec2": 4,
    }


def test_unet_unknown_stage_raises():
    model = unet(base_width=4, depth=2)
    with pytest.raises(KeyError, match="enc3"):
        model.forward_stages(torch.rand(1, 1, 16, 16), ["enc3"])


@pytest.mark.parametrize("shape", [(1, 1, 60, 64), (1, 1, 64, 40)])
def test_unet_indivisible_size_raises(shape):
    model = unet(base_width=4)
    with pytest.raises(ValueError) as info:
        model(torch.rand(shape))
    assert "divisible by 16" in str(info.value)
    assert str(shape) in str(info.value)


def test_unet_wrong_channel_count_raises():
    model = unet(in_channels=1, base_width=4)
    with pytest.raises(ValueError, match=r"\(1, 3, 64, 64\)"):
        model(torch.rand(1, 3, 64, 64))


def test_unet_invalid_depth_raises():
    with pytest.raises(ValueError, match="depth=0"):
        unet(depth=0)


def test_unet_eval_deterministic():
    torch.manual_seed(0)
    model = unet(base_width=8).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        first = model(x)
        second = model(x)
    assert torch.equal(first, second)


def test_unet_same_seed_same_weights():
    torch.manual_seed(3)
    first = unet(base_width=4, depth=2)
    torch.manual_seed(3)
    second = unet(base_width=4, depth=2)
    first_state, second_state = first.state_dict(), second.state_dict()
    assert list(first_state) == list(second_state)
    for name, tensor in first_state.items():
        assert torch.equal(tensor, second_state[name]), name


def test_unet_attributes():
    model = create_model("unet", in_channels=3, num_classes=6, base_width=4, depth=3)
    assert isinstance(model, UNet)
    assert model.in_channels == 3
    assert model.num_classes == 6
    assert model.size_divisor == 8


def test_unet_fvcore_counts_convolutions():
    from fvcore.nn import FlopCountAnalysis

    model = unet(base_width=4, depth=2).eval()
    analysis = FlopCountAnalysis(model, torch.rand(1, 1, 32, 32))
    analysis.unsupported_ops_warnings(False)
    by_operator = analysis.by_operator()
    assert by_operator["conv"] > 0
    assert "aten::_convolution" not in analysis.unsupported_ops()


def test_unet_onnx_export_matches_torch(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = unet(base_width=4, depth=2).eval()
    x = torch.rand(1, 1, 32, 32)
    path = tmp_path / "unet.onnx"
    torch.onnx.export(model, (x,), str(path), opset_version=17)

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch_logits = model(x).numpy()
    assert onnx_logits.shape == (1, 8, 32, 32)
    assert abs(onnx_logits - torch_logits).max() < 1e-4
