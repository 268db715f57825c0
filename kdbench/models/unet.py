"""U-Net teacher (Ronneberger, Fischer and Brox, 2015, "U-Net: Convolutional Networks for
Biomedical Image Segmentation", MICCAI).

This variant differs from the paper in two ways:

- 3x3 convolutions are zero-padded, so a block's output has the size of its input and the
  logits have the size of any input whose sides are divisible by ``2**depth``. The paper uses
  unpadded convolutions and crops the skip maps, which shrinks a 572x572 input to 388x388.
- Batch normalization after every 3x3 convolution is on by default. The paper has none.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models import register_model
from kdbench.models.base import SegmentationModel


def check_input_size(x: torch.Tensor, in_channels: int, divisor: int, model: str) -> None:
    """Raise ValueError unless ``x`` is ``(B, in_channels, H, W)`` with H and W divisible by
    ``divisor``, naming the shape and the model.

    The check is skipped while ``torch.jit`` traces the model (legacy ONNX export, fvcore),
    because the tracer would freeze it into the graph as a constant and warn about it.
    """
    if torch.jit.is_tracing():
        return
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"{model}: invalid input shape {tuple(x.shape)}; expected (B, {in_channels}, H, W)"
        )
    height, width = x.shape[-2:]
    if height % divisor or width % divisor:
        raise ValueError(
            f"{model}: invalid input shape {tuple(x.shape)}; H and W must be divisible by "
            f"{divisor}. Resize or pad the image to a multiple of {divisor}."
        )


class DoubleConv(nn.Sequential):
    """Two padded 3x3 convolutions, each followed by batch norm (optional) and ReLU.

    ``(B, C_in, H, W) -> (B, C_out, H, W)``. The convolutions have no bias when batch norm
    follows them, because its shift makes the bias redundant.
    """

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool) -> None:
        layers: list[nn.Module] = []
        for block_in in (in_channels, out_channels):
            layers.append(
                nn.Conv2d(block_in, out_channels, kernel_size=3, padding=1, bias=not batch_norm)
            )
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UpBlock(nn.Module):
    """Up-sample by 2, concatenate the encoder skip map and apply a :class:`DoubleConv`.

    ``x (B, C_in, h, w)`` and ``skip (B, C_skip, 2h, 2w)`` give ``(B, C_out, 2h, 2w)``.
    The up-sampling halves the channels of ``x``: a 2x2 stride-2 transposed convolution as in
    the paper, or bilinear interpolation followed by a 1x1 convolution.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        batch_norm: bool,
        transposed: bool,
    ) -> None:
        super().__init__()
        up_channels = in_channels // 2
        if transposed:
            self.up: nn.Module = nn.ConvTranspose2d(
                in_channels, up_channels, kernel_size=2, stride=2
            )
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, up_channels, kernel_size=1),
            )
        self.conv = DoubleConv(up_channels + skip_channels, out_channels, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, C_in / 2, 2h, 2w)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(SegmentationModel):
    """U-Net with padded 3x3 convolutions: ``(B, C_in, H, W)`` images to ``(B, K, H, W)`` logits.

    H and W must be divisible by ``2**depth``. Encoder level ``i`` (1-based) has
    ``base_width * 2**(i - 1)`` channels, and the bottleneck has ``base_width * 2**depth``.

    Stages, in forward order, for an ``H x W`` input:

    - ``enc1`` .. ``enc{depth}``: encoder block outputs before max pooling; ``enc{i}`` is
      ``(B, base_width * 2**(i-1), H / 2**(i-1), W / 2**(i-1))``.
    - ``bottleneck``: ``(B, base_width * 2**depth, H / 2**depth, W / 2**depth)``.
    - ``dec1`` .. ``dec{depth}``: decoder block outputs, deepest first. ``dec{j}`` has the
      channels and size of ``enc{depth + 1 - j}``, so ``dec{depth}`` is the full-resolution one.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 8,
        base_width: int = 64,
        depth: int = 4,
        batch_norm: bool = True,
        transposed_upsampling: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1 or base_width < 1 or in_channels < 1 or num_classes < 1:
            raise ValueError(
                "invalid unet options: depth, base_width, in_channels and num_classes must be "
                ">= 1, got "
                f"depth={depth}, base_width={base_width}, in_channels={in_channels}, "
                f"num_classes={num_classes}"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.size_divisor = 2**depth

        widths = [base_width * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        block_in = in_channels
        for width in widths[:-1]:
            self.encoders.append(DoubleConv(block_in, width, batch_norm))
            block_in = width
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1], batch_norm)

        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):
            self.decoders.append(
                UpBlock(
                    widths[level + 1],
                    widths[level],
                    widths[level],
                    batch_norm,
                    transposed_upsampling,
                )
            )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

        self.stage_modules = {f"enc{i + 1}": f"encoders.{i}" for i in range(depth)}
        self.stage_modules["bottleneck"] = "bottleneck"
        self.stage_modules.update({f"dec{j + 1}": f"decoders.{j}" for j in range(depth)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits ``(B, num_classes, H, W)`` for images ``(B, in_channels, H, W)``.

        Raises ValueError naming the shape when H or W is not divisible by ``2**depth``.
        """
        check_input_size(x, self.in_channels, self.size_divisor, "unet")

        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)

        for decoder, skip in zip(self.decoders, reversed(skips), strict=True):
            x = decoder(x, skip)
        return self.head(x)


@register_model()
def unet(
    in_channels: int = 1,
    num_classes: int = 8,
    base_width: int = 64,
    depth: int = 4,
    batch_norm: bool = True,
    transposed_upsampling: bool = True,
) -> UNet:
    """Build a U-Net with padded 3x3 convolutions (see :class:`UNet` for its stages).

    ``base_width`` is the channel count of the first encoder level, doubled at each of the
    ``depth`` poolings. ``batch_norm`` adds batch norm after every 3x3 convolution.
    ``transposed_upsampling`` selects 2x2 stride-2 transposed convolutions (True, as in the
    paper) or bilinear interpolation followed by a 1x1 convolution (False).
    At the paper's size (64, 4) with one input channel and two classes the network has
    31,036,546 parameters with batch norm and 31,030,658 without.
    """
    return UNet(in_channels, num_classes, base_width, depth, batch_norm, transposed_upsampling)
