"""CFPNet-M student (Lou, Guan and Loew, "CFPNet-M: A Light-Weight Encoder-Decoder Based Network
for Multimodal Biomedical Image Real-Time Segmentation", Computers in Biology and Medicine, 2023;
arXiv:2105.04075, 2021).

The paper's abstract reports 0.65 M parameters. This implementation follows the structure of
the authors' Keras model (``network/CFPNetM.py`` in github.com/AngeLouCN/CFPNet-Medicine) and
has 648,796 parameters for three input channels and one output channel, or 643,185 at the
kdbench default of one input channel and eight classes. The main differences from that model:

- Branch convolutions: the authors' PyTorch port (``CFPNetM-pytorch/CFPNetM.py`` in the same
  repository) groups them into C/16 groups. Their Keras helper accepts a ``groups`` argument but
  never passes it to ``Conv2D``, so every branch convolution there is a dense 3x3 convolution.
  Dense branches are the default here (``depthwise_branches=False``) because they give the
  648,796 above, close to the reported 0.65 M, while grouped branches give 558,076.
- Normalization: batch norm with a learned scale and PReLU follow each concatenation of a
  stage output with the pooled image, as in the PyTorch port. The Keras model normalizes only
  the pooled image and uses batch norm without scale.
- Activations: PReLU after every batch norm, as in the authors' CFPNet code (``model/CFPNet.py``
  in github.com/AngeLouCN/CFPNet). The Keras CFPNet-M model uses ReLU.
- Branch outputs: in the Keras model, branches 3 and 4 concatenate the first convolution of
  branch 1 in place of their own first convolution. Here each branch concatenates its own three
  outputs.
- Decoder: transposed convolutions without bias, each followed by batch norm and PReLU. The
  Keras model uses biased transposed convolutions with ReLU and no batch norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdbench.models import register_model
from kdbench.models.base import SegmentationModel
from kdbench.models.unet import check_input_size


class ConvBNPReLU(nn.Sequential):
    """Convolution without bias, batch norm and PReLU (one slope per channel)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.PReLU(out_channels),
        )


class BNPReLU(nn.Sequential):
    """Batch norm followed by PReLU, applied to a concatenation of feature maps."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.BatchNorm2d(channels), nn.PReLU(channels))


class FeaturePyramidBranch(nn.Module):
    """Three stacked dilated 3x3 convolutions whose outputs are concatenated.

    ``(B, C/4, H, W) -> (B, C/4, H, W)``: the three convolutions output C/16, C/16 and C/8
    channels, so the third one, which has the largest receptive field, contributes half.
    """

    def __init__(self, channels: int, dilation: int, depthwise: bool) -> None:
        super().__init__()
        quarter, sixteenth, eighth = channels // 4, channels // 16, channels // 8
        groups = sixteenth if depthwise else 1
        self.conv1 = ConvBNPReLU(quarter, sixteenth, dilation=dilation, groups=groups)
        self.conv2 = ConvBNPReLU(sixteenth, sixteenth, dilation=dilation, groups=groups)
        self.conv3 = ConvBNPReLU(sixteenth, eighth, dilation=dilation, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(x)
        out2 = self.conv2(out1)
        out3 = self.conv3(out2)
        return torch.cat([out1, out2, out3], dim=1)


class CFPModule(nn.Module):
    """Channel-wise Feature Pyramid module: ``(B, C, H, W) -> (B, C, H, W)``, C divisible by 16.

    A 1x1 convolution projects to C/4 channels, which four :class:`FeaturePyramidBranch`
    instances read with dilation rates 1, r//4 + 1, r//2 + 1 and r + 1 (the rates of the authors'
    Keras and PyTorch code). Hierarchical feature fusion adds the branch outputs cumulatively
    (branch 1, 1+2, 1+2+3, 1+2+3+4), and the four sums are concatenated back to C channels.
    Batch norm, PReLU and a 1x1 convolution follow, and the module input is added as a residual.
    """

    def __init__(self, channels: int, dilation: int, depthwise: bool = False) -> None:
        super().__init__()
        if channels % 16:
            raise ValueError(
                f"invalid CFP module width {channels}: channels must be divisible by 16"
            )
        rates = (1, dilation // 4 + 1, dilation // 2 + 1, dilation + 1)
        self.project = ConvBNPReLU(channels, channels // 4, kernel_size=1)
        self.branches = nn.ModuleList(
            FeaturePyramidBranch(channels, rate, depthwise) for rate in rates
        )
        self.fuse = nn.Sequential(
            BNPReLU(channels), nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.project(x)  # (B, C/4, H, W)

        pyramid = []
        running_sum = None
        for branch in self.branches:
            out = branch(projected)
            running_sum = out if running_sum is None else running_sum + out
            pyramid.append(running_sum)

        return x + self.fuse(torch.cat(pyramid, dim=1))


class InputInjection(nn.Module):
    """Concatenate a down-sampled copy of the input image to a feature map, then BN + PReLU.

    ``features (B, C, H/s, W/s)`` and ``image (B, C_in, H/s, W/s)`` give
    ``(B, C + C_in, H/s, W/s)``. The caller pools the image.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = BNPReLU(channels)

    def forward(self, *maps: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.cat(maps, dim=1))


