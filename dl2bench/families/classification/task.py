"""Image classification (the course's MLPs and CNNs on MNIST, Fashion-MNIST, CIFAR-10):
cross-entropy with the regulariser's smoothing and penalty; accuracy is the headline.

Adversarial training (`adv_train: pgd | fgsm`, Madry et al. 2018): every training batch is
replaced by attacks on it (l-inf ball of `adv_eps` in [0, 1] pixel space, `adv_steps` PGD steps of
2.5 * eps / steps from a random start), generated with the model in eval mode; `adv_clean` mixes
the clean loss back in (0: adversarial only, as Madry; 0.5: Goodfellow et al.'s mix). The
attack runs on pixels, so the batch's normalisation is undone around it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Tuple

from ...errors import ConfigError
from ...inits import INITS
from ...nets import MODELS
from ..base import TASKS, Augment, Key, Metric, Problem, Task

if TYPE_CHECKING:
    import torch
    from torch import nn

FAMILY = "classification"
ADV_TRAIN = ("none", "fgsm", "pgd")

KEYS = {
    "adv_train": Key(str, "none", "classification: adversarial training on attacks of each batch: none | fgsm | pgd",
                     choices=ADV_TRAIN),
    "adv_eps": Key(Optional[float], None, "classification: adversarial training's l-inf radius in [0, 1] pixel "
                   "units; None = the task's default", min=0.0, max=1.0),
    "adv_steps": Key(int, 7, "classification: PGD steps per training batch (adv_train: pgd)", min=1),
    "adv_clean": Key(float, 0.0, "classification: weight of the clean loss in adversarial training "
                     "(0 = adversarial examples only)", min=0.0, max=1.0),
}
ADV_EPS = {"mnist": 0.3, "fashion_mnist": 0.1, "cifar10": 8 / 255}  # the radii the field trains at
METRICS = (Metric("acc", "maximize", "", "accuracy", percent=True),
           Metric("loss", "minimize", "nats", "cross-entropy"))


def build_model(cfg, in_shape, num_classes: int, reg, model_kwargs: Optional[Dict] = None):
    """The configured classifier, initialised, and the recipe that rebuilds it; `model_kwargs`
    (another family's model settings, e.g. a sequence model's width) replace the regulariser's."""
    kwargs = dict(model_kwargs if model_kwargs is not None else reg.model_kwargs)
    build = {"model": cfg.model, "args": [list(in_shape), num_classes], "kwargs": kwargs}
    model = MODELS[cfg.model](tuple(in_shape), num_classes, **kwargs)
    INITS[cfg.init](model, cfg)
    return model, build


def prepare(task: Task, cfg, device: torch.device, reg, model_kwargs: Optional[Dict] = None) -> Problem:
    """Cross-entropy (with the regulariser's smoothing and penalty), accuracy; `model_kwargs`: see build_model."""
    import torch
    from torch import nn

    from ... import data as D

    splits = D.make_splits(D.load(task.data, cfg.data_root, cfg.download), cfg.val_size, cfg.train_size,
                           cfg.test_size)
    model, build = build_model(cfg, splits.in_shape, len(splits.classes), reg, model_kwargs)
    # how [0, 1] pixels became the model's input: attacks on these weights work in pixel space
    build["input"] = {"mean": splits.mean.tolist(), "std": splits.std.tolist(), "classes": list(splits.classes)}
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    train, evals = D.split_batches(splits, cfg, device, task.augment if reg.augment else None)
    smoothing = reg.label_smoothing
    cross_entropy = torch.nn.functional.cross_entropy  # the function: a Module call costs hooks
    adversary = adversarial_examples(cfg, splits, device) if cfg.adv_train != "none" else None

    def loss(m: nn.Module, batch, detail: bool) -> Tuple[torch.Tensor, torch.Tensor, int, Dict[str, torch.Tensor]]:
        x, y = batch
        if adversary is not None:
            clean = x
            x = adversary(m, x, y)
        logits = m(x)
        data_loss = cross_entropy(logits, y, label_smoothing=smoothing)
        if adversary is not None and cfg.adv_clean:
            data_loss = (1 - cfg.adv_clean) * data_loss + cfg.adv_clean * cross_entropy(m(clean), y, label_smoothing=smoothing)
        objective = data_loss if reg.penalty is None else data_loss + reg.penalty(m)
        stats = {}
        if detail:  # counted on the device and read once per epoch: no host sync per step
            with torch.no_grad():
                stats["acc"] = (logits.argmax(1) == y).sum()
        return objective, data_loss, len(y), stats

    def evaluate(m: nn.Module, split: str, autocast) -> Dict[str, float]:
        eval_batches = evals[split]
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

    return Problem(model=model, build=build, train_batches=train, splits=tuple(evals), evaluate=evaluate,
                   n_train=len(splits.train[1]), source=splits.source, in_shape=splits.in_shape, loss=loss,
                   metrics=METRICS, facts={"pixels": "normalised per channel (training mean/std)"})


