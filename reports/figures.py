"""The report's figures. Each is one function registered with `@figure(section)`; it takes the
Analysis (and, for section "factor", one Factor) and yields Figure objects, or nothing when it
does not apply to this sweep. Adding a plot = adding one function here.

Sections: "overview" (the whole sweep), "factor" (called once per factor), "speed", and "family"
(a task family's own figures: `@figure("family", family="autoencoder")` in
reports/families/<family>.py, drawn only for the runs of that family).

Every metric is drawn as its task declares it (unit, label, direction): nothing here names one."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from .analysis import (
    DEVICE_COLORS,
    MAX_HEATMAP_PAIRS,
    UNSTEADY_RATIO,
    Analysis,
    Factor,
    aggregate,
    aggregate_log,
    fmt,
    level_str,
    mean_std,
    not_counted,
    throughput_spread,
)
from .load import COUNTED
from .units import cap, goal_word

PAGE = (11.69, 8.27)  # A4 landscape, inches: every figure is drawn at page size (vector in the PDF)
PLOT_RECT = (0.03, 0.13, 0.94, 0.75)  # the band of the page the plot may use; title above, caption below


@dataclass
class Figure:
    """A drawn figure with the words a reader needs to read it."""

    key: str  # unique, for anchors and file names
    title: str
    caption: str
    fig: MplFigure


FIGURES: List[Tuple[str, Callable[..., Iterator[Figure]], Optional[str]]] = []


def figure(section: str, family: Optional[str] = None) -> Callable:
    """Register a figure function for a section ("overview", "factor", "speed" or "family");
    with `family`, it is drawn only for that family's tasks."""
    def deco(fn: Callable[..., Iterator[Figure]]) -> Callable[..., Iterator[Figure]]:
        FIGURES.append((section, fn, family))
        return fn
    return deco


def new_figure(nrows: int = 1, ncols: int = 1, height: float = 1.0, **kw) -> Tuple[MplFigure, np.ndarray]:
    """A page-sized figure whose axes stay inside the top `height` fraction of PLOT_RECT, so the
    PDF page can add a title above and a caption below (a plot of 3 levels needs no full page)."""
    fig = MplFigure(figsize=PAGE, layout="constrained")
    x, y, w, h = PLOT_RECT
    height = min(max(height, 0.25), 1.0)
    fig.get_layout_engine().set(rect=(x, y + h * (1 - height), w, h * height), w_pad=0.08, h_pad=0.08)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def legend_outside(ax, handles: list, title: str) -> None:
    """Legend to the right of `ax`: an axes legend, so constrained layout makes room for it."""
    ncol = 1 if len(handles) <= 18 else 2
    ax.legend(handles=handles, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
              ncol=ncol, fontsize="small" if len(handles) > 10 else "medium", borderaxespad=0)


# ---------------------------------------------------------------------------------------------
# one factor at a time

def by(f: Factor) -> str:
    """' by optimizer' for a title; nothing for the stand-in factor of a sweep where nothing varies."""
    return f" by {f.name}" if f.columns else ""

MAX_CURVES = 2  # learning-curve panels: the monitored metric (or headline) and the loss
MAX_RUN_LINES = 10  # per level: up to this many runs are also drawn one by one
# per level (or speed group): more runs than this are drawn as a random sample of this many dots.
# Past a few hundred the dots of a level are one blot, and 50,000 of them took most of a report's time
# in the PDF; means, CIs and counts always use every run.
MAX_DOTS = 500


def _dots(n: int, rng: np.random.Generator) -> np.ndarray:
    """Which of n runs get a dot: all, or a random MAX_DOTS of them (in their order)."""
    return np.arange(n) if n <= MAX_DOTS else np.sort(rng.choice(n, MAX_DOTS, replace=False))


def _sampled_note(sampled: bool) -> str:
    return (f" Where a level has more than {MAX_DOTS} runs, a random {MAX_DOTS} of them are drawn as dots; "
            "the means, intervals and n are over all of them.") if sampled else ""


