"""The default optimisation step: one optimizer over the model's parameters, autocast (bf16/fp16),
the fp16 gradient scaler, gradient clipping and the learning-rate schedule. A task that needs
another update (two networks, an environment) gives its Problem a `Step` of its own
(dl2bench/families/base.py)."""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Dict, Iterator, Optional

import torch

from ..families.base import Step
from ..optim import OPTIMIZERS, LRController


class DefaultStep(Step):
    """One optimizer, one update per batch."""

    def __init__(self, model: torch.nn.Module, forward_model: torch.nn.Module, loss: Callable, cfg,
                 steps_per_epoch: int, clip_norm: Optional[float], autocast: Optional[Callable],
                 grad_norm: bool = False):
        """`forward_model` is `model` or its torch.compile'd wrapper; `autocast` None = fp32;
        `grad_norm`: add the gradient norm before clipping to the stats of detail batches."""
        self.grad_norm = grad_norm
        self.model, self.forward_model, self.loss = model, forward_model, loss
        self.opt = OPTIMIZERS[cfg.optimizer](model.parameters(), cfg)
        self.sched = LRController(self.opt, cfg, steps_per_epoch)
        self.amp = autocast is not None
        self.autocast = autocast
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        self.clip = clip_norm

    @property
    def lr(self) -> float:
        return self.sched.lr

    def epoch_end(self, val_loss: float) -> None:
        self.sched.epoch_end(val_loss)

    @contextlib.contextmanager
    def eager(self) -> Iterator[None]:
        """Steps inside go through the eager `model`, not its compiled wrapper (the same arithmetic:
        benchmark mode counts a step's FLOPs so, the counter not seeing into a compiled graph)."""
        saved, self.forward_model = self.forward_model, self.model
        try:
            yield
        finally:
            self.forward_model = saved

    def __call__(self, batch: Any, detail: bool):
        opt, scaler, clip = self.opt, self.scaler, self.clip
        if self.amp:
            with self.autocast():
                objective, data_loss, n, stats = self.loss(self.forward_model, batch, detail)
        else:  # no context manager at all: on a tiny CPU model every microsecond is ~0.1%
            objective, data_loss, n, stats = self.loss(self.forward_model, batch, detail)
        opt.zero_grad(set_to_none=True)
        norm = detail and self.grad_norm
        if scaler is None:
            objective.backward()
            if clip or norm:  # with max_norm inf, clip_grad_norm_ only measures
                total = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip or math.inf)
            opt.step()
        else:
            scaler.scale(objective).backward()
            if clip or norm:
                scaler.unscale_(opt)
                total = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip or math.inf)
            scaler.step(opt)
            scaler.update()
        if norm:  # a sum over the batch, as every stat: the loop divides by the samples counted
            stats = {**stats, "grad_norm": total.detach().float() * n}
        self.sched.step()
        return data_loss, n, stats

    def state_dict(self) -> Dict[str, Any]:
        return {"opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        if self.scaler and s["scaler"]:
            self.scaler.load_state_dict(s["scaler"])

