"""Benchmark workloads (issue 25, point 1): each family declares what the benchmark trains, with a
known-good setting and a budget at three sizes; every one must be a valid run at every size."""
from __future__ import annotations

import pytest

from helpers import fake_run

# the list: at least these problems, one family each or more
REQUIRED = {"fashion_mnist_mlp", "cifar10_lenet", "fashion_mnist_conv_ae", "shapes_unet", "mouse_grid_qnet_conv",
            "cartpole_dqn", "fashion_mnist_dcgan", "two_moons_realnvp", "fashion_mnist_realnvp", "adding_lstm",
            "char_lm_transformer", "fashion_mnist_lenet_pgd"}


def test_the_required_workloads_exist_and_every_training_family_has_one():
    from dl2bench.families import TASKS, WORKLOADS, families

    assert REQUIRED <= set(WORKLOADS.names())
    covered = {TASKS[WORKLOADS[n]().task]().family for n in WORKLOADS.names()}
    training = {f for f in families() if any(TASKS[t]().family == f and TASKS[t]().trains for t in TASKS.names())}
    assert training <= covered, training - covered


@pytest.mark.parametrize("size", ["smoke", "laptop", "full"])
def test_every_workload_is_a_valid_run_at_every_size(tmp_path, size, monkeypatch):
    from dl2bench.config import RunConfig
    from dl2bench.families import WORKLOADS

    monkeypatch.setenv("DL2BENCH_SHARED_DATA", str(tmp_path / "nowhere"))  # validation reads no dataset
    features = fake_run(tmp_path, "features0001", task="fashion_mnist")
    for name in WORKLOADS.names():
        w = WORKLOADS[name]()
        cfg = w.config(size)
        cfg.update({k: str(features) for k in w.needs})  # a GAN scores in a classifier's features
        run = RunConfig.from_dict(cfg).resolve()
        for key, value in w.settings.items():  # the known-good setting is what runs, not a task default
            assert getattr(run, key) == value, (name, key)
        smaller = [k for k in ("epochs", "epoch_steps", "lm_steps", "train_size") if k in w.budgets["full"]]
        assert smaller, f"{name}: the full size sets no budget key"


def test_a_size_that_does_not_exist_says_which_do():
    from dl2bench.families import WORKLOADS

    with pytest.raises(KeyError, match="expected one of smoke, laptop, full"):
        WORKLOADS["fashion_mnist_mlp"]().config("huge")
