"""The report's tables and its header facts. Like figures, each table is one function registered
with `@table(section)` that yields Table objects (or nothing when it does not apply). Every cell
that is a statistic says its n and spread."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd

from dl2bench import record as R

from .analysis import (
    UNSTEADY_RATIO,
    Analysis,
    Factor,
    aggregate,
    fmt,
    level_labels,
    level_str,
    mean_std,
    not_counted,
    spread_digits,
    status_counts,
    target_label,
    throughput_spread,
    unique_str,
)
from .figures import bench_runs, best_cpu, by, speed_groups
from .load import BOOKKEEPING, COUNTED, REPLICATE
from .units import goal_word

MAX_RANKED = 40  # the ranking shows this many configurations; runs.csv has all
MAX_PROBLEM_ROWS = 200  # rows of the table of runs without a final result
REASON_CHARS = 300


@dataclass
class Table:
    """A table of display strings; `colors` (optional) gives a swatch per row for the first column."""

    key: str
    title: str
    caption: str
    df: pd.DataFrame
    colors: Optional[List[Optional[tuple]]] = None
    wide: List[str] = field(default_factory=list)  # columns with long free text (wrapped in the PDF)


TABLES: List[Tuple[str, Callable[..., Iterator[Table]], Optional[str]]] = []


def table(section: str, family: Optional[str] = None) -> Callable:
    """Register a table function for a section ("overview", "factor", "speed", "problems", "setup",
    "family"); with `family`, it is made only for that family's tasks."""
    def deco(fn: Callable[..., Iterator[Table]]) -> Callable[..., Iterator[Table]]:
        TABLES.append((section, fn, family))
        return fn
    return deco


def _ci(r: pd.Series, u) -> str:
    if r["n"] < 2 or not math.isfinite(r["lo"]):
        return "– (n<2)"
    return f"{fmt(r['lo'], u)} – {fmt(r['hi'], u)}"


def _flops(v: float) -> str:
    for scale, unit in ((1e9, "GFLOP"), (1e6, "MFLOP"), (1e3, "kFLOP")):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.0f} FLOP"


def _group_rows(a: Analysis, column: str, order: List[str], costs: bool = False) -> List[Dict[str, str]]:
    """Per level of `column`: (with `costs`, its parameters and FLOPs,) the metric, its CI, time and
    throughput, and the runs not counted."""
    u = a.metric_unit
    ok = a.ok
    m = aggregate(ok, [column], a.metric, bounds=u.bounds).set_index(column)
    extra = {c: aggregate(ok, [column], c).set_index(column) for c in ("train_time_total", "samples_per_s")
             if c in ok.columns and (pd.to_numeric(ok[c], errors="coerce") > 0).any()}  # runs that trained
    # each level's runs, of the few columns read here (not ~100 columns x every run, once per level)
    few = a.runs[list(dict.fromkeys([column, "status", a.metric] + [c for c in ("params", "flops_per_sample")
                                                                     if c in a.runs.columns]))]
    rows = []
    for lvl in order:
        row = {column: lvl}
        sel = few[few[column] == lvl]
        for col, head, show in (("params", "parameters", lambda v: f"{v:,.0f}"),
                                ("flops_per_sample", "forward FLOPs/sample", _flops))[: 2 * costs]:
            v = pd.to_numeric(a.runs.get(col, pd.Series(dtype=float)), errors="coerce")
            if v.notna().any():  # what each model costs belongs beside what it scores
                lv = sorted(pd.to_numeric(sel[col], errors="coerce").dropna().unique()) if col in sel else []
                row[head] = ("–" if not lv else show(lv[0]) if len(lv) == 1 else f"{show(lv[0])}–{show(lv[-1])}")
        if lvl in m.index:
            r = m.loc[lvl]
            row[f"{u.axis()}, mean ± std (n)"] = mean_std(r["mean"], r["std"], int(r["n"]), u)
            row["95% CI of the mean"] = _ci(r, u)
        else:
            row[f"{u.axis()}, mean ± std (n)"] = "– (n=0)"
            row["95% CI of the mean"] = "–"
        for c, e in extra.items():
            cu = a.unit(c)
            row[cu.axis()] = mean_std(e.loc[lvl, "mean"], e.loc[lvl, "std"], int(e.loc[lvl, "n"]), cu) \
                if lvl in e.index else "–"
        row["runs not counted"] = not_counted(sel, a.metric) or "none"
        rows.append(row)
    return rows


