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
      budgets: [one_shot, small, large]  # tuning budgets compared: the known-good lr untuned, every
                                     # other grid point, the whole grid (default: all three)
      targets: {fashion_mnist_mlp: 0.85}  # optional: a stated target on the validation metric; by
                                     # default a workload's target is what its known-good setting reaches
    slurm: {...}                     # every generated sweep's launcher block

For each workload W it writes NAME-tune-W (the grid: axis values x lr grid x tune seeds) and
NAME-final-W (a select block: per axis value the lr with the best validation median, and the
known-good lr untuned, over final seeds other than the tuning ones), plus the suite that orders them
(and any shipped sweep a workload needs, e.g. gan_features). An axis value a workload's task refuses
is not run: it is recorded as n/a with the reason, for every table to show.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Tuple

from .suite import BENCHMARK_BLOCK
from .sweep import LAUNCH_BLOCK, SweepError, read_yaml

FILE_KEYS = ("name", "description", BENCHMARK_BLOCK, LAUNCH_BLOCK)
BLOCK_KEYS = ("workloads", "axis", "size", "lr_grid", "tune_seeds", "final_seeds", "budgets", "targets")
BUDGETS = ("one_shot", "small", "large")
# A benchmark is many small runs: a SLURM array task that packs k of them pays its process start and
# imports (~4.7 s here) once, so with ~0.7 s of set-up per run inside the task, 16 smoke runs a task
# cost about 1 s each (tests/benchmarks/bench_overhead.py measures it). Runs of minutes need little
# packing, and packing them would serialise them. The benchmark's own slurm block may say otherwise.
RUNS_PER_TASK = {"smoke": 16, "laptop": 4, "full": 1}
AXES = ("optimizer", "init", "regularizer", "schedule")
DEFAULTS = {"workloads": "all", "size": "smoke", "lr_grid": {"points": 7, "decades": 3}, "tune_seeds": 1,
            "final_seeds": 3, "budgets": list(BUDGETS), "targets": {}}


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
    budgets = b["budgets"]
    if (not isinstance(budgets, list) or not budgets or not all(x in BUDGETS for x in budgets)
            or len(set(budgets)) != len(budgets)):
        raise SweepError(f"{at}.budgets: expected a list of {', '.join(BUDGETS)} (each once), got {budgets!r}")
    if "small" in budgets and "large" not in budgets:
        raise SweepError(f"{at}.budgets: small is every other point of large's grid; list large too")
    targets = b["targets"]
    if not isinstance(targets, dict):
        raise SweepError(f"{at}.targets: expected a mapping of workload name to a value of its validation "
                         f"metric, got {targets!r}")
    for w, t in targets.items():
        if w not in names:
            raise SweepError(f"{at}.targets.{w}: not a workload of this benchmark ({', '.join(names)})")
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
            raise SweepError(f"{at}.targets.{w}: expected a number (a value of its validation metric), got {t!r}")
    name = str(raw.get("name") or path.stem)
    return {"name": name, "description": raw.get("description", ""), "workloads": names, "axis": key,
            "values": list(values), "size": b["size"], "lr_grid": grid, "tune_seeds": b["tune_seeds"],
            "final_seeds": b["final_seeds"], "budgets": budgets, "targets": targets, "slurm": raw.get(LAUNCH_BLOCK) or {}, "file": str(path)}


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
    b["slurm"] = {"runs_per_task": RUNS_PER_TASK[b["size"]], **b["slurm"]}
    folder = Path(out) / ".benchmarks" / b["name"]
    folder.mkdir(parents=True, exist_ok=True)
    entries: List[Any] = []
    plan: Dict[str, Any] = {**{k: b[k] for k in ("name", "description", "axis", "values", "size", "lr_grid",
                                                  "tune_seeds", "final_seeds", "budgets", "targets", "file")},
                            "workloads": {}, "n/a": {}, "notes": []}
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
        if b["axis"] == "optimizer" and {"adam", "adamw"} <= set(runnable) and not config.get("weight_decay"):
            # seen in the smoke benchmark: two columns of identical numbers, read as "adamw ties adam"
            plan["notes"].append(f"{wname}: adamw = adam here (weight_decay 0: nothing to decouple), "
                                 "their rows repeat each other")
        known = float(config["lr"])
        lrs = lr_grid(known, b["lr_grid"]["points"], b["lr_grid"]["decades"])
        plan["workloads"][wname] = {"task": w.task, "known_good": w.settings, "source": w.source,
                                    "reference": w.reference, "budget": w.budgets[b["size"]], "lr_grid": lrs,
                                    "tune": f"{b['name']}-tune-{wname}", "final": f"{b['name']}-final-{wname}"}
        if not runnable:
            continue
        fixed = {k: {"value": v} for k, v in config.items() if k not in ("lr", b["axis"])}
        metric, goal = _val_metric(w.task)
        plan["workloads"][wname].update(metric=metric, goal=goal, small_grid=lrs[::2], runnable=runnable,
                                        known_lr=known, known_value=_known_value(config, b["axis"]))
        finals = list(range(b["tune_seeds"], b["tune_seeds"] + b["final_seeds"]))
        if b["budgets"] == ["one_shot"]:  # no tuning: the known-good lr for every axis value
            final = {"name": f"{b['name']}-final-{wname}", "method": "grid",
                     "parameters": {**fixed, b["axis"]: {"values": runnable}, "lr": {"value": known},
                                    "seed": {"values": finals}}, LAUNCH_BLOCK: b["slurm"]}
            (folder / f"{final['name']}.yaml").write_text(yaml.safe_dump(final, sort_keys=False))
            entries.append(str((folder / f"{final['name']}.yaml").resolve()))
            plan["workloads"][wname]["tune"] = None
            continue
        select = {"from": f"{b['name']}-tune-{wname}", "per": [b["axis"]], "tune": ["lr"]}
        if "one_shot" in b["budgets"]:
            select["baseline"] = {"lr": known}
        if "small" in b["budgets"]:
            select["budgets"] = {"small": {"lr": lrs[::2]}}
        tune = {"name": f"{b['name']}-tune-{wname}", "method": "grid", "metric": {"name": metric, "goal": goal},
                "parameters": {**fixed, b["axis"]: {"values": runnable}, "lr": {"values": lrs},
                               "seed": {"values": list(range(b["tune_seeds"]))}},
                LAUNCH_BLOCK: b["slurm"]}
        final = {"name": f"{b['name']}-final-{wname}", "method": "grid", "parameters": {"seed": {"values": finals}},
                 "select": select, LAUNCH_BLOCK: b["slurm"]}
        for sw in (tune, final):
            (folder / f"{sw['name']}.yaml").write_text(yaml.safe_dump(sw, sort_keys=False))
            entries.append(str((folder / f"{sw['name']}.yaml").resolve()))
    suite = folder / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": b["name"], "description": b["description"] or f"benchmark {b['name']}",
                                     "sweeps": entries}, sort_keys=False))
    (folder / "benchmark.json").write_text(json.dumps(plan, indent=1, default=str))
    return suite, plan


