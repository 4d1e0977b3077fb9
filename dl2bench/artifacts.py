"""Trained weights left behind by every run (`<run folder>/model.pt`) and loaded back by run id, so
later evaluations (attacks on a sweep's models, a classifier as the feature space of a GAN's
precision/recall) rebuild exactly the model that was trained. The file holds only tensors and
primitives, and is read with `torch.load(weights_only=True)`: loading never runs pickled code."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Union

if TYPE_CHECKING:
    import torch
    from torch import nn

WEIGHTS = "model.pt"
FORMAT = "dl2bench.weights"
VERSION = 1


class WeightsError(LookupError):
    """No such run, no weights in it, or a weights file that is not ours; the message says which."""


def save_weights(out_dir: Path, run_id: str, cfg: Any, build: Dict[str, Any], model: nn.Module) -> Path:
    """Atomically write the model's weights and the recipe that rebuilds it."""
    import torch

    path = Path(out_dir) / WEIGHTS
    payload = {"format": FORMAT, "version": VERSION, "run_id": run_id, "task": cfg.task,
               "config": cfg.to_dict(), "build": build,
               "state_dict": {k: v.detach().to("cpu") for k, v in model.state_dict().items()}}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


@dataclass
class Trained:
    """A trained model, rebuilt, with the config it was trained with."""

    model: nn.Module
    config: Dict[str, Any]
    run_id: str
    path: Path
    build: Dict[str, Any]

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


def find_run(run_id: str, roots: Iterable[Union[str, Path]] = ("runs",)) -> Path:
    """The folder of run `run_id` (or a unique prefix of at least 6 characters) under any root,
    one or two levels down (runs/<run_id>, runs/<sweep>/<run_id>); a root may be the folder itself."""
    if len(run_id) < 6:
        raise WeightsError(f"run id {run_id!r}: give at least 6 characters")
    found: List[Path] = []
    for root in map(Path, roots):
        if root.name.startswith(run_id) and (root / "config.json").is_file():
            found.append(root)
            continue
        for pattern in (f"{run_id}*", f"*/{run_id}*"):
            found += [p for p in root.glob(pattern) if (p / "config.json").is_file()]
    unique = sorted(set(found))
    if not unique:
        raise WeightsError(f"run {run_id!r} not found under {', '.join(map(str, roots))}")
    if len({p.name for p in unique}) > 1:
        raise WeightsError(f"run id {run_id!r} is ambiguous: {', '.join(str(p) for p in unique[:5])}")
    return unique[0]


def load_weights(run: Union[str, Path], roots: Iterable[Union[str, Path]] = ("runs",),
                 map_location: Union[str, torch.device] = "cpu") -> Trained:
    """Rebuild a run's trained model: `run` is a run folder, a model.pt, or a run id under `roots`."""
    import torch

    from .families import MODELS

    p = Path(run)
    if p.is_file():
        path = p
    elif p.is_dir():
        path = p / WEIGHTS
    else:
        path = find_run(str(run), roots) / WEIGHTS
    if not path.is_file():
        raise WeightsError(f"{path}: no trained weights (the run has not finished, or ran with "
                           "save_weights=false)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a torn or foreign file is named, never trusted
        raise WeightsError(f"{path}: not a readable weights file ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a dl2bench weights file")
    if payload.get("version", 0) > VERSION:
        raise WeightsError(f"{path}: weights format {payload['version']} is newer than this dl2bench reads ({VERSION})")
    build = payload["build"]
    model = MODELS[build["model"]](*build.get("args", []), **build.get("kwargs", {}))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return Trained(model, payload["config"], payload["run_id"], path, build)