@table("factor")
def by_level(a: Analysis, f: Factor) -> Iterator[Table]:
    """Mean ± std (n) of the metric per level, best first."""
    order = a.ranked_levels(f.column)
    df = pd.DataFrame(_group_rows(a, f.column, order, costs=True)).rename(columns={f.column: f.name})
    yield Table(key=f"table-{f.column}", title=f"Table: {a.metric_unit.label}{by(f)}",
                caption=(f"Sorted by mean {a.metric}, best first ({a.better}). Counted runs: finished or early "
                         "stopped; std: standard deviation over those runs; CI: Student t."),
                df=df, colors=[f.colors.get(l) for l in order])


@table("overview")
def ranking(a: Analysis) -> Iterator[Table]:
    """Every configuration (combination of factor levels), best first."""
    if len(a.factors) < 2:
        return  # with one factor this is the factor's own table
    order = a.ranked_levels(a.config_column)
    shown = order[:MAX_RANKED]
    df = pd.DataFrame(_group_rows(a, a.config_column, shown))
    df.insert(0, "rank", [str(i + 1) for i in range(len(shown))])
    more = f" The {len(order) - len(shown)} further configurations are in runs.csv." if len(order) > len(shown) else ""
    yield Table(key="ranking", title="Configurations ranked",
                caption=(f"All {len(order)} configurations by mean {a.metric}, best first ({a.better}; n: counted runs "
                         f"over seeds).{more}"),
                df=df)


# ---------------------------------------------------------------------------------------------
# speed

@table("speed")
def speedup(a: Analysis) -> Iterator[Table]:
    """GPU/CPU speedup per model and batch size, when the sweep ran on both."""
    r = a.runs
    if "samples_per_s" not in r.columns or "device" not in r.columns:
        return
    r = r[r["samples_per_s"].notna()].copy()
    if "mode" in r.columns:  # benchmark runs have their own table (benchmark_speedup)
        r = r[r["mode"] != "benchmark"]
    if not {"cpu", "cuda"} <= set(r["device"].astype(str)):
        return
    r["group"], axis_name = speed_groups(r)
    if "batch_size" in r.columns and "batch" not in axis_name:
        r["group"] = r["group"] + ", batch " + level_labels(r["batch_size"])
    u = a.unit("samples_per_s")
    agg = aggregate(r, ["group", "device"], "samples_per_s")
    rows = []
    for g in sorted(r["group"].unique()):
        cpu = agg[(agg["group"] == g) & (agg["device"] == "cpu")]
        gpu = agg[(agg["group"] == g) & (agg["device"] == "cuda")]
        threads = unique_str(r.loc[(r["group"] == g) & (r["device"] == "cpu"), "threads"]) if "threads" in r else []
        row = {"model, batch size": g,
               "CPU (samples/s), mean ± std (n)": mean_std(*cpu.iloc[0][["mean", "std", "n"]], u) if len(cpu) else "not run",
               "CPU threads": ", ".join(threads) or "–",
               "GPU (samples/s), mean ± std (n)": mean_std(*gpu.iloc[0][["mean", "std", "n"]], u) if len(gpu) else "not run"}
        if len(cpu) and len(gpu):
            c, g_ = cpu.iloc[0], gpu.iloc[0]
            ratio = g_["mean"] / c["mean"]
            # standard error of a ratio of independent means, to first order
            rel = math.sqrt(sum((s["std"] / s["mean"]) ** 2 / s["n"] for s in (c, g_) if s["n"] > 1)) \
                if c["n"] > 1 or g_["n"] > 1 else float("nan")
            if math.isfinite(rel) and c["n"] > 1 and g_["n"] > 1:
                d = spread_digits(ratio * rel, 1)
                row["speedup GPU/CPU (×)"] = f"{ratio:,.{d}f} ± {ratio * rel:,.{d}f}"
            else:
                row["speedup GPU/CPU (×)"] = f"{ratio:,.1f} (n=1 on a side, no spread)"
        else:
            row["speedup GPU/CPU (×)"] = "–"
        rows.append(row)
    names = lambda dev: ", ".join(unique_str(r.loc[r["device"] == dev, "device_name"])) if "device_name" in r else dev  # noqa: E731
    yield Table(key="speedup", title="GPU/CPU speedup",
                caption=(f"Ratio of mean training throughputs, ± its standard error (propagated from both means). "
                         f"GPU: {names('cuda')}; CPU: {names('cpu')}. All runs with a summary count."),
                df=pd.DataFrame(rows))