def span_of(values: np.ndarray, pad: float = 0.08) -> Tuple[float, float]:
    """Axis limits around the data (not around the CIs: with n = 2 a 95% CI is ±9 std wide)."""
    v = values[np.isfinite(values)]
    if not len(v):
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    d = (hi - lo) or max(abs(hi) * 0.05, 1e-3)
    return lo - pad * d, hi + pad * d


def _same(x: pd.Series, y: pd.Series) -> bool:
    both = x.notna() & y.notna()
    return bool(both.any()) and bool(np.allclose(x[both].to_numpy(float), y[both].to_numpy(float), rtol=1e-9, atol=0))


@figure("factor")
def learning_curves(a: Analysis, f: Factor) -> Iterator[Figure]:
    """The monitored validation metric and the loss vs epoch: mean and 95% CI band per level, and
    the runs themselves."""
    cur = a.curves
    wanted = a.decl.curve_metrics() or tuple(m for m in cur.columns if m.startswith("val_"))
    # only the columns drawn from: a 50,000-run sweep's curves are ~1,000,000 rows
    keep = list(dict.fromkeys(["sweep", "run", "epoch", f.column] + [m for m in wanted if m in cur.columns]))
    c = cur.loc[cur["status"].isin(COUNTED).to_numpy(), keep]
    cols: List[str] = []
    for m in wanted:  # a loss that is the monitored metric itself (an MSE-trained autoencoder) once only
        if m in c.columns and c[m].notna().any() and not any(_same(c[m], c[k]) for k in cols):
            cols.append(m)
    cols = cols[:MAX_CURVES]
    if c.empty or not cols:
        return
    fig, axes = new_figure(1, len(cols), height=0.85)
    handles = []
    clipped = False
    n_runs = c.groupby(f.column, sort=False, observed=True)["run"].nunique()
    for ax, col in zip(axes[0], cols):
        u = a.unit(col)
        agg = aggregate(c, [f.column, "epoch"], col, bounds=u.bounds)
        many = agg["epoch"].nunique() > 25
        for lvl in f.levels:
            d = agg[agg[f.column] == lvl].sort_values("epoch")
            if d.empty:
                continue
            color = f.colors[lvl]
            if n_runs.get(lvl, 0) <= MAX_RUN_LINES:  # few seeds: show each, not only their mean
                for _, r in c[c[f.column] == lvl].groupby(["sweep", "run"]):
                    ax.plot(r["epoch"], r[col] * u.scale, color=color, lw=0.7, alpha=0.45)
            ax.plot(d["epoch"], d["mean"] * u.scale, color=color, lw=2.2, marker=None if many else "o", ms=4)
            ax.fill_between(d["epoch"], d["lo"] * u.scale, d["hi"] * u.scale, color=color, alpha=0.15, lw=0)
            if col == cols[0]:
                handles.append(Line2D([], [], color=color, lw=2.2, label=f"{lvl} (n={int(d['n'].max())})"))
        lo, hi = span_of(c[col].to_numpy(float) * u.scale)
        clipped |= bool((agg["lo"] * u.scale < lo).any() or (agg["hi"] * u.scale > hi).any())
        ax.set_ylim(lo, hi)
        ax.set_xlabel("epoch")
        ax.set_ylabel(u.axis())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        goal = a.decl.goal_of(col)
        ax.set_title(cap(u.label) + (f" ({goal_word(goal)})" if goal else ""))
    handles.append(Line2D([], [], color="0.4", lw=0.7, label="one run"))
    handles.append(Patch(color="0.4", alpha=0.2, label="95% CI of the mean"))
    legend_outside(axes[0, -1], handles, f.name)
    ns = aggregate(c, [f.column, "epoch"], cols[0])["n"]
    varying = " The number of runs drops at later epochs where runs stopped early." if ns.nunique() > 1 else ""
    cut = " Axes span the runs' values; wider bands (few seeds) run off the plot." if clipped else ""
    yield Figure(key=f"curves-{f.column}", title=f"Learning curves{by(f)}",
                 caption=(f"Thick line: mean over the finished and early-stopped runs at each level of {f.name} "
                          f"(n = runs, over seeds{' and the other factors' if len(a.factors) > 1 else ''}); "
                          f"thin lines: the runs themselves (up to {MAX_RUN_LINES} per level); shaded: 95% "
                          f"confidence interval of the mean (Student t; none where n = 1).{varying}{cut}"),
                 fig=fig)


