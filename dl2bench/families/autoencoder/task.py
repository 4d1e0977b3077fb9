"""Autoencoders (course practical 2): reconstruct the input, optionally from a corrupted copy
(denoising), and use the reconstruction error to flag anomalies (one-class protocol).

- `<dataset>_ae`: train on every class; headline: test reconstruction MSE per pixel, in [0, 1]
  pixel space (no normalisation: the target is the image itself). MSE and BCE are both measured,
  whichever one trains (`loss: mse | bce`).
- Denoising (`noise_level` > 0, `noise: gaussian | masking`): the noise is added to the input only,
  clipped to [0, 1], and the loss is taken against the clean image. Validation and test inputs are
  corrupted with a fixed generator, so every evaluation sees the same noisy images.
- `<dataset>_anomaly`: the one-class protocol of Deep SVDD (Ruff et al. 2018): train (and
  validate) on the `normal_class` only; score every test image by its reconstruction MSE (of the
  clean image); headline: AUROC of normal vs all other classes. Best epoch and early stopping
  follow the validation MSE, since the validation split holds no anomalies.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from ... import runs
from ...errors import ConfigError
from ...media import MEDIA, Image, Media, Table, arrays, hwc
from ...inits import INITS
from ...nets import MODELS
from ..base import PARAM_BYTES, TASKS, Augment, Key, Metric, Need, Problem, Task

if TYPE_CHECKING:
    import torch
    from torch import nn

FAMILY = "autoencoder"
NOISES = ("gaussian", "masking")
EVAL_NOISE_SEED = 20240612  # one fixed corruption of the validation/test images for every run
EXAMPLES = "examples.npz"  # a few test images, corrupted and reconstructed, for the report
N_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10}

KEYS = {
    "code_size": Key(Optional[int], None, "autoencoder: size m of the code; None = the task's default", min=1),
    "noise": Key(str, "gaussian", "autoencoder: the input corruption of a denoising AE: gaussian | masking",
                 choices=NOISES),
    "noise_level": Key(float, 0.0, "autoencoder: gaussian noise std, or the masked fraction of pixels "
                       "([0, 1] pixel units); 0 = a plain (not denoising) AE", min=0.0, max=1.0),
    "normal_class": Key(Optional[int], None, "anomaly tasks: the one class trained on; the test "
                        "set's other classes are the anomalies"),
}

MSE = Metric("mse", "minimize", "MSE", "reconstruction MSE per pixel ([0, 1] pixels)")
BCE = Metric("bce", "minimize", "nats/pixel", "binary cross-entropy per pixel")
AUROC = Metric("auroc", "maximize", "", "AUROC, normal class vs the rest (score: reconstruction MSE)",
               splits=("test",))
# the loss is the metric that trains (`loss: mse | bce`), declared with that metric's unit
LOSS_METRICS = {"mse": Metric("loss", "minimize", "MSE", "MSE per pixel"),
                "bce": Metric("loss", "minimize", "nats/pixel", "binary cross-entropy per pixel")}


def auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve of `scores` for `positive` (bool), by the rank-sum (Mann-Whitney)
    statistic with ties given their average rank; NaN when one class is absent."""
    import torch

    s = scores.double().flatten()
    pos = positive.flatten().bool()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    sorted_s, idx = s.sort()
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    avg_rank = ends - (counts.double() - 1) / 2  # ranks ends-count+1 .. ends, averaged
    ranks = torch.empty_like(s)
    ranks[idx] = avg_rank[inverse]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def corrupt(x: torch.Tensor, noise: str, level: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The denoising input: noise on a [0, 1] image, clipped back to [0, 1]. Without a generator
    the device's own RNG draws (training); with one, a CPU generator draws (evaluation: the same
    corruption on every device)."""
    import torch

    if level == 0:
        return x
    if generator is None:
        draw = torch.randn_like(x) if noise == "gaussian" else torch.rand_like(x)
    else:
        fn = torch.randn if noise == "gaussian" else torch.rand
        draw = fn(x.shape, generator=generator).to(x.device, x.dtype)
    if noise == "gaussian":
        return (x + level * draw).clamp_(0, 1)
    return x * (draw >= level)


def prepare(task: Task, cfg, device: torch.device, reg) -> Problem:
    import torch
    import torch.nn.functional as F

    from ... import data as D

    raw = D.load(task.data, cfg.data_root, cfg.download)
    anomaly = task.name.endswith("_anomaly")
    if anomaly:  # one class is normal: the only one trained (and validated) on
        keep = raw.train_y == cfg.normal_class
        raw = D.Raw(raw.train_x[keep], raw.train_y[keep], raw.test_x, raw.test_y, raw.classes,
                    f"{raw.source} (training on class {cfg.normal_class} {raw.classes[cfg.normal_class]!r} only)")
    splits = D.make_splits(raw, cfg.val_size, cfg.train_size, cfg.test_size)
    build = {"model": cfg.model, "args": [list(splits.in_shape), cfg.code_size], "kwargs": dict(reg.model_kwargs)}
    model = MODELS[cfg.model](splits.in_shape, cfg.code_size, **reg.model_kwargs)
    INITS[cfg.init](model, cfg)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    train, evals = D.split_batches(splits, cfg, device, task.augment if reg.augment else None, normalise=False)
    noise, level, use_bce = cfg.noise, cfg.noise_level, cfg.loss == "bce"
    normal = cfg.normal_class

    def loss(m: nn.Module, batch, detail: bool):
        x, _ = batch
        logits = m(corrupt(x, noise, level)).float()
        if use_bce:
            data_loss = F.binary_cross_entropy_with_logits(logits, x)
        else:
            data_loss = F.mse_loss(torch.sigmoid(logits), x)
        objective = data_loss if reg.penalty is None else data_loss + reg.penalty(m)
        stats = {}
        if detail:  # the other loss too, on every train_stats_every-th batch only
            with torch.no_grad():
                n = len(x)
                other = (F.mse_loss(torch.sigmoid(logits), x) if use_bce
                         else F.binary_cross_entropy_with_logits(logits, x))
                stats = {"mse": (other if use_bce else data_loss.detach()) * n,
                         "bce": (data_loss.detach() if use_bce else other) * n}
        return objective, data_loss, len(x), stats

    def evaluate(m: nn.Module, split: str, autocast) -> Dict[str, float]:
        eval_batches = evals[split]
        gen = torch.Generator().manual_seed(EVAL_NOISE_SEED)  # the same corrupted images every time
        sq = torch.zeros((), device=device, dtype=torch.float64)
        bce = torch.zeros((), device=device, dtype=torch.float64)
        errors, labels = [], []
        n = 0
        with torch.inference_mode(), autocast():
            for x, y in eval_batches.iterate():
                logits = m(corrupt(x, noise, level, gen)).float()
                recon = torch.sigmoid(logits)
                per_image = (recon - x).pow(2).flatten(1).mean(1)
                sq += per_image.sum(dtype=torch.float64)
                bce += F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).mean(1).sum(dtype=torch.float64)
                if anomaly:  # the anomaly score is the error on the clean image
                    if level:
                        per_image = (torch.sigmoid(m(x).float()) - x).pow(2).flatten(1).mean(1)
                    errors.append(per_image)
                    labels.append(y)
                n += len(x)
        out = {"mse": sq.item() / n, "bce": bce.item() / n}
        out["loss"] = out["bce" if use_bce else "mse"]
        if anomaly:
            labels_t = torch.cat(labels)
            if (labels_t != normal).any():  # the test split; validation holds the normal class only
                out["auroc"] = auroc(torch.cat(errors).cpu(), (labels_t != normal).cpu())
        return out

    def final(m: nn.Module, autocast, out_dir) -> Dict[str, object]:

        x_all, y_all = splits.test
        idx = D.one_per_class(y_all)
        x = x_all[idx].to(device).float().div(255)
        gen = torch.Generator().manual_seed(EVAL_NOISE_SEED)
        noisy = corrupt(x, noise, level, gen)
        m.eval()
        with torch.inference_mode(), autocast():
            recon = torch.sigmoid(m(noisy).float())
        to8 = lambda t: (t.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()  # noqa: E731
        path = os.path.join(str(out_dir), EXAMPLES)
        runs.save_npz(path, original=to8(x), noisy=to8(noisy), reconstructed=to8(recon),
                       labels=y_all[idx].numpy())
        return {"examples": EXAMPLES}

    metrics = (MSE, BCE, LOSS_METRICS[cfg.loss]) + ((AUROC,) if anomaly else ())
    facts = {"pixels": "[0, 1], not normalised"}
    if anomaly:
        facts.update(normal_class_name=raw.classes[normal], anomaly_score="reconstruction MSE of the clean image")
    return Problem(model=model, build=build, train_batches=train, splits=tuple(evals), evaluate=evaluate,
                   n_train=len(splits.train[1]), source=splits.source, in_shape=splits.in_shape, loss=loss,
                   metrics=metrics, facts=facts, final=final)


def check(cfg) -> None:
    """What the keys' own ranges cannot say."""
    anomaly = cfg.task.endswith("_anomaly")
    dataset = cfg.task.rsplit("_", 1)[0]
    if anomaly:
        n = N_CLASSES[dataset]
        if cfg.normal_class is None or not 0 <= cfg.normal_class < n:
            raise ConfigError(f"normal_class: expected a class index 0-{n - 1} of {dataset}, got {cfg.normal_class!r}")
    elif cfg.normal_class is not None:
        raise ConfigError(f"normal_class: only the anomaly tasks ({dataset}_anomaly) train on one class; "
                          f"task {cfg.task!r} reconstructs every class")
    if cfg.noise == "masking" and cfg.noise_level >= 1:
        raise ConfigError("noise_level: masking every pixel leaves nothing to reconstruct from; expected < 1")
    if cfg.regularizer == "label_smoothing":
        raise ConfigError("regularizer: label_smoothing smooths class labels; an autoencoder has none")