def _bench_cell(side: pd.DataFrame, done: pd.DataFrame, col: str, fmt_: str) -> Tuple[str, float]:
    """One device's figure for a table cell and its value: the median over repeats (IQR) of one
    run, the median of several runs' medians (n), or why there is none -- never an empty cell."""
    if side.empty:
        return "not run", float("nan")
    ok = done[pd.to_numeric(done.get(f"{col}_median", pd.Series(dtype=float)), errors="coerce").notna()] \
        if f"{col}_median" in done.columns else done.iloc[0:0]
    if ok.empty:
        vc = side["status"].value_counts()
        return "not run (" + ", ".join(f"{int(n)} {st.replace('_', ' ')}" for st, n in vc.items()) + ")", float("nan")
    med = float(pd.to_numeric(ok[f"{col}_median"]).median())
    if len(ok) == 1:
        return f"{med:{fmt_}} (IQR {float(ok[f'{col}_iqr'].iloc[0]):{fmt_}})", med
    return f"{med:{fmt_}} (median of n={len(ok)} runs)", med


@table("speed")
def benchmark_speedup(a: Analysis) -> Iterator[Table]:
    """Benchmark mode: CPU and GPU training and inference figures side by side per model x batch
    size x precision, with the GPU/CPU speedup; a device the sweep did not run says "not run"."""
    every = bench_runs(a, counted=False)
    if every is None:
        return
    done = bench_runs(a)
    done = best_cpu(done, ["model", "batch_size", "precision"]) if done is not None else every.iloc[0:0]
    keys = [k for k in ("model", "batch_size", "precision") if k in every.columns]
    rows = []
    for key, g in every.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {k.replace("_", " "): level_str(v) for k, v in zip(keys, key)}
        d = done
        for k, v in zip(keys, key):
            d = d[d[k] == v]
        cells = {}
        for dev in ("cpu", "cuda"):
            side, ok = g[g["dev"] == dev], d[d["dev"] == dev]
            cells[dev] = {col: _bench_cell(side, ok, col, f) for col, f in
                          (("train_samples_per_s", ",.0f"), ("infer_samples_per_s", ",.0f"), ("latency_ms", ".3g"))}
            if dev == "cpu":
                row["CPU threads"] = ", ".join(f"{t:g}" for t in sorted(ok["threads"].dropna().unique())) \
                    if "threads" in ok.columns and len(ok) else "–"
        for col, head in (("train_samples_per_s", "training samples/s"), ("infer_samples_per_s", "inference samples/s"),
                          ("latency_ms", "batch-1 latency ms")):
            (ctext, cval), (gtext, gval) = cells["cpu"][col], cells["cuda"][col]
            row[f"CPU {head}"] = ctext
            row[f"GPU {head}"] = gtext
            ratio = (cval / gval if col == "latency_ms" else gval / cval) if cval > 0 and gval > 0 else float("nan")
            row[f"{head.split(' ')[0]} speedup GPU/CPU (×)"] = f"{ratio:,.3g}" if math.isfinite(ratio) else "–"
        rows.append(row)
    df = pd.DataFrame(rows)
    lead = [c for c in df.columns if not c.startswith(("CPU ", "GPU ")) and "speedup" not in c] + ["CPU threads"]
    order = lead[:-1] + ["CPU threads"] + [c for c in df.columns if c not in lead]
    df = df[list(dict.fromkeys(order))]
    names = lambda dev: ", ".join(sorted(set(map(str, every.loc[every["dev"] == dev, "device_name"].dropna())))) \
        if "device_name" in every.columns else ""  # noqa: E731
    infer = ", ".join(f"{b:g}" for b in sorted(pd.to_numeric(every.get("infer_batch_size", pd.Series(dtype=float)),
                                                             errors="coerce").dropna().unique())) or "?"
    no_gpu = not (every["dev"] == "cuda").any()
    yield Table(key="benchmark-speedup", title="GPU/CPU speedup (benchmark mode)",
                caption=("Median over timed repeats after the warm-up steps, and its interquartile range. Training: "
                         "batch fetch + forward + backward + optimizer step; inference: forward only, at batch "
                         f"{infer}; latency: one sample at a time. Speedup: GPU over CPU throughput (CPU over GPU "
                         "latency). CPU: the thread count that trained fastest in each configuration (column) "
                         f"({names('cpu') or 'no CPU run'}); GPU: {names('cuda') or 'none'}. "
                         + ("This sweep ran no GPU run (the CPU half only, e.g. --set device=cpu): every GPU cell "
                            "says \"not run\"." if no_gpu else
                            "\"not run\": the sweep has no run of that configuration on that device.")),
                df=df)


