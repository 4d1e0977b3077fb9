"""Classification workloads for the benchmark (dl2bench.benchmark): what each compared setting trains."""
from __future__ import annotations

from ..base import WORKLOADS, Workload

SMOKE = {"epochs": 2, "train_size": 4000, "val_size": 1000, "test_size": 2000}


@WORKLOADS.register
def fashion_mnist_mlp() -> Workload:
    """Fashion-MNIST, the course's MLP, SGD with momentum."""
    return Workload("fashion_mnist", {"model": "mlp", "optimizer": "momentum", "lr": 0.01, "batch_size": 64},
                    {"smoke": SMOKE, "laptop": {"epochs": 5, "train_size": 20000}, "full": {"epochs": 12}},
                    source="the task's known-good setting (dl2bench fashion_mnist defaults)",
                    reference="Xiao et al. 2017 (the dataset's benchmark): an MLP reaches 87-88% test accuracy")


@WORKLOADS.register
def cifar10_lenet() -> Workload:
    """CIFAR-10, LeNet-5, SGD with momentum."""
    return Workload("cifar10", {"model": "lenet", "optimizer": "momentum", "lr": 0.01, "batch_size": 64},
                    {"smoke": SMOKE, "laptop": {"epochs": 4, "train_size": 20000}, "full": {"epochs": 10}},
                    source="the task's known-good setting (dl2bench cifar10 defaults)")


@WORKLOADS.register
def fashion_mnist_lenet_pgd() -> Workload:
    """Adversarial training (Madry et al. 2018): LeNet on 7-step l-inf PGD examples at eps 0.1."""
    return Workload("fashion_mnist", {"model": "lenet", "adv_train": "pgd", "adv_eps": 0.1, "adv_steps": 7,
                                      "optimizer": "adam", "lr": 0.001, "batch_size": 128},
                    {"smoke": SMOKE, "laptop": {"epochs": 3, "train_size": 10000}, "full": {"epochs": 10}},
                    source="sweeps/adversarial_training.yaml (Madry et al. 2018's recipe at Fashion-MNIST's eps)")
