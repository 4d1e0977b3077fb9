"""Deep Q-learning runs (the grid game, CartPole, any Gymnasium id): the return against the number
of transitions with the random policy drawn as a line, the test return beside the random policy's
per setting, and a few greedy episodes of the grid game as strips of boards (episodes.npz)."""
from __future__ import annotations

from typing import Iterator, List

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..analysis import Analysis, aggregate, fmt, mean_std
from ..figures import MAX_RUN_LINES, Figure, figure, legend_outside, new_figure
from ..load import COUNTED, REPLICATE
from ..tables import Table, table
from dl2bench.families.rl.task import EPISODES

from . import examples
from ._grids import MAX_FIGURES, draw_row, groups

FAMILY = "rl"
TITLE = "Deep Q-learning: returns against the random policy"
INTRO = ("The return of evaluation episodes during training, against the uniform random policy on the same "
         "test episodes, and what the learnt policies do on the board.")
FRAMES = 8  # boards per episode strip
CURVES = (("val_return", "evaluation episodes"), ("train_return", "training episodes (exploring)"))


def _eps(a: Analysis) -> str:
    v = pd.to_numeric(a.ok.get("eval_eps", pd.Series(dtype=float)), errors="coerce").dropna().unique()
    return f"epsilon {', '.join(f'{x:g}' for x in sorted(v))}" if len(v) else "epsilon as configured"


@figure("family", family=FAMILY)
def returns(a: Analysis) -> Iterator[Figure]:
    """Mean return (95% CI over seeds, and every run) against transitions, per level of the first
    factor; the random policy's mean test return as a dashed line."""
    c = a.curves[a.curves["status"].isin(COUNTED)] if not a.curves.empty else a.curves
    cols = [(k, what) for k, what in CURVES if k in c.columns and c[k].notna().any()]
    if c.empty or not cols or "transitions" not in c.columns:
        return
    f = a.factors[0] if a.factors else None
    levels = f.levels if f else [None]
    fig, axes = new_figure(1, len(cols), height=0.85)
    handles: List = []
    rnd = pd.to_numeric(a.ok.get("random_return", pd.Series(dtype=float)), errors="coerce")
    for ax, (col, what) in zip(axes[0], cols):
        keys = [f.column, "transitions"] if f else ["transitions"]
        agg = aggregate(c, keys, col)
        for lvl in levels:
            d = (agg[agg[f.column] == lvl] if f else agg).sort_values("transitions")
            if d.empty:
                continue
            color = f.colors[lvl] if f else (0.2, 0.4, 0.7)
            runs = c[c[f.column] == lvl] if f else c
            if runs["run"].nunique() <= MAX_RUN_LINES:
                for _, r in runs.groupby(["sweep", "run"]):
                    r = r.sort_values("transitions")
                    ax.plot(r["transitions"], r[col], color=color, lw=0.7, alpha=0.4)
            ax.plot(d["transitions"], d["mean"], color=color, lw=2.2)
            ax.fill_between(d["transitions"], d["lo"], d["hi"], color=color, alpha=0.15, lw=0)
            if col == cols[0][0]:
                label = f"{lvl} (n={int(d['n'].max())})" if f else f"all runs (n={int(d['n'].max())})"
                handles.append(Line2D([], [], color=color, lw=2.2, label=label))
        if rnd.notna().any():
            ax.axhline(rnd.mean(), color="0.25", ls="--", lw=1.3)
        ax.set_xlabel("environment transitions")
        ax.set_ylabel("mean return")
        ax.set_title(f"Return of the {what}")
    if rnd.notna().any():
        handles.append(Line2D([], [], color="0.25", ls="--", lw=1.3, label=f"random policy ({rnd.mean():.3g})"))
    handles.append(Line2D([], [], color="0.4", lw=0.7, label="one run"))
    handles.append(Patch(color="0.4", alpha=0.2, label="95% CI of the mean"))
    legend_outside(axes[0, -1], handles, f.name if f else "")
    yield Figure(key="rl-returns", title="Return while learning" + (f", by {f.name}" if f else ""),
                 caption=(f"Left: mean return of the validation episodes played after each epoch ({_eps(a)}; the "
                          "same starting states every time); right: the episodes that ended while training, "
                          "with the exploration of that moment. Thick: mean over seeds"
                          f"{' and the other factors' if len(a.factors) > 1 else ''}; thin: each run; shaded: "
                          "95% CI of the mean. Dashed: the uniform random policy's mean return on the test "
                          "episodes."), fig=fig)


