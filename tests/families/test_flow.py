"""Normalizing flows: invertibility, the log-determinant against autograd's Jacobian, a density that
integrates to 1, bits/dim by hand, the toy densities pinned, two moons beating the fitted Gaussian,
a tiny real Fashion-MNIST run, non-finite log-likelihoods counted (never dropped), resume, the
report's figures and bad input refused before anything is written."""
from __future__ import annotations

import hashlib
import json
import math
import re

import numpy as np
import pytest
import torch

from dl2bench.config import RunConfig
from dl2bench.families import MODELS, TASKS
from dl2bench.families.flow import task as FL
from dl2bench.nets import count_parameters
from dl2bench.regularizers import REGULARIZERS
from dl2bench.train import run
from helpers import FASHION, assert_cli_refuses, need

FAST = {"wandb": "disabled", "progress": "none", "threads": 1, "save_weights": False}
FLOWS = ("realnvp", "glow")
SHAPES = [(2,), (1, 28, 28)]


def shaken(name, shape, depth=4, hidden=32, std=0.05, seed=0):
    """A flow that is not the identity: the zero-initialised last layers get random weights (and
    glow's actnorm its data-dependent init from one batch); in eval mode."""
    torch.manual_seed(seed)
    m = MODELS[name](shape, depth, hidden)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(std * torch.randn_like(p))
        m.train()
        m(torch.randn(64, *shape) * 1.5 + 0.3)  # actnorm initialises here
    return m.eval()


@pytest.mark.parametrize("name", FLOWS)
def test_parameter_counts_match_the_docstrings(name):
    doc = " ".join(MODELS.doc(name).split())
    for shape, depth, hidden, label in (((2,), 8, 64, "2-D, depth 8, hidden 64"),
                                        ((1, 28, 28), 8, 512, "1x28x28, depth 8, hidden 512")):
        documented = re.search(rf"{label}: ([\d,]+) parameters", doc)
        assert documented, f"{name}: no count for {label}"
        assert count_parameters(MODELS[name](shape, depth, hidden)) == int(documented.group(1).replace(",", ""))


@pytest.mark.parametrize("name", FLOWS)
@pytest.mark.parametrize("shape", SHAPES, ids=["2d", "image"])
def test_inverse_undoes_forward(name, shape):
    m = shaken(name, shape)
    x = torch.randn(16, *shape)
    with torch.no_grad():
        z, logdet = m(x)
        back = m.inverse(z)
    assert z.shape == x.shape and logdet.shape == (16,)
    assert not torch.allclose(z, x, atol=1e-2)  # not the identity
    assert torch.allclose(back, x, atol=1e-4), (back - x).abs().max()
    assert torch.allclose(m.log_prob(x), -0.5 * (z.flatten(1).pow(2).sum(1) + x[0].numel() * math.log(2 * math.pi)) + logdet)


@pytest.mark.parametrize("name", FLOWS)
def test_logdet_is_autograds_log_abs_det_jacobian(name):
    m = shaken(name, (2,), std=0.3)
    x = torch.randn(12, 2) * 1.5
    _, logdet = m(x)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: m(v[None])[0][0], x[i])
        sign, want = torch.linalg.slogdet(jac)
        assert sign != 0 and abs(want.item() - logdet[i].item()) < 1e-4, (i, want.item(), logdet[i].item())
    assert logdet.std() > 1e-3  # a volume change that varies with x: a real test


def grid_mass(m, half_width=10.0, n=500):
    xs = torch.linspace(-half_width, half_width, n)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    with torch.no_grad():
        lp = m.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1))
    return float(torch.exp(lp.double()).sum() * (xs[1] - xs[0]) ** 2)


