"""Normalizing-flow workloads for the benchmark (dl2bench.benchmark)."""
from __future__ import annotations

from ..base import WORKLOADS, Workload


@WORKLOADS.register
def two_moons_realnvp() -> Workload:
    """RealNVP on two moons (2-D density, test NLL in nats)."""
    return Workload("two_moons", {"model": "realnvp", "flow_depth": 8, "flow_hidden": 64, "optimizer": "adam",
                                  "lr": 0.001, "batch_size": 256},
                    {"smoke": {"epochs": 5, "train_size": 2000, "val_size": 500, "test_size": 2000},
                     "laptop": {"epochs": 10}, "full": {"epochs": 30}},
                    source="the task's known-good setting (dl2bench two_moons defaults)")


@WORKLOADS.register
def fashion_mnist_realnvp() -> Workload:
    """RealNVP on Fashion-MNIST (bits per dimension)."""
    return Workload("fashion_mnist_flow", {"model": "realnvp", "flow_depth": 8, "flow_hidden": 512,
                                           "optimizer": "adam", "lr": 0.0003, "batch_size": 128},
                    {"smoke": {"epochs": 2, "train_size": 2000, "val_size": 500, "test_size": 2000},
                     "laptop": {"epochs": 2, "train_size": 10000}, "full": {"epochs": 20}},
                    source="the task's known-good setting (dl2bench fashion_mnist_flow defaults)")
