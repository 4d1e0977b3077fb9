"""Where datasets are looked for (data_root, $DL2BENCH_DATA, ./data, the cache, Debian's
/usr/share/datasets), the optional download, one clear error when nothing is found, and the
cache of decoded tensors."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import torch

from ..runs import save_torch
from .splits import Raw


class DatasetNotFound(FileNotFoundError):
    """No copy of a dataset in any searched place; the message says where it looked and what to do."""



# ---------------------------------------------------------------------------------------------
# where datasets are looked for

def search_roots(data_root: str = "") -> List[Path]:
    """Folders searched, in order: the config's data_root, $DL2BENCH_DATA (both may list several,
    separated by os.pathsep), ./data, ~/.cache/dl2bench/data and Debian's /usr/share/datasets."""
    given = data_root or os.environ.get("DL2BENCH_DATA", "")
    roots = [Path(p).expanduser() for p in given.split(os.pathsep) if p] + default_roots()
    seen, out = set(), []
    for r in roots:
        key = str(r.resolve()) if r.exists() else str(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def default_roots() -> List[Path]:
    return [Path("data"), cache_dir() / "data", Path("/usr/share/datasets")]


def cache_dir() -> Path:
    """Where decoded datasets are cached: $DL2BENCH_CACHE, else ~/.cache/dl2bench."""
    return Path(os.environ.get("DL2BENCH_CACHE") or Path.home() / ".cache" / "dl2bench")


def cached(source: Path, label: str, build: Callable[[], Raw]) -> Raw:
    """Decode once, then reuse the tensors: keyed by the source's path, size and mtime."""
    st = source.stat()
    key = hashlib.sha1(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    path = cache_dir() / f"{source.name}-{key}.pt"
    if path.is_file():
        try:
            d = torch.load(path, weights_only=True)
            return Raw(d["train_x"], d["train_y"], d["test_x"], d["test_y"], d["classes"], d["source"])
        except Exception:  # a torn or foreign cache file is rebuilt, never trusted
            pass
    raw = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torch(path, {**raw.__dict__})
    return raw



# ---------------------------------------------------------------------------------------------
# finding a dataset (search, optional download, one clear error)

@dataclass(frozen=True)
class Source:
    """One way a dataset may lie under a root: a relative path and the function that reads it."""

    rel: str
    read: Callable[[Path], Optional[Raw]]


def find(name: str, sources: Sequence[Source], data_root: str, download: Optional[Callable[[Path], None]],
         want_download: bool, how_to_get: str) -> Raw:
    """Try every source under every root; else download into the first root when asked; else raise."""
    roots = search_roots(data_root)
    for root in roots:
        for s in sources:
            raw = s.read(root / s.rel)
            if raw is not None:
                return raw
    if want_download and download is not None:
        target = roots[0]
        target.mkdir(parents=True, exist_ok=True)
        download(target)
        for s in sources:
            raw = s.read(target / s.rel)
            if raw is not None:
                return raw
    looked = "\n".join(f"  {root / s.rel}" for root in roots for s in sources)
    raise DatasetNotFound(f"dataset {name!r} not found. Looked in:\n{looked}\n{how_to_get}")
