"""The run folder, owned in one place: its file names, the one atomic write every writer uses, the
guarded reading of another run's files, finding runs (by id, prefix, folder, or a folder of runs),
and the trained weights with their recipe (`model.pt`).

A run folder is `<results root>/<sweep>/<run_id>/` (or any `--out`) holding:
    config.json    the resolved config and run id, written before training starts
    metrics.jsonl  one JSON object per epoch, appended
    summary.json   the outcome, written once when the run ends (its presence means "ended")
    checkpoint.pt  the resumable state (train/loop.py), removed when the run ends
    model.pt       the trained weights and the recipe that rebuilds and describes them

Other runs' folders are input a user controls (a sweep's `from:`, `attack_run`, `feature_run`), so
reading one never blocks (regular files only: a FIFO named config.json would wait forever), never
reads without bound, and accepts only JSON objects; every failure is a RunFolderError naming the
file. Nothing here imports torch at module level: listing and validating must stay fast."""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Union

from . import record as R

if TYPE_CHECKING:
    import torch
    from torch import nn

CONFIG = "config.json"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.pt"

# a summary or config is a few KB; a bound keeps a hostile or broken file from filling memory
MAX_JSON_BYTES = 16 * 1024 * 1024

WEIGHTS_FORMAT = "dl2bench.weights"
# 2: the recipe (the config keys that describe the trained model) is written into the file
WEIGHTS_VERSION = 2

PathLike = Union[str, Path]


class RunFolderError(ValueError):
    """A run's file that cannot be trusted: not a regular file, too large, not JSON, not an object."""


class RunNotFound(LookupError):
    """No run by that id/prefix/folder, or more than one; the message says which and where it looked."""


class WeightsError(RunNotFound):
    """No trained weights in a run, or a weights file that is not ours; the message says which."""


# -- writing ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on a clean exit it is flushed, fsynced and
    renamed over `path` (readers see the old file or the new one, never half of one); on any error,
    including a full disk or a kill signal turned into an exception, the temporary file is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish(tmp: PathLike, path: PathLike) -> None:
    """Put a finished temporary file (written by a writer that needs a path, or several files that
    must appear together) in place: fsync it, then rename it over `path`."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def clean(obj: Any) -> Any:
    """JSON has no NaN/Inf: they become null (the status field says why)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def write_json(path: PathLike, obj: Any) -> None:
    with atomic(path, "w") as f:
        json.dump(clean(obj), f, indent=1, sort_keys=True)
        f.write("\n")


def write_lines(path: PathLike, rows: Iterable[Dict[str, Any]]) -> None:
    """A whole JSON-lines file at once (metrics.jsonl after a resume)."""
    with atomic(path, "w") as f:
        for row in rows:
            f.write(json.dumps(clean(row)) + "\n")


def save_npz(path: PathLike, **arrays: Any) -> None:
    """A family's examples file (numpy's compressed archive), written atomically."""
    import numpy as np

    with atomic(path) as f:
        np.savez_compressed(f, **arrays)


def save_torch(path: PathLike, obj: Any) -> None:
    import torch

    with atomic(path) as f:
        torch.save(obj, f)


# -- reading ---------------------------------------------------------------------------------------
def read_bytes(path: PathLike, limit: int = MAX_JSON_BYTES) -> bytes:
    """At most `limit` bytes of a regular file; RunFolderError if it is something else or larger.
    FileNotFoundError passes through (a missing file is the caller's question, not an error here)."""
    path = Path(path)
    # O_NONBLOCK: opening a FIFO for reading would otherwise block until a writer appears
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunFolderError(f"{path}: not a regular file")
        if st.st_size > limit:
            raise RunFolderError(f"{path}: {st.st_size:,} bytes, more than the {limit:,} a run's file may have")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise RunFolderError(f"{path}: more than the {limit:,} bytes a run's file may have")
    return data


def read_json(path: PathLike, limit: int = MAX_JSON_BYTES) -> Dict[str, Any]:
    """A run's JSON file, which must hold one object. FileNotFoundError if absent; RunFolderError
    naming the file otherwise."""
    data = read_bytes(path, limit)
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise RunFolderError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise RunFolderError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def maybe_json(path: PathLike) -> Optional[Dict[str, Any]]:
    """read_json, or None when the file is absent or cannot be trusted (a torn write, a run still
    going): for callers that treat such a run as not there."""
    try:
        return read_json(path)
    except (OSError, RunFolderError):
        return None


def config(folder: PathLike) -> Dict[str, Any]:
    """A run's config.json; RunFolderError naming the file when missing or unreadable."""
    try:
        return read_json(Path(folder) / CONFIG)
    except OSError as e:
        raise RunFolderError(f"{Path(folder) / CONFIG}: not readable ({e.strerror or e})") from None


