"""GAN runs (dl2bench/tasks/gan.py): precision against recall (one point per run, and per psi for the
sampling runs, with the real-vs-real baseline), FID and precision/recall over training, the scores
beside their baseline per setting, and sample grids: per epoch, per truncation psi, and the real
images they imitate (each run's samples.npz)."""
from __future__ import annotations

from typing import Iterator, List, Optional

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..analysis import Analysis, aggregate, fmt, mean_std
from ..figures import MAX_RUN_LINES, Figure, _legend_outside, figure, new_figure
from ..load import COUNTED, REPLICATE
from ..tables import Table, table
from . import examples
from ._grids import MAX_FIGURES, draw_row, factor_on, groups, mosaic

FAMILY = "gan"
TITLE = "GANs: quality (precision) against diversity (recall)"
GRID_SHOWN = 16  # images of a grid row


def INTRO(a: Analysis) -> str:  # noqa: N802 - the family modules' protocol: a string or a function
    feats = _facts(a, "feature_model")
    n = _facts(a, "pr_n_test")
    k = _facts(a, "pr_k")
    return ("Improved precision (share of generated images on the real images' manifold) and recall (share of real "
            "images on the generated manifold), k-nearest-neighbour manifolds with "
            f"k = {k}, N = {n} test images, and the Frechet distance (FID's formula), all in the penultimate features "
            f"of a {feats} classifier run trained on the same data. Scores depend on N, k and the features: compare "
            "them with the real-vs-real baseline (N training vs N test images) drawn beside them, not with "
            "published FIDs (those use Inception features).")


def _facts(a: Analysis, col: str) -> str:
    if col not in a.ok.columns:
        return "?"
    v = a.ok[col].dropna().astype(str).unique()
    return ", ".join(sorted(v)) if len(v) else "?"


