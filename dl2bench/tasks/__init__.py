"""TASKS: one module per task family in this package (classification, autoencoder, segmentation,
...), each registering its tasks and declaring its config keys (`KEYS`). A new family is a new
module here; nothing else lists the families."""
from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Dict

from .base import TASKS, Augment, Key, Metric, Problem, Task

__all__ = ["TASKS", "Augment", "Key", "Metric", "Problem", "Task", "family_keys", "families"]


@functools.lru_cache(maxsize=1)
def families() -> Dict[str, object]:
    """family name -> its module, classification first (the others in name order)."""
    names = sorted((m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name != "base"),
                   key=lambda n: (n != "classification", n))
    return {n: importlib.import_module(f"{__name__}.{n}") for n in names}


def family_keys() -> Dict[str, Dict[str, Key]]:
    """family -> the config keys it declares."""
    return {name: getattr(mod, "KEYS", {}) for name, mod in families().items()}


families()  # register every family's tasks on import
