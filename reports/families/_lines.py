"""Line figures the families share: a metric against one numeric config key (the autoencoder's
code size, an attack's eps), over seeds, with its confidence band and every run."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullLocator

from ..analysis import Analysis, aggregate
from ..figures import MAX_RUN_LINES, Figure, legend_outside, new_figure, span_of
from ..units import cap
from ._grids import factor_on


def metric_vs(a: Analysis, column: str, xlabel: str, tick: Callable[[float], str] = "{:g}".format) -> Iterator[Figure]:
    """The sweep's metric against the numeric config key `column` (mean over seeds, 95% CI, every run
    as a dot), one line per level of the next factor and one dash style per level of the one after.
    Levels spanning a factor of 8 or more are drawn on a log scale, or evenly spaced when 0 is one of
    them (0, 1/255, 2/255, ... 16/255 would crowd the left end); `tick` writes a level."""
    cs = factor_on(a, column)
    ok = a.ok
    if cs is None or not cs.numeric or ok.empty:
        return
    u = a.metric_unit
    others = [f for f in a.factors if f is not cs]
    hue, dash = (others + [None, None])[:2]
    d = ok.copy()
    d["_x"] = pd.to_numeric(d[column], errors="coerce")
    keys = [f.column for f in others[:2]]
    agg = aggregate(d, keys + ["_x"], a.metric, bounds=u.bounds) if keys else aggregate(d, ["_x"], a.metric, bounds=u.bounds)
    xs = sorted(d["_x"].dropna().unique())
    wide = len(xs) > 2 and xs[-1] / (xs[1] if xs[0] == 0 else xs[0]) >= 8
    evenly = wide and xs[0] == 0
    if evenly:  # positions are the levels' ranks; the ticks still say the values
        rank = {x: float(i) for i, x in enumerate(xs)}
        d["_x"], agg["_x"] = d["_x"].map(rank), agg["_x"].map(rank)
    fig, axes = new_figure(height=0.85)
    ax = axes[0, 0]
    styles = ["-", "--", ":", "-."]
    handles = []
    lines = agg.groupby(keys, sort=False) if keys else [((), agg)]
    for key, g in lines:
        key = key if isinstance(key, tuple) else (key,)
        color = hue.colors.get(key[0], (0.2, 0.4, 0.7)) if hue else (0.2, 0.4, 0.7)
        ls = styles[dash.levels.index(key[1]) % len(styles)] if dash else "-"
        g = g.sort_values("_x")
        ax.plot(g["_x"], g["mean"] * u.scale, color=color, ls=ls, lw=2, marker="o", ms=5, zorder=4)
        ci = g[g["n"] >= 2]
        ax.fill_between(ci["_x"], ci["lo"] * u.scale, ci["hi"] * u.scale, color=color, alpha=0.13, lw=0)
        sel = np.ones(len(d), bool)
        for f, lvl in zip(others[:2], key):
            sel &= (d[f.column] == lvl).to_numpy()
        pts = d[sel]
        if len(pts) <= MAX_RUN_LINES * len(cs.levels):
            ax.scatter(pts["_x"], pts[a.metric] * u.scale, color=color, s=14, alpha=0.5, lw=0, zorder=3)
        name = ", ".join(f"{f.columns[0]}={v}" for f, v in zip(others[:2], key)) or "all runs"
        handles.append(Line2D([], [], color=color, ls=ls, lw=2, marker="o", label=f"{name} (n={int(g['n'].sum())})"))
    if wide and not evenly:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(range(len(xs))) if evenly else xs))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([tick(x) for x in xs])
    ax.set_ylim(*span_of(d[a.metric].to_numpy(float) * u.scale, pad=0.15))
    ax.set_xlabel(f"{xlabel}{', log scale' if ax.get_xscale() == 'log' else ''}{', levels evenly spaced' if evenly else ''}")
    ax.set_ylabel(f"{u.axis()}: {a.better}")
    handles += [Line2D([], [], marker="o", ls="", color="0.4", alpha=0.5, label="one run"),
                Patch(color="0.4", alpha=0.2, label="95% CI of the mean")]
    legend_outside(ax, handles, " × ".join(f.name for f in others[:2]) or "runs")
    rest = [f.name for f in others[2:]]
    avg = f"; averaged over {', '.join(rest)}" if rest else ""
    yield Figure(key=f"metric-vs-{column.replace('_', '-')}", title=f"{cap(u.label)} vs {xlabel}",
                 caption=(f"Mean {a.metric} over seeds{avg} at each {xlabel} (line), 95% confidence interval of the "
                          f"mean (band; Student t, none where n = 1) and the runs themselves (dots); n in the legend "
                          f"counts the finished and early-stopped runs of a line. {a.better.capitalize()}."),
                 fig=fig)
