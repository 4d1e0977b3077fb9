"""Helpers the families' figures share: one representative run per cell, rows of images drawn as
one mosaic per row, and the grouping of runs by the factors a figure does not draw."""
from __future__ import annotations

import itertools
import json
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..analysis import Analysis, Factor, level_str
from ..load import REPLICATE
from . import examples

GAP = 2  # pixels of white between images in a row
MAX_FIGURES = 8  # per family figure kind: more would bury the rest of the report


def factor_on(a: Analysis, key: str) -> Optional[Factor]:
    """The factor whose config columns include `key`, if it varies."""
    return next((f for f in a.factors if key in f.columns), None)


def groups(a: Analysis, runs: pd.DataFrame, leave: Sequence[Factor]) -> Iterator[Tuple[str, pd.DataFrame]]:
    """(label, runs) per combination of the levels of the factors not in `leave`, in level order
    ('all runs' when there are none)."""
    others = [f for f in a.factors if f not in leave]
    if not others:
        yield "", runs
        return
    for combo in itertools.product(*(f.levels for f in others)):
        mask = np.ones(len(runs), bool)
        for f, lvl in zip(others, combo):
            mask &= (runs[f.column] == lvl).to_numpy()
        if mask.any():
            yield ", ".join(f"{f.columns[0]}={lvl}" for f, lvl in zip(others, combo)), runs[mask]


def representative(runs: pd.DataFrame) -> Tuple[Optional[pd.Series], Optional[Dict[str, np.ndarray]]]:
    """The counted run with the lowest seed whose examples file reads, and its arrays."""
    order = runs.sort_values(REPLICATE, na_position="last") if REPLICATE in runs.columns else runs
    for _, r in order.iterrows():
        ex = examples(r)
        if ex is not None:
            return r, ex
    return None, None


def mosaic(images: np.ndarray) -> np.ndarray:
    """N x C x H x W (or N x H x W x 3) uint8/float -> one H x (N*(W+GAP)) image, float in [0, 1]
    (H x W x 3 for colour)."""
    x = np.asarray(images, dtype=float)
    if x.ndim == 4 and x.shape[1] in (1, 3):
        x = np.moveaxis(x, 1, -1)  # N x H x W x C
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.max(initial=0) > 1.0:
        x = x / 255.0
    n, h, w = x.shape[:3]
    shape = (h, n * (w + GAP) - GAP) + x.shape[3:]
    out = np.ones(shape)
    for i in range(n):
        out[:, i * (w + GAP): i * (w + GAP) + w] = x[i]
    return out


def draw_row(ax, img: np.ndarray, label: str, right: str = "", label_color: Any = "black") -> None:
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest", aspect="equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for sp in ax.spines.values():
        sp.set_visible(False)
    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9, color=label_color, labelpad=8)
    if right:
        ax.annotate(right, xy=(1.01, 0.5), xycoords="axes fraction", va="center", fontsize=8.5, color="0.25")


def class_names(runs: pd.DataFrame, column: str = "classes") -> List[str]:
    """A JSON list of class names recorded in the runs' summaries ([] if none)."""
    if column not in runs.columns:
        return []
    for v in runs[column].dropna():
        try:
            names = json.loads(v) if isinstance(v, str) else list(v)
        except (ValueError, TypeError):
            continue
        if isinstance(names, list) and names:
            return [str(n) for n in names]
    return []


def level_of(r: pd.Series, key: str) -> str:
    return level_str(r.get(key))


def grid_caption(n_img: int, rows: str, run_row: str, row_f: Optional[Factor], metric: str) -> str:
    """The caption every example grid shares: what the rows are, which run each `run_row` row
    shows, and where its whole-test-set figure is."""
    per = f"one row per level of {row_f.name}" if row_f else "one run"
    return (f"The same {n_img} test images for every run (from each run's examples.npz): {rows}, {per}. Each "
            f"{run_row} row is one run (n = 1: the lowest seed with a result); its {metric} over the whole test "
            f"set is on the right.")
