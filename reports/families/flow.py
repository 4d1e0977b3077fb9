"""Normalizing-flow runs (dl2bench/families/flow/task.py). 2-D toy densities: the flow's samples over the
test points, and the learnt density on a grid beside the data and the fitted Gaussian (the
baseline), one panel per model × depth; a table of test NLL against the Gaussian's. Images:
sample grids (temperature 1 and 0.7) under real test images, and a bits/dim table that states the
dequantisation and logit transform the numbers depend on. Everything is read from each run's
samples.npz and summary."""
from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd

from ..analysis import Analysis, Factor, aggregate, fmt, level_str, mean_std
from ..figures import Figure, figure, new_figure
from ..load import REPLICATE
from ..tables import Table, table
from ._grids import MAX_FIGURES, draw_row, factor_on, groups, mosaic, representative

FAMILY = "flow"
DATA_COLOR = "0.6"
SAMPLE_COLOR = (0.85, 0.33, 0.1)
MAX_PANELS = 6  # columns (and rows) of a panel grid: more would be unreadable at page size
IMAGES_PER_ROW = 16


def _toy(a: Analysis) -> bool:
    return "gaussian_nll" in a.runs.columns and a.runs["gaussian_nll"].notna().any()


def TITLE(a: Analysis) -> str:  # noqa: N802 - the families' section-title hook
    return ("Normalizing flows: samples and learnt densities" if _toy(a)
            else "Normalizing flows: samples and bits/dim")


def INTRO(a: Analysis) -> str:  # noqa: N802
    if _toy(a):
        return ("Density estimation on a 2-D toy density by maximum likelihood: what the flows sample, the density "
                "they learnt, and their test NLL against a full-covariance Gaussian fitted to the same training "
                "points.")
    return ("Density estimation on images by maximum likelihood: samples F⁻¹(z) at two temperatures, and test "
            "bits/dim, which compare only under the same dequantisation and logit transform (stated below).")


def _axes_factors(a: Analysis) -> Tuple[Optional[Factor], Optional[Factor]]:
    """(rows, columns) of a panel grid: the model and the depth where they vary."""
    return factor_on(a, "model"), factor_on(a, "flow_depth")


def _cells(a: Analysis, runs: pd.DataFrame, rows_f, cols_f):
    """[(row level, [(column level, run, arrays) ...]) ...] for the representative run of each cell."""
    rows = rows_f.levels[:MAX_PANELS] if rows_f else [None]
    cols = cols_f.levels[:MAX_PANELS] if cols_f else [None]
    out = []
    for rl in rows:
        line = []
        for cl in cols:
            sel = runs
            if rows_f:
                sel = sel[sel[rows_f.column] == rl]
            if cols_f:
                sel = sel[sel[cols_f.column] == cl]
            r, ex = representative(sel) if len(sel) else (None, None)
            line.append((cl, r, ex if ex is not None and "samples" in ex else None))
        out.append((rl, line))
    return out


def _name(f: Optional[Factor], lvl) -> str:
    return f"{f.columns[0]}={lvl}" if f is not None and lvl is not None else ""


def _panel_title(a: Analysis, rows_f, rl, cols_f, cl, r) -> str:
    u = a.unit("test_nll")
    what = ", ".join(x for x in (_name(rows_f, rl), _name(cols_f, cl)) if x) or "all runs"
    if r is None:
        return what
    return f"{what}\ntest NLL {fmt(r.get('test_nll'), u)} {u.unit} (seed {level_str(r.get(REPLICATE))})"


def _box(ex) -> Tuple[float, float, float, float]:
    gx, gy = ex["grid_x"], ex["grid_y"]
    return float(gx[0]), float(gx[-1]), float(gy[0]), float(gy[-1])


