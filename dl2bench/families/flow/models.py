"""Normalizing flows (the course's density models): an invertible F with a tractable Jacobian, so
p(x) = |det J_F(x)| q(F(x)) with q = N(0, I), trained by maximum likelihood and sampled by F⁻¹(z).

Every builder takes the sample's shape, the depth (coupling layers / flow steps) and the width of
the conditioner MLPs, plus the regularisers' dropout (in the conditioners; `batchnorm` is refused:
a batch statistic inside F makes the density depend on the batch). A model maps x of shape
(N, *in_shape) to `forward(x) -> (z, logdet)` with z of the same shape and logdet of shape (N,)
(log|det ∂z/∂x| per sample), `inverse(z) -> x`, and `log_prob(x)`; calling it is `forward`.

- `realnvp` (Dinh et al. 2017): affine coupling layers y_b = x_b · exp(s(x_a)) + t(x_a) with
  alternating masks (2-D: the two coordinates in turn; images: a checkerboard and its complement),
  s = scale · tanh(·) (a learnt per-dimension soft clamp, for stability), MLP conditioners whose
  last layer starts at zero (each layer starts as the identity).
- `glow` (Kingma & Dhariwal 2018), one step = actnorm (per-channel scale and bias, initialised
  from the first training batch to zero mean and unit variance) + an invertible 1×1 convolution
  (an LU-parametrised C×C matrix; log-det = H·W·Σ log|s|) + an affine coupling over the channel
  halves. Images are squeezed 2×2 first (1×28×28 -> 4×14×14), so the 1×1 convolution mixes
  4 channels; a 2-D point is 2 channels of one pixel (the 1×1 convolution is an invertible 2×2
  linear map).

Parameter counts (tests/families/test_flow.py checks them) are in each builder's docstring.
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from ...nets import MODELS, hidden_block

if TYPE_CHECKING:
    import torch
    from torch import nn

LOG_2PI = math.log(2 * math.pi)


@functools.lru_cache(maxsize=1)
def _nn():
    import torch
    from torch import nn

    class Conditioner(nn.Module):
        """MLP d_in -> hidden -> hidden -> 2·d_out (s and t); the last layer starts at zero."""

        def __init__(self, d_in: int, d_out: int, hidden: int, dropout: float):
            super().__init__()
            layers: List[nn.Module] = [nn.Linear(d_in, hidden)]
            hidden_block(layers, hidden, False, dropout, conv=False)
            layers.append(nn.Linear(hidden, hidden))
            hidden_block(layers, hidden, False, dropout, conv=False)
            last = nn.Linear(hidden, 2 * d_out)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            layers.append(last)
            self.net = nn.Sequential(*layers)
            self.scale = nn.Parameter(torch.ones(d_out))  # s = scale · tanh(raw): a soft clamp

        def forward(self, xa: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            raw_s, t = self.net(xa).chunk(2, dim=1)
            return self.scale * torch.tanh(raw_s), t

    class AffineCoupling(nn.Module):
        """On the flattened sample: the coordinates `cond` pass unchanged and condition the affine
        map of the coordinates `trans`: y = x · exp(s) + t; log-det = Σ s."""

        def __init__(self, dim: int, cond: Sequence[int], hidden: int, dropout: float):
            super().__init__()
            trans = sorted(set(range(dim)) - set(cond))
            self.register_buffer("cond", torch.tensor(sorted(cond), dtype=torch.long), persistent=False)
            self.register_buffer("trans", torch.tensor(trans, dtype=torch.long), persistent=False)
            self.net = Conditioner(len(cond), len(trans), hidden, dropout)

        def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            s, t = self.net(x[:, self.cond])
            y = x.clone()
            y[:, self.trans] = x[:, self.trans] * torch.exp(s) + t
            return y, s.sum(1)

        def inverse(self, y: torch.Tensor) -> torch.Tensor:
            s, t = self.net(y[:, self.cond])
            x = y.clone()
            x[:, self.trans] = (y[:, self.trans] - t) * torch.exp(-s)
            return x

    class ActNorm(nn.Module):
        """Per-channel y = (x + bias) · exp(log_scale) on (N, C, H, W); data-dependent init on the
        first batch seen in training mode (a buffer records it, so a checkpoint keeps it)."""

        def __init__(self, channels: int):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
            self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
            self.register_buffer("initialised", torch.tensor(False))

        def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            if self.training and not bool(self.initialised):
                with torch.no_grad():
                    mean = x.mean(dim=(0, 2, 3), keepdim=True)
                    std = x.std(dim=(0, 2, 3), keepdim=True) if len(x) * x[0, 0].numel() > 1 else torch.ones_like(mean)
                    self.bias.copy_(-mean)
                    self.log_scale.copy_(-torch.log(std.clamp_min(1e-6)))
                    self.initialised.fill_(True)
            hw = x.shape[2] * x.shape[3]
            y = (x + self.bias) * torch.exp(self.log_scale)
            return y, (hw * self.log_scale.sum()).expand(len(x))

        def inverse(self, y: torch.Tensor) -> torch.Tensor:
            return y * torch.exp(-self.log_scale) - self.bias

    class InvConv1x1(nn.Module):
        """Glow's invertible 1×1 convolution, LU-parametrised: W = P L (U + diag(sign · exp(log_s)))
        with P a fixed permutation, L unit lower and U strictly upper triangular (from a random
        rotation); log|det W| = Σ log_s, so the log-det is H·W·Σ log_s."""

        def __init__(self, channels: int):
            super().__init__()
            c = channels
            w = torch.linalg.qr(torch.randn(c, c))[0]
            p, lower, upper = torch.linalg.lu(w)
            s = torch.diagonal(upper)
            self.register_buffer("p", p)
            self.register_buffer("sign_s", torch.sign(s))
            self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1))
            self.lower = nn.Parameter(lower)
            self.upper = nn.Parameter(torch.triu(upper, 1))
            self.log_s = nn.Parameter(torch.log(s.abs()))

        def weight(self) -> torch.Tensor:
            c = self.log_s.numel()
            lower = self.lower * self.lower_mask + torch.eye(c, device=self.lower.device, dtype=self.lower.dtype)
            upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
            return self.p @ lower @ upper

        def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            y = torch.einsum("ij,njhw->nihw", self.weight(), x)
            return y, (x.shape[2] * x.shape[3] * self.log_s.sum()).expand(len(x))

        def inverse(self, y: torch.Tensor) -> torch.Tensor:
            return torch.einsum("ij,njhw->nihw", torch.linalg.inv(self.weight()), y)

    class Flow(nn.Module):
        """A stack of invertible layers and the standard normal base distribution."""

        def __init__(self, in_shape: Tuple[int, ...]):
            super().__init__()
            self.in_shape = tuple(in_shape)
            self.dim = math.prod(in_shape)

        def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            raise NotImplementedError

        def inverse(self, z: torch.Tensor) -> torch.Tensor:
            raise NotImplementedError

        def log_prob(self, x: torch.Tensor) -> torch.Tensor:
            """log p(x) per sample (nats): log q(F(x)) + log|det J_F(x)|."""
            z, logdet = self(x)
            return -0.5 * (z.flatten(1).pow(2).sum(1) + self.dim * LOG_2PI) + logdet

        @torch.no_grad()
        def sample(self, n: int, temperature: float = 1.0, generator: Optional[torch.Generator] = None) -> torch.Tensor:
            """F⁻¹(z), z ~ N(0, T² I) drawn on the CPU (the same samples on every device)."""
            p = next(self.parameters())
            z = torch.randn(n, *self.in_shape, generator=generator).to(p.device, p.dtype) * temperature
            return self.inverse(z)

    class RealNVP(Flow):
        def __init__(self, in_shape, depth: int, hidden: int, dropout: float):
            super().__init__(in_shape)
            parity = _parity(in_shape)  # 2-D: (0, 1); images: the checkerboard
            self.layers = nn.ModuleList(
                AffineCoupling(self.dim, [i for i, p in enumerate(parity) if p == k % 2], hidden, dropout)
                for k in range(depth))

        def forward(self, x):
            h = x.reshape(len(x), -1)
            logdet = torch.zeros(len(x), device=x.device, dtype=x.dtype)
            for layer in self.layers:
                h, ld = layer(h)
                logdet = logdet + ld
            return h.view_as(x), logdet

        def inverse(self, z):
            h = z.reshape(len(z), -1)
            for layer in reversed(self.layers):
                h = layer.inverse(h)
            return h.view(len(z), *self.in_shape)

    class Glow(Flow):
        def __init__(self, in_shape, depth: int, hidden: int, dropout: float):
            super().__init__(in_shape)
            self.squeeze = len(in_shape) == 3
            if self.squeeze:
                c, h, w = in_shape
                if h % 2 or w % 2:
                    raise ValueError(f"glow squeezes 2x2: it needs an even height and width, got {h}x{w}")
                self.shape = (4 * c, h // 2, w // 2)
            elif len(in_shape) == 1 and in_shape[0] >= 2:
                self.shape = (in_shape[0], 1, 1)
            else:
                raise ValueError(f"glow takes a vector of >= 2 coordinates or a C x H x W image, got {tuple(in_shape)}")
            c, h, w = self.shape
            half = c // 2
            cond = list(range(half * h * w))  # channels [0, c/2) of the (C, H, W) layout, flattened
            self.actnorms = nn.ModuleList(ActNorm(c) for _ in range(depth))
            self.convs = nn.ModuleList(InvConv1x1(c) for _ in range(depth))
            self.couplings = nn.ModuleList(AffineCoupling(c * h * w, cond, hidden, dropout) for _ in range(depth))

        def _in(self, x):
            n = len(x)
            if not self.squeeze:
                return x.reshape(n, *self.shape)
            c, h, w = self.in_shape
            return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, *self.shape)

        def _out(self, y):
            n = len(y)
            if not self.squeeze:
                return y.reshape(n, *self.in_shape)
            c, h, w = self.in_shape
            return y.reshape(n, c, 2, 2, h // 2, w // 2).permute(0, 1, 4, 2, 5, 3).reshape(n, *self.in_shape)

        def forward(self, x):
            h = self._in(x)
            logdet = torch.zeros(len(x), device=x.device, dtype=x.dtype)
            for an, conv, cp in zip(self.actnorms, self.convs, self.couplings):
                h, a = an(h)
                h, b = conv(h)
                flat, c = cp(h.reshape(len(h), -1))
                h = flat.view_as(h)
                logdet = logdet + a + b + c
            return self._out(h), logdet

        def inverse(self, z):
            h = self._in(z)
            for an, conv, cp in zip(reversed(self.actnorms), reversed(self.convs), reversed(self.couplings)):
                h = cp.inverse(h.reshape(len(h), -1)).view_as(h)
                h = conv.inverse(h)
                h = an.inverse(h)
            return self._out(h)

    return RealNVP, Glow


def _parity(in_shape: Tuple[int, ...]) -> List[int]:
    """Each flattened coordinate's parity: the sum of its indices mod 2 (a 2-D point: 0, 1; an
    image: a checkerboard, per channel)."""
    import itertools

    return [sum(idx) % 2 for idx in itertools.product(*(range(s) for s in in_shape))]


def _check(in_shape, depth, hidden, batchnorm) -> Tuple[Tuple[int, ...], int, int]:
    if batchnorm:
        raise ValueError("flows take no batchnorm: a batch statistic inside F makes p(x) depend on the "
                         "rest of the batch (glow has actnorm instead)")
    in_shape = tuple(int(s) for s in in_shape)
    if math.prod(in_shape) < 2:
        raise ValueError(f"a coupling flow needs at least 2 coordinates, got shape {in_shape}")
    if depth is None or depth < 1 or hidden is None or hidden < 1:
        raise ValueError(f"depth and hidden must be >= 1, got {depth} and {hidden}")
    return in_shape, int(depth), int(hidden)


@MODELS.register(family="flow")
def realnvp(in_shape: Tuple[int, ...], depth: int = 8, hidden: int = 64, dropout: Optional[float] = None,
            batchnorm: bool = False) -> nn.Module:
    """RealNVP: depth affine couplings, alternating masks, MLP conditioners (2 hidden layers), s = scale·tanh (2-D, depth 8, hidden 64: 35,352 parameters; 1x28x28, depth 8, hidden 512: 6,931,648 parameters)."""
    in_shape, depth, hidden = _check(in_shape, depth, hidden, batchnorm)
    RealNVP, _ = _nn()
    return RealNVP(in_shape, depth, hidden, dropout or 0.0)


@MODELS.register(family="flow")
def glow(in_shape: Tuple[int, ...], depth: int = 8, hidden: int = 64, dropout: Optional[float] = None,
         batchnorm: bool = False) -> nn.Module:
    """Glow: depth steps of actnorm + invertible 1x1 conv (LU) + affine coupling, MLP conditioners; images squeezed 2x2 (2-D, depth 8, hidden 64: 35,464 parameters; 1x28x28, depth 8, hidden 512: 6,932,000 parameters)."""
    in_shape, depth, hidden = _check(in_shape, depth, hidden, batchnorm)
    _, Glow = _nn()
    return Glow(in_shape, depth, hidden, dropout or 0.0)
