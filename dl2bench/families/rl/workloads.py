"""Deep Q-learning workloads for the benchmark (dl2bench.benchmark): budgets in environment steps."""
from __future__ import annotations

from ..base import WORKLOADS, Workload


@WORKLOADS.register
def mouse_grid_qnet_conv() -> Workload:
    """The course's grid game, the convolutional Q-net."""
    return Workload("mouse_grid", {"model": "qnet_conv", "optimizer": "adam", "lr": 0.001, "batch_size": 64},
                    {"smoke": {"epochs": 2, "epoch_steps": 1000, "learning_starts": 200, "test_episodes": 20},
                     "laptop": {"epochs": 5, "epoch_steps": 5000}, "full": {"epochs": 20}},
                    source="the task's known-good setting (dl2bench mouse_grid defaults)")


@WORKLOADS.register
def cartpole_dqn() -> Workload:
    """CartPole-v1, the fully connected Q-net."""
    return Workload("cartpole", {"model": "qnet_fc", "optimizer": "adam", "lr": 0.00025, "batch_size": 128},
                    {"smoke": {"epochs": 2, "epoch_steps": 2000, "learning_starts": 1000, "test_episodes": 10},
                     "laptop": {"epochs": 10, "epoch_steps": 10000}, "full": {"epochs": 50}},
                    source="CleanRL's dqn.py CartPole-v1 hyperparameters (dl2bench cartpole defaults)",
                    reference="CartPole-v1 counts as solved at a mean return of 475 (Gymnasium's reward_threshold)")