@figure("factor")
def final_metric(a: Analysis, f: Factor) -> Iterator[Figure]:
    """The sweep's metric per level: every run as a dot, mean with 95% CI, best level on top."""
    ok = a.ok
    if ok.empty:
        return
    u = a.metric_unit
    order = a.ranked_levels(f.column)
    agg = aggregate(ok, [f.column], a.metric, bounds=u.bounds).set_index(f.column)
    fig, axes = new_figure(height=0.3 + 0.08 * len(order))
    ax = axes[0, 0]
    rng = np.random.default_rng(0)
    lo, hi = span_of(ok[a.metric].to_numpy(float) * u.scale, pad=0.25)
    clipped = sampled = False
    for i, lvl in enumerate(order):
        color = f.colors.get(lvl, (0.5, 0.5, 0.5))
        vals = ok.loc[ok[f.column] == lvl, a.metric].to_numpy(float) * u.scale
        jitter = rng.uniform(-0.22, 0.22, len(vals))  # drawn for all, so a sample keeps the others' places
        keep = _dots(len(vals), rng)
        sampled |= len(keep) < len(vals)
        ax.scatter(vals[keep], i + jitter[keep], s=30, color=color, alpha=0.8, lw=0.5,
                   edgecolor="white", zorder=4)
        label = not_counted(a.runs[a.runs[f.column] == lvl], a.metric)
        if lvl in agg.index:
            r = agg.loc[lvl]
            m = r["mean"] * u.scale
            err = None if r["n"] < 2 else [[m - r["lo"] * u.scale], [r["hi"] * u.scale - m]]
            ax.errorbar([m], [i], xerr=err, fmt="D", ms=8, mfc=color, mec="black", ecolor="black",
                        capsize=4, lw=1.4, zorder=5)  # above the dots: with 200 runs they would hide it
            ci = f"; CI {fmt(r['lo'], u)}–{fmt(r['hi'], u)}" if r["n"] >= 2 else ""
            clipped |= bool(r["n"] >= 2 and (r["lo"] * u.scale < lo or r["hi"] * u.scale > hi))
            text = mean_std(r["mean"], r["std"], int(r["n"]), u) + ci + (f"; {label}" if label else "")
        else:
            text = f"no counted run ({label})"
        ax.annotate(text, xy=(1.01, i), xycoords=("axes fraction", "data"), va="center", fontsize=9)
    ax.set_xlim(lo, hi)
    ax.set_yticks(range(len(order)), order)
    for tick, lvl in zip(ax.get_yticklabels(), order):
        tick.set_color(f.colors.get(lvl, "black"))
    ax.set_ylim(len(order) - 0.5, -0.5)  # best on top
    ax.set_xlabel(f"{u.axis()}: {a.better}")
    ax.set_ylabel(f.name)
    ax.grid(axis="y", visible=False)
    cut = " Bars without a cap run past the plot's edge: their ends are given on the right." if clipped else ""
    yield Figure(key=f"final-{f.column}", title=f"{cap(u.label)}{by(f)}",
                 caption=(f"Each dot is one run ({a.metric}); diamond and bar: mean and 95% confidence "
                          "interval of the mean (Student t over the runs at that level). Right: mean ± "
                          "standard deviation (n) and the CI. Runs that diverged, failed or did not finish have "
                          f"no value and are counted beside their level.{cut}{_sampled_note(sampled)}"),
                 fig=fig)


# ---------------------------------------------------------------------------------------------
# the whole sweep

