"""Attacks: every perturbation in its ball and the pixel box; eps = 0 is the clean model exactly;
robust accuracy falls with eps and PGD is at least as strong as FGSM; FGSM and PGD agree with
foolbox 3.3.4 on the same model. The model is a real dl2bench run (weights left behind, loaded by
run id, normalisation put in front of it), trained on the tests' generated IDX files."""
from __future__ import annotations

import foolbox as fb  # a dev dependency: the cross-checks below are part of the suite
import pytest
import torch

from dl2bench import runs
from dl2bench.families.adversarial.attacks import ATTACKS, Threat, norms, pick_targets, project, random_in_ball
from dl2bench.train import run
from helpers import FASHION, need

EPS_LINF = (0.0, 0.02, 0.05, 0.1, 0.2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An MLP trained on real Fashion-MNIST (generated images are too easy to say anything about
    robustness), rebuilt from its weights as a pixel-space model, and 200 of its test images."""
    need(FASHION, "apt-get install dataset-fashion-mnist")
    out = tmp_path_factory.mktemp("victim")
    s = run({"task": "fashion_mnist", "model": "mlp", "epochs": 2, "train_size": 10000, "data_root": "",
             "wandb": "disabled", "progress": "none", "threads": 1, "seed": 0}, out)
    assert s["status"] == "finished" and s["test_acc"] > 0.75, s
    t = runs.load_weights(out)
    from dl2bench import data as D

    raw = D.load("fashion_mnist", "", False)
    x = raw.test_x[:200].float() / 255
    y = raw.test_y[:200].long()
    assert acc(t.pixel_model(), x, y) == pytest.approx(s["test_acc"], abs=0.08)  # the same model, in pixels
    return t.pixel_model(), x, y


def acc(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", ["fgsm", "pgd"])
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_perturbation_stays_in_ball_and_box(trained, name, norm, targeted):
    model, x, y = trained
    eps = 0.1 if norm == "linf" else 1.5
    g = torch.Generator().manual_seed(0)
    target = pick_targets(y, 10, g) if targeted else None
    adv = ATTACKS[name](model, x, y, Threat(norm=norm, eps=eps, steps=5, restarts=2, targeted=targeted),
                        target=target, generator=g)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert adv.min() >= 0 and adv.max() <= 1
    assert norms(adv - x, norm).max().item() <= eps + 1e-6
    assert acc(model, adv, y) < acc(model, x, y)  # it did something


def test_eps_zero_is_clean_accuracy_exactly(trained):
    model, x, y = trained
    for name in ("fgsm", "pgd"):
        for norm in ("linf", "l2"):
            adv = ATTACKS[name](model, x, y, Threat(norm=norm, eps=0.0, steps=3), generator=torch.Generator())
            assert torch.equal(adv, x), (name, norm)


def test_robust_accuracy_falls_with_eps_and_pgd_beats_fgsm(trained):
    model, x, y = trained
    fg, pg = [], []
    for eps in EPS_LINF:
        fg.append(acc(model, ATTACKS["fgsm"](model, x, y, Threat(eps=eps)), y))
        pg.append(acc(model, ATTACKS["pgd"](model, x, y, Threat(eps=eps, steps=10), generator=torch.Generator().manual_seed(1)), y))
    assert fg[0] == pg[0] == acc(model, x, y)
    assert all(a >= b for a, b in zip(pg, pg[1:])), pg
    assert fg[-1] < fg[0]
    assert all(p <= f for p, f in zip(pg, fg)), (pg, fg)
    assert pg[-1] < 0.1 * pg[0]  # eps 0.2 in l-inf breaks an undefended MLP


def test_targeted_attack_reaches_its_targets(trained):
    model, x, y = trained
    g = torch.Generator().manual_seed(0)
    t = pick_targets(y, 10, g)
    assert not (t == y).any()
    adv = ATTACKS["pgd"](model, x, y, Threat(eps=0.3, steps=20, targeted=True), target=t, generator=g)
    with torch.no_grad():
        assert (model(adv).argmax(1) == t).float().mean() > 0.8


def test_restarts_never_weaken_pgd(trained):
    model, x, y = trained
    th = dict(eps=0.05, steps=5)
    one = acc(model, ATTACKS["pgd"](model, x, y, Threat(**th, restarts=1), generator=torch.Generator().manual_seed(3)), y)
    five = acc(model, ATTACKS["pgd"](model, x, y, Threat(**th, restarts=5), generator=torch.Generator().manual_seed(3)), y)
    assert five <= one


def test_projection_and_random_start_geometry():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(64, 1, 8, 8, generator=g) * 3
    for norm, eps in (("linf", 0.1), ("l2", 0.5)):
        p = project(d, norm, eps)
        assert torch.allclose(norms(p, norm), torch.full((64,), eps), atol=1e-5)  # all were outside
        inside = d * 1e-3
        assert torch.equal(project(inside, "linf", eps), inside)
        r = random_in_ball(d, norm, eps, g)
        assert norms(r, norm).max() <= eps + 1e-6 and norms(r, norm).min() > 0
    with pytest.raises(ValueError, match="norm 'l1'"):
        Threat(norm="l1")


# ---- cross-check against foolbox 3.3.4 (a dev dependency) -------------------------------------
@pytest.mark.parametrize("eps", [0.03, 0.1])
def test_fgsm_matches_foolbox(trained, eps):
    model, x, y = trained
    ours = ATTACKS["fgsm"](model, x, y, Threat(eps=eps))
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    _, theirs, _ = fb.attacks.FGSM()(fmodel, x, y, epsilons=eps)
    with torch.no_grad():
        assert torch.equal(model(ours).argmax(1), model(theirs).argmax(1))
    assert (ours - theirs).abs().max() < 1e-5


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_without_random_start_matches_foolbox(trained, norm):
    model, x, y = trained
    eps, steps = (0.05, 10) if norm == "linf" else (1.0, 10)
    step = 2.5 * eps / steps
    ours = ATTACKS["pgd"](model, x, y, Threat(norm=norm, eps=eps, steps=steps, step_size=step, random_start=False))
    attack = (fb.attacks.LinfPGD if norm == "linf" else fb.attacks.L2PGD)(abs_stepsize=step, steps=steps,
                                                                          random_start=False)
    _, theirs, _ = attack(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=eps)
    assert abs(acc(model, ours, y) - acc(model, theirs, y)) <= 0.01


def test_linf_random_start_is_uniform_reproducible_and_inside_the_ball():
    g = torch.Generator().manual_seed(3)
    like = torch.zeros(200_000)
    eps = 0.3
    r = random_in_ball(like, "linf", eps, g)
    assert r.abs().max() < eps and r.dtype == like.dtype
    assert abs(r.mean()) < 0.003 and abs(r.std() - eps / 3 ** 0.5) < 0.002  # uniform on [-eps, eps]
    counts = torch.histc(r, bins=10, min=-eps, max=eps)
    assert (counts - 20_000).abs().max() < 1_000  # flat: ~5 binomial sds
    assert len(r.unique()) > 50_000  # tens of thousands of distinct values, not a few levels
    assert torch.equal(r, random_in_ball(like, "linf", eps, torch.Generator().manual_seed(3)))
    assert not torch.equal(r, random_in_ball(like, "linf", eps, g))  # the generator moved on
    x = torch.rand(1000)
    a = random_in_ball(x, "linf", eps, torch.Generator().manual_seed(4), around=x)
    assert torch.allclose(a - x, random_in_ball(x, "linf", eps, torch.Generator().manual_seed(4)), atol=1e-6)
