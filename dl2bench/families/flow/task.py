"""Normalizing flows (models.py): density estimation by maximum likelihood,
p(x) = |det J_F(x)| q(F(x)) with q = N(0, I); samples are F⁻¹(z).

- 2-D toy densities, drawn from `toy_seed` with torch's CPU generator (the same points on every
  machine, whatever the run's seed; test first, then validation, then training, so a larger
  train_size never changes the test set):
  `two_moons` (two interleaved half circles of radius 1, Gaussian noise of std `toy_noise`),
  `rings` (two concentric circles of radius 1 and 2, equally many points, radial noise
  `toy_noise`), `gaussian_mixture` (8 equal isotropic Gaussians of std `toy_noise` on a circle of
  radius 2). Headline: test NLL in nats per point. The baseline is a full-covariance Gaussian
  fitted by maximum likelihood to the training points: its test NLL is `gaussian_nll`.
- Images (`fashion_mnist_flow`, `mnist_flow`): uniform dequantisation x = (pixel + u) / 256,
  u ~ U[0, 1) (a new draw per training batch; one fixed draw for validation and test), then the
  logit transform v = logit(α + (1 − 2α) x), α = `logit_alpha` (RealNVP's); the flow models v.
  Headline: test bits/dim of the 8-bit pixels, i.e. NLL / (D ln 2) with the NLL of the pixel
  values in [0, 256) (the log-determinants of the scaling by 1/256 and of the logit included):
  bits/dim = NLL_v' / (D ln 2) + 8 for the NLL of the data scaled to [0, 1). Only numbers made
  with the same dequantisation and α compare; the summary states both.

Non-finite log-likelihoods are never dropped: `nonfinite` counts the validation/test samples
whose log p(x) is not finite, and the split's NLL (a mean over every sample) is then inf or NaN.
A non-finite training loss ends the run as `diverged` (the loop's rule). At the end, `final`
writes samples.npz for the report: 2-D: samples, test points and the log-density on a grid
(and the mass of the density inside that grid, `grid_mass`, in the summary); images: uint8
sample grids at temperature 1 and 0.7, and test images for comparison.
"""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np

from ... import runs
from ...errors import ConfigError
from ...media import MEDIA, Image, Media, Table, arrays, heatmap, scatter, tile
from ...inits import INITS
from ...nets import MODELS
from ..base import PARAM_BYTES, TASKS, Augment, Key, Metric, Need, Problem, Task

if TYPE_CHECKING:
    import torch

FAMILY = "flow"
SAMPLES = "samples.npz"
EVAL_NOISE_SEED = 20240613  # one fixed dequantisation of the validation and test images for every run
TOY_SPLITS = (10000, 2000, 10000)  # train, val, test points
TOY = {"two_moons": "two moons", "rings": "two concentric rings", "gaussian_mixture": "8-Gaussian mixture"}
RING_RADII = (1.0, 2.0)
MIXTURE_MODES, MIXTURE_RADIUS = 8, 2.0
GRID = 160  # the density grid of the report: GRID x GRID points
N_SAMPLES_2D = 2000
N_SAMPLES_IMG = 32
TEMPERATURES = (1.0, 0.7)
LN2 = math.log(2)

KEYS = {
    "flow_depth": Key(Optional[int], None, "flow: affine coupling layers (realnvp) or flow steps (glow); None = the "
                      "task's default", min=1, max=64),
    "flow_hidden": Key(Optional[int], None, "flow: width of the conditioner MLPs (two hidden layers); None = the "
                       "task's default", min=1, max=16384),
    "toy_noise": Key(Optional[float], None, "flow, 2-D tasks: noise std of the toy density (moons, rings: around the "
                     "curve; gaussian_mixture: each component's std); None = the task's default", min=1e-3, max=2.0),
    "toy_seed": Key(int, 0, "flow, 2-D tasks: the toy sets' generator seed (the same points on every machine; the "
                    "run's `seed` does not change them)", min=0),
    "logit_alpha": Key(float, 0.05, "flow, image tasks: the logit transform v = logit(a + (1 - 2a) x) of the "
                       "dequantised pixels x in (0, 1), a in [1e-6, 0.49]", min=1e-6, max=0.49),
}