@figure("overview")
def heatmaps(a: Analysis) -> Iterator[Figure]:
    """Mean metric for every pair of factors (the other factors averaged over)."""
    ok = a.ok
    if len(a.factors) < 2 or ok.empty:
        return
    u = a.metric_unit
    for fa, fb in itertools.islice(itertools.combinations(a.factors, 2), MAX_HEATMAP_PAIRS):
        yield _heatmap(a, ok, fa, fb, u)


def _heatmap(a: Analysis, ok: pd.DataFrame, fa: Factor, fb: Factor, u) -> Figure:
    import seaborn as sns

    agg = aggregate(ok, [fa.column, fb.column], a.metric)
    mean = agg.pivot(index=fa.column, columns=fb.column, values="mean").reindex(index=fa.levels, columns=fb.levels)
    cells = mean.size
    text = pd.DataFrame("", index=mean.index, columns=mean.columns, dtype=object)
    for _, r in agg.iterrows():
        sd = "" if r["n"] < 2 else f"\n± {fmt(r['std'], u)}"
        text.loc[r[fa.column], r[fb.column]] = (f"{fmt(r['mean'], u)}{sd if cells <= 64 else ''}"
                                                f"\nn={int(r['n'])}")
    fig, axes = new_figure(height=0.35 + 0.13 * len(fa.levels))
    ax = axes[0, 0]
    sns.heatmap(mean * u.scale, annot=text.to_numpy(), fmt="", ax=ax, cmap="viridis" if a.goal == "maximize" else "viridis_r",
                linewidths=0.5, linecolor="white", annot_kws={"fontsize": 11 if cells <= 16 else 9 if cells <= 36 else 7 if cells <= 100 else 5},
                cbar_kws={"label": u.axis()})
    ax.tick_params(axis="y", labelrotation=0)
    ax.grid(False)
    # empty cells: say why in grey instead of a blank the reader must interpret
    for i, j in zip(*np.where(mean.isna().to_numpy())):
        cell = a.runs[(a.runs[fa.column] == fa.levels[i]) & (a.runs[fb.column] == fb.levels[j])]
        why = f"no result\n({not_counted(cell, a.metric)})" if len(cell) else "not run"
        ax.text(j + 0.5, i + 0.5, why, ha="center", va="center", color="0.45", fontsize=8)
    ax.set_xlabel(fb.name)
    ax.set_ylabel(fa.name)
    others = [f.name for f in a.factors if f not in (fa, fb)]
    avg = f" averaged over seeds and {', '.join(others)}" if others else " over seeds"
    return Figure(key=f"heatmap-{fa.column}-{fb.column}", title=f"{cap(u.label)}: {fa.name} × {fb.name}",
                  caption=(f"Mean {a.metric} per cell{avg}, ± standard deviation and n (counted runs: finished "
                           f"or early stopped). {a.better.capitalize()}: the colour scale is turned so that "
                           "brighter is better."),
                  fig=fig)


# ---------------------------------------------------------------------------------------------
# speed

def speed_groups(runs: pd.DataFrame) -> Tuple[pd.Series, str]:
    """Each run's speed group label (model, plus batch size where it varies) and its axis name."""
    model = runs["model"].fillna("unknown").astype(str) if "model" in runs.columns else pd.Series("all", index=runs.index)
    if "batch_size" in runs.columns and runs["batch_size"].nunique() > 1:
        return model + ", batch " + runs["batch_size"].map(lambda v: f"{v:g}" if isinstance(v, float) else str(v)), \
            "model, batch size"
    return model, "model"


