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

from dl2bench import artifacts
from dl2bench import data as D
from dl2bench.attacks import ATTACKS, Threat
from dl2bench.config import ConfigError, RunConfig
from dl2bench.train import run

ROOT = Path(__file__).resolve().parents[1]
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
    t = artifacts.load_weights(runs / ids["mlp"])
    m = t.pixel_model()
    raw = D.load("fashion_mnist", str(victims[2]), False)
    x, y = raw.test_x[:100].float() / 255, raw.test_y[:100].long()
    with torch.no_grad():
        clean = (m(x).argmax(1) == y).float().mean().item()
    from dl2bench.tasks.adversarial import TARGET_SEED

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
    args = [a for k, v in bad.items() for a in (f"--{k}", str(v))]
    out = tmp_path / "out"
    got = subprocess.run([sys.executable, "-m", "dl2bench.train", *args, "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert got.returncode == 2 and got.stderr.startswith(f"error: {key}: "), got.stderr
    assert not out.exists() and "Traceback" not in got.stderr


def test_an_attack_key_on_a_classifier_is_refused():
    with pytest.raises(ConfigError, match="^attack_eps: a setting of the adversarial family"):
        RunConfig.from_dict({"task": "fashion_mnist", "attack_eps": 0.1}).resolve()
