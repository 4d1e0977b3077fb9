"""OPTIMIZERS and SCHEDULES. An optimizer entry maps the flat config onto torch.optim; a
schedule entry returns lr multiplier as a function of (step, total steps), which one
LRController combines with linear warm-up and (for `plateau`) validation-driven decay."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Dict, Iterable, Optional

from .registry import Registry

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions: listing and validating names (jobs/submit.py
# expanding 1,000 runs) must not pay torch's ~1.5 s import

OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("schedule")


def _opt(value: Optional[float], default: float) -> float:
    return default if value is None else value


@OPTIMIZERS.register
def sgd(params: Iterable, cfg) -> torch.optim.Optimizer:
    """Plain SGD (momentum 0 unless set)."""
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, momentum=_opt(cfg.momentum, 0.0),
                           weight_decay=cfg.weight_decay)


@OPTIMIZERS.register
def momentum(params: Iterable, cfg) -> torch.optim.Optimizer:
    """SGD with heavy-ball momentum (default 0.9)."""
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, momentum=_opt(cfg.momentum, 0.9),
                           weight_decay=cfg.weight_decay)


@OPTIMIZERS.register
def nesterov(params: Iterable, cfg) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (default 0.9)."""
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, momentum=_opt(cfg.momentum, 0.9), nesterov=True,
                           weight_decay=cfg.weight_decay)


@OPTIMIZERS.register
def adam(params: Iterable, cfg) -> torch.optim.Optimizer:
    """Adam (betas beta1/beta2, eps 1e-8); weight_decay is L2 added to the gradient."""
    import torch

    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=_opt(cfg.eps, 1e-8),
                            weight_decay=cfg.weight_decay)


@OPTIMIZERS.register
def adamw(params: Iterable, cfg) -> torch.optim.Optimizer:
    """AdamW: decoupled weight decay (weight_decay as given, 0 by default here)."""
    import torch

    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=_opt(cfg.eps, 1e-8),
                             weight_decay=cfg.weight_decay)


@OPTIMIZERS.register
def rmsprop(params: Iterable, cfg) -> torch.optim.Optimizer:
    """RMSprop (alpha 0.99, momentum 0 unless set, eps 1e-8)."""
    import torch

    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=_opt(cfg.momentum, 0.0),
                               eps=_opt(cfg.eps, 1e-8), weight_decay=cfg.weight_decay)


@OPTIMIZERS.register
def adagrad(params: Iterable, cfg) -> torch.optim.Optimizer:
    """Adagrad (eps 1e-10)."""
    import torch

    return torch.optim.Adagrad(params, lr=cfg.lr, eps=_opt(cfg.eps, 1e-10), weight_decay=cfg.weight_decay)


@OPTIMIZERS.register
def nadam(params: Iterable, cfg) -> torch.optim.Optimizer:
    """NAdam (Adam with Nesterov momentum)."""
    import torch

    return torch.optim.NAdam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=_opt(cfg.eps, 1e-8),
                             weight_decay=cfg.weight_decay)


@OPTIMIZERS.register
def radam(params: Iterable, cfg) -> torch.optim.Optimizer:
    """RAdam (rectified Adam)."""
    import torch

    return torch.optim.RAdam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=_opt(cfg.eps, 1e-8),
                             weight_decay=cfg.weight_decay)


# ---------------------------------------------------------------------------------------------
# schedules: multiplier(step, total, cfg, steps_per_epoch) -> factor of the base lr

@SCHEDULES.register
def constant(step: int, total: int, cfg, steps_per_epoch: int) -> float:
    """The base lr throughout."""
    return 1.0


@SCHEDULES.register
def step(step: int, total: int, cfg, steps_per_epoch: int) -> float:
    """Multiply by step_gamma every step_every epochs (default: a third of the run)."""
    every = (cfg.step_every or max(1, cfg.epochs // 3)) * steps_per_epoch
    return cfg.step_gamma ** (step // every)


@SCHEDULES.register
def cosine(step: int, total: int, cfg, steps_per_epoch: int) -> float:
    """Cosine decay from lr to min_lr_ratio * lr over the run."""
    t = min(step / max(1, total), 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register
def onecycle(step: int, total: int, cfg, steps_per_epoch: int) -> float:
    """One-cycle: cosine rise from lr/25 to lr over 30% of the run, then cosine fall (Smith 2018)."""
    rise = 0.3 * total
    lo, end = 1 / 25, max(cfg.min_lr_ratio, 1 / 25 / 1e4)
    if step < rise:
        t = step / max(1.0, rise)
        return lo + (1 - lo) * 0.5 * (1 - math.cos(math.pi * t))
    t = min((step - rise) / max(1.0, total - rise), 1.0)
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register
def plateau(step: int, total: int, cfg, steps_per_epoch: int) -> float:
    """Multiply by plateau_factor when validation loss has not improved for plateau_patience epochs."""
    return 1.0  # the decay itself is applied by LRController.epoch_end


class LRController:
    """Sets every group's lr each step: base * warm-up * schedule * plateau decay. Its state is
    two numbers and a counter, so it checkpoints exactly."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int):
        self.opt, self.cfg, self.spe = optimizer, cfg, steps_per_epoch
        self.shape: Callable = SCHEDULES[cfg.schedule]
        self.total = cfg.epochs * steps_per_epoch
        self.warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.step_count = 0
        self.decay = 1.0  # plateau
        self.best = math.inf
        self.bad_epochs = 0
        # nothing changes between epochs: skip the per-step update (it is ~3% of a tiny CPU step)
        self.static = cfg.schedule in ("constant", "plateau") and not self.warmup
        self._apply()

    def factor(self) -> float:
        s = self.step_count
        warm = min(1.0, (s + 1) / self.warmup) if self.warmup else 1.0
        return warm * self.shape(s, self.total, self.cfg, self.spe) * self.decay

    def _apply(self) -> None:
        f = self.factor()
        for g, b in zip(self.opt.param_groups, self.base):
            g["lr"] = b * f

    def step(self) -> None:
        """Call after every optimizer step."""
        self.step_count += 1
        if not self.static:
            self._apply()

    def epoch_end(self, val_loss: float) -> None:
        """Plateau bookkeeping (only for `plateau`; other schedules ignore validation)."""
        if self.cfg.schedule != "plateau":
            return
        if math.isinf(self.best) or val_loss < self.best - 1e-4 * abs(self.best):
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.cfg.plateau_patience:
                self.decay *= self.cfg.plateau_factor
                self.bad_epochs = 0
        self._apply()

    @property
    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def state_dict(self) -> Dict:
        return {"step_count": self.step_count, "decay": self.decay, "best": self.best,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, d: Dict) -> None:
        self.__dict__.update(d)
        self._apply()