def _tasks(dataset: str, label: str, augment: Augment) -> Tuple[Task, Task]:
    common = dict(family=FAMILY, prepare=prepare, losses=("mse", "bce"), model_family=FAMILY, data=dataset,
                  augment=augment, check=check, memory=memory)
    ae = Task(f"{dataset}_ae", f"{label} autoencoder", metrics=(MSE, BCE, LOSS_METRICS["mse"]), headline="mse",
              defaults={"model": "dense_ae", "code_size": 32, "optimizer": "adam", "lr": 1e-3,
                        "batch_size": 256, "epochs": 20, "val_size": 5000},
              targets=(0.03, 0.02, 0.015, 0.01), **common)
    anomaly = Task(f"{dataset}_anomaly", f"{label} one-class anomaly detection",
                   metrics=(MSE, BCE, LOSS_METRICS["mse"], AUROC), headline="auroc", monitor="mse",
                   defaults={"model": "dense_ae", "code_size": 32, "optimizer": "adam", "lr": 1e-3,
                             "batch_size": 128, "epochs": 30, "val_size": 500, "normal_class": 0},
                   targets=(0.03, 0.02, 0.015, 0.01), **common)
    return ae, anomaly


@TASKS.register
def fashion_mnist_ae() -> Task:
    """Fashion-MNIST reconstruction (dense_ae, code 32, Adam 1e-3, batch 256, 20 epochs); headline test MSE."""
    return _tasks("fashion_mnist", "Fashion-MNIST", Augment(pad=2, flip=True))[0]