@figure("speed")
def throughput(a: Analysis) -> Iterator[Figure]:
    """Training samples/s by model (and batch size) and device, log scale: every run and the mean."""
    r = a.runs[a.runs.get("samples_per_s", pd.Series(dtype=float)).notna()] if "samples_per_s" in a.runs else None
    if r is None or r.empty:
        return
    r = r.copy()
    r["group"], axis_name = speed_groups(r)
    r["dev"] = r["device"].astype(str) if "device" in r.columns else "unknown"
    groups = sorted(r["group"].unique())
    devices = sorted(r["dev"].unique())
    u = a.unit("samples_per_s")
    agg = aggregate_log(r, ["group", "dev"], "samples_per_s")
    spread = throughput_spread(a.curves)
    unsteady = set(map(tuple, spread.loc[spread["unsteady"], ["sweep", "run"]].to_numpy()))
    r["unsteady"] = [(s, n) in unsteady for s, n in zip(r["sweep"], r["run"])]
    fig, axes = new_figure(height=0.8)
    ax = axes[0, 0]
    width = 0.8 / len(devices)
    rng = np.random.default_rng(0)
    sampled = False
    for j, dev in enumerate(devices):
        color = DEVICE_COLORS.get(dev, (0.5, 0.5, 0.5))
        for i, g in enumerate(groups):
            x = i - 0.4 + width * (j + 0.5)
            sel = r[(r["group"] == g) & (r["dev"] == dev)]
            if sel.empty:
                continue
            xs = x + rng.uniform(-width / 6, width / 6, len(sel))
            vals, flag = sel["samples_per_s"].to_numpy(float), sel["unsteady"].to_numpy(bool)
            keep = _dots(len(sel), rng)
            sampled |= len(keep) < len(sel)
            xs, vals, flag = xs[keep], vals[keep], flag[keep]
            ax.scatter(xs[~flag], vals[~flag], s=22, color=color, alpha=0.8, lw=0, zorder=3)
            ax.scatter(xs[flag], vals[flag], s=30, facecolor="none", edgecolor=color, lw=1.4, zorder=3)
            s = agg[(agg["group"] == g) & (agg["dev"] == dev)].iloc[0]
            err = None if s["n"] < 2 else [[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]]
            ax.errorbar([x], [s["mean"]], yerr=err, fmt="_", ms=22, mew=1.5, color="black", capsize=4, lw=1, zorder=5)
            ax.annotate(f"{s['mean']:,.0f}\nn={int(s['n'])}", (x + width * 0.28, s["mean"]), va="center",
                        fontsize=8, bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8), zorder=4)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}")
    ax.yaxis.set_major_formatter(plain)
    lo, hi = r["samples_per_s"].min(), r["samples_per_s"].max()
    # the CIs, too, up to 3x beyond the runs: a CI of two runs (t = 12.7) may be wider than that,
    # and would squash every dot into a line
    lo, hi = max(min(lo, agg["lo"].min()), lo / 3), min(max(hi, agg["hi"].max()), hi * 3)
    ax.set_ylim(lo / 1.4, hi * 1.4)
    if hi / lo < 30:  # a narrow range has few decades: label some minor ticks too, in plain numbers
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:,.0f}" if round(v / 10 ** np.floor(np.log10(v))) in (2, 3, 5) else ""))
        ax.tick_params(axis="y", which="minor", labelsize=8)
    ax.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 6 else 0, ha="right" if len(groups) > 6 else "center")
    ax.set_xlabel(axis_name)
    ax.set_ylabel(f"{u.axis()}, log scale")
    handles = [Line2D([], [], marker="o", ls="", color=DEVICE_COLORS.get(d, (0.5, 0.5, 0.5)), label=d) for d in devices]
    handles.append(Line2D([], [], marker="_", ms=14, mew=2.5, ls="", color="black",
                          label="geometric mean, 95% CI"))
    if r["unsteady"].any():
        handles.append(Line2D([], [], marker="o", ls="", mfc="none", mec="black",
                              label=f"epochs varied > {UNSTEADY_RATIO:g}×"))
    legend_outside(ax, handles, "device")
    names = r.groupby("dev")["device_name"].agg(lambda s: ", ".join(sorted(set(map(str, s.dropna()))))) \
        if "device_name" in r.columns else {}
    on = "; ".join(f"{d}: {n}" for d, n in dict(names).items() if n)
    yield Figure(key="throughput", title="Training throughput by model and device",
                 caption=(f"Training samples per second after the warm-up steps, over all epochs of a run "
                          f"(every run with a summary: a dot; black: the geometric mean of n runs and its 95% CI, "
                          f"both taken on the log scale the axis draws, so the interval is a ratio either side). "
                          f"{'Hollow: a run whose fastest epoch was more than ' + format(UNSTEADY_RATIO, 'g') + '× its slowest (see the table of unsteady throughput). ' if r['unsteady'].any() else ''}"
                          f"{('Devices: ' + on + '.') if on else ''}{_sampled_note(sampled)}"),
                 fig=fig)