def _target_columns(runs: pd.DataFrame, prefix: str) -> List[str]:
    cols = [c for c in runs.columns if c.startswith(prefix) and re.search(r"_[0-9.]+$", c)]
    return sorted(cols, key=lambda c: float(c.rsplit("_", 1)[1]))


def _to_target(a: Analysis, prefix: str, title: str, key: str, say_none: bool = True) -> Iterator[Table]:
    done = a.runs[a.runs["status"] != R.INCOMPLETE]
    if "mode" in done.columns:  # a benchmark run times steps and trains to no target
        done = done[done["mode"] != "benchmark"]
    mon = a.decl.monitor
    cols = [c for c in _target_columns(done, prefix) if mon is None or c.startswith(f"{prefix}val_{mon}_")]
    if not cols or done.empty:
        return
    reached_by = {c: pd.to_numeric(done[c], errors="coerce").notna().sum() for c in cols}
    missed = [c for c in cols if not reached_by[c]]
    cols = [c for c in cols if reached_by[c]]
    targets = lambda cs: ", ".join(target_label(c, a.decl) for c in cs)  # noqa: E731
    if not cols:  # a table of "not reached" cells says one thing: say it once
        if not say_none:
            return
        yield Table(key=key, title=title,
                    caption="No run reached any of the task's targets within its epochs (so no epochs to target either).",
                    df=pd.DataFrame([{"targets": targets(missed),
                                      "result": f"not reached by any run (0/{len(done)} runs with a summary)"}]))
        return
    present = set(done[a.config_column])
    order = [l for l in a.ranked_levels(a.config_column) if l in present][:MAX_RANKED]
    by_level = dict(tuple(done.groupby(a.config_column, sort=False)))  # one pass, not one scan per level
    rows = []
    for lvl in order:
        d = by_level[lvl]
        row = {"configuration": lvl}
        for c in cols:
            u = a.unit(c)
            v = pd.to_numeric(d[c], errors="coerce").dropna()
            reached = f"{len(v)}/{len(d)} reached"
            head = u.axis()
            if v.empty:
                row[head] = f"not reached (0/{len(d)})"
            else:
                row[head] = f"{mean_std(v.mean(), v.std(), len(v), u).rsplit(' (', 1)[0]} ({reached})"
        rows.append(row)
    u0 = a.unit(cols[0])
    yield Table(key=key, title=title,
                caption=(f"Over the runs that reached the target: mean ± std{f' ({u0.unit})' if u0.unit else ''}, and how many of the "
                         "runs with a summary reached it. 'not reached' = no run of that configuration got there "
                         "within its epochs. Time is training time only (evaluation excluded)."
                         + (f" No run reached {targets(missed)}: not shown." if missed else "")),
                df=pd.DataFrame(rows))


def _monitored(a: Analysis) -> str:
    """What the task's targets are values of ('accuracy'), for a title."""
    m = a.decl.metric(a.decl.monitor)
    return m.short if m else "metric"


@table("speed")
def time_to_target(a: Analysis) -> Iterator[Table]:
    """Training seconds to each of the task's target values of its monitored metric, per configuration."""
    yield from _to_target(a, "time_to_", f"Time to target {_monitored(a)}", "time-to-target")


