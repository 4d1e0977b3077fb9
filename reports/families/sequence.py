"""Sequence-model runs: the headline against the sequence length T with the trivial baseline drawn
as a line (the adding problem's "predict the mean", the copy task's memoryless guess), the length
at which each model stops beating it, and the text a character-level model generates."""
from __future__ import annotations

from typing import Iterator

import pandas as pd
from matplotlib.lines import Line2D

from ..analysis import Analysis
from ..figures import Figure, figure
from ..load import REPLICATE
from ..tables import Table, table
from ._grids import factor_on, groups
from ._lines import metric_vs

FAMILY = "sequence"
TITLE = "Sequence models: what length they can bridge, and what they write"
INTRO = ("The adding problem and the copy task at growing sequence length T against the trivial baseline; "
         "character-level models' generated text.")
BASELINES = {"test_mse": ("baseline_mse", "predict the mean"), "test_acc": ("baseline_acc", "memoryless guess")}
SKILL = 0.5  # a model 'bridges' T while it explains at least half of what the baseline leaves


def _baseline(a: Analysis):
    col, what = BASELINES.get(a.metric, (None, None))
    if col is None or col not in a.ok.columns:
        return None, None
    v = pd.to_numeric(a.ok[col], errors="coerce").dropna()
    return (float(v.mean()), what) if len(v) else (None, None)


@figure("family", family=FAMILY)
def metric_vs_length(a: Analysis) -> Iterator[Figure]:
    base, what = _baseline(a)
    u = a.metric_unit
    for fig in metric_vs(a, "seq_len", "sequence length T"):
        if base is not None:
            ax = fig.fig.axes[0]
            ax.axhline(base * u.scale, color="0.25", ls="--", lw=1.3, zorder=2)
            lo, hi = ax.get_ylim()
            ax.set_ylim(min(lo, base * u.scale * 0.95), max(hi, base * u.scale * 1.05))
            leg = ax.get_legend()
            handles = list(leg.legend_handles) if leg is not None else []
            handles.insert(-2, Line2D([], [], color="0.25", ls="--", lw=1.3, label=f"baseline: {what}"))
            title = leg.get_title().get_text() if leg is not None else ""
            leg.remove()
            from ..figures import legend_outside

            legend_outside(ax, handles, title)
            fig.caption += f" Dashed: the trivial baseline ({what}, {base * u.scale:.4g}{(' ' + u.unit) if u.unit else ''})."
        yield fig


@table("family", family=FAMILY)
def bridged_length(a: Analysis) -> Iterator[Table]:
    """Per setting: the mean skill at every T, and the first T where it falls below SKILL."""
    f = factor_on(a, "seq_len")
    if f is None or "test_skill" not in a.ok.columns and "test_acc" not in a.ok.columns:
        return
    adding = "test_skill" in a.ok.columns and a.ok["test_skill"].notna().any()
    col = "test_skill" if adding else "test_acc"
    floor = SKILL if adding else 0.5
    rows = []
    for label, runs in groups(a, a.ok, [f]):
        row = {"setting": label or "all runs"}
        failed = None
        for lvl in sorted(f.levels, key=float):
            v = pd.to_numeric(runs.loc[runs[f.column] == lvl, col], errors="coerce").dropna()
            row[f"T={lvl}"] = f"{v.mean():.3f} (n={len(v)})" if len(v) else "–"
            if len(v) and v.mean() < floor and failed is None:
                failed = lvl
        row["fails from T"] = failed if failed is not None else f"> {max(f.levels, key=float)}"
        rows.append(row)
    what = ("skill = 1 - MSE / variance of the targets (0: no better than predicting the mean, 1: exact)" if adding
            else "per-symbol accuracy of the recall (1/8: a memoryless guess)")
    yield Table(key="sequence-bridged", title="Which lengths each model bridges",
                caption=(f"Mean test {what} over seeds, n runs per cell; 'fails from T': the first length where the "
                         f"mean falls below {floor:g}."), df=pd.DataFrame(rows))


@table("family", family=FAMILY)
def samples(a: Analysis) -> Iterator[Table]:
    """Per setting: the generated text of its lowest-seed run."""
    ok = a.ok
    if ok.empty or "sample" not in ok.columns or not ok["sample"].notna().any():
        return
    rows = []
    for label, runs in groups(a, ok, []):
        runs = runs[runs["sample"].notna()]
        if runs.empty:
            continue
        r = runs.sort_values(REPLICATE).iloc[0] if REPLICATE in runs.columns else runs.iloc[0]
        text = str(r["sample"])[:400]
        rows.append({"setting": label or "all runs", "seed": r.get(REPLICATE), a.metric: f"{r[a.metric]:.3f}",
                     "generated text (first 400 characters)": text})
    t = pd.to_numeric(ok.get("sample_temperature", pd.Series(dtype=float)), errors="coerce").dropna()
    temp = f"temperature {t.iloc[0]:g}" if len(t) else "the configured temperature"
    yield Table(key="sequence-samples", title="What the models write",
                caption=(f"Text sampled from each setting's lowest-seed run ({temp}, seeded by the run's seed), "
                         "continuing the first window of the test split."), df=pd.DataFrame(rows))