def adversarial_examples(cfg, splits, device: torch.device):
    """(model, normalised batch, labels) -> the normalised batch of its adversarial examples."""
    import torch

    from ..adversarial.attacks import ATTACKS, Threat

    mean = splits.mean.to(device).view(1, -1, 1, 1)
    std = splits.std.to(device).view(1, -1, 1, 1)
    threat = Threat(norm="linf", eps=cfg.adv_eps, steps=cfg.adv_steps if cfg.adv_train == "pgd" else 1)
    attack = ATTACKS[cfg.adv_train]
    gen = torch.Generator().manual_seed(cfg.seed + 2)  # random starts: reproducible, apart from the batch order

    def adversary(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pixel = lambda p: m((p - mean) / std)  # noqa: E731 - the model as a function of pixels
        was_training = m.training
        m.eval()  # batchnorm statistics and dropout stay out of the attack
        try:
            adv = attack(pixel, (x * std + mean).clamp(0, 1), y, threat, generator=gen)
        finally:
            m.train(was_training)
        return (adv - mean) / std

    return adversary


def check(cfg) -> None:
    if cfg.adv_train == "none" and (cfg.adv_clean or cfg.adv_steps != KEYS["adv_steps"].default):
        raise ConfigError("adv_train: adv_steps/adv_clean set, but adv_train is none (expected fgsm or pgd)")


def _task(name: str, description: str, defaults: Dict, targets: Tuple[float, ...], augment: Augment) -> Task:
    return Task(name, description, FAMILY, prepare, METRICS, headline="acc", losses=("cross_entropy",),
                model_family=FAMILY, defaults={**defaults, "val_size": 5000, "adv_eps": ADV_EPS[name]},
                targets=targets, data=name, augment=augment, check=check)


@TASKS.register
def mnist() -> Task:
    """MNIST digits, 28x28 grey, 10 classes (60k train incl. 5k validation, 10k test)."""
    return _task("mnist", "MNIST",
                 {"model": "mlp", "optimizer": "momentum", "lr": 0.01, "batch_size": 64, "epochs": 10},
                 (0.90, 0.95, 0.97, 0.98, 0.99), Augment(pad=2, flip=False))


@TASKS.register
def fashion_mnist() -> Task:
    """Fashion-MNIST, 28x28 grey, 10 classes; known good: mlp, SGD momentum 0.9, lr 0.01, batch 64, 12 epochs -> ~88%."""
    return _task("fashion_mnist", "Fashion-MNIST",
                 {"model": "mlp", "optimizer": "momentum", "lr": 0.01, "batch_size": 64, "epochs": 12},
                 (0.80, 0.85, 0.87, 0.90), Augment(pad=2, flip=True))


@TASKS.register
def cifar10() -> Task:
    """CIFAR-10, 32x32 RGB, 10 classes; known good: lenet, momentum 0.9, lr 0.01, batch 64, 10 epochs -> ~60%."""
    return _task("cifar10", "CIFAR-10",
                 {"model": "lenet", "optimizer": "momentum", "lr": 0.01, "batch_size": 64, "epochs": 10},
                 (0.50, 0.60, 0.70, 0.80, 0.90), Augment(pad=4, flip=True))