@table("speed")
def epochs_to_target(a: Analysis) -> Iterator[Table]:
    """Epochs to each of the task's target values of its monitored metric, per configuration."""
    # no target reached: the time table has said so for both
    yield from _to_target(a, "epochs_to_", f"Epochs to target {_monitored(a)}", "epochs-to-target", say_none=False)


@table("speed")
def unsteady_throughput(a: Analysis) -> Iterator[Table]:
    """Runs whose training speed changed a lot between epochs: their one samples/s figure hides it."""
    spread = throughput_spread(a.curves)
    bad = spread[spread["unsteady"]]
    if bad.empty:
        return
    runs = a.runs.set_index(["sweep", "run"])
    u = a.unit("samples_per_s")
    # a benchmark run's rows are its timed repeats, not epochs: the table says which it compares
    bench = {k for k, m in runs.get("mode", pd.Series(dtype=object)).items() if m == "benchmark"}
    kinds = {(s_, r_) in bench for s_, r_ in zip(bad["sweep"], bad["run"])}
    word = "repeat" if kinds == {True} else "epoch or repeat" if kinds == {True, False} else "epoch"
    rows = []
    for _, b in bad.sort_values("ratio", ascending=False).iterrows():
        r = runs.loc[(b["sweep"], b["run"])] if (b["sweep"], b["run"]) in runs.index else pd.Series(dtype=object)
        rows.append({"run": b["run"], "configuration": r.get(a.config_column, "–"),
                     "device": str(r.get("device", "–")),
                     f"slowest – fastest {word} ({u.unit})": f"{fmt(b['slowest'], u)} – {fmt(b['fastest'], u)}",
                     "fastest/slowest": f"{b['ratio']:.2f}×", f"{word}s": int(b["epochs"])})
    n = len(spread)
    how = {"epoch": "epochs (warm-up steps excluded from both)",
           "repeat": "benchmark repeats (warm-up excluded)",
           "epoch or repeat": "epochs or benchmark repeats (warm-up excluded)"}[word]
    yield Table(key="unsteady-throughput", title="Unsteady throughput",
                caption=(f"{len(bad)} of {n} runs with two or more timed {word}s had a fastest {word} more than "
                         f"{UNSTEADY_RATIO:g}× their slowest, over {how}. Another process on "
                         "the machine, thermal throttling or a shared GPU does this; such a run's samples/s is an "
                         "average over changing conditions, and comparisons that rest on it are weaker."),
                df=pd.DataFrame(rows))


# ---------------------------------------------------------------------------------------------
# what went wrong, and what was held fixed

@table("problems")
def problem_runs(a: Analysis) -> Iterator[Table]:
    """Every diverged, failed and incomplete run with its reason (never silently dropped)."""
    r = a.runs[~a.runs["status"].isin(COUNTED)]
    if r.empty:
        return
    total = len(r)
    # thousands of problem runs (3% of 50,000) fill dozens of PDF pages nobody reads: the first
    # MAX_PROBLEM_ROWS, and runs.csv has every one with its status and reason
    r = r.sort_values(["status", a.config_column]).head(MAX_PROBLEM_ROWS)
    rows = []
    for _, x in r.iterrows():
        why = " ".join(str(v) for v in (x.get("reason"), x.get("error")) if isinstance(v, str) and v)
        rows.append({"status": str(x["status"]).replace("_", " "), "run": f"{x['sweep']}/{x['run']}",
                     "configuration": str(x[a.config_column]), "seed": level_str(x.get(REPLICATE)),
                     "epochs done": level_str(x.get("epochs_completed")),
                     "reason": (why[:REASON_CHARS] + "…") if len(why) > REASON_CHARS else (why or "no reason recorded")})
    yield Table(key="problems", title="Runs without a final result",
                caption=(f"{total} run(s): diverged (non-finite loss), failed (an error during the run) or "
                         "incomplete (no summary.json: still running or killed). They are not in the means above."
                         + (f" The first {len(rows)} (by status, then configuration) are listed; runs.csv has all "
                            f"{total} with their status and reason." if len(rows) < total else "")),
                df=pd.DataFrame(rows), wide=["reason"])


