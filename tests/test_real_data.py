"""The real datasets this machine has offline (../shared/data/README.md): Fashion-MNIST from
Debian's package and CIFAR-10 (JPEG) from the shared tar. CI installs both and sets
DL2BENCH_REQUIRE_REAL_DATA=1, so there a missing dataset fails instead of skipping."""
from __future__ import annotations

import pytest
import torch

from dl2bench import data as D
from dl2bench.train import run
from helpers import FASHION, SHARED, need

pytestmark = pytest.mark.slow  # trains on the real Fashion-MNIST and CIFAR-10 files


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    # decoding 60,000 JPEGs takes about a minute: once per module, not per test
    return tmp_path_factory.mktemp("real-cache")


def test_fashion_mnist_real_files(monkeypatch, tmp_path):
    need(FASHION, "apt-get install dataset-fashion-mnist")
    monkeypatch.chdir(tmp_path)
    raw = D.IMAGE_DATASETS["fashion_mnist"]("", False)
    assert raw.train_x.shape == (60000, 1, 28, 28) and raw.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(raw.train_y).tolist() == [6000] * 10
    assert torch.bincount(raw.test_y).tolist() == [1000] * 10


def test_fashion_mnist_mlp_learns(monkeypatch, tmp_path):
    need(FASHION, "apt-get install dataset-fashion-mnist")
    monkeypatch.chdir(tmp_path)
    s = run({"task": "fashion_mnist", "model": "mlp", "epochs": 2, "train_size": 20000, "wandb": "disabled",
             "progress": "none"}, tmp_path / "out")
    assert s["status"] == "finished" and s["test_acc"] > 0.78, s
    assert s["data_source"] == f"Fashion-MNIST: {FASHION}" and s["n_train"] == 20000


def test_cifar10_jpeg_real_tar(monkeypatch, tmp_path, real_cache):
    need(SHARED / "cifar10-jpeg.tar.gz", "the shared CIFAR-10 (JPEG) tar")
    monkeypatch.setenv("DL2BENCH_CACHE", str(real_cache))
    monkeypatch.setenv("DL2BENCH_DATA", str(SHARED))
    monkeypatch.chdir(tmp_path)
    raw = D.IMAGE_DATASETS["cifar10"]("", False)
    assert raw.source.startswith("CIFAR-10 (JPEG)")
    assert raw.train_x.shape == (50000, 3, 32, 32) and raw.test_x.shape == (10000, 3, 32, 32)
    assert raw.classes == D.CIFAR10_CLASSES
    assert torch.bincount(raw.train_y).tolist() == [5000] * 10
    # real photographs, not noise: channel means near CIFAR-10's published ones (0.49, 0.48, 0.45)
    mean = raw.train_x[::10].float().mean(dim=(0, 2, 3)) / 255  # every class: files are in class order
    assert torch.allclose(mean, torch.tensor([0.49, 0.48, 0.45]), atol=0.03), mean
    s = run({"task": "cifar10", "model": "lenet", "epochs": 1, "train_size": 10000, "wandb": "disabled",
             "progress": "none"}, tmp_path / "out")
    assert s["status"] == "finished" and s["test_acc"] > 0.25, s


def test_autoencoders_on_real_data(monkeypatch, tmp_path, real_cache):
    """Fashion-MNIST and CIFAR-10 (JPEG) reconstruction beat the mean image after one short epoch;
    one-class anomaly detection on real trousers (class 1) is far above chance."""
    need(FASHION, "apt-get install dataset-fashion-mnist")
    need(SHARED / "cifar10-jpeg.tar.gz", "the shared CIFAR-10 (JPEG) tar")
    monkeypatch.setenv("DL2BENCH_CACHE", str(real_cache))
    monkeypatch.setenv("DL2BENCH_DATA", str(SHARED))
    monkeypatch.chdir(tmp_path)
    common = {"epochs": 2, "train_size": 5000, "test_size": 2000, "wandb": "disabled", "progress": "none"}
    for task, model in (("fashion_mnist_ae", "conv_ae"), ("cifar10_ae", "dense_ae")):
        s = run({**common, "task": task, "model": model}, tmp_path / task)
        raw = D.load(task.rsplit("_", 1)[0])
        mean_image_mse = (raw.test_x[:2000].float() / 255 - raw.train_x.float().mean(0) / 255).pow(2).mean().item()
        assert s["status"] == "finished" and s["test_mse"] < 0.6 * mean_image_mse, (task, s.get("test_mse"), mean_image_mse)
    s = run({**common, "task": "fashion_mnist_anomaly", "normal_class": 1, "train_size": 0, "epochs": 3},
            tmp_path / "anomaly")
    assert s["status"] == "finished" and s["test_auroc"] > 0.9, s.get("test_auroc")