def summary(folder: PathLike) -> Optional[Dict[str, Any]]:
    """A run's summary.json, None while it has none (queued, running, lost)."""
    return maybe_json(Path(folder) / SUMMARY)


# -- finding ---------------------------------------------------------------------------------------
def is_run(folder: PathLike) -> bool:
    """A run folder is one with a regular config.json."""
    try:
        return stat.S_ISREG(os.stat(Path(folder) / CONFIG).st_mode)
    except OSError:
        return False


def runs_in(folder: PathLike) -> List[Path]:
    """The run folders directly inside `folder`, by name."""
    try:
        return sorted(p for p in Path(folder).iterdir() if is_run(p))
    except OSError:
        return []


def finished_with_weights(folder: PathLike) -> bool:
    """Whether a run ended in a state whose weights mean what they say, and left them behind."""
    s = summary(folder)
    return bool(s) and s.get("status") in R.COUNTED and (Path(folder) / WEIGHTS).is_file()


def find_run(run_id: str, roots: Iterable[PathLike] = ("runs",)) -> Path:
    """The folder of run `run_id` (or a unique prefix of at least 6 characters) under any root,
    one or two levels down (runs/<run_id>, runs/<sweep>/<run_id>); a root may be the folder itself."""
    roots = list(roots)
    if len(run_id) < 6:
        raise RunNotFound(f"run id {run_id!r}: give at least 6 characters")
    if any(c in run_id for c in "*?[]/\\") or run_id in (".", ".."):
        raise RunNotFound(f"run id {run_id!r}: expected letters and digits (a run id or its prefix)")
    found: List[Path] = []
    for root in map(Path, roots):
        if root.name.startswith(run_id) and is_run(root):
            found.append(root)
            continue
        for pattern in (f"{run_id}*", f"*/{run_id}*"):
            found += [p for p in root.glob(pattern) if is_run(p)]
    unique = sorted(set(found))
    if not unique:
        raise RunNotFound(f"run {run_id!r} not found under {', '.join(map(str, roots))}")
    if len({p.name for p in unique}) > 1:
        raise RunNotFound(f"run id {run_id!r} is ambiguous: {', '.join(str(p) for p in unique[:5])}")
    return unique[0]


def trained_run(key: str, value: str, roots: Iterable[PathLike], what: str,
                accept: Callable[[Path, Dict[str, Any]], Optional[str]]) -> Path:
    """The one guard for a config key that names another run (attack_run, feature_run,
    generator_run): `value` is a run id (or unique prefix) under `roots`, a run folder, or a folder
    holding exactly one run that `accept` takes. The run must have a readable config (a JSON object
    in a regular file), a summary saying it finished, be what `accept(folder, config)` wants (None;
    else the reason) and have weights that load. Every failure is one ConfigError naming `key`."""
    from .errors import ConfigError

    roots = [Path(r) for r in roots]
    if not value:
        raise ConfigError(f"{key}: expected the run id (or folder) of a finished {what} run")

    def usable(folder: Path) -> bool:
        cfg = maybe_json(folder / CONFIG)
        return cfg is not None and finished_with_weights(folder) and accept(folder, cfg) is None

    folder = None
    for p in [Path(value)] + [r / value for r in roots if not Path(value).is_absolute()]:
        if not p.is_dir():
            continue
        if is_run(p):
            folder = p
            break
        found = [q for q in runs_in(p) if usable(q)]
        if len(found) > 1:
            raise ConfigError(f"{key}: {p} holds {len(found)} finished {what} runs ({', '.join(q.name for q in found[:4])}"
                              f"{', ...' if len(found) > 4 else ''}); name one by its run id")
        if not found:
            raise ConfigError(f"{key}: {p} holds no finished {what} run with trained weights; run it first")
        folder = found[0]
        break
    if folder is None:
        try:
            folder = find_run(value, roots)
        except RunNotFound as e:
            raise ConfigError(f"{key}: {e}") from None
    try:
        cfg = config(folder)
        done = read_json(folder / SUMMARY).get("status")
    except FileNotFoundError:
        done = None
    except RunFolderError as e:
        raise ConfigError(f"{key}: {e}") from None
    if done not in R.COUNTED:
        raise ConfigError(f"{key}: {folder} has not finished (status {done or 'none yet'}); a {what} run "
                          "must finish before another run can use it")
    why = accept(folder, cfg)
    if why:
        raise ConfigError(f"{key}: {why}")
    try:
        check_weights(folder)
    except WeightsError as e:
        raise ConfigError(f"{key}: {e}") from None
    return folder


