"""Segmentation workloads for the benchmark (dl2bench.benchmark)."""
from __future__ import annotations

from ..base import WORKLOADS, Workload


@WORKLOADS.register
def shapes_unet() -> Workload:
    """U-Net on the seeded procedural shapes (64x64, foreground mean IoU)."""
    return Workload("shapes", {"model": "unet", "width": 16, "depth": 3, "image_size": 64, "optimizer": "adam",
                               "lr": 0.002, "batch_size": 16},
                    {"smoke": {"epochs": 2, "train_size": 300, "test_size": 100},
                     "laptop": {"epochs": 5, "train_size": 1000}, "full": {"epochs": 15}},
                    source="the task's known-good setting (dl2bench shapes defaults)")
