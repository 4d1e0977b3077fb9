"""A benchmark's report (issue 25): from OUT/.benchmarks/NAME/benchmark.json and the tune and final
runs it names, per workload the metric-vs-lr sensitivity, the chosen lr (flagged at a grid edge),
the good-lr band, test mean +/- 95% CI per tuning budget and time-to-target; across workloads the
performance profiles and their areas, mean ranks with bootstrap intervals, Holm-corrected pairwise
Welch tests and the verdicts they allow.

    python reports/build.py OUT/.benchmarks/NAME            # -> that folder's report.html, report.pdf
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from dl2bench import record as R
from dl2bench import runs as RUNS
from dl2bench.tuning import same_value

from . import bench_stats as ST
from .load import Damaged, ReportError, read_metrics

PLAN = "benchmark.json"
BUDGET_ORDER = ("one_shot", "small", "large")
BAND_TOLERANCE = 0.1  # the good-lr band: within 10% of the workload's best-to-worst spread of its best
ALPHA = 0.05
BOUNDED = ("acc", "auroc", "miou", "iou", "robust_acc", "precision", "recall", "dice")


def is_benchmark(folder: Path) -> bool:
    return (Path(folder) / PLAN).is_file()


@dataclass
class Workload:
    name: str
    info: Dict[str, Any]
    tune: pd.DataFrame  # one row per tuning run
    final: pd.DataFrame  # one row per final run
    chosen: Dict[Tuple[str, str], float] = field(default_factory=dict)  # (value, budget) -> lr
    target: float = math.nan
    target_source: str = ""
    notes: List[str] = field(default_factory=list)

    @property
    def better(self) -> str:
        return "higher" if self.info.get("goal") == "maximize" else "lower"

    @property
    def test_better(self) -> str:
        g = self.final["test_goal"].dropna()
        return ("higher" if g.iloc[0] == "maximize" else "lower") if len(g) else self.better


@dataclass
class Bench:
    folder: Path
    plan: Dict[str, Any]
    workloads: Dict[str, Workload]
    notes: List[str]

    @property
    def values(self) -> List[str]:
        return [str(v) for v in self.plan["values"]]


COLUMNS = ["run", "lr", "seed", "status", "summary", "config", "test", "test_metric", "test_goal", "curve", "device",
           "threads"]


def _runs(folder: Optional[Path], notes: List[str]) -> pd.DataFrame:
    """One row per run of a stage's folder (none when the stage has no folder yet); `curve` is the
    monitored validation value against cumulative training seconds, from metrics.jsonl."""
    rows = []
    for run in RUNS.runs_in(folder) if folder is not None and folder.is_dir() else []:
        cfg, summary = RUNS.maybe_json(run / RUNS.CONFIG) or {}, RUNS.summary(run) or {}
        monitor = summary.get("monitor")
        curve = []
        try:
            epochs, torn = read_metrics(run / RUNS.METRICS, complete=bool(summary))
        except Damaged as e:
            epochs, torn = [], str(e)
        if torn:
            notes.append(torn)
        elapsed = 0.0
        for m in epochs if monitor else []:
            elapsed += float(m.get("train_time") or 0.0)
            v = m.get(R.val_key(monitor))
            if isinstance(v, (int, float)):
                curve.append((elapsed, float(v)))
        test_key = summary.get("metric")
        rows.append({"run": run.name, "lr": cfg.get("lr"), "seed": cfg.get("seed"),
                     "status": summary.get("status") or "not finished", "summary": summary, "config": cfg,
                     "test": summary.get(test_key) if test_key else None, "test_metric": test_key,
                     "test_goal": summary.get("goal"), "curve": curve, "device": summary.get("device"),
                     "threads": summary.get("threads")})
    return pd.DataFrame(rows, columns=COLUMNS)


def load(folder: Path) -> Bench:
    folder = Path(folder)
    try:
        plan = json.loads((folder / PLAN).read_text())
    except (OSError, ValueError) as e:
        raise ReportError(f"{folder / PLAN}: cannot read the benchmark's plan ({e})") from None
    root = folder.parent.parent  # OUT/.benchmarks/NAME -> OUT
    axis, notes = plan["axis"], []
    out: Dict[str, Workload] = {}
    for name, info in plan["workloads"].items():
        info.setdefault("known_lr", float(info["known_good"]["lr"]))
        info.setdefault("known_value", info["known_good"].get(axis))
        tune = _runs(root / info["tune"] if info.get("tune") else None, notes)
        final = _runs(root / info["final"], notes)
        for df in (tune, final):
            df["value"] = [str(c.get(axis)) for c in df["config"]]
            df["best_val"] = [s.get(info.get("metric", "")) for s in df["summary"]]
        w = Workload(name, info, tune, final)
        if not len(tune) and not len(final):
            notes.append(f"{name}: not run yet (no runs in {root / (info.get('tune') or info['final'])}); its rows "
                         "are empty")
        else:
            if not len(final):
                notes.append(f"{name}: no final runs in {root / info['final']} yet; its rows are empty")
            _choose(w, root, axis)
        _target(w, plan, root)
        out[name] = w
    if not any(len(w.final) for w in out.values()):
        raise ReportError(f"{folder}: no final runs of any workload under {root}; run the benchmark first "
                          f"(python jobs/submit.py {plan.get('file', 'BENCH.yaml')} --out {root})")
    return Bench(folder, plan, out, notes)


def _choose(w: Workload, root: Path, axis: str) -> None:
    """Each budget's lr per axis value, by the same selection the final sweep ran (dl2bench.tuning)."""
    from dl2bench import tuning
    from dl2bench.errors import ConfigError

    for v in w.info.get("runnable", []):
        w.chosen[(str(v), "one_shot")] = float(w.info["known_lr"])
    if not w.info.get("tune"):
        return
    try:
        choices = tuning.select(root / w.info["tune"], [axis], ["lr"], {"small": {"lr": w.info["small_grid"]}})
    except ConfigError as e:
        w.notes.append(f"tuning not complete, no lr chosen: {e}")
        return
    for c in choices:
        w.chosen[(str(c.group[0]), c.budget)] = float(c.chosen[0])


