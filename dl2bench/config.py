"""The flat run config: its fields are the schema (nanoGPT style), primitives only, so it
pickles small, hashes stably and goes to wandb.init(config=...) as it is.

The schema is the core keys below plus the keys each task family declares in its own module
(`KEYS` in dl2bench/tasks/<family>.py), so a family adds its settings without touching this file.
The run id hashes every key of the first schema and, of every key added since, only the values
that differ from the task's default: adding a key never orphans an existing run."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import ConfigError
from .tasks import family_keys
from .tasks.base import Key

__all__ = ["ConfigError", "RunConfig", "BOOKKEEPING", "KEY_DOCS"]

CORE_KEYS: Dict[str, Key] = {
    # what
    "task": Key(str, "fashion_mnist", "what to learn (python -m dl2bench list tasks)"),
    "model": Key(Optional[str], None, "architecture; None = the task's default"),
    "seed": Key(int, 0, "model init, dropout, batch order and augmentation"),
    "epochs": Key(Optional[int], None, "training epochs; None = the task's default"),
    "batch_size": Key(Optional[int], None, "training batch; None = the task's default"),
    "eval_batch_size": Key(int, 1000, "batch for evaluation (does not change results)"),
    # optimizer (hyperparameters left None take the optimizer's own default)
    "optimizer": Key(Optional[str], None, "update rule; None = the task's default"),
    "lr": Key(Optional[float], None, "peak learning rate; None = the task's default"),
    "momentum": Key(Optional[float], None, "SGD/RMSprop momentum; None = the optimizer's default"),
    "beta1": Key(float, 0.9, "Adam-family first-moment decay"),
    "beta2": Key(float, 0.999, "Adam-family second-moment decay"),
    "eps": Key(Optional[float], None, "optimizer epsilon; None = the optimizer's default"),
    "weight_decay": Key(float, 0.0, "the optimizer's weight decay (L2 in the gradient; decoupled for adamw)"),
    # learning-rate schedule
    "schedule": Key(str, "constant", "lr schedule (python -m dl2bench list schedules)"),
    "warmup_epochs": Key(float, 0.0, "linear lr warm-up, in epochs"),
    "step_every": Key(int, 0, "epochs between `step` decays; 0 = a third of the run"),
    "step_gamma": Key(float, 0.1, "factor of each `step` decay"),
    "min_lr_ratio": Key(float, 0.0, "floor for cosine/onecycle, as a fraction of lr"),
    "plateau_patience": Key(int, 2, "epochs without validation-loss gain before `plateau` decays"),
    "plateau_factor": Key(float, 0.1, "factor of each `plateau` decay"),
    # initialisation and regularisation: one categorical factor each
    "init": Key(str, "default", "weight initialisation (python -m dl2bench list inits)"),
    "init_std": Key(float, 0.01, "standard deviation for init `normal`"),
    "regularizer": Key(str, "none", "one regulariser (python -m dl2bench list regularizers)"),
    "reg_strength": Key(Optional[float], None, "its strength; meaning and default per regulariser"),
    # data
    "data_root": Key(str, "", "dataset folders (os.pathsep separated); '' = $DL2BENCH_DATA, then the defaults"),
    "download": Key(bool, False, "download missing datasets with torchvision"),
    "train_size": Key(int, 0, "training examples; 0 = the whole training split (after validation)"),
    "val_size": Key(Optional[int], None, "validation examples carved from training; None = the task's default"),
    "test_size": Key(int, 0, "test examples; 0 = the whole test split"),
    "loader": Key(str, "tensor", "tensor (resident, device-side batches) | dataloader (torch DataLoader)"),
    "num_workers": Key(int, 2, "DataLoader workers (loader=dataloader)"),
    # device and speed
    "device": Key(str, "auto", "cpu | cuda | auto (cuda when there is one)"),
    "threads": Key(int, 0, "CPU threads; 0 = $SLURM_CPUS_PER_TASK, else every usable core"),
    "precision": Key(str, "fp32", "fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler, CUDA only)"),
    "compile": Key(bool, False, "torch.compile the model"),
    "channels_last": Key(bool, False, "NHWC memory format for conv nets"),
    "deterministic": Key(bool, False, "deterministic algorithms (bit-identical reruns, slower)"),
    "warmup_steps": Key(int, 5, "steps excluded from throughput figures"),
    # training accuracy is counted on every Nth batch: counting it on all costs ~7% of an mlp step
    # on a CPU; the loss is averaged over every batch regardless
    "train_stats_every": Key(int, 10, "batches between training-metric counts (the loss counts every batch)"),
    # bookkeeping (does not change results, so not part of the run id)
    "wandb": Key(str, "auto", "auto | online | offline | disabled"),
    "project": Key(str, "dl2bench", "W&B project"),
    "entity": Key(str, "", "W&B entity ('' = your default)"),
    "group": Key(str, "", "W&B group (a sweep sets its name)"),
    "tags": Key(str, "", "W&B tags, comma separated"),
    "progress": Key(str, "auto", "auto | bar | log | none"),
    "checkpoint": Key(bool, True, "checkpoint every epoch and resume from it"),
    # added in schema 2 (hashed only where they differ from the task's default)
    "loss": Key(Optional[str], None, "the training loss; None = the task's default (its losses: python -m dl2bench list tasks)"),
    "save_weights": Key(bool, True, "leave the trained weights (model.pt) in the run folder"),
}

# The keys of the first schema: every one of them is hashed, so run ids made before a key was
# added stay what they were (tests/data/run_ids_v1.json pins the shipped sweeps' ids).
V1_KEYS = frozenset((
    "task", "model", "seed", "epochs", "batch_size", "eval_batch_size", "optimizer", "lr", "momentum",
    "beta1", "beta2", "eps", "weight_decay", "schedule", "warmup_epochs", "step_every", "step_gamma",
    "min_lr_ratio", "plateau_patience", "plateau_factor", "init", "init_std", "regularizer",
    "reg_strength", "data_root", "download", "train_size", "val_size", "test_size", "loader",
    "num_workers", "device", "threads", "precision", "compile", "channels_last", "deterministic",
    "warmup_steps", "train_stats_every", "wandb", "project", "entity", "group", "tags", "progress",
    "checkpoint"))

BOOKKEEPING = frozenset({"wandb", "project", "entity", "group", "tags", "progress", "data_root",
                         "download", "checkpoint", "save_weights"})

CHOICES = {"loader": ("tensor", "dataloader"), "device": ("cpu", "cuda", "auto"),
           "precision": ("fp32", "bf16", "fp16"), "progress": ("auto", "bar", "log", "none"),
           "wandb": ("auto", "online", "offline", "disabled")}


def _all_keys() -> Dict[str, Key]:
    keys = dict(CORE_KEYS)
    for family, declared in family_keys().items():
        for name, key in declared.items():
            if name in keys:
                raise ValueError(f"config key {name!r} of family {family!r} is already a config key")
            keys[name] = key._replace(family=family)
    return keys


KEY_SPECS: Dict[str, Key] = _all_keys()
KEY_DOCS: Dict[str, str] = {k: v.doc for k, v in KEY_SPECS.items()}


class _Methods:
    """RunConfig's behaviour; its fields come from KEY_SPECS."""

    @classmethod
    def keys(cls) -> list:
        return list(_keys())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        """Build from a mapping; unknown keys and ill-typed values raise ConfigError."""
        unknown = sorted(set(d) - set(_keys()))
        if unknown:
            import difflib

            hint = difflib.get_close_matches(unknown[0], _keys(), n=1)
            maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(
                f"unknown config key {unknown[0]!r}{maybe}" + (f" (and {unknown[1:]})" if unknown[1:] else "")
                + f"; valid keys: {', '.join(_keys())}"
            )
        hints = _hints()
        return RunConfig(**{k: _coerce(k, v, hints[k]) for k, v in d.items()})

    def replace(self, **changes: Any) -> "RunConfig":
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in _keys()}  # asdict deep-copies: 40x slower

    def resolve(self) -> "RunConfig":
        """Fill `None` fields from the task's known-good defaults and check names and ranges."""
        from . import registries  # late: the registries' modules are only needed to resolve

        return registries.resolve(self)

    def validate(self) -> None:
        """Names must be registered and numbers in range; raises ConfigError naming the key."""
        from . import registries

        registries.validate(self)

    def run_id(self) -> str:
        """A stable hash of everything that changes the results (bookkeeping keys excluded);
        call it on a resolved config, so that a default and its explicit value hash alike."""
        resolved = all(getattr(self, k) is not None for k in ("model", "optimizer", "lr", "batch_size", "epochs"))
        return _run_id(self if resolved else self.resolve())

    def non_default(self) -> Dict[str, Any]:
        """The keys whose value differs from the field default (what a user set)."""
        return {k: v for k, v in self.to_dict().items() if v != KEY_SPECS[k].default}


