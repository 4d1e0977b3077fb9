"""A task family's own report figures and tables: one module per family here, found by pkgutil
and imported when the report is drawn, so a new family adds a file and touches nothing else.

A module registers its figures with `@figure("family", family=FAMILY)` (and tables with
`@table("family", family=FAMILY)`) from reports.figures / reports.tables; they are drawn only in the
part of a report whose task has that family, in a section titled by the module's `TITLE` (and
`INTRO`): strings, or functions of the task's Analysis. Modules may also read the run folders' family files (e.g. examples.npz) with `examples`.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pandas as pd


@functools.lru_cache(maxsize=1)
def modules() -> Dict[str, object]:
    """family name (the module's FAMILY, else its file name) -> module, every one imported."""
    out = {}
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if m.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{m.name}")
        out[getattr(mod, "FAMILY", m.name)] = mod
    return out


def title(a) -> str:
    """The family section's title for the task of Analysis `a`."""
    t = getattr(modules().get(a.family), "TITLE", None)
    return (t(a) if callable(t) else t) or f"{a.family.capitalize()} figures"


def intro(a) -> str:
    t = getattr(modules().get(a.family), "INTRO", "")
    return (t(a) if callable(t) else t) or ""


def examples(run: pd.Series, name: Optional[str] = None) -> Optional[Dict[str, np.ndarray]]:
    """A run folder's family file of example arrays: the one its summary names under `examples`,
    else `name` (the family's file-name constant, imported from its wing). None if absent,
    unreadable, or the run came from W&B and has no folder here."""
    path = Path(str(run.get("path", "")))
    f = run.get("examples")
    f = f if isinstance(f, str) and f and "/" not in f else name
    if not f:
        return None
    p = path / f
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None


modules()
