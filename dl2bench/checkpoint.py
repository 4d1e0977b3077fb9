"""Atomic per-epoch checkpoints with every RNG a run draws from, so a resumed run continues
exactly where the interrupted one stopped."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, Optional

import torch


def rng_state(data_gen: torch.Generator) -> Dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "data": data_gen.get_state(),
    }


def set_rng_state(state: Dict[str, Any], data_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    data_gen.set_state(state["data"])


def save(path: Path, payload: Dict[str, Any]) -> None:
    """Write beside the target and rename: a job killed mid-write leaves the old checkpoint intact."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load(path: Path) -> Optional[Dict[str, Any]]:
    if not path.is_file():
        return None
    # our own file, holding RNG tuples and numpy-free python objects: full unpickling is needed
    return torch.load(path, map_location="cpu", weights_only=False)
