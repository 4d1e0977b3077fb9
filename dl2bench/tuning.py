"""The tuning protocol's selection: from the runs of a tuning sweep, per group (e.g. each optimizer),
the value of the tuned keys (e.g. lr) whose runs reached the best monitored validation metric,
median over seeds. A sweep's `select:` block expands from it (the final stage: the chosen setting
rerun over more seeds, reported on test), and the benchmark report reads the same choice.

Selection is on validation only; the test split is never looked at until the final stage. A run
that diverged scores the worst possible value (it is a result: that setting does not train), a
run that failed or has not ended stops the selection (its group would be chosen on fewer seeds).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from . import record as R
from . import runs
from .errors import ConfigError

SELECT_KEYS = ("from", "per", "tune", "baseline")


@dataclass
class Choice:
    """One group's selection: what was tried and what won."""

    group: Tuple[Any, ...]  # the values of the `per` keys
    chosen: Tuple[Any, ...]  # the values of the tuned keys that won
    score: float  # its median best validation value
    metric: str  # the summary key scored (best_val_<monitored>)
    goal: str
    tried: Dict[Tuple[Any, ...], List[float]] = field(default_factory=dict)  # tuned values -> per-seed scores
    medians: Dict[Tuple[Any, ...], float] = field(default_factory=dict)  # tuned values -> median score
    config: Dict[str, Any] = field(default_factory=dict)  # the winning run's config (seed aside)


def scored_runs(folder: Path) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """(config, summary) of every run in a tuning sweep's folder; ConfigError if one has not ended well."""
    out = []
    for run in runs.runs_in(folder):
        cfg, summary = runs.maybe_json(run / runs.CONFIG), runs.summary(run)
        status = (summary or {}).get("status")
        if cfg is None or status not in R.DONE:
            raise ConfigError(f"select.from: run {run.name} in {folder} is {status or 'not finished'}; every "
                              "tuning run must end before a setting is chosen (resubmit the tuning sweep)")
        out.append((cfg, summary))
    if not out:
        raise ConfigError(f"select.from: {folder} holds no runs; run the tuning sweep first")
    return out


def select(folder: Path, per: Sequence[str], tune: Sequence[str]) -> List[Choice]:
    """One Choice per group of `per` values, in the order the groups first appear."""
    from .registries import task_of
    from .config import RunConfig

    scored = scored_runs(folder)
    groups: Dict[Tuple[Any, ...], Dict[Tuple[Any, ...], List[Tuple[float, Dict[str, Any]]]]] = {}
    metric = goal = ""
    for cfg, summary in scored:
        task = task_of(RunConfig(task=str(cfg.get("task"))))
        m = task.monitored
        key = R.best_val_key(m.name)
        if metric and (key, m.goal) != (metric, goal):
            raise ConfigError(f"select.from: {folder} mixes tasks monitored by {metric} and {key}; tune one "
                              "workload per sweep")
        metric, goal = key, m.goal
        worst = -math.inf if goal == "maximize" else math.inf
        value = summary.get(key)
        if summary.get("status") == R.DIVERGED or not isinstance(value, (int, float)) or math.isnan(value):
            value = worst
        g = tuple(cfg.get(k) for k in per)
        t = tuple(cfg.get(k) for k in tune)
        groups.setdefault(g, {}).setdefault(t, []).append((float(value), cfg))
    choices = []
    sign = 1.0 if goal == "maximize" else -1.0
    for g, by_value in groups.items():
        med = {t: statistics.median(v for v, _ in rows) for t, rows in by_value.items()}
        # ties go to the value tried first in the sweep's order (the grid's): reproducible
        best = max(by_value, key=lambda t: sign * med[t])
        keys = set(RunConfig.keys()) - {"seed", "group"}  # config.json also records the run id
        config = {k: v for k, v in by_value[best][0][1].items() if k in keys}
        choices.append(Choice(g, best, med[best], metric, goal, {t: [v for v, _ in rows] for t, rows in by_value.items()},
                              med, config))
    return choices