def _target(w: Workload, plan: Dict[str, Any], root: Path) -> None:
    """The stated target, else what the known-good setting reaches on every final seed (its worst
    seed's best validation value: a target it meets by construction). A stated target the known-good
    setting misses is said, with what it reaches."""
    from dl2bench.benchmark import known_good_best, target_misses

    vals = known_good_best(plan, root, w.name)
    stated = (plan.get("targets") or {}).get(w.name)
    if stated is not None:
        w.target, w.target_source = float(stated), "stated in the benchmark file"
        w.notes += [x.replace("warning: ", "") for x in target_misses({**plan, "targets": {w.name: stated}}, root)]
    elif vals:
        w.target = min(vals) if w.better == "higher" else max(vals)
        w.target_source = (f"known-good ({w.info['known_value']}, lr {w.info['known_lr']:g}): its worst of "
                           f"{len(vals)} final seed(s)")
    else:
        w.target_source = "none: the known-good setting has no final run"


def _meets(value: float, target: float, better: str) -> bool:
    return value >= target if better == "higher" else value <= target


def _rows(df: pd.DataFrame, value: str, lr: float) -> pd.DataFrame:
    if not len(df):
        return df
    same = [same_value(x, lr) for x in df["lr"]]
    return df[(df["value"] == value) & pd.Series(same, index=df.index) & df["status"].isin(R.DONE)]


def time_to_target(curve: List[Tuple[float, float]], target: float, better: str) -> float:
    """Seconds of training (eval excluded) until the validation metric first meets the target."""
    for t, v in curve:
        if math.isfinite(target) and _meets(v, target, better):
            return t
    return math.inf


# ---------------------------------------------------------------------------------------------
# the numbers every table and figure reads

@dataclass
class Cell:
    """One (workload, axis value, budget): its final runs."""

    lr: float
    tests: List[float]
    times: List[float]
    edge: bool
    diverged: int


def cells(b: Bench) -> Dict[str, Dict[Tuple[str, str], Cell]]:
    out: Dict[str, Dict[Tuple[str, str], Cell]] = {}
    for name, w in b.workloads.items():
        grid = [float(x) for x in w.info["lr_grid"]]
        for (v, budget), lr in w.chosen.items():
            if budget not in b.plan.get("budgets", BUDGET_ORDER):
                continue
            rows = _rows(w.final, v, lr)
            tests = [float(x) for x, s in zip(rows["test"], rows["status"])
                     if s in R.COUNTED and isinstance(x, (int, float))]
            diverged = int((rows["status"] == R.DIVERGED).sum())
            tests += [math.nan] * diverged  # a diverged seed is a result; it has no test value
            times = [time_to_target(c, w.target, w.better) for c in rows["curve"]]
            grid_used = grid if budget == "large" else [float(x) for x in w.info["small_grid"]]
            edge = budget != "one_shot" and len(grid_used) > 1 and (same_value(lr, min(grid_used))
                                                                   or same_value(lr, max(grid_used)))
            out.setdefault(name, {})[(v, budget)] = Cell(lr, tests, times, edge, diverged)
    return out


