"""Atomic per-epoch checkpoints with every RNG a run draws from, so a resumed run continues
exactly where the interrupted one stopped.

A checkpoint file is a header line (magic, SHA-256 and length of the body) followed by the body
torch.save wrote. Loading checks both before anything is unpickled, so a truncated or corrupted
file is named as such instead of resuming from wrong numbers, and loads with
`torch.load(weights_only=True)`: tensors and plain containers only, never pickled code. NumPy
arrays (a replay buffer, a NumPy generator's state) travel as tensors under a marker."""
from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from . import runs

MAGIC = b"dl2bench-checkpoint 1"
NDARRAY = "__ndarray__"  # {NDARRAY: tensor} is a NumPy array in a checkpoint


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted: truncated, corrupted, or not a checkpoint."""


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


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {NDARRAY: torch.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_encode(v) for v in obj)
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1 and NDARRAY in obj:
            return obj[NDARRAY].numpy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_decode(v) for v in obj)
    return obj


def save(path: Path, payload: Dict[str, Any]) -> None:
    """Write beside the target, fsync and rename: a job killed (or a disk filling up) mid-write
    leaves the previous checkpoint intact."""
    buf = io.BytesIO()
    torch.save(_encode(payload), buf)
    body = buf.getbuffer()
    header = b"%s %s %d\n" % (MAGIC, hashlib.sha256(body).hexdigest().encode(), len(body))
    with runs.atomic(path) as f:
        f.write(header)
        f.write(body)


def load(path: Path) -> Optional[Dict[str, Any]]:
    """The checkpoint at `path`, None if there is none; CheckpointError naming the file and what
    is wrong with it when it cannot be trusted."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    head, sep, body = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or not head.startswith(MAGIC) or len(parts) != 4 or not parts[3].isdigit():
        raise CheckpointError(f"{path}: not a dl2bench checkpoint (no header line; {len(data):,} bytes)")
    digest, size = parts[2].decode(errors="replace"), int(parts[3])
    if len(body) != size:
        raise CheckpointError(f"{path}: truncated ({len(body):,} of {size:,} bytes)")
    if hashlib.sha256(body).hexdigest() != digest:
        raise CheckpointError(f"{path}: corrupted (its SHA-256 does not match the one written with it)")
    try:
        return _decode(torch.load(io.BytesIO(body), map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - intact bytes that still do not load: say which file
        raise CheckpointError(f"{path}: does not load ({type(e).__name__}: {e})") from None