@TASKS.register
def mnist_ae() -> Task:
    """MNIST reconstruction (dense_ae, code 32, Adam 1e-3, batch 256, 20 epochs); headline test MSE."""
    return _tasks("mnist", "MNIST", Augment(pad=2, flip=False))[0]


@TASKS.register
def cifar10_ae() -> Task:
    """CIFAR-10 reconstruction (dense_ae, code 32, Adam 1e-3, batch 256, 20 epochs); headline test MSE."""
    return _tasks("cifar10", "CIFAR-10", Augment(pad=4, flip=True))[0]


@TASKS.register
def fashion_mnist_anomaly() -> Task:
    """Fashion-MNIST one-class anomaly detection: train on normal_class, AUROC vs the other 9 classes."""
    return _tasks("fashion_mnist", "Fashion-MNIST", Augment(pad=2, flip=True))[1]


@TASKS.register
def mnist_anomaly() -> Task:
    """MNIST one-class anomaly detection: train on normal_class, AUROC vs the other 9 digits."""
    return _tasks("mnist", "MNIST", Augment(pad=2, flip=False))[1]


@TASKS.register
def cifar10_anomaly() -> Task:
    """CIFAR-10 one-class anomaly detection: train on normal_class, AUROC vs the other 9 classes."""
    return _tasks("cifar10", "CIFAR-10", Augment(pad=4, flip=True))[1]


def memory(cfg) -> List[Need]:
    """The code layer's weights (encoder and decoder) with gradients and optimizer state."""
    code = cfg.code_size or 0
    flat = 256 if cfg.model == "dense_ae" else 64 * 8 * 8  # the layer the code connects to (28x28 or 32x32 in)
    weights = 2.0 * flat * code
    return [("code_size", PARAM_BYTES * weights, f"the code layer's {weights:,.0f} weights")]


@MEDIA.register(name=FAMILY)
def media(run_dir, summary) -> List[Media]:
    """One test image per class: the original, its corrupted input and the reconstruction."""
    ex = arrays(run_dir, summary, EXAMPLES)
    if ex is None or not {"original", "noisy", "reconstructed"} <= set(ex):
        return []
    rows = tuple((i, Image(hwc(o)), Image(hwc(n)), Image(hwc(r)))
                 for i, (o, n, r) in enumerate(zip(ex["original"], ex["noisy"], ex["reconstructed"])))
    return [Media("reconstructions", Table(("example", "original", "input", "reconstructed"), rows))]
