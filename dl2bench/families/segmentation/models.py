"""Segmentation models: the U-Net (Ronneberger et al. 2015). Every builder takes the input shape
and the class count (background included) plus the regularisers' switches, and returns per-pixel
logits N x K x H x W (softmax lives in the loss)."""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple

from ...nets import MODELS

if TYPE_CHECKING:
    from torch import nn


def _double_conv(c_in: int, c_out: int, batchnorm: bool) -> nn.Sequential:
    """(3x3 conv, padding 1 -> [BN] -> ReLU) twice; the conv has no bias when BN follows it."""
    from torch import nn

    layers: List[nn.Module] = []
    for a in (c_in, c_out):
        layers.append(nn.Conv2d(a, c_out, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _unet_class():
    import torch
    from torch import nn

    class UNet(nn.Module):
        """Contracting path (double conv, 2x2 max pool) `depth` times, a bottleneck double conv,
        then `depth` times: 2x2 up-convolution (ConvTranspose2d, stride 2, halving the channels),
        concatenation with the skip connection of the same level, double conv; 1x1 conv to logits.
        Channels: width * 2^level; padded convolutions, so the output has the input's size (which
        must divide by 2^depth)."""

        def __init__(self, in_channels: int, num_classes: int, width: int, depth: int, batchnorm: bool,
                     dropout: float):
            super().__init__()
            chans = [width * 2**i for i in range(depth + 1)]
            self.down = nn.ModuleList()
            c = in_channels
            for ch in chans[:-1]:
                self.down.append(_double_conv(c, ch, batchnorm))
                c = ch
            self.pool = nn.MaxPool2d(2)
            self.bottom = _double_conv(chans[-2], chans[-1], batchnorm)
            # the paper puts dropout at the end of the contracting path
            self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
            for i in reversed(range(depth)):
                self.up.append(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2))
                self.dec.append(_double_conv(2 * chans[i], chans[i], batchnorm))
            self.head = nn.Conv2d(width, num_classes, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for block in self.down:
                x = block(x)
                skips.append(x)
                x = self.pool(x)
            x = self.drop(self.bottom(x))
            for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
                x = dec(torch.cat([skip, up(x)], dim=1))
            return self.head(x)

    return UNet


@MODELS.register(family="segmentation")
def unet(in_shape: Tuple[int, ...], num_classes: int, width: int = 16, depth: int = 3,
         dropout: Optional[float] = None, batchnorm: Optional[bool] = None) -> nn.Module:
    """U-Net, width 16, depth 3, BN: 16-32-64 down, 128 bottleneck, up-convs (482,822 parameters on 3x64x64, 6 classes).

    Ronneberger et al. (2015) with padded 3x3 convolutions and BatchNorm after every conv (on
    unless `batchnorm` is False: `regularizer: batchnorm` changes nothing here); `dropout` p at
    the end of the contracting path. The paper's net is width 64, depth 4 (without BN)."""
    if width < 1 or depth < 1:
        raise ValueError(f"unet: width and depth must be >= 1, got width {width}, depth {depth}")
    return _unet_class()(in_shape[0], num_classes, width, depth, batchnorm is not False, dropout or 0.0)
