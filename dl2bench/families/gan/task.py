"""GANs (the course's final project): a generator and a discriminator trained against each other on
28 x 28 images, measured by improved precision and recall and the Frechet distance in the feature
space of a classifier dl2bench trained on the same dataset; truncation at sampling time trades
recall for precision.

- `<dataset>_gan` trains: the non-saturating GAN (step.py), each network with its own
  optimizer (`optimizer`/`lr`/`init` for the generator, `d_optimizer`/`d_lr`/`d_init` for the
  discriminator, the generator's when unset; Adam-family beta1 `gan_beta1`, DCGAN's 0.5). Every
  epoch it draws `pr_samples` images from fixed latents and scores them against the validation
  split; at the end against the test split. The headline is the test FID.
- `<dataset>_gan_sample` evaluates the generator of a finished `<dataset>_gan` run
  (`generator_run`) at a truncation (`truncation` hard | soft, `psi`): a psi sweep over trained
  generators draws the precision-recall trade-off curve. It does not train (epochs 0).

The feature space is the penultimate layer of a classifier run (`feature_run`: its run id, its
folder, or a folder holding exactly one finished classifier, e.g. the one sweeps/gan_features.yaml
trains), so the measuring instrument is itself a reproducible run; the summary names the run it
used. Scores depend on N and k: every run records the real-vs-real baseline (N training images vs
N test images, same k) beside its own (`baseline_precision`, `baseline_recall`, `baseline_fid`).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from ... import runs
from ...errors import ConfigError
from ...media import MEDIA, Image, Media, Table, arrays, tile
from ..base import TASKS, Key, Metric, Need, NoTraining, Problem, Task

if TYPE_CHECKING:
    import torch

FAMILY = "gan"
SAMPLES = "samples.npz"  # sample grids (per epoch, per psi) for the report
GRID = 64  # images in a sample grid
GRID_SEED, VAL_SEED, TEST_SEED = 11, 12, 13  # fixed latents: every epoch (and every psi) scores the same z
GRID_PSI = (0.25, 0.5, 1.0, 1.5)
TEST_IMAGES = 10000  # MNIST's and Fashion-MNIST's test splits  # truncations drawn into a training run's final grids

KEYS = {
    "latent_dim": Key(Optional[int], None, "gan: size of the generator's latent z; None = the task's default",
                      min=1, max=4096),
    "d_optimizer": Key(Optional[str], None, "gan: the discriminator's update rule; None = optimizer (the generator's)"),
    "d_lr": Key(Optional[float], None, "gan: the discriminator's learning rate; None = lr"),
    "d_init": Key(Optional[str], None, "gan: the discriminator's initialisation; None = init"),
    "gan_beta1": Key(float, 0.5, "gan: Adam-family beta1 of both networks (DCGAN's 0.5; replaces beta1)",
                     min=0.0, max=0.999),
    "d_steps": Key(int, 1, "gan: discriminator updates per generator update", min=1, max=100),
    "feature_run": Key(Optional[str], None, "gan: the classifier run whose penultimate features measure precision, recall "
                       "and FID (its run id, folder, or a folder holding exactly one finished classifier; sampling tasks: the "
                       "generator run's)",
                       factor=False),
    "feature_net": Key(Optional[str], None, "gan: the feature space: classifier (feature_run's penultimate layer; "
                       "the default) | vgg16 (ImageNet VGG-16 fc2, torchvision's weights, as Kynkaanniemi et al.; "
                       "needs them in torch hub's cache or download true; slow on a CPU)",
                       choices=("classifier", "vgg16")),
    "feature_from": Key(str, "runs", "gan: folders to look for feature_run / generator_run in, separated by "
                        f"{os.pathsep!r} (a sweep sets its results folder)", bookkeeping=True),
    "pr_k": Key(int, 3, "gan: k of the k-nearest-neighbour manifolds (precision and recall)", min=1),
    "pr_samples": Key(int, 5000, "gan: N, real and generated images scored (at most the split's size)", min=2),
    "generator_run": Key(str, "", "gan, *_gan_sample tasks: the GAN run whose generator is sampled (run id or "
                         "folder)", factor=False),
    "truncation": Key(str, "none", "gan, *_gan_sample tasks: none | hard (re-draw latent coordinates beyond psi) "
                      "| soft (scale the latent by psi)", choices=("none", "hard", "soft")),
    "psi": Key(float, 1.0, "gan, *_gan_sample tasks: the truncation threshold or scale (> 0)"),
}

_SCORES = dict(splits=("val", "test"))
PRECISION = Metric("precision", "maximize", "", "precision (share of samples on the real manifold)", **_SCORES)
RECALL = Metric("recall", "maximize", "", "recall (share of real images on the samples' manifold)", **_SCORES)
FID = Metric("fid", "minimize", "", "Frechet distance in the classifier's features", **_SCORES)
TRAIN_METRICS = (PRECISION, RECALL, FID,
                 Metric("loss", "minimize", "nats", "discriminator loss", splits=("train",)),
                 Metric("g_loss", "minimize", "nats", "generator loss (its `loss`)", splits=("train",)),
                 Metric("d_real", "maximize", "", "D's mean probability on real images", splits=("train",)),
                 Metric("d_fake", "minimize", "", "D's mean probability on generated images", splits=("train",)))
_TEST = dict(splits=("test",))
SAMPLE_METRICS = (Metric("precision", "maximize", "", PRECISION.label, **_TEST),
                  Metric("recall", "maximize", "", RECALL.label, **_TEST),
                  Metric("fid", "minimize", "", FID.label, **_TEST),
                  Metric("loss", "minimize", "nats", "generator loss -log D(G(z)) on these samples", **_TEST))


def _roots(value: str):
    """The folders of `feature_from`, then their parents: a sampling sweep looks in the GAN sweep's
    folder, and the GAN's feature classifier lies in a sibling sweep folder of the same results root."""
    roots = [Path(r) for r in value.split(os.pathsep) if r]
    return list(dict.fromkeys(roots + [r.resolve().parent for r in roots]))