def finite(v: List[float]) -> List[float]:
    return [x for x in v if math.isfinite(x)]


def per_problem(b: Bench, c: Dict[str, Dict[Tuple[str, str], Cell]], budget: str) -> Tuple[
        Dict[str, Dict[str, List[float]]], Dict[str, str]]:
    """seeds[workload][value] = test values over final seeds at this budget (diverged seeds as the
    worst value seen on the workload, so a diverging optimizer ranks last there), and each
    workload's direction."""
    seeds: Dict[str, Dict[str, List[float]]] = {}
    better: Dict[str, str] = {}
    for name, w in b.workloads.items():
        row = {v: cell.tests for (v, bud), cell in c.get(name, {}).items() if bud == budget and cell.tests}
        if not row:
            continue
        better[name] = w.test_better
        every = [x for t in row.values() for x in finite(t)]
        if not every:
            continue
        worst = min(every) if better[name] == "higher" else max(every)
        seeds[name] = {v: [x if math.isfinite(x) else worst for x in t] for v, t in row.items()}
    return seeds, better


def profiles_input(b: Bench, c: Dict[str, Dict[Tuple[str, str], Cell]], budget: str,
                   seeds: Dict[str, Dict[str, List[float]]], better: Dict[str, str]) -> Tuple[
        Dict[str, Dict[str, float]], Dict[str, Dict[str, float]]]:
    """cost[workload][value] for the two profiles, from per_problem's values at this budget: median
    time-to-target, and the final test metric as a cost (reports/bench_stats.cost_of_final)."""
    time_cost: Dict[str, Dict[str, float]] = {}
    final_cost: Dict[str, Dict[str, float]] = {}
    for name, row in seeds.items():
        w = b.workloads[name]
        means = {v: float(np.mean(t)) for v, t in row.items()}
        best = max(means.values()) if better[name] == "higher" else min(means.values())
        metric = str(w.final["test_metric"].dropna().iloc[0]) if len(w.final["test_metric"].dropna()) else ""
        bounded = metric.replace("test_", "") in BOUNDED
        final_cost[name] = {v: ST.cost_of_final(m, best, better[name], bounded) for v, m in means.items()}
        time_cost[name] = {v: ST.median_time(c[name][(v, budget)].times) for v in row}
    return time_cost, final_cost


# ---------------------------------------------------------------------------------------------
# the document

