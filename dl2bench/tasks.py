"""TASKS: data + loss + metrics + known-good defaults, beside each other.

A task turns a resolved config into a `Problem`: the model the optimizer trains, its training
batches, the loss of one batch, and an evaluation of a split. The one training loop in train.py
only ever talks to a Problem, so a task with another loss (reconstruction, Dice), another data
source (an environment) or other metrics plugs in by writing these four things, not a new loop.
A task with two models and two optimizers (a GAN) will need one more Problem hook — its own
optimisation step — which train.Trainer.train_epoch would call instead of its single update.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple

from .inits import INITS
from .models import MODELS
from .registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from . import data as D

# torch and the data module are imported inside the functions: listing and validating names
# (jobs/submit.py expanding 1,000 runs) must not pay torch's ~1.5 s import

TASKS = Registry("task")


@dataclass(frozen=True)
class Augment:
    """Random crop after `pad` pixels of zero padding, plus horizontal flip where it makes sense."""

    pad: int = 4
    flip: bool = True


@dataclass
class Problem:
    """What the training loop needs from a task, ready on the device."""

    model: nn.Module
    train_batches: object  # .iterate(generator) -> (x, y) batches; len() = steps per epoch
    eval_splits: Dict[str, object]  # "val", "test" -> batches
    # (model, batch, detail) -> (objective to minimise, data loss (mean over the batch), batch size,
    # {stat: tensor summed over the batch}); stats are asked for on every train_stats_every-th batch
    loss: Callable
    evaluate: Callable  # (model, batches) -> {"loss": float, "acc": float, ...}
    in_shape: Tuple[int, ...]
    n_train: int
    source: str


@dataclass(frozen=True)
class Task:
    """A task's fixed facts; `prepare` does the work."""

    name: str
    description: str
    load: Callable[[str, bool], D.Raw]  # (data_root, download) -> raw tensors
    defaults: Dict = field(default_factory=dict)  # known-good settings for None config fields
    targets: Tuple[float, ...] = ()  # validation accuracies whose time/epochs-to-reach are recorded
    metric: str = "val_acc"
    goal: str = "maximize"
    augment: Augment = Augment()

    def prepare(self, cfg, device: torch.device, reg) -> Problem:
        return prepare_classification(self, cfg, device, reg)


@functools.lru_cache(maxsize=2)
def _raw(task_name: str, data_root: str, download: bool) -> D.Raw:
    # several runs in one process (debug executor, tests) read the files once
    return TASKS[task_name]().load(data_root, download)


def prepare_classification(task: Task, cfg, device: torch.device, reg) -> Problem:
    """Image classification: cross-entropy (with the regulariser's smoothing and penalty), accuracy."""
    import torch
    from torch import nn

    from . import data as D

    splits = D.make_splits(_raw(task.name, os.pathsep.join(map(str, D.search_roots(cfg.data_root))), cfg.download), cfg.val_size, cfg.train_size,
                           cfg.test_size)
    model = MODELS[cfg.model](splits.in_shape, len(splits.classes), **reg.model_kwargs)
    INITS[cfg.init](model, cfg)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)

    batches = D.LoaderBatches if cfg.loader == "dataloader" else D.ResidentBatches
    extra = {"num_workers": cfg.num_workers} if cfg.loader == "dataloader" else {}
    common = dict(mean=splits.mean, std=splits.std, device=device, channels_last=cfg.channels_last, **extra)
    train = batches(*splits.train, batch_size=cfg.batch_size, shuffle=True,
                    augment=task.augment if reg.augment else None, **common)
    evals = {name: batches(*getattr(splits, name), batch_size=cfg.eval_batch_size, shuffle=False, **common)
             for name in ("val", "test")}
    smoothing = reg.label_smoothing
    cross_entropy = torch.nn.functional.cross_entropy  # the function: a Module call costs hooks

    def loss(m: nn.Module, batch, detail: bool) -> Tuple[torch.Tensor, torch.Tensor, int, Dict[str, torch.Tensor]]:
        x, y = batch
        logits = m(x)
        data_loss = cross_entropy(logits, y, label_smoothing=smoothing)
        objective = data_loss if reg.penalty is None else data_loss + reg.penalty(m)
        stats = {}
        if detail:  # counted on the device and read once per epoch: no host sync per step
            with torch.no_grad():
                stats["correct"] = (logits.argmax(1) == y).sum()
        return objective, data_loss, len(y), stats

    def evaluate(m: nn.Module, eval_batches, autocast) -> Dict[str, float]:
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        n = 0
        plain = nn.CrossEntropyLoss(reduction="sum")  # the unregularised loss, comparable across runs
        with torch.inference_mode(), autocast():
            for x, y in eval_batches.iterate():
                logits = m(x)
                total_loss += plain(logits.float(), y)
                correct += (logits.argmax(1) == y).sum()
                n += len(y)
        return {"loss": total_loss.item() / n, "acc": correct.item() / n}

    return Problem(model, train, evals, loss, evaluate, splits.in_shape, len(splits.train[1]), splits.source)


