"""Autoencoders (course practical 2): an encoder R^d -> R^m and a decoder R^m -> R^d. Every builder
takes the input shape and the code size m, plus the regularisers' switches (dropout p, batchnorm),
and returns logits of the reconstruction: sigmoid(model(x)) is the image in [0, 1] (so BCE can be
computed from logits, stably)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, List, Optional, Tuple

from ...nets import MODELS, hidden_block

if TYPE_CHECKING:
    import torch
    from torch import nn


def _autoencoder(encoder: nn.Module, decoder: nn.Module) -> nn.Module:
    from torch import nn

    class AutoEncoder(nn.Module):
        """encode -> code (N x m) -> decode -> reconstruction logits (the input's shape)."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.decoder = encoder, decoder

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return self.encoder(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decoder(self.encoder(x))

    return AutoEncoder()


@MODELS.register(family="autoencoder")
def dense_ae(in_shape: Tuple[int, ...], code_size: int, dropout: Optional[float] = None,
             batchnorm: bool = False) -> nn.Module:
    """Dense AE d-256-m-256-d, ReLU, linear code (m=32 on 28x28: 419,120 parameters)."""
    from torch import nn

    d, p = math.prod(in_shape), dropout or 0.0
    enc: List[nn.Module] = [nn.Flatten(), nn.Linear(d, 256)]
    hidden_block(enc, 256, batchnorm, p, conv=False)
    enc.append(nn.Linear(256, code_size))
    dec: List[nn.Module] = [nn.Linear(code_size, 256)]
    hidden_block(dec, 256, batchnorm, p, conv=False)
    dec += [nn.Linear(256, d), nn.Unflatten(1, tuple(in_shape))]
    return _autoencoder(nn.Sequential(*enc), nn.Sequential(*dec))


@MODELS.register(family="autoencoder")
def conv_ae(in_shape: Tuple[int, ...], code_size: int, dropout: Optional[float] = None,
            batchnorm: bool = False) -> nn.Module:
    """Conv AE: two stride-2 3x3 convs 32-64, dense code m, mirrored transposed convs (m=32 on 28x28: 256,001 parameters)."""
    from torch import nn

    c, h, w = in_shape
    if h % 4 or w % 4:
        raise ValueError(f"conv_ae needs a height and width divisible by 4, got {h}x{w}")
    p = dropout or 0.0
    enc: List[nn.Module] = [nn.Conv2d(c, 32, 3, stride=2, padding=1)]
    hidden_block(enc, 32, batchnorm, 0.0, conv=True)
    enc.append(nn.Conv2d(32, 64, 3, stride=2, padding=1))
    hidden_block(enc, 64, batchnorm, 0.0, conv=True)
    flat = 64 * (h // 4) * (w // 4)
    enc += [nn.Flatten()] + ([nn.Dropout(p)] if p else []) + [nn.Linear(flat, code_size)]
    dec: List[nn.Module] = [nn.Linear(code_size, flat), nn.ReLU(inplace=True), nn.Unflatten(1, (64, h // 4, w // 4)),
                            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)]
    hidden_block(dec, 32, batchnorm, 0.0, conv=True)
    dec.append(nn.ConvTranspose2d(32, c, 4, stride=2, padding=1))
    return _autoencoder(nn.Sequential(*enc), nn.Sequential(*dec))
