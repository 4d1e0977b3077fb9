"""The flat run config: its fields are the schema (nanoGPT style), primitives only, so it
pickles small, hashes stably and goes to wandb.init(config=...) as it is."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Mapping, Optional


class ConfigError(ValueError):
    """A bad key or value in a run config; the message names the key and what was expected."""


@dataclass(frozen=True)
class RunConfig:
    """One run. `None` means "the task's known-good default" (filled in by `resolve`)."""

    # what
    task: str = "fashion_mnist"
    model: Optional[str] = None
    seed: int = 0
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    eval_batch_size: int = 1000
    # optimizer (hyperparameters left None take the optimizer's own default)
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    momentum: Optional[float] = None
    beta1: float = 0.9
    beta2: float = 0.999
    eps: Optional[float] = None
    weight_decay: float = 0.0
    # learning-rate schedule
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    step_every: int = 0  # epochs between `step` decays; 0 = a third of the run
    step_gamma: float = 0.1
    min_lr_ratio: float = 0.0  # floor for cosine/onecycle, as a fraction of lr
    plateau_patience: int = 2
    plateau_factor: float = 0.1
    # initialisation and regularisation: one categorical factor each
    init: str = "default"
    init_std: float = 0.01  # for `normal`
    regularizer: str = "none"
    reg_strength: Optional[float] = None  # its meaning depends on the regularizer (see `list`)
    # data
    data_root: str = ""  # "" = $DL2BENCH_DATA, then the default search path
    download: bool = False
    train_size: int = 0  # 0 = the whole training split (after carving out validation)
    val_size: int = 5000
    test_size: int = 0
    loader: str = "tensor"  # tensor (resident, device-side batches) | dataloader
    num_workers: int = 2  # for loader=dataloader
    # device and speed
    device: str = "auto"  # cpu | cuda | auto
    threads: int = 0  # 0 = $SLURM_CPUS_PER_TASK, else all usable cores
    precision: str = "fp32"  # fp32 | bf16 | fp16
    compile: bool = False
    channels_last: bool = False
    deterministic: bool = False
    warmup_steps: int = 5  # excluded from throughput figures
    # training accuracy is counted on every Nth batch: counting it on all costs ~7% of an mlp step
    # on a CPU; the loss is averaged over every batch regardless
    train_stats_every: int = 10
    # bookkeeping (does not change results, so not part of the run id)
    wandb: str = "auto"  # auto | online | offline | disabled
    project: str = "dl2bench"
    entity: str = ""
    group: str = ""
    tags: str = ""  # comma separated
    progress: str = "auto"  # auto | bar | log | none
    checkpoint: bool = True

    # ----------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list:
        return list(_keys())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        """Build from a mapping; unknown keys and ill-typed values raise ConfigError."""
        unknown = sorted(set(d) - set(cls.keys()))
        if unknown:
            raise ConfigError(
                f"unknown config key {unknown[0]!r}" + (f" (and {unknown[1:]})" if unknown[1:] else "")
                + f"; valid keys: {', '.join(cls.keys())}"
            )
        hints = _hints()
        return cls(**{k: _coerce(k, v, hints[k]) for k, v in d.items()})

    def replace(self, **changes: Any) -> "RunConfig":
        return RunConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in _keys()}  # asdict deep-copies: 40x slower

    def resolve(self) -> "RunConfig":
        """Fill `None` fields from the task's known-good defaults and check names and ranges."""
        from . import registries  # late: registries import the heavy modules

        try:
            task = registries.TASKS[self.task]()
        except KeyError as e:  # the registry's message lists the known names
            raise ConfigError(f"task: {e}") from None
        d = self.to_dict()
        for k, v in task.defaults.items():
            if d.get(k) is None:
                d[k] = v
        cfg = RunConfig.from_dict(d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Names must be registered and numbers in range; raises ConfigError naming the key."""
        from . import registries

        for key, reg in (("task", registries.TASKS), ("model", registries.MODELS),
                         ("optimizer", registries.OPTIMIZERS), ("schedule", registries.SCHEDULES),
                         ("init", registries.INITS), ("regularizer", registries.REGULARIZERS)):
            value = getattr(self, key)
            if value is not None:
                try:
                    reg[value]
                except KeyError as e:  # the registry's message lists the known names
                    raise ConfigError(f"{key}: {e}") from None
        choices = {"loader": ("tensor", "dataloader"), "device": ("cpu", "cuda", "auto"),
                   "precision": ("fp32", "bf16", "fp16"), "progress": ("auto", "bar", "log", "none"),
                   "wandb": ("auto", "online", "offline", "disabled")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        positive = ("epochs", "batch_size", "eval_batch_size", "lr", "train_stats_every")
        for key in positive:
            v = getattr(self, key)
            if v is not None and not v > 0:
                raise ConfigError(f"{key}: expected a positive number, got {v!r}")
        non_negative = ("weight_decay", "warmup_epochs", "step_every", "train_size", "val_size",
                        "test_size", "num_workers", "threads", "warmup_steps", "init_std",
                        "plateau_patience", "min_lr_ratio")
        for key in non_negative:
            v = getattr(self, key)
            if v < 0:
                raise ConfigError(f"{key}: expected a number >= 0, got {v!r}")
        if self.reg_strength is not None and self.reg_strength < 0:
            raise ConfigError(f"reg_strength: expected a number >= 0, got {self.reg_strength!r}")
        for key in ("beta1", "beta2", "step_gamma", "plateau_factor"):
            v = getattr(self, key)
            if not 0 <= v < 1 and not (key == "step_gamma" and v == 1):
                raise ConfigError(f"{key}: expected a number in [0, 1), got {v!r}")

    def run_id(self) -> str:
        """A stable hash of everything that changes the results (bookkeeping keys excluded);
        call it on a resolved config, so that a default and its explicit value hash alike."""
        resolved = all(getattr(self, k) is not None for k in ("model", "optimizer", "lr", "batch_size", "epochs"))
        return _run_id(self if resolved else self.resolve())


BOOKKEEPING = frozenset({"wandb", "project", "entity", "group", "tags", "progress", "data_root",
                         "download", "checkpoint"})


@functools.lru_cache(maxsize=4096)  # a sweep asks for each run's id several times
def _run_id(cfg: RunConfig) -> str:
    d = {k: v for k, v in cfg.to_dict().items() if k not in BOOKKEEPING}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def _keys() -> tuple:
    return tuple(f.name for f in fields(RunConfig))


@functools.lru_cache(maxsize=1)
def _hints() -> Dict[str, Any]:
    return typing.get_type_hints(RunConfig)


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