# ---------------------------------------------------------------------------------------------
# benchmark mode (dl2bench/train/bench.py): figures of runs that timed steps instead of training

BENCH = "train_samples_per_s_median"  # a benchmark run's summary has it; a training run's does not


def bench_runs(a: Analysis, counted: bool = True) -> Optional[pd.DataFrame]:
    """The sweep's benchmark-mode runs (with `counted`, only those that finished with figures),
    numbers as floats and `dev` the device they ran on; None when there are none."""
    r = a.runs
    if BENCH not in r.columns or "device" not in r.columns:
        return None
    r = r[r["mode"] == "benchmark"] if "mode" in r.columns else r[pd.to_numeric(r[BENCH], errors="coerce").notna()]
    if counted:
        r = r[r["status"].isin(COUNTED) & pd.to_numeric(r[BENCH], errors="coerce").notna()]
    if r.empty:
        return None
    r = r.copy()
    r["dev"] = r["device"].astype(str)
    for c in r.columns:
        if c.startswith(("train_", "infer_", "latency_", "peak_flop")) or c in ("threads", "batch_size"):
            conv = pd.to_numeric(r[c], errors="coerce")
            if conv.notna().any():
                r[c] = conv
    for c in ("model", "precision"):
        if c not in r.columns:
            r[c] = "–"
    return r


def best_cpu(r: pd.DataFrame, keys: List[str]) -> pd.DataFrame:
    """Per configuration, the CPU runs at the thread count with the highest median training
    throughput (the CPU's best effort: more threads are not faster on a machine whose cores are
    busy, nor for a model too small to split), GPU runs as they are: what a speedup compares."""
    cpu = r[r["dev"] == "cpu"]
    if "threads" in cpu.columns and not cpu.empty:
        by = cpu.groupby(keys + ["threads"], dropna=False)[BENCH].median().reset_index()
        best = by.loc[by.groupby(keys, dropna=False)[BENCH].idxmax(), keys + ["threads"]]
        cpu = cpu.merge(best, on=keys + ["threads"], how="inner")
    return pd.concat([cpu, r[r["dev"] != "cpu"]], ignore_index=True)


def _bench_colors(levels: List[str]) -> dict:
    import seaborn as sns

    return dict(zip(levels, sns.color_palette("colorblind", max(len(levels), 1))))


PRECISION_STYLE = {"fp32": "-", "bf16": "--", "fp16": ":"}