# -- trained weights -------------------------------------------------------------------------------
def save_weights(out_dir: PathLike, run_id: str, config: Dict[str, Any], recipe: Dict[str, Any],
                 build: Dict[str, Any], model: nn.Module) -> Path:
    """Write the model's weights, the build that rebuilds it and its recipe (the config keys that
    describe how it was trained: core and its own family's, no bookkeeping) in one atomic file."""
    path = Path(out_dir) / WEIGHTS
    save_torch(path, {"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "run_id": run_id,
                      "task": config.get("task"), "config": config, "recipe": recipe, "build": build,
                      "state_dict": {k: v.detach().to("cpu") for k, v in model.state_dict().items()}})
    return path


@dataclass
class Trained:
    """A trained model, rebuilt, with the config it was trained with and its recipe (None for a
    model.pt written before recipes were: see RunConfig.recipe_of for deriving one)."""

    model: nn.Module
    config: Dict[str, Any]
    run_id: str
    path: Path
    build: Dict[str, Any]
    recipe: Optional[Dict[str, Any]] = field(default=None)

    def pixel_model(self) -> nn.Module:
        """The model as a function of [0, 1] pixels: the training run's per-channel normalisation
        (if it had one) in front of the trained network, in eval mode."""
        from torch import nn

        norm = self.build.get("input") or {}
        if "mean" not in norm:
            return self.model
        m = nn.Sequential(Normalize(norm["mean"], norm["std"]), self.model)
        return m.eval()

    @property
    def classes(self) -> List[str]:
        return list((self.build.get("input") or {}).get("classes") or [])


def Normalize(mean: List[float], std: List[float]) -> nn.Module:  # noqa: N802 - reads like the layer it is
    """(x - mean) / std per channel, as a module (a buffer-only layer, no parameters)."""
    import torch
    from torch import nn

    class _Normalize(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

        def forward(self, x):
            return (x - self.mean) / self.std

    return _Normalize()


def weights_path(run: PathLike, roots: Iterable[PathLike] = ("runs",)) -> Path:
    """The model.pt of `run` (a run folder, a model.pt, or a run id under `roots`)."""
    p = Path(run)
    if p.is_file():
        return p
    if p.is_dir():
        return p / WEIGHTS
    return find_run(str(run), roots) / WEIGHTS


def load_weights(run: PathLike, roots: Iterable[PathLike] = ("runs",),
                 map_location: Union[str, torch.device] = "cpu") -> Trained:
    """Rebuild a run's trained model: `run` is a run folder, a model.pt, or a run id under `roots`.
    The model must be registered (importing dl2bench.families registers every family's)."""
    import torch

    from .nets import MODELS

    path = weights_path(run, roots)
    if not path.is_file():
        raise WeightsError(f"{path}: no trained weights (the run has not finished, or ran with "
                           "save_weights=false)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a torn or foreign file is named, never trusted
        # PyTorch's own message suggests weights_only=False, which would run whatever the file holds
        raise WeightsError(f"{path}: not a readable dl2bench weights file ({type(e).__name__}; it holds "
                           "something other than tensors and plain values)") from None
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path}: not a dl2bench weights file")
    if payload.get("version", 0) > WEIGHTS_VERSION:
        raise WeightsError(f"{path}: weights format {payload['version']} is newer than this dl2bench reads "
                           f"({WEIGHTS_VERSION})")
    build = payload.get("build")
    if not isinstance(build, dict) or build.get("model") not in MODELS:
        raise WeightsError(f"{path}: builds model {build.get('model') if isinstance(build, dict) else None!r}, "
                           "which is not registered (import dl2bench.families first)")
    try:
        model = MODELS[build["model"]](*build.get("args", []), **build.get("kwargs", {}))
        model.load_state_dict(payload["state_dict"])
    except Exception as e:  # noqa: BLE001 - weights that do not fit the model they name
        raise WeightsError(f"{path}: the weights do not fit model {build['model']!r} "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    model.eval()
    return Trained(model, payload.get("config") or {}, payload.get("run_id") or path.parent.name, path, build,
                   payload.get("recipe"))


def check_weights(folder: PathLike) -> None:
    """WeightsError unless the run's model.pt loads and fits its model: what a run that evaluates
    another run checks while its config is validated, before anything of its own is written."""
    path = Path(folder) / WEIGHTS
    try:
        st = path.stat()
    except OSError:
        raise WeightsError(f"{path}: no trained weights (the run has not finished, or ran with "
                           "save_weights=false)") from None
    problem = _weights_problem(str(path), st.st_mtime_ns, st.st_size)
    if problem:
        raise WeightsError(problem)


@functools.lru_cache(maxsize=256)  # a sweep validates each of its runs: load each file once
def _weights_problem(path: str, mtime_ns: int, size: int) -> Optional[str]:
    try:
        load_weights(path)
    except WeightsError as e:
        return str(e)
    return None