@pytest.fixture
def one_thread():
    """Training outside the loop: one thread, as the runs here use (two oversubscribed OpenMP threads
    on a busy 2-core machine run ~10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", FLOWS)
@pytest.mark.slow  # trains flows, then a dense grid
def test_density_integrates_to_one(name, one_thread):
    """On a 2-D grid: an untrained (shaken) flow, and one trained for 300 steps on two moons. A
    flow shaken harder spreads mass beyond the grid: there the grid's mass must equal the share of
    its samples F⁻¹(z) that land in the grid (Monte Carlo, 20,000 samples)."""
    wide = shaken(name, (2,), std=0.3)
    inside = (wide.sample(20000, generator=torch.Generator().manual_seed(0)).abs() <= 10).all(1).float().mean()
    assert inside < 0.99 and abs(grid_mass(wide) - inside.item()) < 0.01
    m = shaken(name, (2,), std=0.1)
    assert abs(grid_mass(m) - 1) < 0.005
    x, _, _ = FL.toy_sets("two_moons", 0.1, 0, (2000, 1, 1))
    m.train()
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    torch.manual_seed(1)
    for _ in range(300):
        loss = -m.log_prob(x[torch.randint(0, len(x), (256,))]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    assert loss.item() < 1.6  # it learnt something: a fitted Gaussian scores ~1.9 here
    assert abs(grid_mass(m) - 1) < 0.005


def test_bits_per_dim_by_hand():
    """The dequantised, logit-transformed NLL in bits/dim, computed here in float64 from the
    formulas, against dequantise() + the flow; and the course's form nll_[0,1) / (D ln 2) + 8."""
    m = shaken("realnvp", (1, 28, 28), depth=2, hidden=16)
    x01 = torch.randint(0, 256, (4, 1, 28, 28)).float() / 255
    alpha, d = 0.05, 784
    v, logdet = FL.dequantise(x01, alpha, torch.Generator().manual_seed(3))
    with torch.no_grad():
        nll = -(m.log_prob(v) + logdet).double()
    # by hand
    u = torch.rand(x01.shape, generator=torch.Generator().manual_seed(3)).double()
    pix = torch.round(x01.double() * 255)
    s = alpha + (1 - 2 * alpha) * (pix + u) / 256
    v64 = torch.log(s / (1 - s))
    assert torch.allclose(v.double(), v64, atol=1e-5)
    with torch.no_grad():
        z, ld = m(v64.float())
    log_q = -0.5 * (z.double().flatten(1).pow(2).sum(1) + d * math.log(2 * math.pi)) + ld.double()
    dv_dy = (1 - 2 * alpha) / (s * (1 - s))  # y = (pixel + u) / 256 in [0, 1)
    nll01 = -(log_q + torch.log(dv_dy).flatten(1).sum(1))
    bpd_course = nll01 / (d * math.log(2)) + 8
    assert torch.allclose(nll, nll01 + d * math.log(256), rtol=1e-5)
    assert torch.allclose(torch.tensor([FL.bits_per_dim(float(n), d) for n in nll]).double(), bpd_course, rtol=1e-5)


def test_toy_densities_are_pinned():
    """torch's CPU generator: the same points on every machine."""
    h = hashlib.sha256()
    for name in FL.GENERATORS:
        train, val, test = FL.toy_sets(name, 0.1, 0, (64, 16, 32))
        assert train.shape == (64, 2) and val.shape == (16, 2) and test.shape == (32, 2)
        h.update(train.numpy().tobytes() + val.numpy().tobytes() + test.numpy().tobytes())
    assert h.hexdigest()[:16] == PINNED, h.hexdigest()[:16]
    # test drawn first: a larger training set leaves the test set alone
    assert torch.equal(FL.toy_sets("rings", 0.1, 0, (500, 16, 32))[2], FL.toy_sets("rings", 0.1, 0, (64, 16, 32))[2])
    r = FL.make_rings(20000, 0.01, torch.Generator().manual_seed(0)).norm(dim=1)
    assert abs((r - 1).abs().lt(0.05).float().mean().item() - 0.5) < 0.02 and r.gt(2.1).sum() == 0
    g = FL.make_gaussian_mixture(8000, 0.01, torch.Generator().manual_seed(0))
    assert torch.allclose(g.norm(dim=1).mean(), torch.tensor(2.0), atol=0.01)


PINNED = "99d20a0452a4b5f5"


def test_two_moons_beats_the_fitted_gaussian(tmp_path):
    s = run({**FAST, "task": "two_moons", "epochs": 12, "train_size": 4000, "val_size": 500, "test_size": 4000},
            tmp_path / "moons")
    assert s["status"] == "finished", s.get("error")
    assert 1.7 < s["gaussian_nll"] < 2.1  # a Gaussian over the moons' spread
    assert s["test_nll"] < s["gaussian_nll"] - 0.4, (s["test_nll"], s["gaussian_nll"])
    assert s["test_nonfinite"] == 0 and s["test_loss"] == s["test_nll"]
    assert abs(s["grid_mass"] - 1) < 0.02  # the learnt density, summed over the report's grid
    z = np.load(tmp_path / "moons" / FL.SAMPLES)
    assert z["samples"].shape == (FL.N_SAMPLES_2D, 2) and z["log_density"].shape == (FL.GRID, FL.GRID)
    assert np.isfinite(z["samples"]).all()
    # the baseline is the Gaussian fitted to the training points, scored on the test points
    train, _, test = FL.toy_sets("two_moons", 0.1, 0, (4000, 500, 4000))
    mean, cov = train.double().mean(0), torch.cov(train.double().T, correction=0)
    want = -torch.distributions.MultivariateNormal(mean, cov).log_prob(test.double()).mean().item()
    assert s["gaussian_nll"] == pytest.approx(want, rel=1e-9)


