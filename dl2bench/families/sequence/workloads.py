"""Sequence workloads for the benchmark (dl2bench.benchmark)."""
from __future__ import annotations

from ..base import WORKLOADS, Workload


@WORKLOADS.register
def adding_lstm() -> Workload:
    """The adding problem at T = 100, where a plain RNN fails and an LSTM learns (Hochreiter and
    Schmidhuber 1997; Arjovsky et al. 2016)."""
    return Workload("adding", {"model": "lstm", "hidden_size": 128, "seq_len": 100, "optimizer": "adam",
                               "lr": 0.003, "batch_size": 64},
                    {"smoke": {"epochs": 1, "train_size": 500, "val_size": 100, "test_size": 200},
                     "laptop": {"epochs": 5}, "full": {"epochs": 10}},
                    source="the task's known-good setting (dl2bench adding defaults)",
                    reference="a predictor of the mean scores MSE 0.167; solved means well below 0.05")


@WORKLOADS.register
def char_lm_transformer() -> Workload:
    """Character-level language model on Shakespeare, a 4-layer transformer."""
    return Workload("char_lm", {"model": "transformer", "hidden_size": 128, "num_layers": 4, "num_heads": 4,
                                "context": 64, "optimizer": "adam", "lr": 0.001, "batch_size": 12},
                    {"smoke": {"epochs": 1, "lm_steps": 20, "lm_eval_chars": 5000},
                     "laptop": {"epochs": 2, "lm_steps": 200}, "full": {"epochs": 4}},
                    source="the task's known-good setting (dl2bench char_lm defaults, after Karpathy's char-rnn)")