def _num(runs: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(runs[col], errors="coerce") if col in runs.columns else pd.Series(dtype=float)


def _sampling(a: Analysis) -> bool:
    return "generator_run_id" in a.ok.columns and a.ok["generator_run_id"].notna().any()


@figure("family", family=FAMILY)
def precision_recall(a: Analysis) -> Iterator[Figure]:
    """Test precision against test recall: a point per run, coloured by the first factor; for sampling
    runs a line per generator and truncation through its psi levels; the real-vs-real baseline as a star."""
    ok = a.ok
    p, r = _num(ok, "test_precision"), _num(ok, "test_recall")
    if ok.empty or p.isna().all():
        return
    sampling = _sampling(a)
    psi_f = factor_on(a, "psi")
    colour_f = next((f for f in a.factors if f is not psi_f), None)
    fig, axes = new_figure(height=0.8)
    ax = axes[0, 0]
    handles: List = []
    if sampling and psi_f is not None:
        keys = [c for c in ("generator_run_id", "truncation") if c in ok.columns]
        styles = {"hard": "-", "soft": "--", "none": ":"}
        for key, g in ok.assign(_p=p, _r=r, _psi=_num(ok, "psi")).groupby(keys, sort=True):
            g = g.sort_values("_psi")
            lvl = g[colour_f.column].iloc[0] if colour_f is not None else None
            color = colour_f.colors.get(lvl, (0.2, 0.4, 0.7)) if colour_f is not None else (0.2, 0.4, 0.7)
            trunc = g["truncation"].iloc[0] if "truncation" in g else "none"
            ax.plot(g["_r"], g["_p"], color=color, ls=styles.get(trunc, "-"), lw=1.4, marker="o", ms=4, alpha=0.85)
            for _, row in g.iloc[[0, -1]].iterrows():
                ax.annotate(f"psi {row['_psi']:g}", (row["_r"], row["_p"]), textcoords="offset points", xytext=(4, 3),
                            fontsize=7, color="0.3")
        trs = sorted(ok["truncation"].dropna().unique()) if "truncation" in ok.columns else []
        handles += [Line2D([], [], color="0.3", ls=styles.get(t, "-"), lw=1.4, marker="o", ms=4,
                           label=f"{t} truncation, psi levels") for t in trs]
    else:
        colors = ([colour_f.colors.get(v, (0.2, 0.4, 0.7)) for v in ok[colour_f.column]] if colour_f is not None
                  else [(0.2, 0.4, 0.7)] * len(ok))
        ax.scatter(r, p, c=colors, s=36, alpha=0.85, lw=0, zorder=3)
    if colour_f is not None:
        handles = [Line2D([], [], color=colour_f.colors[lv], marker="o", ls="", label=str(lv))
                   for lv in colour_f.levels] + handles
    bp, br = _num(ok, "baseline_precision"), _num(ok, "baseline_recall")
    if bp.notna().any():
        ax.scatter([br.mean()], [bp.mean()], marker="*", s=220, color="0.15", zorder=5)
        handles.append(Line2D([], [], marker="*", ms=13, ls="", color="0.15",
                              label=f"real vs real ({br.mean():.2f}, {bp.mean():.2f})"))
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("recall (diversity): share of real test images on the generated manifold")
    ax.set_ylabel("precision (quality): share of samples\non the real manifold")
    ax.set_aspect("equal")
    _legend_outside(ax, handles, colour_f.name if colour_f is not None else "")
    what = ("each line one trained generator under one truncation, through its psi levels (labelled at the ends)"
            if sampling and psi_f is not None else "each point one run")
    yield Figure(key="gan-precision-recall", title="Precision against recall",
                 caption=(f"Test precision and recall ({what}); up and right is better. The star is the real-vs-real "
                          "baseline: N training images scored against the N test images with the same k and "
                          "features, the best a generator can be expected to do with this instrument."), fig=fig)


@figure("family", family=FAMILY)
def scores_while_training(a: Analysis) -> Iterator[Figure]:
    """Validation FID, precision and recall after each epoch, a line per level of the first factor
    (mean and 95% CI over seeds, thin lines per run)."""
    c = a.curves[a.curves["status"].isin(COUNTED)] if not a.curves.empty else a.curves
    cols = [(k, t) for k, t in (("val_fid", "FID"), ("val_precision", "precision"), ("val_recall", "recall"))
            if k in c.columns and c[k].notna().any()]
    if c.empty or not cols:
        return
    f = a.factors[0] if a.factors else None
    fig, axes = new_figure(1, len(cols), height=0.6)
    handles: List = []
    for ax, (col, title) in zip(axes[0], cols):
        agg = aggregate(c, ([f.column] if f else []) + ["epoch"], col)
        for lvl in (f.levels if f else [None]):
            d = (agg[agg[f.column] == lvl] if f else agg).sort_values("epoch")
            if d.empty:
                continue
            color = f.colors[lvl] if f else (0.2, 0.4, 0.7)
            runs = c[c[f.column] == lvl] if f else c
            if runs["run"].nunique() <= MAX_RUN_LINES:
                for _, one in runs.groupby(["sweep", "run"]):
                    one = one.sort_values("epoch")
                    ax.plot(one["epoch"], one[col], color=color, lw=0.7, alpha=0.4)
            ax.plot(d["epoch"], d["mean"], color=color, lw=2.2, marker="o", ms=3)
            ax.fill_between(d["epoch"], d["lo"], d["hi"], color=color, alpha=0.15, lw=0)
            if col == cols[0][0]:
                handles.append(Line2D([], [], color=color, lw=2.2, label=f"{lvl if f else 'all runs'} (n={int(d['n'].max())})"))
        ax.set_xlabel("epoch")
        ax.set_title(f"validation {title}")
        if col != "val_fid":
            ax.set_ylim(-0.02, 1.02)
    handles += [Line2D([], [], color="0.4", lw=0.7, label="one run"), Patch(color="0.4", alpha=0.2, label="95% CI of the mean")]
    _legend_outside(axes[0, -1], handles, f.name if f else "")
    yield Figure(key="gan-scores-while-training", title="FID, precision and recall while training",
                 caption=(f"After every epoch, {_facts(a, 'pr_n_val')} samples from the same fixed latents scored "
                          "against the validation images (FID: lower is better; precision, recall: higher). Thick: "
                          "mean over seeds; thin: each run; shaded: 95% CI of the mean."), fig=fig)


@table("family", family=FAMILY)
def scores_against_baseline(a: Analysis) -> Iterator[Table]:
    """Per setting: test precision, recall and FID (mean ± std over seeds) beside the real-vs-real baseline."""
    ok = a.ok
    if ok.empty or "test_precision" not in ok.columns:
        return
    up = a.unit("test_precision")
    uf = a.unit("test_fid")
    rows = []
    for label, runs in groups(a, ok, []):
        row = {"setting": label or "all runs"}
        for col, name, u in (("test_precision", "precision", up), ("test_recall", "recall", up), ("test_fid", "FID", uf)):
            v = _num(runs, col).dropna()
            b = _num(runs, f"baseline_{name.lower()}").dropna()
            row[name] = mean_std(v.mean(), v.std(), len(v), u) if len(v) else "–"
            row[f"{name}, real vs real"] = fmt(b.mean(), u) if len(b) else "–"
        t = _num(runs, "train_time_total").dropna()
        row["train time"] = f"{t.median() / 60:.1f} min" if len(t) and t.median() > 0 else "–"
        rows.append(row)
    yield Table(key="gan-scores", title="Scores against the real-vs-real baseline",
                caption=(f"Test scores: mean ± standard deviation over seeds (n runs). Real vs real: N = "
                         f"{_facts(a, 'pr_n_test')} training images scored as if generated, against the same N test "
                         f"images (k = {_facts(a, 'pr_k')}, the same features). Train "
                         "time: median over runs."), df=pd.DataFrame(rows))


def _rows_for(run: pd.Series, ex: dict) -> List[tuple]:
    """(label, images) rows of one run's samples.npz."""
    out = []
    if "epochs" in ex:
        e = ex["epochs"]
        picks = np.unique(np.linspace(0, len(e) - 1, min(len(e), 4)).round().astype(int))
        out += [(f"epoch {i + 1}", e[i]) for i in picks]
    if "psi" in ex:
        for trunc in ("hard", "soft"):
            if trunc in ex:
                out += [(f"{trunc} psi {p:g}", ex[trunc][i]) for i, p in enumerate(ex["psi"]) if p != 1.0]
    elif "samples" in ex:
        t = run.get("truncation")
        out.append((f"{t} psi {run.get('psi'):g}" if t and t != "none" else "samples", ex["samples"]))
    return out


@figure("family", family=FAMILY)
def sample_grids(a: Analysis) -> Iterator[Figure]:
    """Per setting (its lowest-seed run): samples from the same latents after a few epochs and at a few
    truncations, above the real test images; for sampling sweeps, one row per run (psi level)."""
    ok = a.ok
    if ok.empty or "path" not in ok.columns:
        return
    if _sampling(a):
        order = ok.sort_values([c for c in ("generator_run_id", "truncation", "psi") if c in ok.columns])
        for gid, runs in list(order.groupby("generator_run_id", sort=False))[:MAX_FIGURES]:
            rows, real = [], None
            for _, r in runs.iterrows():
                ex = examples(r, "samples.npz")
                if ex is None:
                    continue
                real = ex.get("real", real)
                rows += [(label, img, r) for label, img in _rows_for(r, ex)]
            if rows:
                yield _grid_figure(f"gan-samples-{gid}", f"Samples of generator {gid} at each truncation",
                                   rows, real, a, f"generator run {gid}")
        return
    shown = 0
    for label, runs in groups(a, ok, []):
        order = runs.sort_values(REPLICATE) if REPLICATE in runs.columns else runs
        for _, r in order.iterrows():
            ex = examples(r, "samples.npz")
            if ex is None:
                continue
            rows = [(lab, img, r) for lab, img in _rows_for(r, ex)]
            yield _grid_figure(f"gan-samples-{r['run']}", f"Samples: {label or 'all runs'}", rows, ex.get("real"), a,
                               f"run {r['run']} (seed {r.get(REPLICATE)})")
            shown += 1
            break
        if shown == MAX_FIGURES:
            return


def _grid_figure(key: str, title: str, rows: list, real: Optional[np.ndarray], a: Analysis, who: str) -> Figure:
    if real is not None:
        rows = rows + [("real (test)", real, None)]
    fig, axes = new_figure(len(rows), 1, height=min(1.0, 0.12 + 0.075 * len(rows)))
    for ax, (label, img, r) in zip(axes[:, 0], rows):
        right = ""
        if r is not None and label.startswith(("hard", "soft", "samples")) and "test_precision" in r and pd.notna(r.get("test_precision")) and r.get("generator_run_id"):
            right = f"P {r['test_precision']:.2f}  R {r['test_recall']:.2f}\nFID {r['test_fid']:.3g}"
        draw_row(ax, mosaic(img[:GRID_SHOWN]), label, right)
    return Figure(key=key, title=title,
                  caption=(f"{who}: {GRID_SHOWN} samples from the same fixed latents in every row (after a few "
                           "epochs; then hard truncation, latent coordinates re-drawn beyond psi, and soft, the "
                           "latent scaled by psi); the bottom row shows real test images."), fig=fig)
