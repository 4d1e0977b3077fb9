"""GAN runs (dl2bench/families/gan/task.py): precision against recall (one point per run, and per psi for the
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
from ..figures import MAX_RUN_LINES, Figure, figure, legend_outside, new_figure
from ..load import COUNTED, REPLICATE
from ..tables import Table, table
from dl2bench.families.gan.task import SAMPLES

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


def _clean(label: str) -> str:
    """A group label without the evaluated run's settings that repeat the run's own."""
    return ", ".join(p for p in label.split(", ") if not p.startswith("evaluated."))


def _level(v) -> str:
    """A level's label without the columns that merely repeat it (model = evaluated.model)."""
    return str(v).split(", ")[0]


@figure("family", family=FAMILY)
def precision_recall(a: Analysis) -> Iterator[Figure]:
    """Test precision against test recall, coloured by the first factor: a point per run; for sampling
    runs one panel per truncation, a line per colour through the psi levels (mean over the sampled
    generators, psi written at each point) over the runs' own points; the real-vs-real baseline as a star."""
    ok = a.ok
    if ok.empty or _num(ok, "test_precision").isna().all():
        return
    d = ok.assign(_p=_num(ok, "test_precision"), _r=_num(ok, "test_recall"))
    psi_f, trunc_f = factor_on(a, "psi"), factor_on(a, "truncation")
    colour_f = next((f for f in a.factors if f is not psi_f and f is not trunc_f), None)
    sampling = _sampling(a) and psi_f is not None
    panels = sorted(d["truncation"].dropna().unique()) if sampling and "truncation" in d.columns else [None]
    fig, axes = new_figure(1, len(panels), height=0.8 if len(panels) == 1 else 0.62)
    bp, br = _num(ok, "baseline_precision"), _num(ok, "baseline_recall")
    default = (0.2, 0.4, 0.7)
    for ax, trunc in zip(axes[0], panels):
        sub = d if trunc is None else d[d["truncation"] == trunc]
        levels = colour_f.levels if colour_f is not None else [None]
        for lvl in levels:
            g = sub if lvl is None else sub[sub[colour_f.column] == lvl]
            if g.empty:
                continue
            color = colour_f.colors.get(lvl, default) if colour_f is not None else default
            if sampling:
                ax.scatter(g["_r"], g["_p"], color=color, s=12, alpha=0.35, lw=0, zorder=3)
                m = g.assign(_psi=_num(g, "psi")).groupby("_psi")[["_p", "_r"]].mean().sort_index()
                ax.plot(m["_r"], m["_p"], color=color, lw=1.8, marker="o", ms=4.5, zorder=4)
                for psi, row in m.iterrows():
                    ax.annotate(f"{psi:g}", (row["_r"], row["_p"]), textcoords="offset points", xytext=(4, 2),
                                fontsize=7, color=color)
            else:
                ax.scatter(g["_r"], g["_p"], color=color, s=36, alpha=0.85, lw=0, zorder=3)
        if bp.notna().any():
            ax.scatter([br.mean()], [bp.mean()], marker="*", s=220, color="0.15", zorder=5)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("recall (diversity)")
        if trunc is not None:
            ax.set_title(f"{trunc} truncation" + (": coordinates re-drawn beyond psi" if trunc == "hard"
                                                  else ": latent scaled by psi" if trunc == "soft" else ""))
    axes[0, 0].set_ylabel("precision (quality)")
    handles: List = []
    if colour_f is not None:
        handles += [Line2D([], [], color=colour_f.colors[lv], marker="o", lw=1.8 if sampling else 0,
                           label=_level(lv)) for lv in colour_f.levels]
    elif sampling:
        handles.append(Line2D([], [], color=default, marker="o", lw=1.8, label="mean over the generators"))
    if sampling:
        handles.append(Line2D([], [], color="0.4", marker="o", ls="", alpha=0.4, ms=4, label="one run"))
    if bp.notna().any():
        handles.append(Line2D([], [], marker="*", ms=13, ls="", color="0.15",
                              label=f"real vs real\n(R {br.mean():.2f}, P {bp.mean():.2f})"))
    legend_outside(axes[0, -1], handles, colour_f.name.split(" + ")[0] if colour_f is not None else "")
    what = ("a line per setting through the psi levels (written beside each point; mean over the sampled "
            "generators, whose own runs are the faint dots)" if sampling else "each point one run")
    yield Figure(key="gan-precision-recall", title="Precision against recall",
                 caption=(f"Test precision (share of samples on the real images' manifold) against test recall (share "
                          f"of real test images on the samples' manifold): {what}; up and right is better. The star "
                          "is the real-vs-real baseline: N training images scored against the N test images with the "
                          "same k and features, the best a generator can be expected to do with this instrument."),
                 fig=fig)


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
    legend_outside(axes[0, -1], handles, f.name if f else "")
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
    psi_f = factor_on(a, "psi")
    if _sampling(a) and psi_f is not None:  # one row per setting, one column per psi
        for label, runs in groups(a, ok, [psi_f]):
            row = {"setting": _clean(label) or "all runs"}
            for lvl in psi_f.levels:
                g = runs[runs[psi_f.column] == lvl]
                p, r, f = (_num(g, c).mean() for c in ("test_precision", "test_recall", "test_fid"))
                row[f"psi {lvl}"] = f"P {fmt(p, up)} · R {fmt(r, up)} · FID {fmt(f, uf)} (n={len(g)})" if len(g) else "–"
            rows.append(row)
        b = [fmt(_num(ok, f"baseline_{m}").mean(), up if m != "fid" else uf) for m in ("precision", "recall", "fid")]
        yield Table(key="gan-scores", title="Precision, recall and FID at each psi",
                    caption=(f"Test precision (P), recall (R) and FID, mean over the sampled generators (n runs). Real "
                             f"vs real, the baseline of the same instrument (N = {_facts(a, 'pr_n_test')}, k = "
                             f"{_facts(a, 'pr_k')}): P {b[0]} · R {b[1]} · FID {b[2]}."), df=pd.DataFrame(rows))
        return
    for label, runs in groups(a, ok, []):
        row = {"setting": _clean(label) or "all runs"}
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
                ex = examples(r, SAMPLES)
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
            ex = examples(r, SAMPLES)
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