def test_tiny_fashion_mnist_flow_on_the_real_data(tmp_path):
    need(FASHION, "apt-get install dataset-fashion-mnist")
    s = run({**FAST, "task": "fashion_mnist_flow", "data_root": str(FASHION.parent), "epochs": 1,
             "train_size": 1024, "val_size": 256, "test_size": 256, "flow_depth": 4, "flow_hidden": 64,
             "model": "glow"}, tmp_path / "fm")
    assert s["status"] == "finished", s.get("error")
    assert s["test_nonfinite"] == 0 and 3.0 < s["test_bits_per_dim"] < 8.0, s["test_bits_per_dim"]
    assert s["test_bits_per_dim"] == pytest.approx(s["test_nll"] / (784 * math.log(2)))
    assert s["logit_alpha"] == 0.05 and "256" in s["dequantisation"] and "Fashion-MNIST" in s["data_source"]
    z = np.load(tmp_path / "fm" / FL.SAMPLES)
    assert z["samples_t1"].shape == z["samples_t07"].shape == (FL.N_SAMPLES_IMG, 1, 28, 28)
    assert z["samples_t1"].dtype == np.uint8 and z["data"].shape[1:] == (1, 28, 28)


def test_nonfinite_log_likelihoods_are_counted_not_dropped():
    cfg = RunConfig.from_dict({**FAST, "task": "two_moons", "train_size": 200, "val_size": 50, "test_size": 50,
                               "flow_depth": 2, "flow_hidden": 8}).resolve()
    task = TASKS["two_moons"]()
    p = task.prepare(task, cfg, torch.device("cpu"), REGULARIZERS["none"](cfg))
    good = torch.randn(5, 2)
    fine = FL.points_nll(p.model, FL.PointBatches(good, 4, "cpu", False))
    assert fine["nonfinite"] == 0 and math.isfinite(fine["nll"])
    inf = torch.cat([good, torch.tensor([[1e30, 0.0]])])  # z² overflows: log p = -inf
    out = FL.points_nll(p.model, FL.PointBatches(inf, 4, "cpu", False))
    assert out["nonfinite"] == 1 and out["nll"] == math.inf  # the mean over all 6, not the 5 finite ones
    nan = torch.cat([inf, torch.tensor([[math.nan, 0.0]])])
    out = FL.points_nll(p.model, FL.PointBatches(nan, 4, "cpu", False))
    assert out["nonfinite"] == 2 and math.isnan(out["nll"])


def test_resume_after_a_kill_gives_identical_rows(tmp_path, killed_then_resumed):
    """glow: its actnorm's data-dependent init is part of the checkpoint."""
    cfg = {**FAST, "task": "rings", "model": "glow", "flow_depth": 3, "flow_hidden": 16, "epochs": 3,
           "train_size": 1000, "val_size": 200, "test_size": 200, "deterministic": True}
    full = run(cfg, tmp_path / "full")
    resumed = killed_then_resumed(cfg, tmp_path / "cut", at=3)
    rows = [[json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("full", "cut")]
    cols = ("train_loss", "val_nll", "val_nonfinite")
    assert [[r[c] for c in cols] for r in rows[0]] == [[r[c] for c in cols] for r in rows[1]]
    assert resumed["test_nll"] == full["test_nll"] and resumed["resumes"] == 1


def test_report_draws_samples_densities_and_the_table(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from reports import render
    from reports.analysis import analyse_tasks
    from reports.load import load_folders

    for depth in (2, 4):
        cfg = RunConfig.from_dict({**FAST, "task": "two_moons", "flow_depth": depth, "flow_hidden": 16, "epochs": 1,
                                   "train_size": 500, "val_size": 100, "test_size": 500}).resolve()
        run(cfg, tmp_path / "toy" / cfg.run_id())
    parts = analyse_tasks(load_folders([tmp_path / "toy"]))
    with render.style():
        doc = render.document(parts)
    blocks = {b.key: b for s in doc.sections for b in s.blocks}
    assert any(k.endswith("flow-samples-1") for k in blocks) and any(k.endswith("flow-density-1") for k in blocks)
    table = next(b for k, b in blocks.items() if k.endswith("flow-nll"))
    assert len(table.df) == 2 and any("Gaussian" in c for c in table.df.columns)


@pytest.mark.parametrize("config,key", [
    ({"task": "two_moons", "flow_depth": 0}, "flow_depth"),
    ({"task": "fashion_mnist_flow", "logit_alpha": 0.5}, "logit_alpha"),
    ({"task": "two_moons", "regularizer": "label_smoothing"}, "regularizer"),
    ({"task": "fashion_mnist_flow", "toy_noise": 0.1}, "toy_noise"),
    ({"task": "two_moons", "model": "dense_ae"}, "model"),
])
def test_bad_input_is_refused_before_anything_is_written(config, key, tmp_path):
    assert_cli_refuses(config, key, tmp_path)