@figure("speed")
def throughput_vs_batch(a: Analysis) -> Iterator[Figure]:
    """Benchmark mode: training samples/s against batch size, log-log, one panel per device; the
    median over repeats with its interquartile range."""
    r = bench_runs(a)
    if r is None or "batch_size" not in r.columns or r["batch_size"].nunique() < 2:
        return
    r = best_cpu(r, ["model", "batch_size", "precision"])
    devices = sorted(r["dev"].unique())
    models = sorted(r["model"].astype(str).unique())
    colors = _bench_colors(models)
    fig, axes = new_figure(1, len(devices), height=0.85, sharey=True)
    for ax, dev in zip(axes[0], devices):
        d = r[r["dev"] == dev]
        for (model, prec), g in d.groupby(["model", "precision"]):
            # several runs of one point (seeds): the median of their medians, the widest quartiles
            g = g.groupby("batch_size").agg(med=(BENCH, "median"), q1=("train_samples_per_s_q1", "min"),
                                            q3=("train_samples_per_s_q3", "max")).reset_index().sort_values("batch_size")
            ax.errorbar(g["batch_size"], g["med"], yerr=[g["med"] - g["q1"], g["q3"] - g["med"]],
                        color=colors[str(model)], ls=PRECISION_STYLE.get(str(prec), "-."), marker="o", ms=4,
                        capsize=3, lw=1.6)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:,.6g}")  # this style has no mathtext: 10^k would print as TeX source
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:,.6g}" if v > 0 and round(v / 10 ** np.floor(np.log10(v))) in (2, 5) else ""))
        ax.set_xlabel("training batch size (log scale)")
        threads = ", ".join(unique_threads(d)) if dev == "cpu" else ""
        ax.set_title(f"{dev}: {', '.join(sorted(set(map(str, d.get('device_name', pd.Series(dtype=str)).dropna()))))}"
                     + (f" ({threads} threads)" if threads else ""), fontsize=9)
        ax.set_xticks(sorted(d["batch_size"].unique()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    axes[0, 0].set_ylabel("training samples/s (log scale)")
    handles = [Line2D([], [], color=colors[m], lw=2, label=m) for m in models]
    handles += [Line2D([], [], color="0.3", ls=PRECISION_STYLE.get(p, "-."), label=p)
                for p in sorted(r["precision"].astype(str).unique())]
    legend_outside(axes[0, -1], handles, "model, precision")
    yield Figure(key="throughput-vs-batch", title="Training throughput vs batch size (benchmark mode)",
                 caption=("Samples per second of the training step (batch fetch, forward, backward, optimizer step) "
                          "after the warm-up steps: the median over the timed repeats, the bar its interquartile range. "
                          "On a CPU, each point is the thread count that was fastest for it (the title lists them). A line that keeps rising has not "
                          "filled the device yet; where it flattens, a bigger batch buys no more speed."),
                 fig=fig)


def unique_threads(d: pd.DataFrame) -> List[str]:
    if "threads" not in d.columns:
        return []
    return [f"{v:g}" for v in sorted(d["threads"].dropna().unique())]


@figure("speed")
def utilisation(a: Analysis) -> Iterator[Figure]:
    """Benchmark mode: achieved training FLOP/s as a fraction of the device's peak, per model and
    batch size, one panel per device, a bar per precision."""
    r = bench_runs(a)
    if r is None or "train_fraction_of_peak" not in r.columns or r["train_fraction_of_peak"].notna().sum() == 0:
        return
    r = best_cpu(r, ["model", "batch_size", "precision"])
    r["group"] = r["model"].astype(str) + (", batch " + r["batch_size"].map(level_str) if "batch_size" in r else "")
    devices = sorted(r["dev"].unique())
    precs = sorted(r["precision"].astype(str).unique())
    colors = _bench_colors(precs)
    fig, axes = new_figure(len(devices), 1, height=1.0 if len(devices) > 1 else 0.7)
    sources = []
    for ax, dev in zip(axes[:, 0], devices):
        d = r[r["dev"] == dev]
        groups = sorted(d["group"].unique(), key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)])
        width = 0.8 / len(precs)
        for j, p in enumerate(precs):
            v = d[d["precision"].astype(str) == p].groupby("group")["train_fraction_of_peak"].median()
            xs = [i - 0.4 + width * (j + 0.5) for i, g in enumerate(groups) if g in v.index]
            ys = [100 * v[g] for g in groups if g in v.index]
            ax.bar(xs, ys, width=width * 0.95, color=colors[p], label=p)
            for x, y in zip(xs, ys):
                ax.annotate(f"{y:.0f}%" if y >= 10 else f"{y:.2g}%", (x, y), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 6 else 0,
                      ha="right" if len(groups) > 6 else "center", fontsize=8)
        ax.set_ylabel(f"{dev}: % of peak FLOP/s")
        sources += [f"{dev}: " + "; ".join(sorted(set(map(str, d["peak_source"].dropna()))))] if "peak_source" in d else []
    legend_outside(axes[0, 0], [Patch(color=colors[p], label=p) for p in precs], "precision")
    srcs = set(map(str, r["train_flops_source"].dropna())) if "train_flops_source" in r else set()
    counted = all(x.startswith("counted") for x in srcs) if srcs else False
    flops = ("Training FLOP/s = the training FLOPs per sample, counted by torch's flop counter over one real step "
             "(forward and backward; matmuls and convolutions), x the median samples/s"
             if counted else
             "Training FLOP/s = the training FLOPs per sample x the median samples/s; FLOPs counted by torch's flop "
             "counter over one real step where it could, else 3 x the forward (forward plus a backward of twice its "
             "cost, an overestimate for a model whose first layer dominates: see train_flops_source in runs.csv)"
             if srcs else
             "Training FLOP/s = 3 x the model's forward FLOPs per sample x the median samples/s (forward plus a "
             "backward of twice its cost; runs recorded before the FLOPs were counted)")
    yield Figure(key="utilisation", title="Utilisation: achieved training FLOP/s as a share of the device's peak",
                 caption=(flops + ", over the peak of the run's precision. Peaks: "
                          + " | ".join(sources) + ". On a CPU, the fastest thread count of each configuration."),
                 fig=fig)


