"""Autoencoder runs (dl2bench/families/autoencoder/task.py): reconstruction grids from each run's
examples.npz (original / noisy / reconstructed), the ranking metric against the code size, and for
the one-class anomaly tasks the AUROC per normal class with its mean ± std over the classes."""
from __future__ import annotations

from typing import Iterator, List

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ..analysis import Analysis, aggregate, fmt, level_str, mean_std
from ..figures import Figure, figure, legend_outside, new_figure
from ..load import REPLICATE
from ..tables import Table, table
from ..units import cap, goal_word
from ._grids import MAX_FIGURES, draw_row, factor_on, grid_caption, groups, mosaic, representative
from ._lines import metric_vs

FAMILY = "autoencoder"


def TITLE(a: Analysis) -> str:  # noqa: N802 - the families' section-title hook
    what = ["reconstructions"]
    if factor_on(a, "code_size") is not None:
        what.append("code size")
    if _is_anomaly(a):
        what.append("AUROC per normal class")
    return "Autoencoder: " + (", ".join(what[:-1]) + " and " + what[-1] if len(what) > 1 else what[0])


def INTRO(a: Analysis) -> str:  # noqa: N802
    out = "What the models reconstruct: the same test images for every run."
    if factor_on(a, "code_size") is not None:
        out += " How the result depends on the code size."
    if _is_anomaly(a):
        out += (" One-class anomaly detection: the AUROC of each normal class, and its mean ± std over the "
                "classes.")
    return out

ROW_KEYS = ("code_size", "normal_class")  # what a grid's reconstructed rows differ by, first that varies
CHANCE_AUROC = 0.5


def _is_anomaly(a: Analysis) -> bool:
    if "normal_class" not in a.runs.columns:
        return False
    nc = pd.to_numeric(a.runs["normal_class"], errors="coerce")
    return bool((nc >= 0).any()) and "test_auroc" in a.runs.columns


def _noise(r: pd.Series) -> str:
    noise, level = r.get("noise"), pd.to_numeric(r.get("noise_level"), errors="coerce")
    if not isinstance(noise, str) or noise == "none" or not level or pd.isna(level):  # level 0: no corruption
        return "no noise"
    return f"{noise} noise, level {level_str(r.get('noise_level'))}"


@figure("family", family=FAMILY)
def reconstructions(a: Analysis) -> Iterator[Figure]:
    """Per model (and every other setting): the fixed test images, the corrupted input and the
    reconstruction of one run per code size (or per normal class)."""
    ok = a.ok
    if ok.empty or "path" not in ok.columns:
        return
    row_f = next((f for f in (factor_on(a, k) for k in ROW_KEYS) if f is not None), None)
    u = a.metric_unit
    made = 0
    for label, runs in groups(a, ok, [row_f] if row_f else []):
        levels = row_f.levels if row_f else [""]
        picks = []
        for lvl in levels:
            r, ex = representative(runs[runs[row_f.column] == lvl] if row_f else runs)
            if r is not None and all(k in ex for k in ("original", "reconstructed")):
                picks.append((lvl, r, ex))
        if not picks:
            continue
        if made == MAX_FIGURES:
            return
        made += 1
        original = picks[0][2]["original"]
        noisy = [p[2].get("noisy", p[2]["original"]) for p in picks]
        same_noise = all(n.shape == noisy[0].shape and np.array_equal(n, noisy[0]) for n in noisy)
        corrupted = not np.array_equal(noisy[0], original) if noisy[0].shape == original.shape else True
        rows = [("original", mosaic(original), "", "black")]
        if same_noise and corrupted:
            rows.append((f"input\n({_noise(picks[0][1])})", mosaic(noisy[0]), "", "black"))
        for (lvl, r, ex), nz in zip(picks, noisy):
            name = f"{row_f.columns[0]} {lvl}" if row_f else "reconstructed"
            if not same_noise:
                rows.append((f"input of\n{name}", mosaic(nz), "", "0.3"))
            color = row_f.colors.get(lvl, "black") if row_f else "black"
            rows.append((name, mosaic(ex["reconstructed"]), f"{a.metric} {fmt(r.get(a.metric), u)}"
                         f"{(' ' + u.unit) if u.unit else ''}\nseed {level_str(r.get(REPLICATE))}", color))
        fig, axes = new_figure(len(rows), 1, height=min(1.0, 0.1 + 0.11 * len(rows)))
        for ax, (name, img, right, color) in zip(axes[:, 0], rows):
            draw_row(ax, img, name, right, color)
        where = f" for {label}" if label else ""
        rows_are = (f"the original, the corrupted input the model saw ({_noise(picks[0][1])}), and the "
                    f"reconstruction")
        yield Figure(key=f"reconstructions-{made}", title=f"Reconstructions{where}",
                     caption=grid_caption(original.shape[0], rows_are, "reconstruction", row_f, a.metric),
                     fig=fig)


@figure("family", family=FAMILY)
def metric_vs_code_size(a: Analysis) -> Iterator[Figure]:
    """The ranking metric (test MSE for plain autoencoders) against the code size, per model."""
    yield from metric_vs(a, "code_size", "code size")


def _class_labels(a: Analysis, classes: List[str]) -> List[str]:
    names = {}
    if "normal_class_name" in a.runs.columns:
        for c, n in a.runs[["normal_class", "normal_class_name"]].dropna().itertuples(index=False):
            names[level_str(c)] = str(n)
    return [f"{c}\n{names[c]}" if c in names else c for c in classes]


