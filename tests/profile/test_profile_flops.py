"""Specification of the two MAC counters against hand-computed counts.

Conventions checked here (one MAC = one multiply-add, bias additions not counted):

| layer                          | analytic MACs                | fvcore      | thop              |
| ------------------------------ | ---------------------------- | ----------- | ----------------- |
| Conv2d plain, strided, dilated | B*Cout*(Cin/g)*k*k*Hout*Wout | analytic    | analytic          |
| Conv2d depthwise (g = Cin)     | same formula                 | analytic    | analytic          |
| ConvTranspose2d                | B*Cin*(Cout/g)*k*k*Hin*Win   | analytic    | analytic          |
| F.interpolate bilinear         | 4 per output element         | analytic    | 0, listed skipped |
| nn.Upsample bilinear           | 4 per output element         | analytic    | 11 per element    |
| BatchNorm2d (eval, affine)     | -                            | 2 / element | 4 / element       |
| PReLU                          | -                            | 0, skipped  | 1 / element       |
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdbench.profile.flops import count_macs

INPUT = (1, 8, 16, 16)  # (B, C, H, W)


def conv_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_macs(
    batch: int, c_in: int, c_out: int, kernel: int, h_out: int, w_out: int, groups: int = 1
) -> int:
    """Each output element is a dot product over (C_in / groups) * k * k inputs."""
    return batch * c_out * (c_in // groups) * kernel * kernel * h_out * w_out


def conv_transpose_macs(
    batch: int, c_in: int, c_out: int, kernel: int, h_in: int, w_in: int, groups: int = 1
) -> int:
    """Each input element is scattered into (C_out / groups) * k * k outputs."""
    return batch * c_in * (c_out // groups) * kernel * kernel * h_in * w_in


def analytic_conv(layer: nn.Conv2d, shape: tuple[int, int, int, int]) -> int:
    batch, c_in, height, width = shape
    k, s, p, d = layer.kernel_size[0], layer.stride[0], layer.padding[0], layer.dilation[0]
    h_out = conv_output_size(height, k, s, p, d)
    w_out = conv_output_size(width, k, s, p, d)
    return conv_macs(batch, c_in, layer.out_channels, k, h_out, w_out, layer.groups)


CONVOLUTIONS = {
    "plain": nn.Conv2d(8, 16, 3, padding=1),
    "strided": nn.Conv2d(8, 16, 3, stride=2, padding=1),
    "dilated": nn.Conv2d(8, 16, 3, padding=2, dilation=2),
    "depthwise": nn.Conv2d(8, 8, 3, padding=1, groups=8),
    "strided_dilated_no_bias": nn.Conv2d(8, 4, 5, stride=2, padding=4, dilation=2, bias=False),
}


@pytest.mark.parametrize("case", sorted(CONVOLUTIONS))
def test_count_macs_conv_fvcore_analytic(case):
    layer = CONVOLUTIONS[case]
    assert count_macs(layer, INPUT)["fvcore_macs"] == analytic_conv(layer, INPUT)


@pytest.mark.parametrize("case", sorted(CONVOLUTIONS))
def test_count_macs_conv_thop_analytic(case):
    layer = CONVOLUTIONS[case]
    assert count_macs(layer, INPUT)["thop_macs"] == analytic_conv(layer, INPUT)


@pytest.mark.parametrize("case", sorted(CONVOLUTIONS))
def test_count_macs_convolution_not_flagged(case):
    result = count_macs(CONVOLUTIONS[case], INPUT)
    assert result["disagreement_pct"] == 0.0
    assert result["flagged"] is False


TRANSPOSED = {
    "k2_s2": nn.ConvTranspose2d(8, 4, 2, stride=2),
    "k3_s2_p1_outpad1": nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1),
    "grouped_k4_s2": nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, groups=2),
}


@pytest.mark.parametrize("case", sorted(TRANSPOSED))
def test_count_macs_conv_transpose_analytic(case):
    layer = TRANSPOSED[case]
    batch, c_in, height, width = INPUT
    expected = conv_transpose_macs(
        batch, c_in, layer.out_channels, layer.kernel_size[0], height, width, layer.groups
    )

    result = count_macs(layer, INPUT)

    assert result["fvcore_macs"] == expected
    assert result["thop_macs"] == expected
    assert [row["operator"] for row in result["per_operator"]] == ["conv_transpose"]


class FunctionalBilinear(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def bilinear_macs(shape: tuple[int, int, int, int], scale: int) -> int:
    """Each output element is a weighted sum of 4 neighbours: 4 multiply-adds."""
    batch, channels, height, width = shape
    return 4 * batch * channels * height * scale * width * scale


def test_count_macs_interpolate_fvcore_analytic():
    assert count_macs(FunctionalBilinear(), INPUT)["fvcore_macs"] == bilinear_macs(INPUT, 2)


def test_count_macs_interpolate_thop_zero():
    assert count_macs(FunctionalBilinear(), INPUT)["thop_macs"] == 0


def test_count_macs_interpolate_thop_skipped():
    result = count_macs(FunctionalBilinear(), INPUT)
    assert "interpolate(bilinear)" in result["skipped"]["thop"]
    assert result["skipped_calls"]["thop"]["interpolate(bilinear)"] == 1


def test_count_macs_interpolate_flagged_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="kdbench.profile.flops"):
        result = count_macs(FunctionalBilinear(), INPUT)
    assert result["flagged"] is True
    assert result["disagreement_pct"] == 100.0
    assert "disagree" in caplog.text


def test_count_macs_upsample_module_counts():
    layer = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    output_elements = bilinear_macs(INPUT, 2) // 4

    result = count_macs(layer, INPUT)

    assert result["fvcore_macs"] == 4 * output_elements
    assert result["thop_macs"] == 11 * output_elements  # thop's cost for nn.Upsample bilinear
    assert result["skipped"]["thop"] == []
    assert [row["operator"] for row in result["per_operator"]] == ["upsample_bilinear2d"]


def test_count_macs_batch_norm_conventions():
    elements = 1 * 8 * 16 * 16
    result = count_macs(nn.BatchNorm2d(8), INPUT)
    assert result["fvcore_macs"] == 2 * elements
    assert result["thop_macs"] == 4 * elements


def test_count_macs_prelu_unsupported_by_fvcore():
    result = count_macs(nn.PReLU(8), INPUT)
    assert result["fvcore_macs"] == 0
    assert result["skipped"]["fvcore"] == ["aten::prelu"]
    assert result["thop_macs"] == 1 * 8 * 16 * 16


class AddsTwoBranches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(8, 8, 1, bias=False)
        self.right = nn.Conv2d(8, 8, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.left(x) + self.right(x)


def test_count_macs_add_skipped_by_both():
    result = count_macs(AddsTwoBranches(), INPUT)
    assert result["skipped"]["fvcore"] == ["aten::add"]
    assert result["skipped"]["thop"] == ["add"]
    assert result["fvcore_macs"] == result["thop_macs"] == 2 * 8 * 8 * 16 * 16


class Hardswished(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 1)
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def test_count_macs_ruleless_module_listed():
    result = count_macs(Hardswished(), INPUT)
    assert "module Hardswish" in result["skipped"]["thop"]


def test_count_macs_units_gmacs_and_gflops():
    result = count_macs(CONVOLUTIONS["plain"], INPUT)
    macs = analytic_conv(CONVOLUTIONS["plain"], INPUT)
    assert result["headline_gmacs"] == pytest.approx(macs / 1e9)
    assert result["headline_gflops"] == pytest.approx(2 * macs / 1e9)
    assert result["thop_gmacs"] == pytest.approx(macs / 1e9)


def train_mode_model() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
    return model.train()


def test_count_macs_uses_eval_mode():
    result = count_macs(train_mode_model(), INPUT)
    batch_norm = next(r for r in result["per_operator"] if r["operator"] == "batch_norm")
    assert batch_norm["fvcore_macs"] == 2 * 8 * 16 * 16  # eval-mode cost; training mode is 5


def test_count_macs_keeps_caller_mode():
    model = train_mode_model()
    count_macs(model, INPUT)
    assert model.training is True


def test_count_macs_leaves_no_thop_attributes():
    model = AddsTwoBranches()
    keys = list(model.state_dict())

    count_macs(model, INPUT)

    assert list(model.state_dict()) == keys
    assert not any(hasattr(m, "total_ops") or hasattr(m, "total_params") for m in model.modules())


def test_count_macs_per_operator_sums_to_totals():
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.PReLU(8),
        nn.ConvTranspose2d(8, 4, 2, stride=2),
        FunctionalBilinear(),
    )
    result = count_macs(model, INPUT)
    assert sum(r["fvcore_macs"] for r in result["per_operator"]) == result["fvcore_macs"]
    assert sum(r["thop_macs"] for r in result["per_operator"]) == result["thop_macs"]


def test_count_macs_fixed_input_shape_recorded():
    result = count_macs(CONVOLUTIONS["plain"], (2, 8, 32, 32))
    assert result["input_shape"] == [2, 8, 32, 32]
    assert result["fvcore_macs"] == analytic_conv(CONVOLUTIONS["plain"], (2, 8, 32, 32))