@functools.lru_cache(maxsize=256)  # a sweep validates each of its runs against the same few runs
def run_folder(key: str, value: str, roots: str, family: str, data: Optional[str] = None) -> Path:
    """The folder of the run named by config key `key` (runs.trained_run: a run id or unique prefix,
    a run folder, or a folder holding exactly one such run), a finished `family` run with loadable
    weights, trained on `data` where given. ConfigError names the key."""
    fix = f" (train a {data} classifier, e.g. sweeps/gan_features.yaml)" if key == "feature_run" else ""

    def accept(folder: Path, c: Dict[str, Any]) -> Optional[str]:
        t = c.get("task")
        tt = TASKS[t]() if t in TASKS else None
        if tt is None or tt.family != family:
            return (f"{folder} is {'a ' + tt.family if tt else 'an unknown'} run ({t}); expected a finished "
                    f"{_what(family)} run{fix}")
        if data is not None and tt.data != data:
            return f"the run trained {t!r} on {tt.data}; expected a {data} {_what(family)}{fix}"
        return None

    try:
        return runs.trained_run(key, value, _roots(roots), _what(family), accept)
    except ConfigError as e:
        if key == "feature_run" and "not found under" in str(e):
            raise ConfigError(f"{e}; run sweeps/gan_features.yaml first (same --out)") from None
        raise


def _what(family: str) -> str:
    return {"classification": "classifier"}.get(family, family)


@functools.lru_cache(maxsize=256)
def run_config(folder: Path) -> Dict[str, Any]:
    try:
        return runs.config(folder)
    except runs.RunFolderError as e:
        raise ConfigError(str(e)) from None


def derive(d: Dict[str, Any]) -> Dict[str, Any]:
    """A sampling run takes its model, latent size and feature space from the generator's run."""
    if not d["task"].endswith("_gan_sample") or not d.get("generator_run"):
        return {}
    folder = run_folder("generator_run", d["generator_run"], d["feature_from"], FAMILY)
    g = run_config(folder)
    if g.get("task") != d["task"][: -len("_sample")]:
        return {}  # not a generator of this data: the check says so
    out = {"model": g.get("model"), "latent_dim": g.get("latent_dim"), "feature_net": g.get("feature_net")}
    feat = (runs.summary(folder) or {}).get("feature_run_id")
    if feat:
        out["feature_run"] = feat
    return out


