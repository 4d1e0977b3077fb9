"""GANs for 28 x 28 images (the course's final project): a generator and a discriminator held in
one module, so the loop counts, checkpoints and saves both. `forward(z)` is the generator (images
in [-1, 1] from tanh; the task maps them to [0, 1] pixels), `gan.d(x)` the discriminator's logit
for images in [-1, 1]. Every builder takes the image shape and the latent size, plus the
regularisers' switches (dropout p in the discriminator, batchnorm)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Tuple

from ...nets import MODELS

if TYPE_CHECKING:
    import torch
    from torch import nn


def _gan(g: nn.Module, d: nn.Module, latent_dim: int) -> nn.Module:
    from torch import nn

    class GAN(nn.Module):
        """g: latent (N x latent_dim) -> images (N x C x H x W) in [-1, 1]; d: images -> logits (N x 1)."""

        def __init__(self) -> None:
            super().__init__()
            self.g, self.d, self.latent_dim = g, d, latent_dim

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.g(z)

    return GAN()


@MODELS.register(family="gan")
def gan_mlp(in_shape: Tuple[int, ...], latent_dim: int, dropout: Optional[float] = None,
            batchnorm: bool = False) -> nn.Module:
    """MLP pair: G z-256-512-d (LeakyReLU 0.2, tanh), D d-512-256-1 (LeakyReLU 0.2); on 28x28 with
    z 64: G 550,416 + D 533,505 = 1,083,921 parameters."""
    from torch import nn

    d = math.prod(in_shape)

    def block(i: int, o: int, bn: bool):
        return [nn.Linear(i, o)] + ([nn.BatchNorm1d(o)] if bn else []) + [nn.LeakyReLU(0.2, inplace=True)]

    g = nn.Sequential(*block(latent_dim, 256, False), *block(256, 512, batchnorm), nn.Linear(512, d), nn.Tanh(),
                      nn.Unflatten(1, tuple(in_shape)))
    drop = [nn.Dropout(dropout)] if dropout else []
    disc = nn.Sequential(nn.Flatten(), *block(d, 512, False), *drop, *block(512, 256, False), *drop, nn.Linear(256, 1))
    return _gan(g, disc, latent_dim)


@MODELS.register(family="gan")
def dcgan(in_shape: Tuple[int, ...], latent_dim: int, dropout: Optional[float] = None,
          batchnorm: bool = True) -> nn.Module:
    """DCGAN-style pair (Radford et al. 2016, sized for 28x28): G z -> 128 x 7 x 7 -> 4x4 stride-2
    transposed convs (64, C) with batch norm and ReLU, tanh; D 4x4 stride-2 convs (64, 128) with
    LeakyReLU 0.2 (batch norm on the second) -> linear. On 28x28x1 with z 64: G 552,513 +
    D 138,817 = 691,330 parameters. batchnorm false drops every batch norm."""
    from torch import nn

    c, h, w = in_shape
    if h % 4 or w % 4:
        raise ValueError(f"dcgan upsamples 2 x 2: image height and width must be multiples of 4, got {h}x{w}")
    h4, w4 = h // 4, w // 4
    bn2 = (lambda n: [nn.BatchNorm2d(n)]) if batchnorm else (lambda n: [])
    bn1 = [nn.BatchNorm1d(128 * h4 * w4)] if batchnorm else []
    g = nn.Sequential(nn.Linear(latent_dim, 128 * h4 * w4), *bn1, nn.ReLU(inplace=True), nn.Unflatten(1, (128, h4, w4)),
                      nn.ConvTranspose2d(128, 64, 4, 2, 1), *bn2(64), nn.ReLU(inplace=True),
                      nn.ConvTranspose2d(64, c, 4, 2, 1), nn.Tanh())
    drop = [nn.Dropout(dropout)] if dropout else []
    disc = nn.Sequential(nn.Conv2d(c, 64, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True), *drop,
                         nn.Conv2d(64, 128, 4, 2, 1), *bn2(128), nn.LeakyReLU(0.2, inplace=True), *drop,
                         nn.Flatten(), nn.Linear(128 * h4 * w4, 1))
    return _gan(g, disc, latent_dim)
