"""A benchmark file: workloads x the values of one axis (optimizer, init, regulariser, schedule),
under the tuning protocol it states, made into sweeps and a suite that submit.py runs as one.

    name: bench_optimizers
    description: every registered optimizer on every workload
    benchmark:
      workloads: all                 # or a list of names (dl2bench.families.WORKLOADS)
      axis: {optimizer: all}         # one config key; all = every registered name, or a list
      size: smoke                    # smoke | laptop | full: the workloads' budgets
      lr_grid: {points: 7, decades: 3}   # log grid centred on each workload's known-good lr
      tune_seeds: 1                  # seeds per tuning point (selection on validation)
      final_seeds: 3                 # seeds of the chosen and the untuned setting (reported on test)
    slurm: {...}                     # every generated sweep's launcher block

For each workload W it writes NAME-tune-W (the grid: axis values x lr grid x tune seeds) and
NAME-final-W (a select block: per axis value the lr with the best validation median, and the
known-good lr untuned, over final seeds other than the tuning ones), plus the suite that orders them
(and any shipped sweep a workload needs, e.g. gan_features). An axis value a workload's task refuses
is not run: it is recorded as n/a with the reason, for every table to show.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

from .suite import BENCHMARK_BLOCK
from .sweep import LAUNCH_BLOCK, SweepError, read_yaml

FILE_KEYS = ("name", "description", BENCHMARK_BLOCK, LAUNCH_BLOCK)
BLOCK_KEYS = ("workloads", "axis", "size", "lr_grid", "tune_seeds", "final_seeds")
AXES = ("optimizer", "init", "regularizer", "schedule")
DEFAULTS = {"workloads": "all", "size": "smoke", "lr_grid": {"points": 7, "decades": 3}, "tune_seeds": 1,
            "final_seeds": 3}


def lr_grid(centre: float, points: int, decades: float) -> List[float]:
    """`points` values, evenly spaced in log10, spanning `decades` decades centred on `centre`
    (which is one of them when points is odd). Rounded to 4 significant digits: run ids stay stable."""
    if points == 1:
        return [centre]
    step = decades / (points - 1)
    return [float(f"{centre * 10 ** (-decades / 2 + i * step):.4g}") for i in range(points)]


def _registry(axis: str):
    from .registries import ALL

    return ALL[{"optimizer": "optimizers", "init": "inits", "regularizer": "regularizers",
                "schedule": "schedules"}[axis]]


def read(path: Path) -> Dict[str, Any]:
    """The benchmark file, checked key by key (SweepError names the key)."""
    from .families import SIZES, WORKLOADS

    where = str(path)
    raw = read_yaml(path)
    bad = sorted(set(raw) - set(FILE_KEYS))
    if bad:
        raise SweepError(f"{where}: {bad[0]}: unknown key; a benchmark file has {', '.join(FILE_KEYS)}")
    block = raw.get(BENCHMARK_BLOCK)
    if not isinstance(block, dict):
        raise SweepError(f"{where}: {BENCHMARK_BLOCK}: expected a mapping ({', '.join(BLOCK_KEYS)}), got {block!r}")
    bad = sorted(set(block) - set(BLOCK_KEYS))
    if bad:
        raise SweepError(f"{where}: {BENCHMARK_BLOCK}.{bad[0]}: unknown key; valid keys: {', '.join(BLOCK_KEYS)}")
    b = {**DEFAULTS, **block}
    at = f"{where}: {BENCHMARK_BLOCK}"
    names = WORKLOADS.names() if b["workloads"] == "all" else b["workloads"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SweepError(f"{at}.workloads: expected all or a list of workload names, got {b['workloads']!r}")
    for n in names:
        if n not in WORKLOADS:
            raise SweepError(f"{at}.workloads: unknown workload {n!r}; known: "
                             f"{', '.join(WORKLOADS.names())}")
    axis = b.get("axis")
    if not isinstance(axis, dict) or len(axis) != 1 or next(iter(axis)) not in AXES:
        raise SweepError(f"{at}.axis: expected one key of {', '.join(AXES)} with all or a list of values, "
                         f"got {axis!r}")
    key, values = next(iter(axis.items()))
    reg = _registry(key)
    values = reg.names() if values == "all" else values
    if not isinstance(values, list) or not values:
        raise SweepError(f"{at}.axis.{key}: expected all or a list of names, got {axis[key]!r}")
    for v in values:
        if v not in reg:
            raise SweepError(f"{at}.axis.{key}: unknown {key} {v!r}; known: {', '.join(reg.names())}")
    if b["size"] not in SIZES:
        raise SweepError(f"{at}.size: expected one of {', '.join(SIZES)}, got {b['size']!r}")
    grid = b["lr_grid"]
    if (not isinstance(grid, dict) or set(grid) != {"points", "decades"} or not isinstance(grid["points"], int)
            or isinstance(grid["points"], bool) or not 1 <= grid["points"] <= 25
            or not isinstance(grid["decades"], (int, float)) or not 0 <= grid["decades"] <= 8):
        raise SweepError(f"{at}.lr_grid: expected {{points: 1-25, decades: 0-8}}, got {grid!r}")
    for k in ("tune_seeds", "final_seeds"):
        if not isinstance(b[k], int) or isinstance(b[k], bool) or not 1 <= b[k] <= 100:
            raise SweepError(f"{at}.{k}: expected a whole number of seeds, 1-100, got {b[k]!r}")
    name = str(raw.get("name") or path.stem)
    return {"name": name, "description": raw.get("description", ""), "workloads": names, "axis": key,
            "values": list(values), "size": b["size"], "lr_grid": grid, "tune_seeds": b["tune_seeds"],
            "final_seeds": b["final_seeds"], "slurm": raw.get(LAUNCH_BLOCK) or {}, "file": str(path)}


def not_applicable(task: str, key: str, value: Any, config: Dict[str, Any]) -> str:
    """Why a workload cannot take this axis value ('' when it can): the task's own refusal, else
    whatever validation says of the workload's config with it."""
    from .config import ConfigError, RunConfig
    from .families import TASKS

    why = TASKS[task]().refusal(key, value)
    if why:
        return why
    try:
        RunConfig.from_dict({**{k: v for k, v in config.items() if k not in ("feature_run",)}, key: value})
    except ConfigError as e:
        return str(e)
    return ""