def check(cfg) -> None:
    from ...inits import INITS
    from ...optim import OPTIMIZERS

    task = TASKS[cfg.task]()
    sampling = not task.trains
    if cfg.d_optimizer is not None:
        try:
            OPTIMIZERS[cfg.d_optimizer]
        except KeyError as e:
            raise ConfigError(f"d_optimizer: {e}") from None
    if cfg.d_init is not None:
        try:
            INITS[cfg.d_init]
        except KeyError as e:
            raise ConfigError(f"d_init: {e}") from None
    if cfg.d_lr is not None and not cfg.d_lr > 0:
        raise ConfigError(f"d_lr: expected a positive number, got {cfg.d_lr!r}")
    if not cfg.psi > 0:
        raise ConfigError(f"psi: expected a truncation threshold or scale > 0, got {cfg.psi!r}")
    if cfg.pr_k >= cfg.pr_samples:
        raise ConfigError(f"pr_k: a k-nearest-neighbour manifold of N = pr_samples = {cfg.pr_samples} samples needs "
                          f"k < N, got {cfg.pr_k}")
    # N is at most the split's size; the datasets' test splits hold TEST_IMAGES (a smaller file on disk
    # is caught when it is read)
    splits = {"test": min(cfg.pr_samples, cfg.test_size or TEST_IMAGES)}
    if task.trains:
        splits["val"] = min(cfg.pr_samples, cfg.val_size or 0)
    for split, n in splits.items():
        if n and cfg.pr_k >= n:
            raise ConfigError(f"pr_k: the {split} split gives N = {n} images to score; k-nearest-neighbour "
                              f"manifolds need k < N, got {cfg.pr_k} (raise the split's size, or lower pr_k)")
    if cfg.beta1 != 0.9:
        raise ConfigError("beta1: GAN tasks set Adam's beta1 with gan_beta1 (DCGAN's 0.5 by default)")
    if sampling:
        folder = run_folder("generator_run", cfg.generator_run, cfg.feature_from, FAMILY)
        g = run_config(folder)
        if g.get("task") != cfg.task[: -len("_sample")]:
            raise ConfigError(f"generator_run: the run trained {g.get('task')!r}; task {cfg.task!r} samples "
                              f"{cfg.task[: -len('_sample')]} generators")
        if cfg.model != g.get("model"):
            raise ConfigError(f"model: the sampled run's model is {g.get('model')!r}, not {cfg.model!r} (leave it unset)")
        if cfg.truncation == "none" and cfg.psi != 1:
            raise ConfigError(f"psi: {cfg.psi!r} means nothing without truncation; set truncation hard or soft")
    else:
        if cfg.generator_run:
            raise ConfigError(f"generator_run: task {cfg.task!r} trains a GAN; sample a trained one with "
                              f"{cfg.task}_sample")
        if cfg.truncation != "none" or cfg.psi != 1:
            raise ConfigError(f"truncation: applied when sampling a trained generator ({cfg.task}_sample "
                              f"--generator_run <run>); task {cfg.task!r} trains on untruncated latents")
        if cfg.compile:
            raise ConfigError("compile: the GAN step calls its two networks directly; compile is not supported")
    if cfg.feature_net == "vgg16":
        if cfg.feature_run:
            raise ConfigError(f"feature_run: feature_net vgg16 measures in ImageNet VGG-16 features; leave feature_run "
                              f"unset (got {cfg.feature_run!r}) or use feature_net classifier")
        if not cfg.download and not os.path.isfile(_vgg_file()):
            raise ConfigError(f"feature_net: VGG-16's ImageNet weights are not in torch hub's cache ({_vgg_file()}); "
                              "run once with download true where there is internet, or use feature_net classifier")
        return
    run_folder("feature_run", cfg.feature_run, cfg.feature_from, "classification", task.data)


def _vgg_file() -> str:
    from .metrics import vgg16_weights_file

    return vgg16_weights_file()


def _opt_cfg(cfg, optimizer: str, lr: float):
    import dataclasses

    return dataclasses.replace(cfg, optimizer=optimizer, lr=lr, beta1=cfg.gan_beta1)