@figure("speed")
def thread_scaling(a: Analysis) -> Iterator[Figure]:
    """Benchmark mode on the CPU: training throughput against threads, relative to the fewest
    threads run, per model; one line per batch size and precision, beside ideal (linear) scaling."""
    r = bench_runs(a)
    if r is None or "threads" not in r.columns:
        return
    r = r[r["dev"] == "cpu"]
    if r["threads"].nunique() < 2:
        return
    models = sorted(r["model"].astype(str).unique())
    fig, axes = new_figure(1, len(models), height=0.75, sharey=True)
    batches = sorted(r["batch_size"].unique()) if "batch_size" in r.columns else [None]
    colors = _bench_colors([level_str(b) for b in batches])
    tmin, tmax = r["threads"].min(), r["threads"].max()
    for ax, model in zip(axes[0], models):
        d = r[r["model"].astype(str) == model]
        for (b, p), g in d.groupby(["batch_size" if "batch_size" in d else "model", "precision"]):
            g = g.groupby("threads")[BENCH].median().sort_index()
            if len(g) < 2:
                continue
            ax.plot(g.index, g / g.iloc[0], marker="o", ms=4, color=colors.get(level_str(b), "0.3"),
                    ls=PRECISION_STYLE.get(str(p), "-."))
        ax.plot([tmin, tmax], [1, tmax / tmin], color="0.6", lw=1, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(r["threads"].unique()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_title(model)
        ax.set_xlabel("CPU threads")
    axes[0, 0].set_ylabel(f"training samples/s relative to {tmin:g} thread(s)")
    handles = [Line2D([], [], color=colors[level_str(b)], lw=2, label=f"batch {level_str(b)}") for b in batches if b is not None]
    handles += [Line2D([], [], color="0.3", ls=PRECISION_STYLE.get(p, "-."), label=p)
                for p in sorted(r["precision"].astype(str).unique())]
    handles.append(Line2D([], [], color="0.6", ls=":", label="linear scaling"))
    legend_outside(axes[0, -1], handles, "batch, precision")
    cpus = ", ".join(sorted(set(map(str, r.get("device_name", pd.Series(dtype=str)).dropna()))))
    yield Figure(key="thread-scaling", title="CPU thread scaling (benchmark mode)",
                 caption=(f"Median training samples/s at each thread count over that at {tmin:g}; dotted: perfect "
                          f"scaling. CPU: {cpus or 'unknown'}. On a machine shared with other jobs, more threads "
                          "than free cores scale badly: read it with the machine's load in mind."),
                 fig=fig)
