"""GAN workloads for the benchmark (dl2bench.benchmark): scored by FID and precision/recall in the
features of the classifier sweeps/gan_features.yaml trains, which the benchmark runs first."""
from __future__ import annotations

from ..base import WORKLOADS, Workload


@WORKLOADS.register
def fashion_mnist_dcgan() -> Workload:
    """Fashion-MNIST, the DCGAN-style GAN (non-saturating loss, latent 64)."""
    return Workload("fashion_mnist_gan", {"model": "dcgan", "latent_dim": 64, "optimizer": "adam", "lr": 0.0002,
                                          "gan_beta1": 0.5, "batch_size": 64, "pr_k": 3},
                    {"smoke": {"epochs": 2, "train_size": 4000, "val_size": 1000, "test_size": 2000,
                               "pr_samples": 1000},
                     "laptop": {"epochs": 3, "train_size": 20000, "pr_samples": 5000}, "full": {"epochs": 10}},
                    source="Radford et al. 2016 (DCGAN: Adam 2e-4, beta1 0.5, batch 64)",
                    needs={"feature_run": "gan_features"})