def generate(path: str | Path, out: str | Path) -> Tuple[Path, Dict[str, Any]]:
    """Write the benchmark's sweeps and suite under OUT/.benchmarks/NAME/; returns the suite's path
    and the plan (protocol, workloads, n/a cells) that the report prints."""
    import yaml

    from .families import WORKLOADS

    b = read(Path(path))
    folder = Path(out) / ".benchmarks" / b["name"]
    folder.mkdir(parents=True, exist_ok=True)
    entries: List[Any] = []
    plan: Dict[str, Any] = {**{k: b[k] for k in ("name", "description", "axis", "values", "size", "lr_grid",
                                                  "tune_seeds", "final_seeds", "file")},
                            "workloads": {}, "n/a": {}}
    for wname in b["workloads"]:
        w = WORKLOADS[wname]()
        config = w.config(b["size"])
        for need in w.needs.values():
            if need not in entries:
                entries.insert(0, need)  # a shipped sweep (the GAN's feature classifier), run first
        runnable = []
        for v in b["values"]:
            why = not_applicable(w.task, b["axis"], v, config)
            if why:
                plan["n/a"].setdefault(wname, {})[str(v)] = why
            else:
                runnable.append(v)
        known = float(config["lr"])
        lrs = lr_grid(known, b["lr_grid"]["points"], b["lr_grid"]["decades"])
        plan["workloads"][wname] = {"task": w.task, "known_good": w.settings, "source": w.source,
                                    "reference": w.reference, "budget": w.budgets[b["size"]], "lr_grid": lrs,
                                    "tune": f"{b['name']}-tune-{wname}", "final": f"{b['name']}-final-{wname}"}
        if not runnable:
            continue
        fixed = {k: {"value": v} for k, v in config.items() if k not in ("lr", b["axis"])}
        metric, goal = _val_metric(w.task)
        tune = {"name": f"{b['name']}-tune-{wname}", "method": "grid", "metric": {"name": metric, "goal": goal},
                "parameters": {**fixed, b["axis"]: {"values": runnable}, "lr": {"values": lrs},
                               "seed": {"values": list(range(b["tune_seeds"]))}},
                LAUNCH_BLOCK: b["slurm"]}
        final = {"name": f"{b['name']}-final-{wname}", "method": "grid",
                 "parameters": {"seed": {"values": list(range(b["tune_seeds"], b["tune_seeds"] + b["final_seeds"]))}},
                 "select": {"from": tune["name"], "per": [b["axis"]], "tune": ["lr"], "baseline": {"lr": known}},
                 LAUNCH_BLOCK: b["slurm"]}
        for sw in (tune, final):
            (folder / f"{sw['name']}.yaml").write_text(yaml.safe_dump(sw, sort_keys=False))
            entries.append(str((folder / f"{sw['name']}.yaml").resolve()))
    suite = folder / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": b["name"], "description": b["description"] or f"benchmark {b['name']}",
                                     "sweeps": entries}, sort_keys=False))
    (folder / "benchmark.json").write_text(json.dumps(plan, indent=1, default=str))
    return suite, plan


def _val_metric(task: str) -> Tuple[str, str]:
    from . import record as R
    from .families import TASKS

    m = TASKS[task]().monitored
    return R.best_val_key(m.name), m.goal


def describe(plan: Dict[str, Any]) -> List[str]:
    """The protocol, as the report and the submit print it."""
    g = plan["lr_grid"]
    lines = [f"benchmark {plan['name']}: {plan['axis']} in {len(plan['values'])} value(s) x "
             f"{len(plan['workloads'])} workload(s), size {plan['size']}",
             f"  protocol: per (workload, {plan['axis']}) lr over {g['points']} log-spaced points spanning "
             f"{g['decades']} decade(s) around the workload's known-good lr, {plan['tune_seeds']} seed(s) each; "
             f"chosen on the validation metric (median over seeds); the choice and the untuned known-good lr "
             f"rerun over {plan['final_seeds']} other seed(s), reported on test"]
    for w, cells in plan["n/a"].items():
        for v, why in cells.items():
            lines.append(f"  n/a: {w} x {v}: {why}")
    return lines
