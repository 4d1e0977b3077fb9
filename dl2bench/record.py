"""The vocabulary of a run's record, in one place: status names, the summary's schema version and
how summary keys are named from a task's declared metrics. train writes it, launch reads the
statuses, reports read both; none of them spells a key by hand."""
from __future__ import annotations

from typing import Tuple

# 1: classification only (keys best_val_acc, test_acc, ...; no `schema` field)
# 2: keys named from the task's declared metrics; `metrics`, `headline` and `schema` recorded
SCHEMA_VERSION = 2

FINISHED, EARLY_STOPPED, DIVERGED, FAILED = "finished", "early_stopped", "diverged", "failed"
INCOMPLETE = "incomplete"  # no summary yet (queued, running, or lost): a report's word, not a run's
STATUSES = (FINISHED, EARLY_STOPPED, DIVERGED, FAILED)
DONE = (FINISHED, DIVERGED, EARLY_STOPPED)  # a resubmit leaves these alone
COUNTED = (FINISHED, EARLY_STOPPED)  # runs whose final metric means what it says

GOALS = ("maximize", "minimize")  # W&B's words for a metric's direction


def val_key(metric: str) -> str:
    """Per-epoch validation value of a metric (a column of metrics.jsonl)."""
    return f"val_{metric}"


def train_key(metric: str) -> str:
    return f"train_{metric}"


def test_key(metric: str) -> str:
    """The test value, evaluated once at the end (a summary key)."""
    return f"test_{metric}"


def best_val_key(metric: str) -> str:
    return f"best_val_{metric}"


def final_val_key(metric: str) -> str:
    return f"final_val_{metric}"


def _target(t: float) -> str:
    short = f"{t:.2f}"
    return short if float(short) == t else f"{t:g}"


def target_keys(metric: str, target: float) -> Tuple[str, str]:
    """(time, epochs) to the first epoch whose validation metric reached `target`."""
    t = _target(target)
    return f"time_to_val_{metric}_{t}", f"epochs_to_val_{metric}_{t}"

# what the launcher says of a run that has no summary yet
QUEUED, RUNNING, MISSING = "queued", "running", "missing"
LAUNCH_STATES = (QUEUED, RUNNING, MISSING)