@table("setup")
def settings(a: Analysis) -> Iterator[Table]:
    """The config settings every run shares (what the comparison held fixed)."""
    factor_cols = {c for f in a.factors for c in f.columns}
    rows = []
    for c in a.sweep.config_keys:
        if c in BOOKKEEPING or c in factor_cols or c == REPLICATE or c not in a.runs.columns:
            continue
        vals = unique_str(level_labels(a.runs[c]))
        if len(vals) == 1:
            rows.append((c, vals[0]))
    if not rows:
        return
    per = math.ceil(len(rows) / 3)
    cols = [rows[i * per:(i + 1) * per] for i in range(3)]
    out = []
    for i in range(per):
        row = {}
        for j, col in enumerate(cols):
            k, v = col[i] if i < len(col) else ("", "")
            row["setting" + " " * j], row["value" + " " * j] = k, v
        out.append(row)
    yield Table(key="settings", title="Settings shared by every run",
                caption="Config values identical in all runs (bookkeeping keys aside). 'default' = the "
                        "optimizer's or regulariser's own default.", df=pd.DataFrame(out))


# ---------------------------------------------------------------------------------------------
# the header

def _facts(r: pd.DataFrame, sw) -> Dict[str, str]:
    """Facts about a set of runs: when, which code, outcomes, where they ran."""
    def col(c: str) -> pd.Series:
        return r[c] if c in r.columns else pd.Series([], dtype=object)

    def env(c: str) -> pd.Series:  # where a run ran is only known from its summary
        return col(c)[r["status"] != R.INCOMPLETE] if c in r.columns else col(c)

    def counted(c: str, fallback: str = "not recorded", every_run: bool = False) -> str:
        vc = level_labels((col(c) if every_run else env(c)).dropna()).value_counts()
        if vc.empty:
            return fallback
        return "; ".join(f"{k} ({v} run{'s' if v != 1 else ''})" for k, v in vc.items())

    sc = status_counts(r)
    started = [s for s in col("started_at").dropna().astype(str)]
    finished = [s for s in col("finished_at").dropna().astype(str)]
    when = f"{min(started)[:16].replace('T', ' ')} – {max(finished or started)[:16].replace('T', ' ')} UTC" if started else "not recorded"
    shas = list(dict.fromkeys(sw.git_sha + [s for s in col("git_sha").dropna().astype(str)]))
    n = len(r)
    return {
        "sweep": sw.name,
        "report built": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "runs started – finished": when,
        "sweep created": ", ".join(sw.created) or "no manifest",
        "git sha": counted("git_sha", ", ".join(shas) or "not recorded") if len(shas) > 1 else (shas[0] if shas else "not recorded"),
        "runs": f"{n}: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sc.items() if v or k in R.STATUSES),
        "task": counted("task", every_run=True),
        "seeds": f"{col(REPLICATE).nunique()} ({', '.join(unique_str(sorted(col(REPLICATE).dropna().unique())))})" if REPLICATE in r else "not recorded",
        "devices": counted("device_name"),
        "threads": counted("threads"),
        "torch": counted("torch_version"),
        "CUDA": counted("cuda_version", "none (CPU only)") if col("cuda_version").notna().any() else "none (CPU only)",
        "hosts": f"{col('host').nunique()} ({', '.join(unique_str(col('host'))[:6])}{', …' if col('host').nunique() > 6 else ''})" if "host" in r else "not recorded",
        "data": counted("data_source"),
        "source": ", ".join(sw.sources),
    }


def _metric_fact(a: Analysis) -> str:
    """'test_acc: test accuracy (%), higher is better; 9 counted runs'."""
    return f"{a.metric}: {a.metric_unit.axis()}, {a.better}; {'n/a' if a.ok.empty else f'{len(a.ok)} counted runs'}"


def _monitor_fact(a: Analysis) -> Optional[str]:
    """The validation metric behind best epoch, early stopping and targets, where it is not the headline's."""
    mon, head = a.decl.metric(a.decl.monitor), a.decl.metric(a.decl.headline)
    if mon is None or head is None or mon.name == head.name:
        return None
    return (f"val_{mon.name}: validation {mon.said}, {goal_word(mon.goal)} (best epoch, early stopping and "
            f"targets follow it; the headline {head.name} is measured on the {'/'.join(head.splits)} split only)"
            if head.splits == ("test",) else
            f"val_{mon.name}: validation {mon.said}, {goal_word(mon.goal)} (best epoch, early stopping, targets)")


