"""The optional parts of dl2bench and the modules each needs beyond the core install: what a
command checks before it starts, so that a missing one is one line naming the extra to install
(tests/test_install.py holds this table to pyproject.toml's optional-dependencies)."""
from __future__ import annotations

import importlib.util
from typing import Dict, List, Tuple

# extra -> the modules its packages provide (import names, in the order pyproject.toml lists them)
EXTRAS: Dict[str, Tuple[str, ...]] = {
    "report": ("pandas", "matplotlib", "seaborn", "orjson"),
    "rl": ("gymnasium",),
    "dashboard": ("wandb_workspaces",),
}


def missing_for(extra: str) -> List[str]:
    """The modules of `extra` that cannot be imported here (found, not imported: no import cost)."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
