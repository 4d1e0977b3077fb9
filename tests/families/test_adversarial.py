"""The adversarial family: a `<dataset>_attack` run loads a finished classification run's weights by
run id, attacks its test set in pixel space and reports robust accuracy; its figures are the ones
the attack functions give on the same model; bad input is one clear error, exit 2, nothing written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dl2bench.runs import load_weights
from dl2bench import data as D
from dl2bench.config import ConfigError, RunConfig
from dl2bench.families.adversarial.attacks import ATTACKS, Threat
from dl2bench.train import run
from helpers import assert_cli_refuses

ROOT = Path(__file__).resolve().parents[2]
COMMON = {"wandb": "disabled", "progress": "none", "threads": 1}


@pytest.fixture(scope="module")
def victims(tmp_path_factory, data_root):
    """runs/<id> folders: a finished Fashion-MNIST mlp, a CIFAR-10 lenet, an autoencoder, and a
    classifier that left no weights."""
    runs = tmp_path_factory.mktemp("runs")
    out = {}
    for name, cfg in {"mlp": {"task": "fashion_mnist", "model": "mlp", "epochs": 3, "lr": 0.05},
                      "lenet": {"task": "cifar10", "model": "lenet", "epochs": 1},
                      "ae": {"task": "fashion_mnist_ae", "epochs": 1},
                      "noweights": {"task": "fashion_mnist", "model": "mlp", "epochs": 1, "seed": 5,
                                    "save_weights": False}}.items():
        c = RunConfig.from_dict({**COMMON, "val_size": 100, "data_root": str(data_root), **cfg}).resolve()
        s = run(c, runs / c.run_id())
        assert s["status"] == "finished", s
        out[name] = s["run_id"]
    return runs, out, data_root


def attack_cfg(victims, name="mlp", **kw):
    runs, ids, data_root = victims
    return {**COMMON, "task": "fashion_mnist_attack", "attack_run": ids[name][:8], "attack_from": str(runs),
            "data_root": str(data_root), **kw}


def test_attack_run_reports_what_the_attack_does(victims, tmp_path):
    runs, ids, _ = victims
    cfg = RunConfig.from_dict(attack_cfg(victims, attack="pgd", attack_eps=0.3, attack_steps=10,
                                         test_size=100)).resolve()
    assert cfg.model == "mlp" and cfg.epochs == 0  # the attacked run's model; no training
    s = run(cfg, tmp_path / "a")
    assert s["status"] == "finished" and s["family"] == "adversarial" and s["metric"] == "test_robust_acc"
    assert s["attacked_run"] == ids["mlp"] and s["epochs_completed"] == 0
    assert not (tmp_path / "a" / "model.pt").exists()  # an evaluation leaves no weights of its own
    # the same numbers by hand: the victim in pixel space, the first 100 test points, the same seed
    t = load_weights(runs / ids["mlp"])
    m = t.pixel_model()
    raw = D.load("fashion_mnist", str(victims[2]), False)
    x, y = raw.test_x[:100].float() / 255, raw.test_y[:100].long()
    with torch.no_grad():
        clean = (m(x).argmax(1) == y).float().mean().item()
    from dl2bench.families.adversarial.task import TARGET_SEED

    adv = ATTACKS["pgd"](m, x, y, Threat(eps=0.3, steps=10), generator=torch.Generator().manual_seed(TARGET_SEED))
    with torch.no_grad():
        robust = (m(adv).argmax(1) == y).float().mean().item()
    assert s["test_clean_acc"] == pytest.approx(clean, abs=1e-9)
    assert s["test_robust_acc"] == pytest.approx(robust, abs=1e-9)
    assert s["test_robust_acc"] < s["test_clean_acc"]
    assert 0 < s["test_mean_norm"] <= 0.3 + 1e-6
    assert s["attack_images_per_s"] > 0
    ex = np.load(tmp_path / "a" / "examples.npz")
    assert ex["original"].shape == ex["adversarial"].shape == (8, 1, 28, 28)
    assert np.abs(ex["perturbation"]).max() <= 0.3 + 1e-6
    assert json.loads((tmp_path / "a" / "config.json").read_text())["attack_run"] == ids["mlp"][:8]


def test_eps_zero_attack_is_the_clean_accuracy(victims, tmp_path):
    s = run(attack_cfg(victims, attack="fgsm", attack_eps=0.0, test_size=100), tmp_path / "z")
    assert s["test_robust_acc"] == s["test_clean_acc"] and s["test_success_rate"] == 0


def test_run_id_ignores_where_the_victim_lives(victims):
    runs = victims[0]
    a = RunConfig.from_dict(attack_cfg(victims)).run_id()
    b = RunConfig.from_dict({**attack_cfg(victims), "attack_from": f"/nowhere:{runs}"}).run_id()
    assert a == b


@pytest.mark.parametrize("change,key", [
    ({"attack_eps": 1.5}, "attack_eps"),
    ({"attack_eps": -0.1}, "attack_eps"),
    ({"norm": "l1"}, "norm"),
    ({"attack": "cw"}, "attack"),
    ({"attack_run": "feedbeefcafe"}, "attack_run"),
    ({"victim": "noweights"}, "attack_run"),
    ({"victim": "ae"}, "attack_run"),
    ({"victim": "lenet"}, "attack_run"),
    ({"epochs": 3}, "epochs"),
    ({"model": "lenet"}, "model"),
])
def test_bad_input_is_one_clear_error(victims, change, key, tmp_path):
    change = dict(change)
    bad = {**attack_cfg(victims, change.pop("victim", "mlp")), **change}
    with pytest.raises(ConfigError, match=f"^{key}: "):
        RunConfig.from_dict(bad).resolve()
    assert_cli_refuses(bad, key, tmp_path)


def test_an_attack_key_on_a_classifier_is_refused():
    with pytest.raises(ConfigError, match="^attack_eps: a setting of the adversarial family"):
        RunConfig.from_dict({"task": "fashion_mnist", "attack_eps": 0.1}).resolve()


# ---- attack sweeps ------------------------------------------------------------------------------
SUBMIT = ROOT / "jobs" / "submit.py"


@pytest.fixture(scope="module")
def trained_sweeps(tmp_path_factory, data_root):
    """A results root holding what attack_classifiers.yaml attacks: cifar_cnn/ (a lenet) and
    optimizers/ (a momentum MLP, an adam MLP, and an sgd MLP that its `where` leaves out)."""
    root = tmp_path_factory.mktemp("results")
    for sweep, cfg in [("cifar_cnn", {"task": "cifar10", "model": "lenet"}),
                       ("optimizers", {"task": "fashion_mnist", "model": "mlp", "optimizer": "momentum"}),
                       ("optimizers", {"task": "fashion_mnist", "model": "mlp", "optimizer": "adam", "lr": 0.001}),
                       ("optimizers", {"task": "fashion_mnist", "model": "mlp", "optimizer": "sgd"})]:
        c = RunConfig.from_dict({**COMMON, "epochs": 1, "val_size": 100, "data_root": str(data_root), **cfg}).resolve()
        assert run(c, root / sweep / c.run_id())["status"] == "finished"
    (root / "optimizers" / "unfinished").mkdir()  # a folder without a summary: not attackable
    (root / "optimizers" / "unfinished" / "config.json").write_text("{}")
    return root, data_root


def test_attack_sweep_expands_per_source(trained_sweeps):
    from dl2bench import sweep as S

    root, _ = trained_sweeps
    sw = S.load(ROOT / "sweeps" / "attack_classifiers.yaml", root=root)
    assert "attack" not in sw.wandb_config and "slurm" not in sw.wandb_config
    by_task = {}
    for r in sw.runs:
        by_task.setdefault(r.task, []).append(r)
    assert sorted(by_task) == ["cifar10_attack", "fashion_mnist_attack"]
    cifar, fashion = by_task["cifar10_attack"], by_task["fashion_mnist_attack"]
    assert len(cifar) == 2 * 6 and len(fashion) == 2 * 6 * 2  # attacks x eps x attacked runs
    assert {r.model for r in cifar} == {"lenet"} and max(r.attack_eps for r in cifar) == pytest.approx(16 / 255, abs=1e-6)
    assert max(r.attack_eps for r in fashion) == 0.3 and {r.attack_steps for r in fashion} == {40}
    assert {r.attack_from for r in fashion} == {str((root / "optimizers").resolve())}
    optimizers = {json.loads((root / "optimizers" / r.attack_run / "config.json").read_text())["optimizer"]
                  for r in fashion}
    assert optimizers == {"momentum", "adam"}
    assert len({r.run_id() for r in sw.runs}) == len(sw.runs)
    again = S.load(ROOT / "sweeps" / "attack_classifiers.yaml", root=root)
    assert [r.run_id() for r in again.runs] == [r.run_id() for r in sw.runs]


@pytest.mark.parametrize("block,message", [
    ("attack: {from: nothing_here}", "attack.from: 'nothing_here': no such folder"),
    ("attack: {from: optimizers, where: {optimizer: rmsprop}}", "holds no finished runs with trained weights"),
    ("attack: {from: optimizers, wher: {}}", "attack.wher: unknown key"),
    ("attack: {from: optimizers, where: {optimiser: adam}}", "unknown run config key 'optimiser'"),
    ("attack: [{from: optimizers, parameters: {attack_eps: {value: 2.0}}}]", "attack_eps: an l-inf radius"),
    ("attack: {from: optimizers}\nparameters_extra: 1", "unknown top-level key"),
])
def test_bad_attack_block_is_one_clear_error(trained_sweeps, tmp_path, block, message):
    root, _ = trained_sweeps
    text = ("name: bad\nmethod: grid\nparameters:\n  attack: {value: fgsm}\n" + block + "\n")
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    got = subprocess.run([sys.executable, str(SUBMIT), str(p), "--out", str(root), "--cluster", "debug"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert got.returncode == 2 and message in got.stderr, got.stderr
    assert "Traceback" not in got.stderr and not (root / "bad").exists()


def submit_local(trained_sweeps, tmp_path, text: str):
    """Write a sweep file and submit it in this process's executor against the trained sweeps;
    (the command line, its result)."""
    root, data_root = trained_sweeps
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    args = [sys.executable, str(SUBMIT), str(p), "--out", str(root), "--cluster", "debug", "--wait",
            "--set", f"data_root={data_root}", "--set", "threads=1", "--set", "wandb=disabled"]
    return args, subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600)


@pytest.mark.slow  # a whole attack sweep
def test_attack_sweep_runs_and_resubmit_launches_nothing(trained_sweeps, tmp_path):
    root, _ = trained_sweeps
    args, got = submit_local(trained_sweeps, tmp_path, """