def document(b: Bench):
    from dl2bench.benchmark import describe

    from .render import Document, Section

    c = cells(b)
    plan = b.plan
    axis = plan["axis"]
    budgets = [x for x in BUDGET_ORDER if x in plan.get("budgets", BUDGET_ORDER)]
    main = "large" if "large" in budgets else budgets[0]
    seeds, better = per_problem(b, c, main)
    time_cost, final_cost = profiles_input(b, c, main, seeds, better)
    rt, rf = ST.ratios(time_cost), ST.ratios(final_cost)
    values = [v for v in b.values if any(v in row for row in seeds.values())]
    mean_rank = ST.mean_ranks(seeds, better) if seeds else {}
    rank_ci = ST.bootstrap_ranks(seeds, better) if seeds else {}
    pairs = ST.pairwise(seeds, better, ALPHA) if seeds else {}
    runs = sum(len(w.tune) + len(w.final) for w in b.workloads.values())
    devices = sorted({str(x) for w in b.workloads.values() for x in w.final["device"].dropna()})
    threads = sorted({f"{x:g}" if isinstance(x, (int, float)) else str(x)
                      for w in b.workloads.values() for x in w.final["threads"].dropna()})
    facts = [("benchmark", f"{plan['name']}: {plan.get('description') or ''}".strip()),
             ("file", str(plan.get("file", ""))),
             ("axis", f"{axis}: {', '.join(b.values)}"),
             ("workloads", f"{len(b.workloads)} at size {plan['size']}: {', '.join(b.workloads)}"),
             ("runs", f"{runs} ({sum(len(w.tune) for w in b.workloads.values())} tuning, "
                      f"{sum(len(w.final) for w in b.workloads.values())} final)"),
             ("devices, threads", f"{', '.join(devices) or '?'}; {', '.join(threads) or '?'} thread(s)"),
             ("verdict", verdict(values, mean_rank, rank_ci, pairs, rt, rf)),
             ("protocol", "\n".join(x.strip().removeprefix("protocol: ") for x in describe(plan)[1:]
                                   if not x.strip().startswith("n/a:")))]
    notes = list(b.notes) + [f"{n}: {x}" for n, w in b.workloads.items() for x in w.notes]
    sections = [Section("protocol", "Protocol", "The workloads, their budgets and targets (the protocol itself is on the "
                        "first page).", list(protocol_tables(b))),
                Section("profiles", f"Performance profiles ({main} budget)",
                        "Dolan & More (2002): for each workload, an optimizer's cost divided by the best cost on "
                        "that workload; rho(tau) is the fraction of workloads within a factor tau of the best. The "
                        f"area is AlgoPerf's score: the mean over workloads of (tau_max - r)/(tau_max - 1), r "
                        f"capped to [1, tau_max = {ST.TAU_MAX:g}]; 1 = best everywhere.",
                        [profile_figure(values, rt, rf), area_table(values, rt, rf, b)]),
                Section("ranks", f"Ranks and pairwise tests ({main} budget)",
                        "Ranks by the mean test value over final seeds on each workload (1 = best), averaged over "
                        "workloads; the interval resamples workloads and seeds (2000 bootstrap draws). Pairwise: a "
                        f"Welch t-test per workload on the final seeds, Holm-corrected over every test, alpha {ALPHA}.",
                        [rank_table(values, mean_rank, rank_ci, seeds, b), pair_table(values, pairs)])]
    if len(budgets) > 1:
        sections.append(Section("budgets", "Tuning budgets", "What tuning buys: each budget's profile area on the "
                                "final metric and mean rank (one_shot = the known-good lr for every value).",
                                [budget_table(b, c, budgets, values)]))
    for name, w in b.workloads.items():
        blocks = [sensitivity_figure(b, w, c.get(name, {}))] if len(w.tune) else []
        blocks.append(workload_table(b, w, c.get(name, {}), budgets))
        sections.append(Section(f"w-{name}", f"Workload: {name}", workload_intro(w), blocks))
    return Document(title=f"Benchmark report: {plan['name']}", facts=facts, notes=notes, sections=sections)


def verdict(values: List[str], mean_rank: Dict[str, float], rank_ci: Dict[str, Tuple[float, float]],
            pairs: Dict[Tuple[str, str], Dict[str, int]], rt, rf) -> str:
    """What the evidence allows: the best by mean rank, and against whom that is resolved (a win on
    some workload and a loss on none, after Holm) or not."""
    if not mean_rank:
        return "not resolved: no workload has final runs"
    order = sorted(mean_rank, key=lambda v: mean_rank[v])
    top = order[0]
    beaten, unresolved, lost = [], [], []
    for other in order[1:]:
        a, b_ = sorted((top, other))
        cell = pairs.get((a, b_), {"win": 0, "tie": 0, "loss": 0})
        wins, losses = (cell["win"], cell["loss"]) if a == top else (cell["loss"], cell["win"])
        (beaten if wins and not losses else lost if losses else unresolved).append(other)
    lo, hi = rank_ci.get(top, (math.nan, math.nan))
    text = (f"best mean rank: {top} ({mean_rank[top]:.2f}, 95% interval {lo:.2f}-{hi:.2f}); best time-to-target "
            f"profile area: {max(values, key=lambda v: ST.area(rt, v) if rt else 0)}; best final-metric area: "
            f"{max(values, key=lambda v: ST.area(rf, v) if rf else 0)}. ")
    text += (f"{top} significantly better on some workload and worse on none than: {', '.join(beaten)}. "
             if beaten else "")
    text += (f"not resolved against: {', '.join(unresolved)} (no Holm-significant difference). " if unresolved else "")
    text += (f"mixed against: {', '.join(lost)} (each wins somewhere: no optimizer dominates). " if lost else "")
    if len(order) > 1:
        o_lo, _ = rank_ci.get(order[1], (math.nan, math.nan))
        if math.isfinite(o_lo) and o_lo <= hi:
            text += "The ranking of the top two is not resolved (their rank intervals overlap)."
    return text.strip()