@figure("family", family=FAMILY)
def auroc_per_class(a: Analysis) -> Iterator[Figure]:
    """One-class anomaly detection: test AUROC per normal class, a bar per model (mean over seeds)
    with each run as a dot."""
    if not _is_anomaly(a) or a.ok.empty:
        return
    ok = a.ok.copy()
    col = "test_auroc"
    u = a.unit(col)
    nc = pd.to_numeric(ok["normal_class"], errors="coerce")
    ok = ok[nc >= 0]
    ok["_class"] = pd.to_numeric(ok["normal_class"]).astype(int).map(str)
    classes = sorted(ok["_class"].unique(), key=int)
    hue = next((f for f in a.factors if "normal_class" not in f.columns), None)
    levels = hue.levels if hue else ["all runs"]
    ok["_hue"] = ok[hue.column] if hue else "all runs"
    agg = aggregate(ok, ["_class", "_hue"], col, bounds=u.bounds)
    fig, axes = new_figure(height=0.8)
    ax = axes[0, 0]
    width = 0.8 / len(levels)
    rng = np.random.default_rng(0)
    for j, lvl in enumerate(levels):
        color = hue.colors.get(lvl, (0.3, 0.45, 0.7)) if hue else (0.3, 0.45, 0.7)
        g = agg[agg["_hue"] == lvl].set_index("_class")
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(classes))]
        means = [g.loc[c, "mean"] * u.scale if c in g.index else np.nan for c in classes]
        ax.bar(xs, means, width=width * 0.9, color=color, alpha=0.55, edgecolor=color, lw=1, zorder=2,
               label=f"{lvl} (n={int(g['n'].sum())})")
        for x, c in zip(xs, classes):
            v = ok.loc[(ok["_class"] == c) & (ok["_hue"] == lvl), col].to_numpy(float) * u.scale
            ax.scatter(x + rng.uniform(-width / 5, width / 5, len(v)), v, s=14, color="black", alpha=0.7, lw=0, zorder=4)
    ax.axhline(CHANCE_AUROC * u.scale, color="0.4", lw=1, ls="--", zorder=1)
    ax.annotate("chance", xy=(1.0, CHANCE_AUROC * u.scale), xycoords=("axes fraction", "data"), xytext=(3, 0),
                textcoords="offset points", va="center", fontsize=8, color="0.4")
    vals = ok[col].to_numpy(float) * u.scale
    lo = min(CHANCE_AUROC * u.scale, np.nanmin(vals)) if len(vals) else 0
    ax.set_ylim(max(0.0, lo - 0.05 * u.scale), min(1.0 * u.scale, np.nanmax(vals) + 0.05 * u.scale) if len(vals) else u.scale)
    ax.set_xticks(range(len(classes)), _class_labels(a, classes), fontsize=8.5)
    ax.set_xlim(-0.5, len(classes) - 0.5)
    ax.set_xlabel("normal class (the one class trained on; every other test class is an anomaly)")
    ax.set_ylabel(f"{u.axis()}: {goal_word(a.decl.goal_of(col) or 'maximize')}")
    handles = ax.get_legend_handles_labels()[0] + [Line2D([], [], marker="o", ls="", color="black", alpha=0.7,
                                                          label="one run (seed)")]
    legend_outside(ax, handles, hue.name if hue else "runs")
    yield Figure(key="auroc-per-class", title=f"{cap(u.label)} per normal class",
                 caption=(f"One-class protocol: each run trains on one normal class and scores every test image by "
                          f"its reconstruction error. Bar: mean {col} over seeds; dots: the runs (n in the legend, "
                          f"finished and early-stopped runs). Dashed: chance (AUROC 0.5)."),
                 fig=fig)


@table("family", family=FAMILY)
def auroc_over_classes(a: Analysis) -> Iterator[Table]:
    """Mean ± std of the test AUROC over the normal classes, per model (and other setting)."""
    if not _is_anomaly(a) or a.ok.empty:
        return
    col = "test_auroc"
    u = a.unit(col)
    ok = a.ok[pd.to_numeric(a.ok["normal_class"], errors="coerce") >= 0].copy()
    ok["_class"] = pd.to_numeric(ok["normal_class"]).astype(int)
    cls = factor_on(a, "normal_class")
    rows = []
    for label, runs in groups(a, ok, [cls] if cls else []):
        per_class = runs.groupby("_class")[col].mean()  # seeds averaged within a class first
        row = {"setting": label or "all runs", "normal classes": str(len(per_class))}
        row[f"{u.axis()}, mean ± std over the classes (n = classes)"] = mean_std(
            per_class.mean(), per_class.std(), len(per_class), u)
        lo, hi = per_class.idxmin(), per_class.idxmax()
        row["worst class"] = f"{lo}: {fmt(per_class[lo], u)}"
        row["best class"] = f"{hi}: {fmt(per_class[hi], u)}"
        row["runs (seeds per class)"] = f"{len(runs)} ({', '.join(sorted({str(v) for v in runs.groupby('_class').size()}))})"
        rows.append(row)
    if not rows:
        return
    yield Table(key="auroc-over-classes", title=f"{cap(u.label)}: mean over the normal classes",
                caption=("Per setting: the test AUROC of each normal class (averaged over its seeds), then mean ± "
                         "standard deviation over the classes; n counts classes, not runs."),
                df=pd.DataFrame(rows))
