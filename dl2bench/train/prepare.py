"""A run set up and ready to go: `prepare(cfg, device, task, facts) -> Prepared`.

Both modes start from the same Prepared, so what benchmark mode times is what training runs:
training (`Trainer.fit`, loop.py) and benchmark mode (`benchmark`, bench.py), which reads only
this and never the Trainer. Set-up is also where the process-wide settings of a run are made
(threads, determinism, seeds), before the model is built.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, Optional, Sequence

import torch

from .. import env as E
from ..config import RunConfig
from ..families.base import Metric, Problem, Step, Task
from ..nets import count_parameters, flops_per_sample
from ..regularizers import REGULARIZERS, Reg
from .step import DefaultStep


@dataclass
class Prepared:
    """One run's built pieces, set up and not yet trained."""

    cfg: RunConfig
    device: torch.device
    threads: int  # torch's intra-op threads, set for the process
    problem: Problem  # batches (problem.train_batches), evaluation, final, the model's builder
    model: torch.nn.Module  # the module whose weights train and are saved
    forward_model: torch.nn.Module  # `model` or its torch.compile'd wrapper: what steps and evaluation call
    step: Step  # one update per batch: the DefaultStep, or the task's own
    autocast: Callable[[], ContextManager]  # a fresh autocast context (a null one in fp32)
    data_gen: torch.Generator  # batch order and augmentation
    reg: Reg  # the regularizer (clip norm, early-stopping patience)
    metrics: Sequence[Metric]  # the problem's, else the task's declared ones
    facts: Dict[str, Any]  # device, threads, parameters, FLOPs, data: what the summary says about the run

    @property
    def train_batches(self):
        return self.problem.train_batches


def prepare(cfg: RunConfig, device: torch.device, task: Task, facts: Dict[str, Any],
            on_metrics: Optional[Callable[[Sequence[Metric]], None]] = None) -> Prepared:
    """Set the process up for this run and build it. A set-up that fails half-way leaves what it
    found for the failed run's summary: `facts` is filled in as set-up goes (and is the Prepared's
    `facts`), and `on_metrics(metrics)` is called as soon as the task's problem declares them."""
    threads = cfg.threads or E.default_threads()
    torch.set_num_threads(threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick kernels
    torch.set_flush_denormal(False)  # PyTorch's default; a family may turn it on (sequence models)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # model init and dropout draw from here
    data_gen = torch.Generator().manual_seed(cfg.seed + 1)  # batch order and augmentation

    reg = REGULARIZERS[cfg.regularizer](cfg)
    p = task.prepare(task, cfg, device, reg)
    metrics = p.metrics or task.metrics
    if on_metrics is not None:
        on_metrics(metrics)
    model = p.model
    example = p.example_input(device) if p.example_input else None
    facts.update(E.describe(device, threads))
    facts.update(params=count_parameters(model),
                 flops_per_sample=flops_per_sample(model, p.in_shape, device, example),
                 data_source=p.source, n_train=p.n_train, steps_per_epoch=len(p.train_batches))
    facts.update(p.facts)
    forward_model = torch.compile(model) if cfg.compile else model
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext
    if p.step is not None:  # the task owns its update, optimizers and their state
        step = p.step
    else:
        step = DefaultStep(model, forward_model, p.loss, cfg, len(p.train_batches), reg.clip_norm,
                           autocast if amp else None, grad_norm=any(m.name == "grad_norm" for m in metrics))
    return Prepared(cfg=cfg, device=device, threads=threads, problem=p, model=model, forward_model=forward_model,
                    step=step, autocast=autocast, data_gen=data_gen, reg=reg, metrics=metrics, facts=facts)