def protocol_tables(b: Bench):
    from .tables import Table

    rows, why = [], []
    for name, w in b.workloads.items():
        i = w.info
        grid = i["lr_grid"]
        rows.append({"workload": name, "task": i["task"],
                     "budget": ", ".join(f"{k} {v}" for k, v in i["budget"].items()),
                     "lr grid": f"{grid[0]:g} … {grid[-1]:g} ({len(grid)} points)" if len(grid) > 1 else f"{grid[0]:g}",
                     "selected on": i.get("metric", ""),
                     "target": f"{w.target:.4g}" if math.isfinite(w.target) else "none"})
        why.append({"workload": name, "known-good": ", ".join(f"{k} {v}" for k, v in i["known_good"].items()),
                    "target from": w.target_source,
                    "source; reference": "; ".join(x for x in (i.get("source"), i.get("reference")) if x)})
    yield Table("protocol-workloads", "Workloads", "Every compared setting gets the workload's budget; the tuning "
                "grid is centred on its known-good lr. Target: what time-to-target measures.", pd.DataFrame(rows),
                wide=["budget"])
    yield Table("protocol-sources", "Known-good settings and where they come from", "", pd.DataFrame(why),
                wide=["known-good", "target from", "source; reference"])


COLORS = ["#4a6fa5", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
          "#64b5cd"]


def color(values: List[str], v: str) -> str:
    return COLORS[values.index(v) % len(COLORS)] if v in values else "#444444"


def profile_figure(values: List[str], rt, rf):
    from .figures import Figure, legend_outside, new_figure

    fig, axes = new_figure(1, 2, height=0.8)
    taus = np.linspace(1, ST.TAU_MAX, 301)
    handles = []
    for ax, r, title in ((axes[0, 0], rt, "time-to-target (median over seeds; not reached = inf)"),
                         (axes[0, 1], rf, "final test metric, as a cost")):
        for k, v in enumerate(values):
            y = ST.profile(r, v, taus)
            if np.all(np.isnan(y)):
                continue
            line, = ax.step(taus, y + (k - len(values) / 2) * 0.004, where="post", color=color(values, v), lw=1.8,
                            label=f"{v} (area {ST.area(r, v):.2f})")
            if ax is axes[0, 0]:
                handles.append(line)
        ax.set_xlim(1, ST.TAU_MAX)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("tau (ratio to the best on each workload)")
        ax.set_ylabel("fraction of workloads within tau")
        ax.set_title(title)
    legend_outside(axes[0, 1], handles, "value (area: time-to-target)")
    return Figure("profiles", "Performance profiles over workloads",
                  "Higher is better; rho(1) is the share of workloads on which the value is the best. Lines are "
                  "nudged vertically by a hair so that equal profiles stay visible.", fig)


def area_table(values: List[str], rt, rf, b: Bench):
    from .tables import Table

    rows = [{b.plan["axis"]: v, "area, time-to-target": _f(ST.area(rt, v)), "area, final metric": _f(ST.area(rf, v)),
             "best on (time)": sum(1 for row in rt.values() if row.get(v) == 1.0),
             "target reached on": f"{sum(1 for row in rt.values() if math.isfinite(row.get(v, math.inf)))}/"
                                  f"{sum(1 for row in rt.values() if v in row)}"} for v in values]
    rows.sort(key=lambda r: -float(r["area, final metric"]) if r["area, final metric"] != "–" else 0)
    return Table("profile-areas", "Area under each profile (tau up to 4)", "Best first by the final-metric area.",
                 pd.DataFrame(rows))


def _f(x: float, digits: int = 3) -> str:
    return "–" if not math.isfinite(x) else f"{x:.{digits}f}"


def rank_table(values, mean_rank, rank_ci, seeds, b: Bench):
    from .tables import Table

    rows = []
    for v in sorted(values, key=lambda v: mean_rank.get(v, math.inf)):
        lo, hi = rank_ci.get(v, (math.nan, math.nan))
        rows.append({b.plan["axis"]: v, "mean rank": _f(mean_rank.get(v, math.nan), 2),
                     "95% interval": f"{_f(lo, 2)} – {_f(hi, 2)}",
                     "workloads": sum(1 for row in seeds.values() if v in row)})
    return Table("ranks", "Mean rank over workloads", "A value ranks only where it runs (n/a workloads are left out "
                 "and counted in the last column).", pd.DataFrame(rows))