@table("family", family=FAMILY)
def against_random(a: Analysis) -> Iterator[Table]:
    """Per setting: the test return (mean ± std over seeds) beside the random policy's on the same
    episodes, and the transitions per second of the whole loop."""
    ok = a.ok
    if ok.empty or "random_return" not in ok.columns:
        return
    u = a.metric_unit
    rows = []
    for label, runs in groups(a, ok, []):
        v = pd.to_numeric(runs[a.metric], errors="coerce").dropna()
        r = pd.to_numeric(runs["random_return"], errors="coerce").dropna()
        sps = pd.to_numeric(runs.get("samples_per_s", pd.Series(dtype=float)), errors="coerce").dropna()
        rows.append({"setting": label or "all runs",
                     f"test return ({_eps(a)})": mean_std(v.mean(), v.std(), len(v), u) if len(v) else "–",
                     "random policy": fmt(r.mean(), u) if len(r) else "–",
                     "gain over random": fmt(v.mean() - r.mean(), u) if len(v) and len(r) else "–",
                     "transitions": f"{int(pd.to_numeric(runs['n_train'], errors='coerce').max()):,}"
                     if "n_train" in runs else "–",
                     "transitions/s": f"{sps.median():,.0f}" if len(sps) else "–"})
    yield Table(key="rl-against-random", title="Test return against the random policy",
                caption=("Test return: mean ± standard deviation over seeds (n runs) of each run's mean over its "
                         "test episodes; random policy: the uniform random policy on the same episodes (mean "
                         "over runs); transitions/s: median over runs of the whole loop (acting, storing, "
                         "learning), warm-up excluded."), df=pd.DataFrame(rows))


def _render(cheese: np.ndarray, poison: np.ndarray, pos: np.ndarray) -> np.ndarray:
    from dl2bench.families.rl.mouse import render

    img = render({"cheese": cheese, "poison": poison, "pos": pos}, cell=8).astype(float) / 255
    return np.pad(img, ((1, 1), (1, 1), (0, 0)), constant_values=0.55)  # the board's edge: empty cells are near white


@figure("family", family=FAMILY)
def episodes(a: Analysis) -> Iterator[Figure]:
    """Per setting (up to a few): the first recorded test episode of its lowest-seed run, every
    few moves a board, with the return so far."""
    ok = a.ok
    if ok.empty or "path" not in ok.columns:
        return
    picks = []
    for label, runs in groups(a, ok, []):
        order = runs.sort_values(REPLICATE) if REPLICATE in runs.columns else runs
        for _, r in order.iterrows():
            ex = examples(r, EPISODES) if r.get("episodes") else None
            if ex is not None and {"cheese", "poison", "pos", "reward"} <= set(ex):
                picks.append((label or "all runs", r, ex))
                break
        if len(picks) == min(MAX_FIGURES, 6):
            break
    if not picks:
        return
    fig, axes = new_figure(len(picks), 1, height=min(1.0, 0.15 + 0.14 * len(picks)))
    for ax, (label, r, ex) in zip(axes[:, 0], picks):
        n = int(ex["lengths"][0]) if "lengths" in ex else ex["cheese"].shape[1]
        at = np.unique(np.linspace(0, n - 1, FRAMES).round().astype(int))
        ret = np.concatenate([[0.0], np.cumsum(ex["reward"][0][: n - 1])])
        boards = [_render(ex["cheese"][0, t], ex["poison"][0, t], ex["pos"][0, t]) for t in at]
        h, w = boards[0].shape[:2]
        strip = np.ones((h, len(boards) * (w + 4) - 4, 3))
        for i, b in enumerate(boards):
            strip[:, i * (w + 4): i * (w + 4) + w] = b
            ax.text(i * (w + 4) + w / 2, -2, f"t={at[i]}  {ret[at[i]]:+.1f}", ha="center", va="bottom", fontsize=6.5,
                    color="0.25")
        draw_row(ax, strip, label.replace(", ", "\n"),
                 f"return {ret[-1]:+.1f}\nseed {r.get(REPLICATE)}")
    walls = set(ok["grid_walls"].dropna()) if "grid_walls" in ok.columns else set()
    torus = (" (on the torus, where the window crosses an edge it continues on the other side; the outline "
             "shows only the part inside)") if "wrap" in walls else ""
    yield Figure(key="rl-episodes", title="A test episode of each setting, board by board",
                 caption=(f"One test episode per setting (its lowest-seed run), played with {_eps(a)}: "
                          f"{FRAMES} boards evenly spaced over the episode; above each, the move number and the "
                          "return so far. Yellow: cheese (+0.5), purple: poison (-1), dark grey: the mouse, red "
                          f"outline: the 5 x 5 window it sees{torus}."), fig=fig)