class UpStep(nn.Module):
    """2x2 stride-2 transposed convolution, batch norm and PReLU: doubles H and W."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False)
        self.norm = BNPReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.up(x))


class CFPNetM(SegmentationModel):
    """CFPNet-M: ``(B, C_in, H, W)`` images to ``(B, K, H, W)`` logits; H, W divisible by 8.

    Encoder: three 3x3 convolutions (the first with stride 2) to ``stem_width`` channels at H/2,
    then two CFP stages, each opened by a stride-2 3x3 convolution. The image, average pooled to
    each stage's size, is concatenated to every stage output (input injection), and stages 1 and
    2 also concatenate the output of their down-sampling convolution. The decoder has three 2x2
    stride-2 transposed convolutions, each followed by concatenation with the encoder map of
    the same size, and a 1x1 convolution to the logits.

    Stages, in forward order, with ``c = in_channels`` and default widths:

    - ``enc1``: stem output and pooled image, ``(B, 32 + c, H/2, W/2)``.
    - ``enc2``: CFP stage 1 output, its down-sampling output and pooled image,
      ``(B, 128 + c, H/4, W/4)``.
    - ``bottleneck``: CFP stage 2 output, its down-sampling output and pooled image,
      ``(B, 256 + c, H/8, W/8)``.
    - ``dec1``: ``(B, 128, H/4, W/4)``, ``dec2``: ``(B, 64, H/2, W/2)``,
      ``dec3``: ``(B, 32, H, W)``; outputs of the transposed convolutions before the skip
      concatenation.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 8,
        stem_width: int = 32,
        stage_widths: tuple[int, int] = (64, 128),
        stage1_dilations: Sequence[int] = (2, 2),
        stage2_dilations: Sequence[int] = (4, 4, 8, 8, 16, 16),
        depthwise_branches: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                "invalid cfpnet_m options: in_channels and num_classes must be >= 1, got "
                f"in_channels={in_channels}, num_classes={num_classes}"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.size_divisor = 8
        width1, width2 = stage_widths

        self.stem = nn.Sequential(
            ConvBNPReLU(in_channels, stem_width, stride=2),
            ConvBNPReLU(stem_width, stem_width),
            ConvBNPReLU(stem_width, stem_width),
        )
        self.image_pool = nn.AvgPool2d(kernel_size=2, stride=2)
        enc1_channels = stem_width + in_channels
        self.inject1 = InputInjection(enc1_channels)

        self.down1 = ConvBNPReLU(enc1_channels, width1, stride=2)
        self.stage1 = nn.Sequential(
            *(CFPModule(width1, rate, depthwise_branches) for rate in stage1_dilations)
        )
        enc2_channels = 2 * width1 + in_channels
        self.inject2 = InputInjection(enc2_channels)

        self.down2 = ConvBNPReLU(enc2_channels, width2, stride=2)
        self.stage2 = nn.Sequential(
            *(CFPModule(width2, rate, depthwise_branches) for rate in stage2_dilations)
        )
        bottleneck_channels = 2 * width2 + in_channels
        self.inject3 = InputInjection(bottleneck_channels)

        self.up1 = UpStep(bottleneck_channels, width2)
        self.up2 = UpStep(width2 + enc2_channels, width1)
        self.up3 = UpStep(width1 + enc1_channels, stem_width)
        self.head = nn.Conv2d(stem_width, num_classes, kernel_size=1)

        self.stage_modules = {
            "enc1": "inject1",
            "enc2": "inject2",
            "bottleneck": "inject3",
            "dec1": "up1",
            "dec2": "up2",
            "dec3": "up3",
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits ``(B, num_classes, H, W)`` for images ``(B, in_channels, H, W)``.

        Raises ValueError naming the shape when H or W is not divisible by 8.
        """
        check_input_size(x, self.in_channels, self.size_divisor, "cfpnet_m")
        image_half = self.image_pool(x)
        image_quarter = self.image_pool(image_half)
        image_eighth = self.image_pool(image_quarter)

        enc1 = self.inject1(self.stem(x), image_half)  # (B, 32 + c, H/2, W/2)

        down1 = self.down1(enc1)
        enc2 = self.inject2(self.stage1(down1), down1, image_quarter)  # (B, 128 + c, H/4, W/4)

        down2 = self.down2(enc2)
        bottleneck = self.inject3(self.stage2(down2), down2, image_eighth)  # (B, 256 + c, H/8, W/8)

        x = torch.cat([self.up1(bottleneck), enc2], dim=1)  # (B, 256 + c, H/4, W/4)
        x = torch.cat([self.up2(x), enc1], dim=1)  # (B, 96 + c, H/2, W/2)
        return self.head(self.up3(x))


@register_model()
def cfpnet_m(
    in_channels: int = 1,
    num_classes: int = 8,
    stem_width: int = 32,
    stage_widths: tuple[int, int] = (64, 128),
    stage1_dilations: Sequence[int] = (2, 2),
    stage2_dilations: Sequence[int] = (4, 4, 8, 8, 16, 16),
    depthwise_branches: bool = False,
) -> CFPNetM:
    """Build CFPNet-M (see :class:`CFPNetM` for its stages and the module docstring for the
    differences from the paper and the authors' code).

    ``stage_widths`` are the channel counts of the two CFP stages (each divisible by 16), and
    the dilation lists give one CFP module per entry with that dilation rate r. The defaults
    are the paper's configuration: 2 modules at r = 2, then 6 at r = 4, 4, 8, 8, 16, 16.
    ``depthwise_branches`` makes the branch convolutions grouped (C/16 groups) in place of dense.
    """
    return CFPNetM(
        in_channels,
        num_classes,
        stem_width,
        stage_widths,
        stage1_dilations,
        stage2_dilations,
        depthwise_branches,
    )