def pair_table(values, pairs):
    """A matrix: row a, column b, 'wins-ties-losses' of a against b over the workloads both run on."""
    from .tables import Table

    rows = []
    for a in values:
        row = {"row vs column": a}
        for c_ in values:
            if a == c_:
                row[c_] = "·"
                continue
            key = tuple(sorted((a, c_)))
            cell = pairs.get(key)
            if not cell:
                row[c_] = "–"
                continue
            w_, l_ = (cell["win"], cell["loss"]) if key[0] == a else (cell["loss"], cell["win"])
            row[c_] = f"{w_}-{cell['tie']}-{l_}"
        rows.append(row)
    return Table("pairs", "Pairwise: row vs column, workloads won-tied-lost",
                 "A win is a Holm-significant Welch difference in the row's favour; a tie is no significant "
                 "difference: with few seeds most small gaps stay ties, by design.", pd.DataFrame(rows))


def budget_table(b: Bench, c, budgets: List[str], values: List[str]):
    from .tables import Table

    cols: Dict[str, Dict[str, str]] = {v: {b.plan["axis"]: v} for v in values}
    for bud in budgets:
        seeds, better = per_problem(b, c, bud)
        _, rf = profiles_input(b, c, bud, seeds, better)
        r = ST.ratios(rf)
        mr = ST.mean_ranks(seeds, better) if seeds else {}
        for v in values:
            cols[v][f"{bud}: area"] = _f(ST.area(r, v))
            cols[v][f"{bud}: mean rank"] = _f(mr.get(v, math.nan), 2)
    return Table("budgets", "Final-metric profile area and mean rank per tuning budget",
                 "Ranks are within a budget. A value whose one_shot area is close to its large one is robust to "
                 "not being tuned (Crowded Valley's finding, for its optimizers).", pd.DataFrame(list(cols.values())))


def workload_intro(w: Workload) -> str:
    i = w.info
    return (f"task {i['task']}; selected on {i.get('metric', '?')} ({w.better} is better); known-good lr "
            f"{i['known_lr']:g} with {i['known_value']}; target {w.target:.4g} ({w.target_source})."
            if math.isfinite(w.target) else f"task {i['task']}; no target ({w.target_source}).")