def prepare(task: Task, cfg, device: torch.device, reg) -> Problem:
    import torch

    from ... import data as D
    from ...inits import INITS
    from ...nets import MODELS
    from . import metrics as M
    from .latent import sample_latent

    sampling = not task.trains
    if cfg.feature_net == "vgg16":
        from torchvision.models import VGG16_Weights, vgg16

        extract = M.vgg16_extractor(vgg16(weights=VGG16_Weights.IMAGENET1K_V1, progress=False).to(device))
        feature_facts = {"feature_net": "vgg16", "feature_model": "VGG-16 (ImageNet, torchvision), fc2",
                         "feature_run_id": None}
        feature_uses = {}
    else:
        ffolder = run_folder("feature_run", cfg.feature_run, cfg.feature_from, "classification")
        classifier = runs.load_weights(ffolder, map_location=device)
        extract = M.feature_extractor(classifier.pixel_model().to(device))
        feature_facts = {"feature_net": "classifier", "feature_run_id": classifier.run_id, "feature_folder": str(ffolder),
                         "feature_model": classifier.config.get("model"),
                         "feature_test_acc": _summary_value(ffolder, "test_acc")}
        feature_uses = {"feature_run": classifier.run_id}
    raw = D.load(task.data, cfg.data_root, cfg.download)
    if sampling:
        gfolder = run_folder("generator_run", cfg.generator_run, cfg.feature_from, FAMILY)
        trained = runs.load_weights(gfolder, map_location=device)
        gan, build = trained.model.to(device).eval(), trained.build
        for p in gan.parameters():
            p.requires_grad_(False)
        val_size = 0
        test_x = D.test_split(raw, cfg.test_size)[0]
        train_x = raw.train_x
        val_x = test_x[:0]
    else:
        splits = D.make_splits(raw, cfg.val_size, cfg.train_size, cfg.test_size)
        in_shape = splits.in_shape
        build = {"model": cfg.model, "args": [list(in_shape), cfg.latent_dim], "kwargs": dict(reg.model_kwargs)}
        gan = MODELS[cfg.model](in_shape, cfg.latent_dim, **reg.model_kwargs)
        INITS[cfg.init](gan.g, cfg)
        INITS[cfg.d_init or cfg.init](gan.d, cfg)
        gan.to(device)
        val_x, test_x = splits.val[0], splits.test[0]
        train_x = raw.train_x  # the baseline's real images: the dataset's first N, for sampling runs too
        val_size = len(val_x)
    k = cfg.pr_k
    n_test = min(cfg.pr_samples, len(test_x), len(train_x))
    n_val = min(cfg.pr_samples, val_size)
    for split, n in (("test", n_test), ("val", n_val)):
        if n and k >= n:
            raise ConfigError(f"pr_k: the {split} split gives N = {n} images to score; k-nearest-neighbour manifolds "
                              f"need k < N, got {k} (raise pr_samples / the split's size, or lower pr_k)")

    def feats(x_uint8: torch.Tensor) -> torch.Tensor:
        return torch.cat([extract(x_uint8[s : s + cfg.eval_batch_size].to(device).float().div(255))
                          for s in range(0, len(x_uint8), cfg.eval_batch_size)])

    real = {"test": feats(test_x[:n_test])}
    if n_val:
        real["val"] = feats(val_x[:n_val])
    # real vs real at the same N and k: the best a generator could score, with this instrument
    base = M.scores(feats(train_x[:n_test]), real["test"], k)
    latent_dim = gan.latent_dim
    truncation, psi = cfg.truncation, cfg.psi

    def generate(m, n: int, seed: int, trunc: str = "none", p: float = 1.0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        out = []
        with torch.no_grad():
            for s in range(0, n, cfg.eval_batch_size):
                z = sample_latent(min(cfg.eval_batch_size, n - s), latent_dim, trunc, p, gen, device)
                out.append(m(z).float().add(1).div(2).clamp(0, 1))
        return torch.cat(out)

    to8 = lambda t: (t.clamp(0, 1) * 255).round().to(torch.uint8).cpu()  # noqa: E731
    step = None

    def evaluate(m, split: str, autocast) -> Dict[str, float]:
        n = n_test if split == "test" else n_val
        seed = TEST_SEED if split == "test" else VAL_SEED
        fake = generate(m, n, seed, truncation, psi)
        out = M.scores(real[split], torch.cat([extract(fake[s : s + cfg.eval_batch_size])
                                               for s in range(0, n, cfg.eval_batch_size)]), k)
        if sampling:
            with torch.no_grad():
                z = sample_latent(n, latent_dim, truncation, psi, torch.Generator().manual_seed(seed), device)
                out["loss"] = torch.nn.functional.softplus(-gan.d(gan.g(z))).mean().item()
        if split == "val" and step is not None:
            step.grids.append(to8(generate(m, GRID, GRID_SEED)))
        return out

    def final(m, autocast, out_dir) -> Dict[str, Any]:
        import numpy as np

        m.eval()
        arrays: Dict[str, Any] = {"real": to8(test_x[:GRID].float().div(255)).numpy()}
        if sampling:
            arrays["samples"] = to8(generate(m, GRID, GRID_SEED, truncation, psi)).numpy()
        else:
            if step is not None and step.grids:
                arrays["epochs"] = torch.stack(step.grids).numpy()
            arrays["samples"] = to8(generate(m, GRID, GRID_SEED)).numpy()
            arrays["psi"] = np.array(GRID_PSI)
            for trunc in ("hard", "soft"):
                arrays[trunc] = torch.stack([to8(generate(m, GRID, GRID_SEED, trunc, p)) for p in GRID_PSI]).numpy()
        path = os.path.join(str(out_dir), SAMPLES)
        runs.save_npz(path, **arrays)
        return {"examples": SAMPLES}

    facts = {**feature_facts, "feature_dim": int(real["test"].shape[1]), "pr_k": k, "pr_n_test": n_test, "pr_n_val": n_val,
             "baseline_precision": base["precision"], "baseline_recall": base["recall"], "baseline_fid": base["fid"],
             "baseline_is": f"{n_test} training vs {n_test} test images, same k and features",
             "pixels": "[0, 1]; the generator's tanh output mapped by (x + 1) / 2",
             "samples_are": "real images",  # one discriminator (x d_steps) and one generator update per batch
             "flops_of": "the generator's forward pass"}
    example = lambda dev: torch.zeros(1, latent_dim, device=dev)  # noqa: E731 - the generator's input
    if sampling:
        nothing = NoTraining()
        facts.update(generator_run_id=trained.run_id, generator_folder=str(gfolder), truncation=truncation, psi=psi,
                     evaluated_config=trained.recipe or cfg.recipe_of(trained.config))
        return Problem(model=gan, build=build, train_batches=nothing, splits=("test",), evaluate=evaluate,
                       n_train=0, source=raw.source, step=nothing, example_input=example, metrics=SAMPLE_METRICS,
                       facts=facts, final=final, uses={**feature_uses, "generator_run": trained.run_id})

    from ...optim import OPTIMIZERS, LRController
    from .step import GANStep

    train, _ = D.split_batches(splits, cfg, device, None, normalise=False)
    spe = len(train)
    opt_g = OPTIMIZERS[cfg.optimizer](gan.g.parameters(), _opt_cfg(cfg, cfg.optimizer, cfg.lr))
    d_opt_name, d_lr = cfg.d_optimizer or cfg.optimizer, cfg.d_lr or cfg.lr
    opt_d = OPTIMIZERS[d_opt_name](gan.d.parameters(), _opt_cfg(cfg, d_opt_name, d_lr))
    step = GANStep(gan, opt_g, opt_d, LRController(opt_g, cfg, spe), LRController(opt_d, cfg, spe * cfg.d_steps),
                   cfg.d_steps, reg.clip_norm, device, cfg.loss)
    facts.update(d_optimizer=d_opt_name, d_lr=d_lr, d_init=cfg.d_init or cfg.init,
                 g_params=sum(p.numel() for p in gan.g.parameters()),
                 d_params=sum(p.numel() for p in gan.d.parameters()))
    return Problem(model=gan, build=build, train_batches=train, splits=("val", "test"),
                   evaluate=evaluate, n_train=len(splits.train[0]), source=splits.source, step=step,
                   example_input=example, metrics=TRAIN_METRICS, facts=facts, final=final,
                   uses=feature_uses)


def _summary_value(folder: Path, key: str):
    return (runs.summary(folder) or {}).get(key)


_WHY = ("is not supported by the GAN step (it takes dropout, batchnorm and grad_clip; no labels, no validation "
        "loss; fp32)")
REFUSES = {"regularizer": dict.fromkeys(("l1", "l2", "label_smoothing", "augmentation", "early_stopping"), _WHY),
           "schedule": {"plateau": _WHY}, "precision": dict.fromkeys(("bf16", "fp16"), _WHY)}


def _gan_task(dataset: str, label: str) -> Task:
    return Task(f"{dataset}_gan", f"{label} GAN", FAMILY, prepare, TRAIN_METRICS, headline="fid", model_family=FAMILY,
                data=dataset, check=check, memory=memory, refuses=REFUSES, losses=("non_saturating", "minimax"),
                defaults={"model": "dcgan", "latent_dim": 64, "optimizer": "adam", "lr": 2e-4, "batch_size": 64,
                          "epochs": 10, "val_size": 5000, "feature_net": "classifier"})


def _sample_task(dataset: str, label: str) -> Task:
    return Task(f"{dataset}_gan_sample", f"samples of a {label} GAN", FAMILY, prepare, SAMPLE_METRICS, headline="fid",
                model_family=FAMILY, data=dataset, check=check, memory=memory, derive=derive, trains=False, evaluates=FAMILY,
                run_keys=("generator_run", "feature_from"),
                defaults={"epochs": 0, "optimizer": "adam", "lr": 2e-4, "batch_size": 64, "eval_batch_size": 1000,
                          "val_size": 0, "feature_net": "classifier"})


@TASKS.register
def fashion_mnist_gan() -> Task:
    """Fashion-MNIST GAN, P/R/FID in a classifier run's features (dcgan, z 64, Adam 2e-4 beta1 0.5, 10 epochs)."""
    return _gan_task("fashion_mnist", "Fashion-MNIST")


@TASKS.register
def mnist_gan() -> Task:
    """MNIST GAN, P/R/FID in a classifier run's features (dcgan, z 64, Adam 2e-4 beta1 0.5, 10 epochs)."""
    return _gan_task("mnist", "MNIST")


@TASKS.register
def fashion_mnist_gan_sample() -> Task:
    """Sample a trained Fashion-MNIST GAN (generator_run) at a truncation (hard | soft, psi); P, R, FID."""
    return _sample_task("fashion_mnist", "Fashion-MNIST")


@TASKS.register
def mnist_gan_sample() -> Task:
    """Sample a trained MNIST GAN (generator_run) at a truncation (hard | soft, psi); P, R, FID."""
    return _sample_task("mnist", "MNIST")


def memory(cfg) -> List[Need]:
    """Precision/recall's features (real and generated) and one chunk of its distance matrix."""
    from .metrics import CHUNK  # torch-free at import

    n = cfg.pr_samples or 0
    return [("pr_samples", 4.0 * n * (2 * 512 + CHUNK), f"precision/recall over {n:,} samples a side")]


@MEDIA.register(name=FAMILY)
def media(run_dir, summary) -> List[Media]:
    """The fixed-latent grid at each epoch (how training went), the final samples beside real test
    images, and the truncation grids (hard, soft) one psi per image: what the report draws."""
    ex = arrays(run_dir, summary, SAMPLES)
    if ex is None:
        return []
    out = [Media("samples_by_epoch", Image(tile(grid), f"epoch {e}"), epoch=e)
           for e, grid in enumerate(ex.get("epochs", ()), start=1)]
    if "samples" in ex:
        out.append(Media("samples", Image(tile(ex["samples"]), "samples at the end (fixed latents)")))
    if "real" in ex:
        out.append(Media("real", Image(tile(ex["real"]), "real test images")))
    for trunc in ("hard", "soft"):
        if trunc in ex and "psi" in ex:
            out.append(Media(f"truncation_{trunc}", Table(
                ("psi", "samples"), tuple((float(p), Image(tile(g), f"{trunc} truncation, psi {p:g}"))
                                          for p, g in zip(ex["psi"], ex[trunc])))))
    return out
