"""Autoencoder workloads for the benchmark (dl2bench.benchmark)."""
from __future__ import annotations

from ..base import WORKLOADS, Workload


@WORKLOADS.register
def fashion_mnist_conv_ae() -> Workload:
    """Fashion-MNIST reconstruction, the convolutional autoencoder (32-number code)."""
    return Workload("fashion_mnist_ae", {"model": "conv_ae", "code_size": 32, "optimizer": "adam", "lr": 0.001,
                                         "batch_size": 256},
                    {"smoke": {"epochs": 3, "train_size": 4000, "val_size": 1000, "test_size": 2000},
                     "laptop": {"epochs": 5, "train_size": 20000}, "full": {"epochs": 20}},
                    source="the task's known-good setting (Adam 1e-3, batch 256: dl2bench fashion_mnist_ae defaults)")
