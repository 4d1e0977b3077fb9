"""The GAN update as the loop's step: per batch of real images, `d_steps` discriminator updates
(real -> 1, generated -> 0), then one generator update with the non-saturating loss -log D(G(z))
(Goodfellow et al. 2014, section 3: it gives the generator strong gradients early, when D rejects
its samples easily), or with `loss: minimax` the game's own log(1 - D(G(z))), which saturates there. Each network has its own optimizer and learning-rate schedule. Latents are
drawn from the device's default generator, which the loop checkpoints: a resumed run draws the
same ones."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from ..base import Step

if TYPE_CHECKING:
    from torch import nn


class GANStep(Step):
    """`__call__(batch, detail) -> (discriminator loss, batch size, stats)`; `lr` is the generator's.
    Stats on detail batches: the generator's loss and D's mean probability on real and on generated
    images."""

    def __init__(self, gan: nn.Module, opt_g, opt_d, sched_g, sched_d, d_steps: int, clip_norm: Optional[float],
                 device: torch.device, loss: str = "non_saturating"):
        self.gan, self.g, self.d = gan, gan.g, gan.d
        self.opt_g, self.opt_d, self.sched_g, self.sched_d = opt_g, opt_d, sched_g, sched_d
        self.d_steps, self.clip, self.device = d_steps, clip_norm, device
        self.latent_dim = gan.latent_dim
        self.minimax = loss == "minimax"
        self.d_params = list(self.d.parameters())
        self.grids: List[Any] = []  # a fixed-latent sample grid per validation (epoch), uint8, for the report

    @property
    def lr(self) -> float:
        return self.sched_g.lr

    def _update(self, opt, sched, loss: torch.Tensor, params) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(params, self.clip)
        opt.step()
        sched.step()

    def __call__(self, batch: Any, detail: bool):
        x = batch[0]
        n = len(x)
        real = x * 2 - 1  # [0, 1] pixels -> the generator's tanh range
        for _ in range(self.d_steps):
            with torch.no_grad():
                fake = self.g(torch.randn(n, self.latent_dim, device=self.device))
            l_real, l_fake = self.d(real), self.d(fake)
            # -log sigmoid(l) = softplus(-l); -log(1 - sigmoid(l)) = softplus(l)
            d_loss = F.softplus(-l_real).mean() + F.softplus(l_fake).mean()
            self._update(self.opt_d, self.sched_d, d_loss, self.d_params)
        for p in self.d_params:  # the generator's update needs no gradient of D's weights
            p.requires_grad_(False)
        logit = self.d(self.g(torch.randn(n, self.latent_dim, device=self.device)))
        # non-saturating: minimise -log D(G(z)); minimax (the course's game): minimise log(1 - D(G(z)))
        g_loss = -F.softplus(logit).mean() if self.minimax else F.softplus(-logit).mean()
        self._update(self.opt_g, self.sched_g, g_loss, self.g.parameters())
        for p in self.d_params:
            p.requires_grad_(True)
        stats = {}
        if detail:
            with torch.no_grad():
                stats = {"g_loss": g_loss.detach() * n, "d_real": torch.sigmoid(l_real).mean() * n,
                         "d_fake": torch.sigmoid(l_fake).mean() * n}
        return d_loss.detach(), n, stats

    def state_dict(self) -> Dict[str, Any]:
        return {"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(), "grids": list(self.grids)}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.sched_g.load_state_dict(s["sched_g"])
        self.sched_d.load_state_dict(s["sched_d"])
        self.grids = list(s["grids"])