NLL_2D = Metric("nll", "minimize", "nats", "negative log-likelihood per point", splits=("val", "test"))
NONFINITE = Metric("nonfinite", "minimize", "samples", "samples whose log-likelihood is not finite",
                   splits=("val", "test"))
LOSS_2D = Metric("loss", "minimize", "nats", "negative log-likelihood per point")
BPD = Metric("bits_per_dim", "minimize", "bits/dim", "bits per dimension (8-bit pixels, dequantised)",
             splits=("val", "test"))
NLL_IMG = Metric("nll", "minimize", "nats", "negative log-likelihood per image (8-bit pixels, dequantised)",
                 splits=("val", "test"))
LOSS_IMG = Metric("loss", "minimize", "bits/dim", "bits per dimension (dequantised)")
METRICS_2D = (NLL_2D, NONFINITE, LOSS_2D)
METRICS_IMG = (BPD, NLL_IMG, NONFINITE, LOSS_IMG)


# ---------------------------------------------------------------------------------------------
# the toy densities


def make_two_moons(n: int, noise: float, generator) -> torch.Tensor:
    """n points of two interleaved half circles (sklearn's make_moons layout), each point on a
    moon chosen at random, plus isotropic Gaussian noise of std `noise`."""
    import torch

    t = torch.rand(n, generator=generator) * math.pi
    lower = torch.rand(n, generator=generator) < 0.5
    x = torch.where(lower, 1 - torch.cos(t), torch.cos(t))
    y = torch.where(lower, 0.5 - torch.sin(t), torch.sin(t))
    return torch.stack([x, y], 1) + noise * torch.randn(n, 2, generator=generator)


def make_rings(n: int, noise: float, generator) -> torch.Tensor:
    """n points on concentric circles of radius RING_RADII (one chosen at random per point), the
    radius perturbed by Gaussian noise of std `noise`."""
    import torch

    radii = torch.tensor(RING_RADII)
    r = radii[torch.randint(0, len(radii), (n,), generator=generator)]
    angle = torch.rand(n, generator=generator) * 2 * math.pi
    r = r + noise * torch.randn(n, generator=generator)
    return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1)


def make_gaussian_mixture(n: int, noise: float, generator) -> torch.Tensor:
    """n points of MIXTURE_MODES equally weighted isotropic Gaussians (std `noise`) whose means lie
    evenly on a circle of radius MIXTURE_RADIUS."""
    import torch

    k = torch.randint(0, MIXTURE_MODES, (n,), generator=generator).float()
    angle = 2 * math.pi * k / MIXTURE_MODES
    mean = MIXTURE_RADIUS * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return mean + noise * torch.randn(n, 2, generator=generator)


GENERATORS = {"two_moons": make_two_moons, "rings": make_rings, "gaussian_mixture": make_gaussian_mixture}


def toy_sets(name: str, noise: float, seed: int, sizes: Tuple[int, int, int]):
    """(train, val, test) of a toy density from one seeded stream, test drawn first."""
    import torch

    g = torch.Generator().manual_seed(seed)
    make = GENERATORS[name]
    n_train, n_val, n_test = sizes
    test = make(n_test, noise, g)
    val = make(n_val, noise, g)
    train = make(n_train, noise, g)
    return train, val, test


