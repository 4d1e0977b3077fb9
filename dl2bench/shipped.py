"""The sweeps, suites and benchmarks dl2bench ships, found by name: an installed dl2bench submits
`cifar_cnn`, `suites/course` or the README's `sweeps/cifar_cnn.yaml` from any folder."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

# dl2bench/shipped_sweeps is a link to ../sweeps in git (one copy of each file), which a wheel build
# follows into a real folder; a checkout made without links (git's core.symlinks off) reads ../sweeps
_LINK = Path(__file__).resolve().parent / "shipped_sweeps"
SWEEPS = _LINK.resolve() if _LINK.is_dir() else _LINK.parent.parent / "sweeps"


def find(arg: str) -> Optional[Path]:
    """The shipped file `arg` names, when `arg` is no file here: a name with or without .yaml, under
    a subfolder (`suites/course`), or spelt from a checkout's root (`sweeps/cifar_cnn.yaml`)."""
    path = Path(arg)
    if path.is_absolute() or path.exists():
        return None
    parts = path.parts[1:] if path.parts[:1] == ("sweeps",) else path.parts
    if not parts or ".." in parts:
        return None
    named = SWEEPS.joinpath(*parts)
    for candidate in (named, named.with_name(named.name + ".yaml")):
        if candidate.is_file():
            return candidate
    return None


def names() -> List[str]:
    """The shipped sweeps' names (the files at the top; suites/ and benchmarks/ hold the rest)."""
    return sorted(p.stem for p in SWEEPS.glob("*.yaml"))
