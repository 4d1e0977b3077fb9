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
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import record as R
from . import runs
from .errors import ConfigError

SELECT_KEYS = ("from", "per", "tune", "baseline", "budgets")


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
    budget: str = "large"  # which tuning budget chose it: "large" saw every tuned value


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


def select(folder: Path, per: Sequence[str], tune: Sequence[str],
           budgets: Optional[Dict[str, Dict[str, List[Any]]]] = None) -> List[Choice]:
    """One Choice per group of `per` values, in the order the groups first appear; and one per group
    for each named budget in `budgets`, which sees only the tuned values it lists (a smaller tuning
    budget is a subset of the same grid, so its choice costs no extra run)."""
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
    keys = set(RunConfig.keys()) - {"seed", "group"}  # config.json also records the run id
    limits = {"large": None, **(budgets or {})}
    for budget, among in limits.items():
        for g, by_value in groups.items():
            seen = {t: rows for t, rows in by_value.items()
                    if among is None or all(_within(v, among.get(k)) for k, v in zip(tune, t))}
            if not seen:
                raise ConfigError(f"select.budgets.{budget}: none of its values of {', '.join(tune)} was tried in "
                                  f"{folder}; tried: {sorted(by_value)}")
            med = {t: statistics.median(v for v, _ in rows) for t, rows in seen.items()}
            # ties go to the value tried first in the sweep's order (the grid's): reproducible
            best = max(seen, key=lambda t: sign * med[t])
            config = {k: v for k, v in seen[best][0][1].items() if k in keys}
            choices.append(Choice(g, best, med[best], metric, goal, {t: [v for v, _ in rows] for t, rows in seen.items()},
                                  med, config, budget))
    return choices


def same_value(a: Any, b: Any) -> bool:
    """Two values of a tuned key are the same grid point: a float compared to the 4 significant digits
    a benchmark's lr grid is written with, anything else (a whole number, a name) by equality."""
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    if numbers and (isinstance(a, float) or isinstance(b, float)):
        return math.isclose(a, b, rel_tol=1e-3)
    return a == b


def _within(value: Any, allowed: Optional[List[Any]]) -> bool:
    """Is a tried value one a budget lists?"""
    return allowed is None or any(same_value(value, a) for a in allowed)
