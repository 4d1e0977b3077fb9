"""Segmentation runs (U-Net on the shapes set, Oxford-IIIT Pet): input / truth / prediction
overlays from each run's examples.npz, a colour per class with the legend from the summary's
`classes`. The headline metric per loss is the generic final-metric figure of the `loss` factor;
every declared test metric (mean IoU, Dice, pixel accuracy) per configuration is the generic
"All test metrics" table."""
from __future__ import annotations

from typing import Iterator, List

import numpy as np
from matplotlib.patches import Patch

from ..analysis import Analysis, fmt, level_str
from ..figures import Figure, figure, new_figure
from ..load import REPLICATE
from ._grids import MAX_FIGURES, class_names, draw_row, factor_on, grid_caption, groups, mosaic, representative

FAMILY = "segmentation"
TITLE = "Segmentation: what the models predict"
INTRO = "A fixed set of test images with their true masks and each loss's predicted masks, a colour per class."
ROW_KEYS = ("loss", "width", "depth")  # what the prediction rows differ by, first that varies
ALPHA = 0.55  # class colour over the image


def class_colors(n: int) -> np.ndarray:
    """RGB in [0, 1] per class index; 0 (background) is not coloured."""
    import seaborn as sns

    cols = sns.color_palette("colorblind" if n <= 11 else "husl", max(n - 1, 1))
    return np.array([(0.0, 0.0, 0.0)] + [tuple(c) for c in cols])


def overlay(images: np.ndarray, masks: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """N x C x H x W images and N x H x W class indices -> N x H x W x 3 in [0, 1]: the image in grey,
    each non-background pixel tinted with its class colour."""
    x = np.asarray(images, dtype=float) / 255.0
    grey = x.mean(axis=1) if x.ndim == 4 else x  # N x H x W
    out = np.repeat(grey[..., None], 3, axis=-1)
    m = np.clip(np.asarray(masks, dtype=int), 0, len(colors) - 1)
    fg = m > 0
    out[fg] = (1 - ALPHA) * out[fg] + ALPHA * colors[m[fg]]
    return out


@figure("family", family=FAMILY)
def overlays(a: Analysis) -> Iterator[Figure]:
    """Per width/depth (every setting but the loss): the input images, their true masks, and each
    loss's predicted masks, from one run each."""
    ok = a.ok
    if ok.empty or "path" not in ok.columns:
        return
    row_f = next((f for f in (factor_on(a, k) for k in ROW_KEYS) if f is not None), None)
    u = a.metric_unit
    made = 0
    for label, runs in groups(a, ok, [row_f] if row_f else []):
        picks = []
        for lvl in (row_f.levels if row_f else [""]):
            r, ex = representative(runs[runs[row_f.column] == lvl] if row_f else runs)
            if r is not None and all(k in ex for k in ("image", "truth", "pred")):
                picks.append((lvl, r, ex))
        if not picks:
            continue
        if made == MAX_FIGURES:
            return
        made += 1
        names = class_names(a.runs)
        n_cls = max([len(names)] + [int(max(p[2]["truth"].max(), p[2]["pred"].max())) + 1 for p in picks])
        colors = class_colors(n_cls)
        image, truth = picks[0][2]["image"], picks[0][2]["truth"]
        same = all(np.array_equal(p[2]["image"], image) for p in picks)
        rows = [("input", mosaic(image), "", "black"), ("truth", mosaic(overlay(image, truth, colors)), "", "black")]
        for lvl, r, ex in picks:
            name = f"{row_f.columns[0]}\n{lvl}" if row_f else "prediction"
            if not same:
                rows.append((f"truth of\n{lvl}", mosaic(overlay(ex["image"], ex["truth"], colors)), "", "0.3"))
            color = row_f.colors.get(lvl, "black") if row_f else "black"
            rows.append((name, mosaic(overlay(ex["image"], ex["pred"], colors)),
                         f"{a.metric} {fmt(r.get(a.metric), u)}{(' ' + u.unit) if u.unit else ''}\n"
                         f"seed {level_str(r.get(REPLICATE))}", color))
        fig, axes = new_figure(len(rows), 1, height=min(1.0, 0.12 + 0.13 * len(rows)))
        for ax, (name, img, right, color) in zip(axes[:, 0], rows):
            draw_row(ax, img, name, right, color)
        labels: List[str] = [names[i] if i < len(names) else f"class {i}" for i in range(1, n_cls)]
        handles = [Patch(color=colors[i], label=lab) for i, lab in enumerate(labels, start=1)]
        handles.append(Patch(facecolor="white", edgecolor="0.5", label=(names[0] if names else "background") + " (no tint)"))
        # above the rows, in one line: beside one row it would stretch that row's slot
        axes[0, 0].legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.04), ncol=len(handles),
                          frameon=False, fontsize="small", handlelength=1.2, columnspacing=1.0, borderaxespad=0)
        where = f" for {label}" if label else ""
        rows_are = ("the input, the true mask and the predicted masks, each class tinted in its colour over the "
                    "grey image")
        yield Figure(key=f"overlays-{made}", title=f"Predicted masks{where}",
                     caption=grid_caption(image.shape[0], rows_are, "prediction", row_f, a.metric),
                     fig=fig)
