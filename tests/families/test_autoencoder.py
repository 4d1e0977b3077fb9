"""The autoencoder family on generated real-format data: models and their parameter counts,
reconstruction that beats the mean image, denoising that corrupts the input only, MSE and BCE
both logged, the one-class anomaly protocol and its AUROC (against torchmetrics and a pair
count), resume, weights, and bad input."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dl2bench import runs
from dl2bench.config import ConfigError, RunConfig
from dl2bench.families import MODELS
from dl2bench.families.autoencoder import task as AE
from dl2bench.nets import count_parameters
from dl2bench.train import run
from helpers import assert_cli_refuses

AE_MODELS = [n for n in MODELS.names() if MODELS.meta(n).get("family") == "autoencoder"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ae(tiny):
    return {**tiny, "task": "fashion_mnist_ae", "model": "dense_ae", "code_size": 16, "lr": 1e-3, "batch_size": 16,
            "epochs": 8}


def rows(out: Path):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", AE_MODELS)
def test_parameter_count_is_the_documented_one(name):
    documented = re.search(r"m=32 on 28x28: ([\d,]+) parameters", MODELS.doc(name))
    assert documented, f"{name}: its docstring states no parameter count"
    assert count_parameters(MODELS[name]((1, 28, 28), 32)) == int(documented.group(1).replace(",", ""))


@pytest.mark.parametrize("name", AE_MODELS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_reconstruction_has_the_input_shape(name, shape):
    m = MODELS[name](shape, 8)
    assert m(torch.rand(2, *shape)).shape == (2, *shape)
    assert m.encode(torch.rand(2, *shape)).shape == (2, 8)


@pytest.mark.parametrize("name", AE_MODELS)
@pytest.mark.parametrize("switches", [{"dropout": 0.3}, {"batchnorm": True}], ids=["dropout", "bn"])
def test_regulariser_switches_reach_the_model(name, switches):
    kinds = {type(m).__name__: m for m in MODELS[name]((1, 28, 28), 8, **switches).modules()}
    if "batchnorm" in switches:
        assert {"BatchNorm1d", "BatchNorm2d"} & set(kinds)
    else:
        assert kinds["Dropout"].p == 0.3
    assert not {"BatchNorm1d", "BatchNorm2d", "Dropout"} & {type(m).__name__ for m in MODELS[name]((1, 28, 28), 8).modules()}


@pytest.mark.parametrize("model", AE_MODELS)
@pytest.mark.slow  # trains until it beats a baseline
def test_autoencoder_beats_the_mean_image(ae, tmp_path, model):
    s = run({**ae, "model": model}, tmp_path)
    assert s["status"] == "finished", s.get("error")
    from dl2bench import data as D

    splits = D.make_splits(D.load("fashion_mnist"), 100)
    train = splits.train[0].float() / 255
    test = splits.test[0].float() / 255
    mean_image_mse = (test - train.mean(0)).pow(2).mean().item()
    assert s["test_mse"] < 0.5 * mean_image_mse
    r = rows(tmp_path)
    assert r[-1]["val_mse"] < r[0]["val_mse"]
    # both losses are measured whichever trains
    assert {"train_mse", "train_bce", "val_mse", "val_bce"} <= set(r[-1])
    assert s["metrics"]["loss"]["unit"] == "MSE" and s["test_loss"] == s["test_mse"]


def test_bce_trains_and_mse_is_still_reported(ae, tmp_path):
    s = run({**ae, "loss": "bce"}, tmp_path)
    assert s["status"] == "finished" and s["test_loss"] == s["test_bce"]
    assert s["metrics"]["loss"]["unit"] == "nats/pixel" and s["test_mse"] < 0.05


def test_corruption_stays_in_the_pixel_box():
    x = torch.rand(64, 1, 28, 28)
    g = AE.corrupt(x, "gaussian", 0.5, torch.Generator().manual_seed(0))
    assert g.min() >= 0 and g.max() <= 1 and not torch.equal(g, x)
    m = AE.corrupt(x, "masking", 0.3, torch.Generator().manual_seed(0))
    zeroed = ((m == 0) & (x != 0)).float().mean().item()
    assert 0.27 < zeroed < 0.33 and torch.equal(m[m != 0], x[m != 0])
    assert AE.corrupt(x, "gaussian", 0.0) is x


def test_denoising_corrupts_the_input_only(ae, tmp_path):
    """examples.npz: `original` is the clean test image, `noisy` the model's input, and the model
    learnt to output something closer to the clean image than its noisy input is."""
    s = run({**ae, "noise": "masking", "noise_level": 0.5, "epochs": 8}, tmp_path)
    ex = np.load(tmp_path / "examples.npz")
    orig, noisy, recon = (ex[k].astype(float) / 255 for k in ("original", "noisy", "reconstructed"))
    assert orig.shape == noisy.shape == recon.shape == (8, 1, 28, 28)
    assert not np.array_equal(orig, noisy)
    assert ((recon - orig) ** 2).mean() < ((noisy - orig) ** 2).mean()
    # validation is corrupted with a fixed generator: two evaluations of one model agree exactly
    assert s["status"] == "finished"

    from dl2bench.regularizers import REGULARIZERS
    cfg = RunConfig.from_dict({**ae, "noise": "masking", "noise_level": 0.5}).resolve()
    task = AE.TASKS[cfg.task]()
    p = task.prepare(task, cfg, torch.device("cpu"), REGULARIZERS["none"](cfg))
    import contextlib

    a = p.evaluate(p.model, "val", contextlib.nullcontext)
    b = p.evaluate(p.model, "val", contextlib.nullcontext)
    assert a == b


def test_denoising_run_resumes_bit_identically(ae, tmp_path, killed_then_resumed):
    """The training noise is drawn from the checkpointed RNG: a killed run resumes exactly."""
    cfg = {**ae, "noise": "gaussian", "noise_level": 0.3, "epochs": 3, "deterministic": True}
    full = run(cfg, tmp_path / "full")
    resumed = killed_then_resumed(cfg, tmp_path / "cut", at=2)
    cols = ["train_loss", "val_mse", "val_bce"]
    assert pd.DataFrame(rows(tmp_path / "full"))[cols].equals(pd.DataFrame(rows(tmp_path / "cut"))[cols])
    assert resumed["test_mse"] == full["test_mse"]


# ---------------------------------------------------------------------------------------------
# anomaly detection

def pairwise_auroc(scores, positive):
    """The definition: P(score of a positive > score of a negative) + P(tie) / 2."""
    p, n = scores[positive], scores[~positive]
    greater = (p[:, None] > n[None, :]).double().mean()
    ties = (p[:, None] == n[None, :]).double().mean()
    return (greater + ties / 2).item()


def test_auroc_against_the_definition_and_torchmetrics():
    from torchmetrics.functional.classification import binary_auroc

    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        scores = torch.randint(0, 20, (300,), generator=g).double() / 20  # many ties; in [0, 1]: torchmetrics reads others as logits
        positive = torch.rand(300, generator=g) < 0.3
        ours = AE.auroc(scores, positive)
        assert ours == pytest.approx(pairwise_auroc(scores, positive), abs=1e-12)
        assert ours == pytest.approx(binary_auroc(scores, positive.long()).item(), abs=1e-6)
    assert AE.auroc(torch.tensor([0.1, 0.9]), torch.tensor([False, True])) == 1.0
    assert np.isnan(AE.auroc(torch.rand(5), torch.zeros(5, dtype=torch.bool)))


def test_one_class_protocol(tiny, tmp_path):
    """Trained on class 3 only (the generated images carry a class-specific stripe), the
    autoencoder reconstructs class 3 well and the other nine badly: AUROC well above chance."""
    s = run({**tiny, "task": "fashion_mnist_anomaly", "model": "dense_ae", "normal_class": 3, "epochs": 8,
             "lr": 1e-3, "batch_size": 16,
             "val_size": 10}, tmp_path)
    assert s["status"] == "finished", s.get("error")
    assert s["metric"] == "test_auroc" and s["monitor"] == "mse" and "best_val_mse" in s
    assert s["n_train"] == 50  # class 3 only: 60 of the 600 generated images, 10 for validation
    assert s["test_auroc"] > 0.9
    assert "val_auroc" not in rows(tmp_path)[-1]  # validation holds no anomalies


# ---------------------------------------------------------------------------------------------
# weights and bad input

def test_weights_reproduce_the_reconstructions(ae, tmp_path):
    run({**ae, "model": "conv_ae", "epochs": 2}, tmp_path)
    back = runs.load_weights(tmp_path)
    ex = np.load(tmp_path / "examples.npz")
    x = torch.from_numpy(ex["original"]).float() / 255
    with torch.no_grad():
        recon = (torch.sigmoid(back.model(x)).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(recon, ex["reconstructed"])


@pytest.mark.parametrize("bad,key", [
    ({"task": "fashion_mnist_ae", "code_size": 0}, "code_size"),
    ({"task": "fashion_mnist_anomaly", "normal_class": 10}, "normal_class"),
    ({"task": "fashion_mnist_anomaly", "normal_class": -1}, "normal_class"),
    ({"task": "fashion_mnist_ae", "normal_class": 2}, "normal_class"),
    ({"task": "fashion_mnist_ae", "noise": "salt"}, "noise"),
    ({"task": "fashion_mnist_ae", "noise": "masking", "noise_level": 1.0}, "noise_level"),
    ({"task": "fashion_mnist_ae", "noise_level": 1.5}, "noise_level"),
    ({"task": "fashion_mnist_ae", "loss": "dice"}, "loss"),
    ({"task": "fashion_mnist_ae", "model": "mlp"}, "model"),
    ({"task": "fashion_mnist_ae", "regularizer": "label_smoothing"}, "regularizer"),
    ({"task": "fashion_mnist", "code_size": 8}, "code_size"),
])
def test_bad_input_is_one_clear_error(bad, key, tmp_path):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        RunConfig.from_dict(bad).resolve()
    assert_cli_refuses(bad, key, tmp_path)