def _blank(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


@figure("family", family=FAMILY)
def toy_samples(a: Analysis) -> Iterator[Figure]:
    """Per model × depth (the lowest-seed run): 2,000 samples F⁻¹(z) over 2,000 test points."""
    if not _toy(a) or a.ok.empty or "path" not in a.ok.columns:
        return
    rows_f, cols_f = _axes_factors(a)
    made = 0
    for label, runs in groups(a, a.ok, [f for f in (rows_f, cols_f) if f is not None]):
        cells = _cells(a, runs, rows_f, cols_f)
        if not any(ex is not None for _, line in cells for _, _, ex in line):
            continue
        if made == MAX_FIGURES:
            return
        made += 1
        fig, axes = new_figure(len(cells), len(cells[0][1]), height=min(1.0, 0.45 * len(cells) + 0.1),
                               sharex=True, sharey=True)
        for i, (rl, line) in enumerate(cells):
            for j, (cl, r, ex) in enumerate(line):
                ax = axes[i, j]
                ax.set_aspect("equal")
                if ex is None:
                    _blank(ax)
                    ax.set_title(_panel_title(a, rows_f, rl, cols_f, cl, None) + "\n(no samples)", fontsize=8)
                    continue
                d, s = ex["data"], ex["samples"]
                ax.scatter(d[:, 0], d[:, 1], s=2, color=DATA_COLOR, alpha=0.5, lw=0, rasterized=True)
                fin = np.isfinite(s).all(1)
                ax.scatter(s[fin, 0], s[fin, 1], s=2, color=SAMPLE_COLOR, alpha=0.6, lw=0, rasterized=True)
                x0, x1, y0, y1 = _box(ex)
                ax.set_xlim(x0, x1)
                ax.set_ylim(y0, y1)
                ax.set_title(_panel_title(a, rows_f, rl, cols_f, cl, r), fontsize=8.5)
        where = f" ({label})" if label else ""
        yield Figure(key=f"flow-samples-{made}", title=f"Samples over the data: {a.task}{where}",
                     caption=(f"Each panel: one run (the lowest seed of its cell; n = 1), {len(ex['samples']) if ex else 'its'} "
                              "samples F⁻¹(z), z ~ N(0, I) (orange) drawn over the first 2,000 test points (grey). "
                              "Samples that leave the plotted box are not shown; its test NLL over the whole test set "
                              "is in the panel title."),
                     fig=fig)


@figure("family", family=FAMILY)
def toy_densities(a: Analysis) -> Iterator[Figure]:
    """The data and the fitted Gaussian (first column), then the learnt density p(x) per model ×
    depth on the same grid and colour scale."""
    if not _toy(a) or a.ok.empty or "path" not in a.ok.columns:
        return
    rows_f, cols_f = _axes_factors(a)
    made = 0
    for label, runs in groups(a, a.ok, [f for f in (rows_f, cols_f) if f is not None]):
        cells = _cells(a, runs, rows_f, cols_f)
        first = next((ex for _, line in cells for _, _, ex in line if ex is not None), None)
        if first is None:
            continue
        if made == MAX_FIGURES:
            return
        made += 1
        dens = [np.exp(ex["log_density"]) for _, line in cells for _, _, ex in line if ex is not None]
        top = float(np.nanpercentile(np.concatenate([d.ravel() for d in dens]), 99.5)) or 1.0
        ncols = len(cells[0][1]) + 1
        fig, axes = new_figure(len(cells), ncols, height=min(1.0, 0.45 * len(cells) + 0.1), sharex=True, sharey=True)
        x0, x1, y0, y1 = _box(first)
        gx, gy = np.meshgrid(first["grid_x"], first["grid_y"])
        for i, (rl, line) in enumerate(cells):
            ax = axes[i, 0]
            ax.grid(False)
            if i == 0:
                d = first["data"]
                ax.hist2d(d[:, 0], d[:, 1], bins=60, range=[[x0, x1], [y0, y1]], cmap="Greys")
                mean, cov = first["gaussian_mean"], first["gaussian_cov"]
                pos = np.stack([gx - mean[0], gy - mean[1]], -1)
                maha = np.einsum("...i,ij,...j->...", pos, np.linalg.inv(cov), pos)
                ax.contour(gx, gy, maha, levels=[1, 4, 9], colors=[SAMPLE_COLOR], linewidths=1)
                nll = pd.to_numeric(runs["gaussian_nll"], errors="coerce").mean()
                ax.set_title(f"test data, and the fitted Gaussian\n(1, 2, 3 σ; test NLL {nll:.3f} nats)", fontsize=8.5)
            else:
                ax.axis("off")
            ax.set_aspect("equal")
            for j, (cl, r, ex) in enumerate(line, start=1):
                ax = axes[i, j]
                ax.set_aspect("equal")
                if ex is None:
                    _blank(ax)
                    ax.set_title(_panel_title(a, rows_f, rl, cols_f, cl, None) + "\n(no density grid)", fontsize=8)
                    continue
                p = np.exp(ex["log_density"])
                ax.grid(False)
                ax.imshow(np.nan_to_num(p), origin="lower", extent=(x0, x1, y0, y1), cmap="viridis", vmin=0,
                          vmax=top, interpolation="bilinear", aspect="equal")
                ax.contour(ex["grid_x"], ex["grid_y"], p, levels=np.linspace(0, top, 6)[1:], colors="white",
                           linewidths=0.5, alpha=0.7)
                ax.set_title(_panel_title(a, rows_f, rl, cols_f, cl, r), fontsize=8.5)
        where = f" ({label})" if label else ""
        mass = pd.to_numeric(runs.get("grid_mass", pd.Series(dtype=float)), errors="coerce").dropna()
        mass_s = f" The learnt densities' mass inside the box: {mass.min():.3f}–{mass.max():.3f}." if len(mass) else ""
        yield Figure(key=f"flow-density-{made}", title=f"Learnt density: {a.task}{where}",
                     caption=("Left: a histogram of the first 2,000 test points, and the 1, 2 and 3 σ contours of the "
                              "full-covariance Gaussian fitted to the training points (the baseline). Then p(x) = "
                              "|det J_F(x)| N(F(x); 0, I) of one run per cell (the lowest seed; n = 1) on a "
                              f"{first['log_density'].shape[0]}² grid, one colour scale for all panels (white: "
                              f"contours at equal steps).{mass_s}"),
                     fig=fig)


@figure("family", family=FAMILY)
def image_samples(a: Analysis) -> Iterator[Figure]:
    """Test images, then per configuration (its lowest-seed run) samples at temperature 1 and 0.7."""
    if _toy(a) or a.ok.empty or "path" not in a.ok.columns:
        return
    picks = []
    for lvl in a.ranked_levels(a.config_column):
        r, ex = representative(a.ok[a.ok[a.config_column] == lvl])
        if r is not None and "samples_t1" in ex:
            picks.append((lvl, r, ex))
    if not picks:
        return
    col = "test_bits_per_dim" if "test_bits_per_dim" in a.ok.columns else a.metric
    u = a.unit(col)
    for k in range(0, min(len(picks), MAX_FIGURES * 4), 4):
        chunk = picks[k:k + 4]
        rows: List[Tuple[str, np.ndarray, str]] = [("test images", mosaic(chunk[0][2]["data"][:IMAGES_PER_ROW]), "")]
        for lvl, r, ex in chunk:
            right = f"test {fmt(r.get(col), u)} {u.unit}\nseed {level_str(r.get(REPLICATE))}"
            for key, t in (("samples_t1", "1"), ("samples_t07", "0.7")):
                if key in ex:
                    rows.append((f"{lvl}\nT = {t}" if lvl != "all runs" else f"samples, T = {t}",
                                 mosaic(ex[key][:IMAGES_PER_ROW]), right if t == "1" else ""))
        fig, axes = new_figure(len(rows), 1, height=min(1.0, 0.1 + 0.11 * len(rows)))
        for ax, (name, img, right) in zip(axes[:, 0], rows):
            draw_row(ax, img, name, right)
        yield Figure(key=f"flow-image-samples-{k // 4 + 1}", title="Samples" + (f" ({k // 4 + 1})" if len(picks) > 4 else ""),
                     caption=("Top: test images (one per class first). Then per configuration, best first, one run (the "
                              "lowest seed; n = 1): samples F⁻¹(z) with z ~ N(0, T² I) at T = 1 and at T = 0.7 (the "
                              "same z, scaled), mapped back through the logit and to 8-bit pixels. Its test bits/dim "
                              "over the whole test set is on the right."),
                     fig=fig)


def _mean(runs: pd.DataFrame, col: str, u, digits: Optional[int] = None) -> str:
    v = pd.to_numeric(runs.get(col, pd.Series(dtype=float)), errors="coerce").dropna()
    if not len(v):
        return "–"
    return mean_std(v.mean(), v.std(), len(v), u) if digits is None else f"{v.mean():.{digits}f}"


def _nonfinite(runs: pd.DataFrame) -> str:
    v = pd.to_numeric(runs.get("test_nonfinite", pd.Series(dtype=float)), errors="coerce")
    return "–" if v.isna().all() else f"{int(v.sum())}"


@table("family", family=FAMILY)
def nll_table(a: Analysis) -> Iterator[Table]:
    """2-D: per configuration, the test NLL beside the fitted Gaussian's, the gain, non-finite
    samples, the density's mass on the report's grid and the training time."""
    if not _toy(a) or a.ok.empty:
        return
    u = a.unit("test_nll")
    ok = a.ok.copy()
    ok["_gain"] = pd.to_numeric(ok["gaussian_nll"], errors="coerce") - pd.to_numeric(ok["test_nll"], errors="coerce")
    rows = []
    for lvl in a.ranked_levels(a.config_column):
        runs = ok[ok[a.config_column] == lvl]
        if runs.empty:
            continue
        g = aggregate(runs, [a.config_column], "test_nll")
        rows.append({"configuration": lvl,
                     f"test NLL ({u.unit}) ↓": mean_std(g["mean"].iloc[0], g["std"].iloc[0], int(g["n"].iloc[0]), u),
                     f"fitted Gaussian's test NLL ({u.unit})": _mean(runs, "gaussian_nll", u, 3),
                     f"gain over the Gaussian ({u.unit}) ↑": _mean(runs, "_gain", u),
                     "non-finite test log p (all runs)": _nonfinite(runs),
                     "mass on the grid": _mean(runs, "grid_mass", u, 3),
                     "training time (s)": _mean(runs, "train_time_total", u, 1)})
    noise = pd.to_numeric(a.ok.get("toy_noise", pd.Series(dtype=float)), errors="coerce").dropna().unique()
    data = ", ".join(sorted(set(a.ok.get("data", pd.Series(dtype=str)).dropna().astype(str)))) or \
        f"noise {', '.join(f'{x:g}' for x in noise)}"
    yield Table(key="flow-nll", title="Test NLL against the fitted Gaussian",
                caption=(f"Per configuration, best first: mean ± std (n runs) of the test negative log-likelihood in "
                         f"nats per point (natural log), the full-covariance Gaussian fitted to the same training points "
                         f"(the baseline, same test points), and the gain (Gaussian − flow; > 0: the flow is better). "
                         f"Non-finite: test points whose log-density is not finite, summed over the runs (such a run's "
                         f"NLL is inf/NaN, never a mean over the finite ones). Mass: the integral of the learnt density "
                         f"over the report's grid (≈ 1 when no mass lies outside it). Data: {data}."),
                df=pd.DataFrame(rows), wide=["configuration"])


@table("family", family=FAMILY)
def bits_per_dim_table(a: Analysis) -> Iterator[Table]:
    """Images: per configuration, test bits/dim and NLL, non-finite samples, and the dequantisation
    and logit transform they were measured under."""
    if _toy(a) or a.ok.empty or "test_bits_per_dim" not in a.ok.columns:
        return
    rows = []
    for lvl in a.ranked_levels(a.config_column):
        runs = a.ok[a.ok[a.config_column] == lvl]
        if runs.empty:
            continue
        ub, un = a.unit("test_bits_per_dim"), a.unit("test_nll")
        alpha = ", ".join(sorted({f"{float(x):g}" for x in runs.get("logit_alpha", pd.Series(dtype=float)).dropna()}))
        rows.append({"configuration": lvl,
                     "test bits/dim ↓": _mean(runs, "test_bits_per_dim", ub),
                     "test NLL (nats/image)": _mean(runs, "test_nll", un),
                     "non-finite test log p (all runs)": _nonfinite(runs),
                     "logit α": alpha or "–",
                     "epochs": _mean(runs, "epochs_completed", un, 0),
                     "training time (s)": _mean(runs, "train_time_total", un, 0)})
    deq = sorted(set(a.ok.get("dequantisation", pd.Series(dtype=str)).dropna().astype(str)))
    of = sorted(set(a.ok.get("bits_per_dim_of", pd.Series(dtype=str)).dropna().astype(str)))
    yield Table(key="flow-bpd", title="Bits per dimension",
                caption=(f"Per configuration, best first: mean ± std (n runs) of the test bits/dim and NLL. Dequantisation: "
                         f"{'; '.join(deq) or 'not recorded'}. Logit transform v = logit(α + (1 − 2α) x) with the α in "
                         f"the table. Bits/dim of {'; '.join(of) or 'the 8-bit pixels'}. Numbers compare only under the "
                         "same dequantisation and α. Non-finite: test images whose log-density is not finite, summed "
                         "over the runs."),
                df=pd.DataFrame(rows), wide=["configuration"])