def sensitivity_figure(b: Bench, w: Workload, c):
    from .figures import Figure, legend_outside, new_figure

    values = b.values
    fig, axes = new_figure(1, 1, height=0.75)
    ax = axes[0, 0]
    t = w.tune[w.tune["status"].isin(R.DONE)]
    handles = []
    for v in values:
        d = t[t["value"] == v]
        if not len(d):
            continue
        xs, ys, es = [], [], []
        for lr, g in d.groupby("lr"):
            vals = [float(x) for x, s in zip(g["best_val"], g["status"])
                    if s != R.DIVERGED and isinstance(x, (int, float)) and math.isfinite(x)]
            if vals:
                m, h = ST.ci95(vals)
                xs.append(lr), ys.append(m), es.append(0 if not math.isfinite(h) else h)
        line = ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, lw=1.5, capsize=3, color=color(values, v), label=v)
        handles.append(line)
        lr = c.get((v, "large")).lr if (v, "large") in c else None
        if lr is not None and lr in xs:
            ax.plot([lr], [ys[xs.index(lr)]], marker="*", ms=14, color=color(values, v), mec="black", zorder=5)
        div = sorted(float(x) for x in d[d["status"] == R.DIVERGED]["lr"])
        if div:
            handles.append(ax.scatter(div, [0] * len(div), marker="x", color=color(values, v), transform=ax.get_xaxis_transform(),
                                      s=40, label=f"{v}: diverged"))
    ax.axvline(float(w.info["known_lr"]), color="0.4", ls="--", lw=1)
    if math.isfinite(w.target):
        ax.axhline(w.target, color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.xaxis.set_major_locator(FixedLocator([float(x) for x in w.info["lr_grid"]]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("learning rate (dashed: known-good)")
    ax.set_ylabel(f"{w.info.get('metric', '')} ({w.better} is better)")
    legend_outside(ax, handles, b.plan["axis"])
    n = t.groupby(["value", "lr"]).size()
    seeds = f"{int(n.min())}" if len(n) and n.min() == n.max() else f"{int(n.min()) if len(n) else 0}-{int(n.max()) if len(n) else 0}"
    return Figure(f"sens-{w.name}", f"{w.name}: validation metric vs learning rate",
                  f"Mean over {seeds} tuning seed(s) (bars: 95% CI where there are 2 or more); star: the lr chosen "
                  "with the whole grid; dotted: the target; x at the bottom: a diverged run.", fig)


def workload_table(b: Bench, w: Workload, c, budgets: List[str]):
    from .tables import Table

    rows = []
    axis = b.plan["axis"]
    tol_spread = _spread(w)
    na = b.plan.get("n/a", {}).get(w.name, {})
    for v in b.values:
        if v in na:
            rows.append({axis: v, "chosen lr": "n/a", "good-lr band": "n/a",
                         **{f"test, {bud}": "n/a" for bud in budgets}, "time-to-target": f"n/a: {na[v]}"})
            continue
        row: Dict[str, Any] = {axis: v}
        big = c.get((v, "large"))
        row["chosen lr"] = (f"{big.lr:g}" + (" (grid edge!)" if big.edge else "")) if big else "–"
        row["good-lr band"] = _band_text(w, v, tol_spread)
        for bud in budgets:
            cell = c.get((v, bud))
            row[f"test, {bud}"] = _test_text(cell) if cell else "–"
        main = c.get((v, "large")) or c.get((v, budgets[0]))
        row["time-to-target"] = _time_text(main) if main else "–"
        rows.append(row)
    return Table(f"tab-{w.name}", f"{w.name}: chosen lr, robustness, test metric per budget",
                 "test: mean ± 95% CI over final seeds (n); a diverged seed counts in n and not in the mean. "
                 f"Good-lr band: contiguous grid points within {BAND_TOLERANCE:.0%} of the workload's tuning spread "
                 "of the best, in decades. Time-to-target: median over seeds of training seconds (eval excluded); in brackets, the seeds that reach it / all seeds.",
                 pd.DataFrame(rows))


def _spread(w: Workload) -> float:
    v = [float(x) for x, s in zip(w.tune["best_val"], w.tune["status"])
         if s in R.COUNTED and isinstance(x, (int, float)) and math.isfinite(x)]
    return (max(v) - min(v)) * BAND_TOLERANCE if v else 0.0


def _band_text(w: Workload, v: str, tol: float) -> str:
    d = w.tune[(w.tune["value"] == v) & w.tune["status"].isin(R.DONE)]
    if not len(d):
        return "–"
    lrs, scores = [], []
    for lr, g in d.groupby("lr"):
        vals = [float(x) for x, s in zip(g["best_val"], g["status"]) if s in R.COUNTED and isinstance(x, (int, float))]
        lrs.append(float(lr))
        scores.append(float(np.median(vals)) if vals else math.nan)
    lo, hi, width = ST.band(lrs, scores, w.better, tol)
    return f"{width:.1f} dec ({lo:g}–{hi:g})"


def _test_text(cell: Cell) -> str:
    ok = finite(cell.tests)
    if not ok:
        return f"diverged ({cell.diverged}/{len(cell.tests)})" if cell.diverged else "no run"
    m, h = ST.ci95(ok)
    ci = f" ± {h:.3g}" if math.isfinite(h) else ""
    div = f", {cell.diverged} diverged" if cell.diverged else ""
    return f"{m:.4g}{ci} (n={len(cell.tests)}{div}) @ lr {cell.lr:g}"


def _time_text(cell: Cell) -> str:
    t = ST.median_time(cell.times)
    reached = sum(1 for x in cell.times if math.isfinite(x))
    return (f"{t:.1f} s" if math.isfinite(t) else "not reached") + f" ({reached}/{len(cell.times)})"


def build(folder: Path, out: Optional[Path] = None) -> Dict[str, Path]:
    """report.html and report.pdf of a benchmark, written whole or not at all."""
    import os

    from dl2bench.runs import publish

    from .render import style, to_html, to_pdf

    b = load(Path(folder))
    out = Path(out or folder)
    out.mkdir(parents=True, exist_ok=True)
    tmp = {n: out / f".{n}.tmp{os.getpid()}" for n in ("report.html", "report.pdf")}
    try:
        with style():
            doc = document(b)
            tmp["report.html"].write_text(to_html(doc), encoding="utf-8")
            to_pdf(doc, tmp["report.pdf"], b.plan["name"])
        for n, p in tmp.items():
            publish(p, out / n)
    finally:
        for p in tmp.values():
            if p.exists():
                p.unlink()
    return {n: out / n for n in tmp}
