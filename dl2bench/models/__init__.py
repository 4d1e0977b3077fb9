"""MODELS: one module per family in this package (classifiers, autoencoders, segmentation, ...),
one decorated builder per architecture; a new family is a new module here."""
from __future__ import annotations

import importlib
import pkgutil

from .base import MODELS, count_parameters, flops_per_sample

__all__ = ["MODELS", "count_parameters", "flops_per_sample"]

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "classifiers", m.name)):
    if not _m.name.startswith("_") and _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")
