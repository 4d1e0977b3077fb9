"""The course's problem families, one wing each: `families/<family>/` holds the family's tasks
(`task.py`: its TASKS, metrics, losses, config `KEYS` and the `prepare` that builds a Problem), its
models (`models.py`), its benchmark workloads (`workloads.py`) and whatever else only it uses (data, environments, its own update, its
measures). Importing this package registers every family's models, then its tasks; nothing outside
a wing names a family, so a new family is a new folder here (and, optionally, its report module
in reports/families/)."""
from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Dict

from ..nets import MODELS
from .base import SIZES, TASKS, WORKLOADS, Augment, Key, Metric, NoTraining, Problem, Step, Task, Workload

__all__ = ["MODELS", "SIZES", "TASKS", "WORKLOADS", "Augment", "Key", "Metric", "NoTraining", "Problem", "Step",
           "Task", "Workload",
           "family_keys", "families"]


@functools.lru_cache(maxsize=1)
def families() -> Dict[str, object]:
    """family name -> its task module, classification first (the others in name order)."""
    names = sorted((m.name for m in pkgutil.iter_modules(__path__) if m.ispkg and not m.name.startswith("_")),
                   key=lambda n: (n != "classification", n))
    return {n: importlib.import_module(f"{__name__}.{n}.task") for n in names}


def family_keys() -> Dict[str, Dict[str, Key]]:
    """family -> the config keys it declares."""
    return {name: getattr(mod, "KEYS", {}) for name, mod in families().items()}


families()  # register every family's models and tasks on import