RunConfig = dataclasses.make_dataclass(
    "RunConfig", [(k, spec.type, dataclasses.field(default=spec.default)) for k, spec in KEY_SPECS.items()],
    bases=(_Methods,), frozen=True,
    namespace={"__doc__": 'One run. `None` means "the task\'s known-good default" (filled in by `resolve`).',
               "__module__": __name__})


@functools.lru_cache(maxsize=64)
def task_baseline(task: str) -> Dict[str, Any]:
    """The resolved default config of a task: what a key added after schema 1 is compared with."""
    return RunConfig(task=task).resolve().to_dict()


@functools.lru_cache(maxsize=4096)  # a sweep asks for each run's id several times
def _run_id(cfg) -> str:
    base = task_baseline(cfg.task)
    d = {k: v for k, v in cfg.to_dict().items()
         if k not in BOOKKEEPING and (k in V1_KEYS or v != base.get(k))}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def _keys() -> Tuple[str, ...]:
    return tuple(KEY_SPECS)


@functools.lru_cache(maxsize=1)
def _hints() -> Dict[str, Any]:
    return {k: spec.type for k, spec in KEY_SPECS.items()}


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check/convert one value against its field type; strings from a command line are parsed."""
    optional = typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{key}: expected {base.__name__}, got None")
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars from sweeps
        value = value.item()
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if base is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, (int, str)):
                return int(value)
            raise ValueError
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return str(value)
            raise ValueError
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{key}: expected {base.__name__}, got {value!r}")