def gaussian_fit(train: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Maximum-likelihood mean and (full, biased) covariance, in float64."""
    x = train.double()
    mean = x.mean(0)
    c = x - mean
    return mean, c.T @ c / len(x)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> float:
    """Mean negative log-density (nats) of the points x under N(mean, cov)."""
    import torch

    d = x.shape[1]
    c = x.double() - mean
    maha = (c @ torch.linalg.inv(cov) * c).sum(1)
    return float((0.5 * (d * math.log(2 * math.pi) + torch.logdet(cov) + maha)).mean())


# ---------------------------------------------------------------------------------------------
# dequantisation and the logit transform


def dequantise(x01: torch.Tensor, alpha: float, generator: Optional[torch.Generator] = None):
    """[0, 1] pixels (uint8 / 255) -> (v, log|dv/dp|) per image: p = pixel + u in [0, 256),
    y = p / 256, v = logit(alpha + (1 - 2 alpha) y); the log-det includes the 1/256 scaling, so
    log p(pixels) = flow.log_prob(v) + logdet. u from the global RNG (training) or `generator`
    (a CPU generator: evaluation, the same draw on every device)."""
    import torch

    pixels = torch.round(x01 * 255)
    u = torch.rand_like(pixels) if generator is None else torch.rand(pixels.shape, generator=generator).to(pixels)
    s = alpha + (1 - 2 * alpha) * (pixels + u) / 256
    v = torch.log(s) - torch.log1p(-s)
    d = pixels[0].numel()
    logdet = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1) - d * math.log(256)
    return v, logdet


def to_pixels(v: torch.Tensor, alpha: float) -> torch.Tensor:
    """The inverse of the logit transform, to uint8 pixels (floor of y·256, clipped)."""
    import torch

    y = (torch.sigmoid(v) - alpha) / (1 - 2 * alpha)
    return torch.nan_to_num(y * 256, nan=0.0).floor().clamp(0, 255).to(torch.uint8)


def bits_per_dim(nll: float, dims: int) -> float:
    """NLL in nats per image (of the 8-bit pixel values) -> bits per dimension."""
    return nll / (dims * LN2)


# ---------------------------------------------------------------------------------------------


class PointBatches:
    """Batches of a resident N x 2 tensor, shuffled with the run's data generator (training) or in order."""

    def __init__(self, x, batch_size: int, device, shuffle: bool):
        self.x, self.batch_size, self.device, self.shuffle = x.to(device), batch_size, device, shuffle

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def iterate(self, generator=None):
        import torch

        order = torch.randperm(len(self.x), generator=generator).to(self.device) if self.shuffle else None
        for i in range(0, len(self.x), self.batch_size):
            yield (self.x[order[i:i + self.batch_size]] if order is not None else self.x[i:i + self.batch_size]),


def build_model(cfg, reg, in_shape, device):
    kwargs = dict(reg.model_kwargs)
    try:
        model = MODELS[cfg.model](tuple(in_shape), cfg.flow_depth, cfg.flow_hidden, **kwargs)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from None
    INITS[cfg.init](model, cfg)
    recipe = {"model": cfg.model, "args": [list(in_shape), cfg.flow_depth, cfg.flow_hidden], "kwargs": kwargs}
    return model.to(device), recipe


def _scored(lp: torch.Tensor) -> Tuple[float, int]:
    """(sum of -log p in float64, count of non-finite values): nothing dropped."""
    import torch

    return -lp.double().sum().item(), int((~torch.isfinite(lp)).sum())


def points_nll(m, batches) -> Dict[str, float]:
    """Mean NLL of the points in `batches` (non-finite values counted, and kept in the mean)."""
    import torch

    total, bad, n = 0.0, 0, 0
    with torch.inference_mode():  # fp32 always: flows refuse bf16/fp16
        for (x,) in batches.iterate():
            t, b = _scored(log_prob(m, x))
            total, bad, n = total + t, bad + b, n + len(x)
    nll = total / n
    return {"nll": nll, "loss": nll, "nonfinite": bad}


def _toy(task: Task, cfg, device, reg) -> Problem:
    import torch

    sizes = (cfg.train_size or TOY_SPLITS[0], cfg.val_size if cfg.val_size is not None else TOY_SPLITS[1],
             cfg.test_size or TOY_SPLITS[2])
    if sizes[1] < 1:
        raise ConfigError("val_size: a toy density needs validation points (best epoch, early stopping)")
    train, val, test = toy_sets(task.data, cfg.toy_noise, cfg.toy_seed, sizes)
    mean, cov = gaussian_fit(train)
    baseline = gaussian_nll(test, mean, cov)
    model, recipe = build_model(cfg, reg, (2,), device)
    batches = PointBatches(train, cfg.batch_size, device, shuffle=True)
    evals = {"val": PointBatches(val, cfg.eval_batch_size, device, False),
             "test": PointBatches(test, cfg.eval_batch_size, device, False)}

    def loss(m, batch, detail):
        (x,) = batch
        data_loss = -log_prob(m, x).mean()
        objective = data_loss if reg.penalty is None else data_loss + reg.penalty(m)
        return objective, data_loss, len(x), {}

    def evaluate(m, split: str, autocast) -> Dict[str, float]:
        return points_nll(m, evals[split])

    def final(m, autocast, out_dir) -> Dict[str, object]:

        m = _inner(m)
        m.eval()
        g = torch.Generator().manual_seed(cfg.seed)
        lo = torch.quantile(test, 0.001, dim=0) - 0.6
        hi = torch.quantile(test, 0.999, dim=0) + 0.6
        xs = torch.linspace(float(lo[0]), float(hi[0]), GRID)
        ys = torch.linspace(float(lo[1]), float(hi[1]), GRID)
        gx, gy = torch.meshgrid(xs, ys, indexing="xy")  # rows: y, columns: x
        pts = torch.stack([gx.flatten(), gy.flatten()], 1)
        with torch.inference_mode():
            samples = m.sample(N_SAMPLES_2D, generator=g).cpu()
            logp = torch.cat([m.log_prob(c.to(device)).cpu() for c in pts.split(8192)]).view(GRID, GRID)
        cell = float((xs[1] - xs[0]) * (ys[1] - ys[0]))
        mass = float(torch.exp(logp.double()).nansum() * cell)
        path = os.path.join(str(out_dir), SAMPLES)
        runs.save_npz(path, samples=samples.numpy(), data=test[:N_SAMPLES_2D].numpy(), log_density=logp.numpy(),
                       grid_x=xs.numpy(), grid_y=ys.numpy(), gaussian_mean=mean.numpy(),
                       gaussian_cov=cov.numpy())
        return {"examples": SAMPLES, "grid_mass": mass,
                "sample_nonfinite": int((~torch.isfinite(samples)).any(1).sum())}

    data = (f"{TOY[task.data]}, noise {cfg.toy_noise:g}, toy_seed {cfg.toy_seed}: {sizes[0]:,} train / "
            f"{sizes[1]:,} val / {sizes[2]:,} test points")
    facts = {"data": data, "gaussian_nll": baseline,
             "baseline": "a full-covariance Gaussian fitted to the training points by maximum likelihood",
             "toy_density": task.data, "nll_of": "the 2-D points (nats per point, natural log)"}
    return Problem(model=model, build=recipe, train_batches=batches, splits=tuple(evals), evaluate=evaluate,
                   n_train=sizes[0], source=data, in_shape=(2,), loss=loss, metrics=METRICS_2D, facts=facts,
                   final=final)


def _images(task: Task, cfg, device, reg) -> Problem:
    import torch

    from ... import data as D

    raw = D.load(task.data, cfg.data_root, cfg.download)
    splits = D.make_splits(raw, cfg.val_size, cfg.train_size, cfg.test_size)
    in_shape = splits.in_shape
    dims = math.prod(in_shape)
    model, recipe = build_model(cfg, reg, in_shape, device)
    train, evals = D.split_batches(splits, cfg, device, None, normalise=False)
    alpha = cfg.logit_alpha

    def loss(m, batch, detail):
        x, _ = batch
        v, logdet = dequantise(x, alpha)
        nll = -(log_prob(m, v) + logdet)
        data_loss = nll.mean() / (dims * LN2)  # bits/dim
        objective = data_loss if reg.penalty is None else data_loss + reg.penalty(m)
        return objective, data_loss, len(x), {}

    def evaluate(m, split: str, autocast) -> Dict[str, float]:
        eval_batches = evals[split]
        gen = torch.Generator().manual_seed(EVAL_NOISE_SEED)  # the same dequantisation every time
        total, bad, n = 0.0, 0, 0
        with torch.inference_mode():
            for x, _ in eval_batches.iterate():
                v, logdet = dequantise(x, alpha, gen)
                t, b = _scored(log_prob(m, v) + logdet)
                total, bad, n = total + t, bad + b, n + len(x)
        nll = total / n
        return {"nll": nll, "bits_per_dim": bits_per_dim(nll, dims), "loss": bits_per_dim(nll, dims),
                "nonfinite": bad}

    def final(m, autocast, out_dir) -> Dict[str, object]:
        import numpy as np

        m = _inner(m)
        m.eval()
        out, bad = {}, 0
        with torch.inference_mode():
            for t in TEMPERATURES:
                g = torch.Generator().manual_seed(cfg.seed)  # the same z at every temperature, scaled
                v = m.sample(N_SAMPLES_IMG, temperature=t, generator=g)
                bad += int((~torch.isfinite(v)).flatten(1).any(1).sum())
                out[f"samples_t{t:g}".replace(".", "")] = to_pixels(v, alpha).cpu().numpy()
        x_test, y_test = splits.test
        idx = D.one_per_class(y_test, 16)
        path = os.path.join(str(out_dir), SAMPLES)
        runs.save_npz(path, data=x_test[idx].numpy(), temperatures=np.array(TEMPERATURES), **out)
        return {"examples": SAMPLES, "sample_nonfinite": bad, "sample_temperatures": list(TEMPERATURES)}

    facts = {"dequantisation": "uniform, x = (pixel + u) / 256, u ~ U[0, 1) (new per training batch; one fixed "
                               f"draw, seed {EVAL_NOISE_SEED}, for validation and test)",
             "logit_alpha": alpha, "logit": "v = logit(alpha + (1 - 2 alpha) x); the flow models v",
             "bits_per_dim_of": "the 8-bit pixels (log-det of the scaling and logit included): "
                                "nll / (D ln 2), D = " + str(dims),
             "nll_of": "one image's 8-bit pixel values in [0, 256)^D (nats)"}
    return Problem(model=model, build=recipe, train_batches=train, splits=tuple(evals), evaluate=evaluate,
                   n_train=len(splits.train[1]), source=splits.source, in_shape=in_shape, loss=loss,
                   metrics=METRICS_IMG, facts=facts, final=final)


def _inner(m):
    """The flow itself under a torch.compile wrapper (its inverse and sample are its own methods)."""
    return getattr(m, "_orig_mod", m)


def log_prob(m, x: torch.Tensor) -> torch.Tensor:
    """log p(x) per sample through the model's forward (so a torch.compile'd model runs compiled)."""
    z, logdet = m(x)
    return -0.5 * (z.flatten(1).pow(2).sum(1) + z[0].numel() * math.log(2 * math.pi)) + logdet


def prepare(task: Task, cfg, device, reg) -> Problem:
    return _toy(task, cfg, device, reg) if task.data in GENERATORS else _images(task, cfg, device, reg)


def check(cfg) -> None:
    """What the keys' own ranges cannot say."""
    toy = cfg.task in GENERATORS
    if cfg.precision != "fp32":
        raise ConfigError(f"precision: flows here train and evaluate in fp32 (log-determinants summed over many "
                          f"dimensions in {cfg.precision} lose the digits NLL differences live in); got {cfg.precision!r}")
    if toy:
        if cfg.logit_alpha != KEYS["logit_alpha"].default:
            raise ConfigError(f"logit_alpha: the image tasks' logit transform; task {cfg.task!r} models 2-D points")
        if cfg.loader != "tensor":
            raise ConfigError(f"loader: the 2-D points are resident tensors; task {cfg.task!r} has no DataLoader "
                              "pipeline")
    else:
        if cfg.toy_noise is not None:
            raise ConfigError(f"toy_noise: a setting of the 2-D toy densities; task {cfg.task!r} models images")
        if cfg.toy_seed != KEYS["toy_seed"].default:
            raise ConfigError(f"toy_seed: a setting of the 2-D toy densities; task {cfg.task!r} models images")


TOY_DEFAULTS = {"model": "realnvp", "flow_depth": 8, "flow_hidden": 64, "optimizer": "adam", "lr": 1e-3,
                "batch_size": 256, "epochs": 30, "val_size": TOY_SPLITS[1]}
# images: Adam 3e-4, since at 1e-3 the default realnvp spiked in its third epoch on the full
# Fashion-MNIST (epoch train loss 32 bits/dim; validation 4.37 -> 5.29 bits/dim)
IMAGE_DEFAULTS = {"model": "realnvp", "flow_depth": 8, "flow_hidden": 512, "optimizer": "adam", "lr": 3e-4,
                  "batch_size": 128, "epochs": 20, "val_size": 5000}


REFUSES = {"regularizer": {
    "label_smoothing": "does not apply to flows: it smooths class labels; a density model has none",
    "augmentation": "does not apply to flows: crops and flips change the density being estimated (and the 2-D "
                    "points have no pixels)",
    "batchnorm": "does not apply to flows: a batch statistic inside the flow makes p(x) depend on the rest of the "
                 "batch (glow has actnorm instead); use dropout, l2, grad_clip or early_stopping"}}


def _toy_task(name: str, noise: float, description: str) -> Task:
    return Task(name, description, FAMILY, prepare, METRICS_2D, headline="nll", losses=("nll",),
                model_family=FAMILY, defaults={**TOY_DEFAULTS, "toy_noise": noise}, data=name,
                augment=Augment(pad=0, flip=False), check=check, memory=memory, refuses=REFUSES)


def _image_task(dataset: str, label: str) -> Task:
    return Task(f"{dataset}_flow", f"{label} density (normalizing flow)", FAMILY, prepare, METRICS_IMG,
                headline="bits_per_dim", losses=("nll",), model_family=FAMILY, defaults=dict(IMAGE_DEFAULTS),
                targets=(5.0, 4.5, 4.0), data=dataset, augment=Augment(pad=0, flip=False), check=check, memory=memory, refuses=REFUSES)


@TASKS.register
def two_moons() -> Task:
    """Two moons (noise 0.1; 10,000 train / 2,000 val / 10,000 test points); test NLL in nats vs a fitted Gaussian."""
    return _toy_task("two_moons", 0.1, "two moons density (normalizing flow)")


@TASKS.register
def rings() -> Task:
    """Two concentric rings, radius 1 and 2 (radial noise 0.1); test NLL in nats vs a fitted Gaussian."""
    return _toy_task("rings", 0.1, "two rings density (normalizing flow)")


@TASKS.register
def gaussian_mixture() -> Task:
    """8 Gaussians (std 0.2) on a circle of radius 2; test NLL in nats vs a fitted Gaussian."""
    return _toy_task("gaussian_mixture", 0.2, "8-Gaussian mixture density (normalizing flow)")


@TASKS.register
def fashion_mnist_flow() -> Task:
    """Fashion-MNIST density: realnvp (depth 8, hidden 512, Adam 3e-4, batch 128, 20 epochs), dequantised + logit (alpha 0.05); headline test bits/dim."""
    return _image_task("fashion_mnist", "Fashion-MNIST")


@TASKS.register
def mnist_flow() -> Task:
    """MNIST density: realnvp (depth 8, hidden 512, Adam 3e-4, batch 128, 20 epochs), dequantised + logit (alpha 0.05); headline test bits/dim."""
    return _image_task("mnist", "MNIST")


def memory(cfg) -> List[Need]:
    """The conditioner MLPs' weights (two hidden layers per coupling) with gradients and optimizer
    state: flow_depth x flow_hidden^2 dominates at the top of the ranges."""
    h, depth = cfg.flow_hidden or 0, cfg.flow_depth or 0
    d = 2 if cfg.task in ("two_moons", "rings", "gaussian_mixture") else 28 * 28
    weights = float(depth) * (h * h + 3 * d * h)
    return [("flow_hidden", PARAM_BYTES * weights, f"{depth} couplings' conditioners, about {weights:,.0f} weights")]


@MEDIA.register(name=FAMILY)
def media(run_dir, summary) -> List[Media]:
    """2-D: the model's samples over the test points, and its log-density on the grid; images:
    samples at each temperature (the same latents, scaled) beside real test images."""
    ex = arrays(run_dir, summary, SAMPLES)
    if ex is None:
        return []
    if "log_density" in ex and {"grid_x", "grid_y", "samples", "data"} <= set(ex):
        lo = np.array([ex["grid_x"][0], ex["grid_y"][0]])
        hi = np.array([ex["grid_x"][-1], ex["grid_y"][-1]])
        return [Media("samples", Image(scatter([ex["data"], ex["samples"]], lo, hi),
                                       "test points (blue), model samples (orange)")),
                Media("log_density", Image(heatmap(ex["log_density"][::-1]), "log-density on the grid, light high"))]
    out = []
    if "data" in ex:
        out.append(Media("real", Image(tile(ex["data"]), "real test images")))
    rows = tuple((float(t), Image(tile(ex[k]), f"temperature {t:g}"))
                 for t in ex.get("temperatures", ()) for k in [f"samples_t{t:g}".replace(".", "")] if k in ex)
    if rows:
        out.append(Media("samples_by_temperature", Table(("temperature", "samples"), rows)))
    return out
