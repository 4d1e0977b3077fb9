"""Attack runs (dl2bench/families/adversarial/task.py): robust accuracy against eps per model and attack
(mean and 95% CI over the attacked runs' seeds), a table of it at every eps, and clean /
perturbation / adversarial images with the model's predictions from each run's examples.npz."""
from __future__ import annotations

import json
from typing import Iterator, List

import numpy as np
import pandas as pd

from ..analysis import Analysis, fmt, mean_std
from ..figures import Figure, figure, new_figure
from ..tables import Table, table
from ..units import cap
from ._grids import MAX_FIGURES, draw_row, factor_on, groups, mosaic, representative
from ._lines import metric_vs

FAMILY = "adversarial"
TITLE = "Adversarial robustness"
INTRO = ("How much accuracy survives an attack of growing radius eps (in [0, 1] pixel units), for each "
         "attacked model; each attack run attacked one trained run, and the seeds are those runs' seeds.")
EPS = "attack_eps"


def _eps_label(v) -> str:
    x = pd.to_numeric(v, errors="coerce")
    if pd.isna(x):
        return str(v)
    k = x * 255
    return f"{x:.4g}" + (f" ({k:.0f}/255)" if x and abs(k - round(k)) < 1e-3 and k <= 32 else "")


@figure("family", family=FAMILY)
def robust_vs_eps(a: Analysis) -> Iterator[Figure]:
    """The sweep's metric (robust accuracy) against eps, a line per attacked model and attack."""
    yield from metric_vs(a, EPS, "eps", tick=lambda x: _eps_label(x).replace(" (", "\n("))


@table("family", family=FAMILY)
def robust_at_each_eps(a: Analysis) -> Iterator[Table]:
    """Mean ± std (n) of the sweep's metric at every eps, a row per setting of the other factors."""
    f = factor_on(a, EPS)
    if f is None or a.ok.empty:
        return
    u = a.metric_unit
    rows = []
    for label, runs in groups(a, a.ok, [f]):
        row = {"setting": label or "all runs"}
        for lvl in f.levels:
            v = runs.loc[runs[f.column] == lvl, a.metric].dropna().astype(float)
            row[f"eps {_eps_label(lvl)}"] = mean_std(v.mean(), v.std(), len(v), u) if len(v) else "–"
        rows.append(row)
    yield Table(key="robust-at-each-eps", title=f"{cap(u.label)} at each eps",
                caption=(f"{a.metric}: mean ± standard deviation over the attacked runs (their seeds), n runs per "
                         "cell; eps in [0, 1] pixel units (x/255 for 8-bit images). eps 0 is the clean accuracy."),
                df=pd.DataFrame(rows))


def _classes(r: pd.Series) -> List[str]:
    raw = r.get("classes")
    try:
        names = json.loads(raw) if isinstance(raw, str) else list(raw)
    except (TypeError, ValueError):
        return []
    return [str(n) for n in names]


def _annotate(ax, n: int, width: int, labels: List[str], wrong: List[bool]) -> None:
    for i, (lab, bad) in enumerate(zip(labels, wrong)):
        ax.text(i * (width + 2) + width / 2, -1, lab, ha="center", va="bottom", fontsize=6.5,
                color="#b2182b" if bad else "0.25")


@figure("family", family=FAMILY)
def adversarial_examples(a: Analysis) -> Iterator[Figure]:
    """For the largest eps of each setting: the clean images with the model's predictions, the
    perturbation (grey = 0, scaled to ±eps) and the adversarial images with the new predictions."""
    f = factor_on(a, EPS)
    ok = a.ok
    if ok.empty or "examples" not in ok.columns:
        return
    made = 0
    for label, runs in groups(a, ok, [f] if f else []):
        if made >= MAX_FIGURES:
            return
        eps = pd.to_numeric(runs[EPS], errors="coerce")
        top = runs[eps == eps.max()]
        r, ex = representative(top)
        if ex is None or "adversarial" not in ex:
            continue
        made += 1
        names = _classes(r)
        name = lambda i: names[int(i)] if int(i) < len(names) else str(int(i))  # noqa: E731
        y, clean, adv = ex["labels"], ex["clean_pred"], ex["adversarial_pred"]
        e = float(pd.to_numeric(r.get(EPS), errors="coerce") or 0)
        pert = ex["perturbation"]
        shown = 0.5 + pert / (2 * e) if e > 0 else np.full_like(pert, 0.5)
        width = ex["original"].shape[-1]
        rows = [("clean", mosaic(ex["original"]), [name(i) for i in clean], list(clean != y)),
                (f"perturbation\n(±{_eps_label(e)})", mosaic(np.clip(shown, 0, 1)), [], []),
                ("adversarial", mosaic(ex["adversarial"]), [name(i) for i in adv], list(adv != y))]
        fig, axes = new_figure(len(rows), 1, height=0.75)
        for ax, (row_name, img, preds, wrong) in zip(axes[:, 0], rows):
            draw_row(ax, img, row_name)
            if preds:
                _annotate(ax, len(preds), width, preds, wrong)
        where = f" for {label}" if label else ""
        yield Figure(key=f"adversarial-examples-{made}", title=f"Adversarial examples{where}, eps {_eps_label(e)}",
                     caption=(f"One test image of each of {len(y)} classes, as one attack run attacked it ({r.get('attack', '')}, "
                              f"{r.get('norm', '')}; n = 1: the lowest seed with a result; from its examples.npz). Above each "
                              "image the model's prediction, in red where it is wrong (true labels: "
                              f"{', '.join(name(i) for i in y)}). The perturbation row shows adversarial − clean, "
                              f"mid-grey = 0, black/white = ∓eps. Its {a.metric} over the whole test set: "
                              f"{fmt(r.get(a.metric), a.metric_unit)}{(' ' + a.metric_unit.unit) if a.metric_unit.unit else ''}."),
                     fig=fig)