def best_fact(a: Analysis, with_label: bool = False) -> Optional[str]:
    """The best configuration by the task's ranking metric, mean ± std (n), and whether the ranking
    against the runner-up is resolved."""
    if a.ok.empty:
        return None
    best = a.ranked_levels(a.config_column)
    g = aggregate(a.ok, [a.config_column], a.metric).set_index(a.config_column).loc[best[0]]
    what = f" {a.metric_unit.label}" if with_label else ""
    name = f"{a.factors[0].columns[0]}={best[0]}" if with_label and len(a.factors) == 1 else best[0]
    verdict = ranking_verdict(a, best)
    return f"{name}:{what} {mean_std(g['mean'], g['std'], int(g['n']), a.metric_unit, True)}" + (
        f" — {verdict}" if verdict else "")


RESOLVED_P = 0.05


def ranking_verdict(a: Analysis, ranked: List[str]) -> str:
    """Whether the best configuration is told apart from the runner-up: Welch's t-test over their runs
    (seeds), p < RESOLVED_P. With one run on either side there is no spread to test, and it says so."""
    if len(ranked) < 2:
        return ""
    ok = a.ok[[a.config_column, a.metric]]
    vals = [pd.to_numeric(ok.loc[ok[a.config_column] == lvl, a.metric], errors="coerce").dropna().to_numpy(float)
            for lvl in ranked[:2]]
    second = ranked[1]
    if min(len(v) for v in vals) < 2:
        return f"not resolved: one run of it or of the runner-up ({second}), no spread to compare"
    from scipy import stats

    if np.std(vals[0]) == 0 and np.std(vals[1]) == 0:
        p = 0.0 if vals[0].mean() != vals[1].mean() else 1.0
    else:
        p = float(stats.ttest_ind(vals[0], vals[1], equal_var=False).pvalue)
    if p < RESOLVED_P:
        return f"ahead of the runner-up {second} (Welch's t-test over runs, p = {p:.2g})"
    return (f"not resolved: the runner-up {second} is within the noise (Welch's t-test over runs, p = {p:.2g}; "
            "more seeds would tell)")


def declared_fact(a: Analysis) -> str:
    """Every metric the task declares, with its full label, unit and direction."""
    d = a.decl
    first = [n for n in dict.fromkeys((d.headline, d.monitor)) if n in d.metrics]
    names = first + [n for n in d.metrics if n not in first and n != "loss"] + (
        ["loss"] if "loss" in d.metrics and "loss" not in first else [])  # the loss last, unless it leads
    out = []
    for m in (d.metrics[n] for n in names):
        if m.mixed:
            out.append(f"{m.name}: declared differently by the runs, see the notes ({goal_word(m.goal)})")
            continue
        unit = "%" if m.percent else m.unit
        out.append(f"{m.name}: {m.said} ({', '.join(x for x in (unit, goal_word(m.goal)) if x)})")
    return "; ".join(out) or "none readable"


def _size_facts(sw) -> List[Tuple[str, str]]:
    """What the sweep set out to compare (its file's description) and, for a sweep submitted with
    --smoke, that it is laptop-sized: first on the title page, so nobody quotes a smoke run as a result."""
    out = []
    if getattr(sw, "smoke", None):
        out.append(("size", "SMOKE SIZE (--smoke): " + "; ".join(sw.smoke) + ". A check that everything runs, "
                    "not a full-size comparison."))
    if getattr(sw, "described", None):
        out.append(("description", "\n".join(sw.described)))
    return out


def _factors_fact(a: Analysis) -> str:
    return "; ".join(f"{f.name} ({len(f.levels)} levels)" for f in a.factors) or "none: every run has the same config"