# ---------------------------------------------------------------------------------------------
# the datasets

def _torchvision_download(cls_name: str) -> Callable:
    def download(root) -> None:
        import torchvision

        getattr(torchvision.datasets, cls_name)(str(root), train=True, download=True)
        getattr(torchvision.datasets, cls_name)(str(root), train=False, download=True)

    return download


def _idx_loader(name: str, label: str, tv_name: str, debian_dir: str) -> Callable[[str, bool], D.Raw]:
    def load(data_root: str, download: bool) -> D.Raw:
        from . import data as D

        sources = [D.Source(f"{tv_name}/raw", lambda p: D.load_idx_folder(p, label)),
                   D.Source(debian_dir, lambda p: D.load_idx_folder(p, label))]
        how = (f"Get it with --download true (torchvision, into the first folder above), or set "
               f"DL2BENCH_DATA to a folder holding {tv_name}/raw/*-ubyte.gz")
        if name == "fashion_mnist":
            how += " (on Debian: apt-get install dataset-fashion-mnist)"
        return D.find(name, sources, data_root, _torchvision_download(tv_name), download, how)

    return load


def _cifar10_load(data_root: str, download: bool) -> D.Raw:
    from . import data as D

    sources = [D.Source("cifar-10-batches-py", D.load_cifar_pickles),
               D.Source("cifar10-jpeg", lambda p: D.load_image_folder(p, "CIFAR-10 (JPEG)")),
               D.Source("cifar10-jpeg.tar.gz", lambda p: D.load_image_tar(p, "CIFAR-10 (JPEG)"))]
    how = ("Get it with --download true (torchvision's CIFAR-10 into the first folder above), or set "
           "DL2BENCH_DATA to a folder holding cifar-10-batches-py/, cifar10-jpeg/{train,test}/<class>/ "
           "or cifar10-jpeg.tar.gz")
    return D.find("cifar10", sources, data_root, _torchvision_download("CIFAR10"), download, how)


@TASKS.register
def mnist() -> Task:
    """MNIST digits, 28x28 grey, 10 classes (60k train incl. 5k validation, 10k test)."""
    return Task("mnist", "MNIST", _idx_loader("mnist", "MNIST", "MNIST", "mnist"),
                defaults={"model": "mlp", "optimizer": "momentum", "lr": 0.01, "batch_size": 64, "epochs": 10},
                targets=(0.90, 0.95, 0.97, 0.98, 0.99), augment=Augment(pad=2, flip=False))


@TASKS.register
def fashion_mnist() -> Task:
    """Fashion-MNIST, 28x28 grey, 10 classes; known good: mlp, SGD momentum 0.9, lr 0.01, batch 64, 12 epochs -> ~88%."""
    return Task("fashion_mnist", "Fashion-MNIST",
                _idx_loader("fashion_mnist", "Fashion-MNIST", "FashionMNIST", "fashion-mnist"),
                defaults={"model": "mlp", "optimizer": "momentum", "lr": 0.01, "batch_size": 64, "epochs": 12},
                targets=(0.80, 0.85, 0.87, 0.90), augment=Augment(pad=2, flip=True))


@TASKS.register
def cifar10() -> Task:
    """CIFAR-10, 32x32 RGB, 10 classes; known good: lenet, momentum 0.9, lr 0.01, batch 64, 10 epochs -> ~60%."""
    return Task("cifar10", "CIFAR-10", _cifar10_load,
                defaults={"model": "lenet", "optimizer": "momentum", "lr": 0.01, "batch_size": 64,
                          "epochs": 10},
                targets=(0.50, 0.60, 0.70, 0.80, 0.90), augment=Augment(pad=4, flip=True))
