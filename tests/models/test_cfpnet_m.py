"""Specification of the CFPNet-M student: shapes, stages, CFP module, parameter counts, export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdbench.models import create_model
from kdbench.models.cfpnet_m import CFPModule, CFPNetM, cfpnet_m

PAPER_PARAMETERS = 0.65e6  # CFPNet-M abstract (Lou, Guan and Loew, arXiv:2105.04075)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_bn_prelu(c_in: int, c_out: int, kernel: int = 3, groups: int = 1) -> int:
    """Weights of a bias-free convolution plus batch norm (scale, shift) and PReLU slopes."""
    return kernel * kernel * c_out * (c_in // groups) + 3 * c_out


def expected_cfp_module_parameters(channels: int, depthwise: bool) -> int:
    quarter, sixteenth, eighth = channels // 4, channels // 16, channels // 8
    groups = sixteenth if depthwise else 1
    branch = (
        conv_bn_prelu(quarter, sixteenth, groups=groups)
        + conv_bn_prelu(sixteenth, sixteenth, groups=groups)
        + conv_bn_prelu(sixteenth, eighth, groups=groups)
    )
    projection = conv_bn_prelu(channels, quarter, kernel=1)
    fusion = 3 * channels + channels * channels  # BN + PReLU, then a bias-free 1x1 conv
    return projection + 4 * branch + fusion


def expected_cfpnet_m_parameters(in_channels: int, num_classes: int, depthwise: bool) -> int:
    """Count CFPNet-M parameters at the default widths (32, 64, 128) and 2 + 6 CFP modules."""
    c = in_channels
    stem = conv_bn_prelu(c, 32) + 2 * conv_bn_prelu(32, 32)
    injections = 3 * (32 + c) + 3 * (128 + c) + 3 * (256 + c)
    downs = conv_bn_prelu(32 + c, 64) + conv_bn_prelu(128 + c, 128)
    cfp = 2 * expected_cfp_module_parameters(64, depthwise)
    cfp += 6 * expected_cfp_module_parameters(128, depthwise)
    ups = (
        4 * (256 + c) * 128
        + 3 * 128
        + 4 * (128 + 128 + c) * 64
        + 3 * 64
        + 4 * (64 + 32 + c) * 32
        + 3 * 32
    )
    head = 32 * num_classes + num_classes
    return stem + injections + downs + cfp + ups + head


@pytest.mark.parametrize("in_channels", [1, 3])
def test_cfpnet_m_output_shape(in_channels):
    model = cfpnet_m(in_channels=in_channels, num_classes=4).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, in_channels, 64, 64))
    assert logits.shape == (2, 4, 64, 64)


def test_cfpnet_m_non_square_input():
    model = cfpnet_m().eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 1, 40, 24))
    assert logits.shape == (1, 8, 40, 24)


def test_cfpnet_m_default_parameter_count():
    model = cfpnet_m()
    assert count_parameters(model) == 643_185
    assert count_parameters(model) == expected_cfpnet_m_parameters(1, 8, depthwise=False)


def test_cfpnet_m_paper_configuration_parameter_count():
    model = cfpnet_m(in_channels=3, num_classes=1)
    assert count_parameters(model) == 648_796
    assert abs(count_parameters(model) - PAPER_PARAMETERS) / PAPER_PARAMETERS < 0.05


def test_cfpnet_m_depthwise_parameter_count():
    model = cfpnet_m(in_channels=3, num_classes=1, depthwise_branches=True)
    assert count_parameters(model) == expected_cfpnet_m_parameters(3, 1, depthwise=True)
    assert count_parameters(model) == 558_076


@pytest.mark.parametrize(
    ("dilation", "rates"), [(2, [1, 1, 2, 3]), (4, [1, 2, 3, 5]), (16, [1, 5, 9, 17])]
)
def test_cfp_module_branch_dilations(dilation, rates):
    module = CFPModule(64, dilation)
    branch_rates = [branch.conv1[0].dilation[0] for branch in module.branches]
    assert branch_rates == rates


def test_cfp_module_keeps_shape_at_large_dilation():
    module = CFPModule(32, dilation=16).eval()
    x = torch.rand(2, 32, 8, 8)
    with torch.no_grad():
        assert module(x).shape == x.shape


def test_cfp_module_zero_fusion_is_identity():
    module = CFPModule(32, dilation=2).eval()
    nn.init.zeros_(module.fuse[-1].weight)
    x = torch.rand(2, 32, 8, 8)
    with torch.no_grad():
        assert torch.equal(module(x), x)


def test_cfp_module_indivisible_channels_raises():
    with pytest.raises(ValueError, match="24"):
        CFPModule(24, dilation=2)


def test_cfpnet_m_stage_names():
    assert cfpnet_m().stage_names == ["enc1", "enc2", "bottleneck", "dec1", "dec2", "dec3"]


@pytest.mark.parametrize("in_channels", [1, 3])
def test_cfpnet_m_forward_stages_shapes(in_channels):
    model = cfpnet_m(in_channels=in_channels, num_classes=2).eval()
    x = torch.rand(2, in_channels, 64, 64)
    with torch.no_grad():
        logits, features = model.forward_stages(x, model.stage_names)

    c = in_channels
    expected = {
        "enc1": (2, 32 + c, 32, 32),
        "enc2": (2, 128 + c, 16, 16),
        "bottleneck": (2, 256 + c, 8, 8),
        "dec1": (2, 128, 16, 16),
        "dec2": (2, 64, 32, 32),
        "dec3": (2, 32, 64, 64),
    }
    assert logits.shape == (2, 2, 64, 64)
    for stage, shape in expected.items():
        assert tuple(features[stage].shape) == shape, stage


@pytest.mark.parametrize("shape", [(1, 1, 60, 64), (1, 1, 64, 36)])
def test_cfpnet_m_indivisible_size_raises(shape):
    model = cfpnet_m()
    with pytest.raises(ValueError) as info:
        model(torch.rand(shape))
    assert "divisible by 8" in str(info.value)
    assert str(shape) in str(info.value)


def test_cfpnet_m_wrong_channel_count_raises():
    model = cfpnet_m(in_channels=3)
    with pytest.raises(ValueError, match=r"\(1, 1, 64, 64\)"):
        model(torch.rand(1, 1, 64, 64))


def test_cfpnet_m_eval_deterministic():
    torch.manual_seed(0)
    model = cfpnet_m().eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        first = model(x)
        second = model(x)
    assert torch.equal(first, second)


def test_cfpnet_m_attributes():
    model = create_model("cfpnet_m", in_channels=3, num_classes=6)
    assert isinstance(model, CFPNetM)
    assert model.in_channels == 3
    assert model.num_classes == 6
    assert model.size_divisor == 8


def test_cfpnet_m_fvcore_counts_convolutions():
    from fvcore.nn import FlopCountAnalysis

    model = cfpnet_m().eval()
    analysis = FlopCountAnalysis(model, torch.rand(1, 1, 32, 32))
    analysis.unsupported_ops_warnings(False)
    assert analysis.by_operator()["conv"] > 0
    assert "aten::_convolution" not in analysis.unsupported_ops()


def test_cfpnet_m_onnx_export_matches_torch(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    # A shorter stage 2 keeps the export fast; the module types are those of the default model.
    model = cfpnet_m(stage2_dilations=(4, 16)).eval()
    x = torch.rand(1, 1, 32, 32)
    path = tmp_path / "cfpnet_m.onnx"
    torch.onnx.export(model, (x,), str(path), opset_version=17)

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch_logits = model(x).numpy()
    assert onnx_logits.shape == (1, 8, 32, 32)
    assert abs(onnx_logits - torch_logits).max() < 1e-4
