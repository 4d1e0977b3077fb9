"""What a run shows in W&B beyond numbers: the images and tables its family's report draws, built
from the files the run leaves for that report (examples.npz, samples.npz, episodes.npz, the summary).

A family registers one function, `@MEDIA.register(name=FAMILY)`, (run folder, summary) -> [Media];
it stays plain numpy, so no family imports wandb and the tests can check what it builds without a
server. The Tracker turns the items into wandb.Image / wandb.Table (track.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .registry import Registry
from .wandb_view import MEDIA as PREFIX  # their own W&B section, apart from train/ val/ test/

MEDIA = Registry("media")  # family name -> (run folder, summary) -> [Media]


@dataclass(frozen=True)
class Image:
    """`pixels`: H x W or H x W x 3 uint8. `masks` (segmentation): name -> H x W class ids over
    `classes`, which W&B draws as switchable overlays."""

    pixels: np.ndarray
    caption: str = ""
    masks: Dict[str, np.ndarray] = field(default_factory=dict)
    classes: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """Rows of cells: str, int, float or Image."""

    columns: Tuple[str, ...]
    rows: Tuple[Tuple[Any, ...], ...]


@dataclass(frozen=True)
class Media:
    name: str  # logged as media/<name>
    value: Any  # Image | Table
    epoch: Optional[int] = None  # a per-epoch picture (a GAN's fixed-latent grid) is logged at its epoch

    @property
    def key(self) -> str:
        return PREFIX + self.name


def arrays(run_dir: Path, summary: Dict[str, Any], default: str) -> Optional[Dict[str, np.ndarray]]:
    """The run's family file (the one its summary names under `examples`, else `default`), or None
    when it is absent or unreadable: a missing picture is no reason to lose the run's W&B record."""
    name = summary.get("examples")
    name = name if isinstance(name, str) and name and "/" not in name else default
    try:
        with np.load(Path(run_dir) / name, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None


def hwc(image: np.ndarray) -> np.ndarray:
    """One image, C x H x W or H x W (x C), float in [0, 1] or uint8 -> H x W or H x W x 3 uint8."""
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.moveaxis(x, 0, -1)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.dtype != np.uint8:
        x = (np.clip(np.nan_to_num(x.astype(float)), 0, 1) * 255).round().astype(np.uint8)
    return x


def tile(images: Sequence[np.ndarray], cols: Optional[int] = None, gap: int = 2) -> np.ndarray:
    """N images of one size -> one grid (white gaps), `cols` wide (about square by default)."""
    ims = [hwc(i) for i in images]
    if not ims:
        raise ValueError("tile: no images")
    colour = any(i.ndim == 3 for i in ims)
    ims = [np.repeat(i[..., None], 3, -1) if colour and i.ndim == 2 else i for i in ims]
    n = len(ims)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w = ims[0].shape[:2]
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap) + ims[0].shape[2:], 255, np.uint8)
    for k, im in enumerate(ims):
        r, c = divmod(k, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = im
    return out


def heatmap(values: np.ndarray) -> np.ndarray:
    """A 2-D array -> a grey H x W uint8 image, low dark, high light, rows drawn top down as given;
    non-finite cells black."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    if not ok.any():
        return np.zeros(v.shape, np.uint8)
    lo, hi = np.min(v[ok]), np.max(v[ok])
    out = np.where(ok, (v - lo) / (hi - lo if hi > lo else 1.0), 0.0)
    return (out * 255).round().astype(np.uint8)


def scatter(points: Sequence[np.ndarray], lo: np.ndarray, hi: np.ndarray, size: int = 160) -> np.ndarray:
    """2-D point clouds drawn on one white square, each in its own colour (first blue, second
    orange), y up; points outside [lo, hi] left out."""
    img = np.full((size, size, 3), 255, np.uint8)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]
    span = np.where(np.asarray(hi) > np.asarray(lo), np.asarray(hi) - np.asarray(lo), 1.0)
    for pts, colour in zip(points, colours):
        p = (np.asarray(pts, dtype=float)[:, :2] - lo) / span
        p = p[np.isfinite(p).all(1) & (p >= 0).all(1) & (p <= 1).all(1)]
        col = np.minimum((p[:, 0] * size).astype(int), size - 1)
        row = size - 1 - np.minimum((p[:, 1] * size).astype(int), size - 1)
        img[row, col] = colour
    return img


def build(family: str, run_dir: Path, summary: Dict[str, Any]) -> List[Media]:
    """The family's media for a run (none for a family that registers none)."""
    if family not in MEDIA:
        return []
    return list(MEDIA[family](Path(run_dir), summary))