def known_good_best(plan: Dict[str, Any], root: Path, workload: str) -> List[float]:
    """The best validation values that the workload's known-good setting (its axis value at its
    known-good lr) reached in the benchmark's final runs under `root`, one per seed that ended."""
    from . import record as R
    from . import runs
    from .tuning import same_value

    info = plan["workloads"][workload]
    folder = Path(root) / info["final"]
    out = []
    for run in runs.runs_in(folder) if folder.is_dir() else []:
        cfg, summary = runs.maybe_json(run / runs.CONFIG) or {}, runs.summary(run) or {}
        lr, value = cfg.get("lr"), summary.get(info.get("metric", ""))
        if (summary.get("status") in R.COUNTED and str(cfg.get(plan["axis"])) == str(info.get("known_value"))
                and isinstance(lr, (int, float)) and same_value(lr, info.get("known_lr", math.nan))
                and isinstance(value, (int, float)) and math.isfinite(value)):
            out.append(float(value))
    return out


def target_misses(plan: Dict[str, Any], root: Path) -> List[str]:
    """One line per stated target that the known-good setting's finished final runs do not reach on
    every seed, with what they reach; a target with no such run yet is not judged."""
    lines = []
    for w, target in (plan.get("targets") or {}).items():
        got = known_good_best(plan, root, w)
        if not got:
            continue
        higher = plan["workloads"][w].get("goal") == "maximize"
        worst = min(got) if higher else max(got)
        if (worst < target) if higher else (worst > target):
            info = plan["workloads"][w]
            lines.append(f"warning: targets.{w}: the stated target {target:g} is not reached by the known-good "
                         f"setting ({info.get('known_value')}, lr {info.get('known_lr'):g}): its {len(got)} final "
                         f"seed(s) reach {', '.join(f'{x:.4g}' for x in got)} ({info.get('metric')})")
    return lines


def _known_value(config: Dict[str, Any], axis: str) -> Any:
    """The axis value of the workload's known-good setting: the one it names, else the task's default."""
    from .config import task_baseline

    return config[axis] if axis in config else task_baseline(config["task"]).get(axis)


def _val_metric(task: str) -> Tuple[str, str]:
    from . import record as R
    from .families import TASKS

    m = TASKS[task]().monitored
    return R.best_val_key(m.name), m.goal


BUDGET_TEXT = {"one_shot": "one_shot = the known-good lr, no tuning",
               "small": "small = the best of every other grid point",
               "large": "large = the best of the whole grid"}


def describe(plan: Dict[str, Any]) -> List[str]:
    """The protocol, as the report and the submit print it."""
    g = plan["lr_grid"]
    lines = [f"benchmark {plan['name']}: {plan['axis']} in {len(plan['values'])} value(s) x "
             f"{len(plan['workloads'])} workload(s), size {plan['size']}",
             f"  protocol: per (workload, {plan['axis']}) lr over {g['points']} log-spaced points spanning "
             f"{g['decades']} decade(s) around the workload's known-good lr, {plan['tune_seeds']} seed(s) each; "
             f"chosen on the validation metric (median over seeds); each budget's choice rerun over "
             f"{plan['final_seeds']} other seed(s), reported on test",
             "  budgets: " + "; ".join(BUDGET_TEXT[x] for x in plan["budgets"])]
    for note in plan.get("notes") or []:
        lines.append(f"  note: {note}")
    for w, cells in plan["n/a"].items():
        for v, why in cells.items():
            lines.append(f"  n/a: {w} x {v}: {why}")
    return lines