def header(a) -> List[Tuple[str, str]]:
    """The title page's facts: what, when, which code, how many runs of each outcome, where. For a
    report over several tasks (a list of Analyses) the task-specific facts are given per task."""
    parts = a if isinstance(a, list) else [a]
    if len(parts) == 1:
        a = parts[0]
        f = _facts(a.runs, a.sweep)
        keys = ["sweep", "report built", "runs started – finished", "sweep created", "git sha", "runs", "task"]
        facts = [(k, f[k]) for k in keys[:1]] + _size_facts(a.sweep) + [(k, f[k]) for k in keys[1:]]
        facts.append(("metric", _metric_fact(a)))
        if _monitor_fact(a):
            facts.append(("monitored", _monitor_fact(a)))
        facts.append(("declared metrics", declared_fact(a)))
        if best_fact(a):
            facts.append(("best", best_fact(a)))
        facts.append(("factors", _factors_fact(a)))
        facts += [(k, f[k]) for k in ("seeds", "devices", "threads", "torch", "CUDA", "hosts", "data", "source")]
        return facts
    runs = pd.concat([p.runs for p in parts])
    f = _facts(runs, parts[0].sweep)
    facts = [("sweep", f["sweep"])] + _size_facts(parts[0].sweep)
    facts += [(k, f[k]) for k in ("report built", "runs started – finished", "sweep created", "git sha", "runs")]
    facts.append(("tasks", "; ".join(f"{p.task} ({p.family}, {len(p.runs)} run{'s' if len(p.runs) != 1 else ''})"
                                      for p in parts)))
    # never one ranking over tasks: each task's own best, by its own metric
    facts.append(("best, per task", "\n".join(f"{p.task}: {best_fact(p, with_label=True) or f'no counted run ({p.metric})'}"
                                               for p in parts)))
    facts += [(k, f[k]) for k in ("devices", "threads", "torch", "CUDA", "hosts", "data", "source")]
    return facts


@table("task")
def task_facts(a: Analysis) -> Iterator[Table]:
    """A task's own facts, at the head of its part of a report over several tasks."""
    f = _facts(a.runs, a.sweep)
    rows = [("family", a.family), ("runs", f["runs"]), ("metric", _metric_fact(a))]
    if _monitor_fact(a):
        rows.append(("monitored", _monitor_fact(a)))
    rows.append(("declared metrics", declared_fact(a)))
    rows += [("best", best_fact(a) or "no counted run yet"), ("factors", _factors_fact(a)), ("seeds", f["seeds"]),
             ("sweeps", ", ".join(unique_str(a.runs["sweep"]))), ("data", f["data"])]
    yield Table(key="facts", title=f"At a glance: {a.task}",
                caption=f"The {a.task} runs only: their configurations are ranked among themselves, never against "
                        "another task's.", df=pd.DataFrame(rows, columns=["", "  "]), wide=["  "])


@table("overview")
def test_metrics(a: Analysis) -> Iterator[Table]:
    """Every test metric the task declares, per configuration, where it declares more than the
    headline and the loss (e.g. mean IoU, Dice and pixel accuracy)."""
    cols = [f"test_{m.name}" for m in a.decl.metrics.values() if "test" in m.splits and not m.mixed]
    cols = [c for c in cols if c in a.runs.columns and a.runs[c].notna().any()]
    if len(cols) < 3:
        return
    cols.sort(key=lambda c: (c != a.metric, c == "test_loss"))  # the ranking metric first, the loss last
    order = a.ranked_levels(a.config_column)
    shown = order[:MAX_RANKED]
    ok = a.ok
    aggs = {c: aggregate(ok, [a.config_column], c, bounds=a.unit(c).bounds).set_index(a.config_column) for c in cols}
    rows = []
    for lvl in shown:
        row = {"configuration": lvl}
        for c in cols:
            u = a.unit(c)
            g = aggs[c]
            goal = a.decl.goal_of(c)
            head = f"{u.axis()}{' ↑' if goal == 'maximize' else ' ↓' if goal == 'minimize' else ''}"
            row[head] = mean_std(g.loc[lvl, "mean"], g.loc[lvl, "std"], int(g.loc[lvl, "n"]), u) if lvl in g.index else "–"
        rows.append(row)
    more = f" The {len(order) - len(shown)} further configurations are in runs.csv." if len(order) > len(shown) else ""
    yield Table(key="test-metrics", title="All test metrics by configuration",
                caption=(f"Mean ± std (n) of every test metric the task declares, over the counted runs; rows "
                         f"ranked by {a.metric}. ↑: higher is better, ↓: lower is better.{more}"),
                df=pd.DataFrame(rows))