name: atk
method: grid
parameters:
  attack: {values: [fgsm, pgd]}
  attack_steps: {value: 3}
attack:
  from: cifar_cnn
  parameters:
    attack_eps: {values: [0.0, 0.03]}
""")
    assert got.returncode == 0, got.stdout + got.stderr
    summaries = [json.loads(f.read_text()) for f in (root / "atk").glob("*/summary.json")]
    assert len(summaries) == 4 and all(s["status"] == "finished" for s in summaries)
    victim = next((root / "cifar_cnn").iterdir()).name
    assert {s["attacked_run"] for s in summaries} == {victim}
    by_eps = {}
    for f in (root / "atk").glob("*/summary.json"):
        c = json.loads((f.parent / "config.json").read_text())
        s = json.loads(f.read_text())
        by_eps.setdefault(c["attack_eps"], []).append(s)
    assert len(by_eps[0.0]) == 2 and all(s["test_robust_acc"] == s["test_clean_acc"] for s in by_eps[0.0])
    again = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert again.returncode == 0 and "\nnothing to submit: all 4 run(s)" in again.stdout and "evaluates 1 trained run(s) from " in again.stdout, again.stdout


# ---- adversarial training ---------------------------------------------------------------------
@pytest.mark.slow  # real Fashion-MNIST training
def test_pgd_training_buys_robustness_on_real_fashion_mnist(tmp_path):
    """Standard vs PGD-trained MLP (same seed, 10,000 real images, 2 epochs), both attacked by the
    same 10-step PGD at eps 0.1 on 1,000 test images: the robust one keeps far more."""
    from helpers import FASHION, need

    need(FASHION, "apt-get install dataset-fashion-mnist")
    base = {**COMMON, "task": "fashion_mnist", "model": "mlp", "epochs": 2, "train_size": 10000, "data_root": ""}
    out = {}
    for name, extra in {"standard": {}, "robust": {"adv_train": "pgd", "adv_steps": 5}}.items():
        c = RunConfig.from_dict({**base, **extra}).resolve()
        s = run(c, tmp_path / "runs" / c.run_id())
        assert s["status"] == "finished", s
        a = run({**COMMON, "task": "fashion_mnist_attack", "attack_run": c.run_id(), "attack_from": str(tmp_path / "runs"),
                 "attack_eps": 0.1, "attack_steps": 10, "test_size": 1000, "data_root": ""}, tmp_path / f"atk-{name}")
        out[name] = (s["test_acc"], a["test_robust_acc"])
    (std_clean, std_robust), (rob_clean, rob_robust) = out["standard"], out["robust"]
    assert std_robust < 0.25 and rob_robust > std_robust + 0.3, out  # measured: 0.135 vs 0.554
    assert rob_clean > 0.6 and std_clean > 0.75, out  # robustness costs some clean accuracy, not all


@pytest.mark.parametrize("bad,key", [
    ({"adv_train": "pgd", "adv_eps": 1.5}, "adv_eps"),
    ({"adv_train": "cw"}, "adv_train"),
    ({"adv_clean": 0.5}, "adv_train"),
    ({"adv_train": "pgd", "adv_steps": 0}, "adv_steps"),
    ({"task": "fashion_mnist_ae", "adv_train": "pgd"}, "adv_train"),
])
def test_bad_adversarial_training_input(bad, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        RunConfig.from_dict({"task": "fashion_mnist", **bad}).resolve()


# ---- the report over an attack sweep ------------------------------------------------------------
@pytest.mark.slow  # a whole report over an attack sweep
def test_attack_report_groups_by_the_attacked_models(trained_sweeps, tmp_path):
    """Attacks on the momentum, Adam and SGD MLPs: the report's factors are eps, the attack and the
    attacked runs' optimizer (from their configs; sgd, the attack task's own default, is a level
    like the others), never the attacked run's id; robust accuracy vs eps, the table at each eps
    and the adversarial examples are drawn."""
    import re

    from reports import build
    from reports.analysis import analyse_tasks
    from reports.load import load_folders

    root, _ = trained_sweeps
    _, got = submit_local(trained_sweeps, tmp_path, """
name: atkrep
method: grid
parameters:
  attack: {values: [fgsm, pgd]}
  attack_steps: {value: 3}
  attack_eps: {values: [0.0, 0.05, 0.2]}
attack:
  from: optimizers
""")
    assert got.returncode == 0, got.stdout + got.stderr
    (a,) = analyse_tasks(load_folders([root / "atkrep"]))
    names = {c for f in a.factors for c in f.columns}
    assert {"attack_eps", "attack", "evaluated.optimizer"} <= names and "attack_run" not in names, names
    opt = next(f for f in a.factors if "evaluated.optimizer" in f.columns)
    assert len(opt.levels) == 3 and any("sgd" in lvl for lvl in opt.levels), opt.levels
    assert a.metric == "test_robust_acc"
    out = tmp_path / "report"
    assert build.main([str(root / "atkrep"), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    ids = re.findall(r'<(?:figure|div class="table") id="([^"]+)"', html)
    for want in ("metric-vs-attack-eps", "robust-at-each-eps", "adversarial-examples-1"):
        assert any(want in i for i in ids), (want, ids)
    assert "Adversarial robustness" in html and "eps 0.05" in html
