"""Shared fixtures (the helpers they use are in helpers.py): tiny datasets written in the real
on-disk formats, so every test runs the real loading code; SLURM's presence."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import killed_at, learnable_images, make_cifar_pickles, make_idx_dataset, slurm_up, write_idx


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """No test reads the user's data or cache, or talks to W&B's servers."""
    monkeypatch.setenv("DL2BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    from dl2bench.data import datasets

    datasets._load.cache_clear()
    yield
    datasets._load.cache_clear()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root with MNIST, Fashion-MNIST (torchvision layout) and CIFAR-10 (pickles)."""
    root = tmp_path_factory.mktemp("data")
    make_idx_dataset(root / "MNIST" / "raw", seed=1)
    make_idx_dataset(root / "FashionMNIST" / "raw", seed=2)
    make_cifar_pickles(root / "cifar-10-batches-py", seed=3)
    return root


@pytest.fixture
def tiny(data_root, monkeypatch):
    """Config keys for a run of a second or so on the generated data."""
    monkeypatch.setenv("DL2BENCH_DATA", str(data_root))
    return {"task": "fashion_mnist", "model": "mlp", "epochs": 2, "batch_size": 32, "val_size": 100,
            "wandb": "disabled", "progress": "none", "threads": 1, "eval_batch_size": 256}


@pytest.fixture
def killed_then_resumed(monkeypatch):
    """run(cfg, out) killed at the start of epoch `at` (a KeyboardInterrupt: what a SLURM kill looks
    like to the loop, not an Exception), then run again to the end; returns the resumed summary."""
    from dl2bench.train import run

    def go(cfg, out, at):
        killed_at(monkeypatch, cfg, out, at)
        return run(cfg, out)

    return go


@pytest.fixture
def need_slurm():
    if not slurm_up():
        if os.environ.get("DL2BENCH_REQUIRE_SLURM") == "1":
            pytest.fail("no SLURM cluster: .ci/run starts one with ../shared/slurm/start-local-slurm.sh")
        pytest.skip("no SLURM cluster here (start one with ../shared/slurm/start-local-slurm.sh)")


@pytest.fixture(scope="module")
def job_env(tmp_path_factory):
    """Environment for jobs: a data root with a Fashion-MNIST-format dataset big enough to time."""
    root = tmp_path_factory.mktemp("jobdata")
    folder = root / "FashionMNIST" / "raw"
    folder.mkdir(parents=True)
    for prefix, n in (("train", 20000), ("t10k", 1000)):
        x, y = learnable_images(n, (28, 28), 11 + (prefix == "t10k"))
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y)
    return {"DL2BENCH_DATA": str(root), "DL2BENCH_CACHE": str(root / "cache"), "WANDB_MODE": "disabled"}


def pytest_collection_modifyitems(config, items):
    """A test on the local SLURM cluster is `cluster` and `slow`, by the fixtures it asks for: the
    fast tier (`-m "not slow"`) never waits for a scheduler."""
    for item in items:
        if {"need_slurm", "job_env"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.slow)
