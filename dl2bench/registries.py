"""Every registry in one place, and what needs them all: resolving a config (the task's
known-good defaults) and validating it (names registered, values in range, keys that belong to
the task). config.py calls these lazily, so no registry module ever imports the config."""
from __future__ import annotations

import contextlib
from typing import Any

from .errors import ConfigError
from .families import MODELS, TASKS
from .inits import INITS
from .optim import OPTIMIZERS, SCHEDULES
from .regularizers import REGULARIZERS
from .schema import CHOICES, KEY_SPECS

ALL = {"tasks": TASKS, "models": MODELS, "optimizers": OPTIMIZERS, "schedules": SCHEDULES,
       "inits": INITS, "regularizers": REGULARIZERS}


def task_of(cfg: Any):
    try:
        return TASKS[cfg.task]()
    except KeyError as e:  # the registry's message lists the known names
        raise ConfigError(f"task: {e}") from None


def resolve(cfg: Any, check: bool = True):
    """Fill `None` fields from the task's known-good defaults (its first loss for `loss`), then
    validate (unless `check` is False: a task's baseline, which may lack what a run must name)."""
    task = task_of(cfg)
    d = cfg.to_dict()
    defaults = {**task.defaults, "loss": task.losses[0] if task.losses else None}
    if task.derive is not None:
        defaults.update(task.derive(d))
    for k, v in defaults.items():
        if k not in KEY_SPECS:
            raise ValueError(f"task {task.name!r}: default for unknown config key {k!r}")
        if d.get(k) is None:
            d[k] = v
    out = type(cfg).from_dict(d)
    if check:
        validate(out)
    return out


def validate(cfg: Any, family_check: bool = True) -> None:
    """Names must be registered and numbers in range; raises ConfigError naming the key. The task
    family's own check (how keys fit together, runs it names) runs unless `family_check` is False."""
    task = task_of(cfg)
    for key, reg in (("model", MODELS), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                     ("init", INITS), ("regularizer", REGULARIZERS)):
        value = getattr(cfg, key)
        if value is not None:
            try:
                reg[value]
            except KeyError as e:  # the registry's message lists the known names
                raise ConfigError(f"{key}: {e}") from None
    if cfg.model is not None and task.model_family:
        family = MODELS.meta(cfg.model).get("family")
        if family != task.model_family:
            fits = ", ".join(n for n in MODELS.names() if MODELS.meta(n).get("family") == task.model_family)
            raise ConfigError(f"model: {cfg.model!r} belongs to the {family} family; task {task.name!r} "
                              f"({task.family}) takes {fits}")
    if cfg.loss is not None and cfg.loss not in task.losses:
        raise ConfigError(f"loss: {cfg.loss!r} is not a loss of task {task.name!r} ({task.family}); "
                          f"its losses: {', '.join(task.losses)}")
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {getattr(cfg, key)!r}")
    if not task.trains and cfg.epochs not in (None, 0):
        raise ConfigError(f"epochs: task {task.name!r} evaluates trained weights and does not train; "
                          f"expected 0, got {cfg.epochs!r}")
    if cfg.mode == "benchmark" and not task.trains:
        raise ConfigError(f"mode: benchmark times training steps; task {task.name!r} evaluates trained weights "
                          "and does not train (expected mode train)")
    for key in ("bench_repeats", "bench_seconds", "infer_batch_size"):
        v = getattr(cfg, key)
        if not v > 0:
            raise ConfigError(f"{key}: expected a positive number, got {v!r}")
    positive = ("epochs", "batch_size", "eval_batch_size", "lr", "train_stats_every")[int(not task.trains):]
    for key in positive:
        v = getattr(cfg, key)
        if v is not None and not v > 0:
            raise ConfigError(f"{key}: expected a positive number, got {v!r}")
    non_negative = ("seed", "weight_decay", "warmup_epochs", "step_every", "train_size", "val_size",
                    "test_size", "num_workers", "threads", "warmup_steps", "init_std",
                    "plateau_patience", "min_lr_ratio", "reg_strength", "bench_steps")
    for key in non_negative:
        v = getattr(cfg, key)
        if v is not None and v < 0:
            raise ConfigError(f"{key}: expected a number >= 0, got {v!r}")
    for key in ("beta1", "beta2", "step_gamma", "plateau_factor"):
        v = getattr(cfg, key)
        if not 0 <= v < 1 and not (key == "step_gamma" and v == 1):
            raise ConfigError(f"{key}: expected a number in [0, 1), got {v!r}")
    # a family's keys: set only on that family's tasks, each within its declared choices/range
    for key, spec in KEY_SPECS.items():
        if spec.family is None:
            continue
        v = getattr(cfg, key)
        if spec.family != task.family:
            if v != spec.default:
                raise ConfigError(f"{key}: a setting of the {spec.family} family; task {task.name!r} is "
                                  f"{task.family} and does not use it")
            continue
        if v is None:
            continue
        if spec.choices and v not in spec.choices:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, spec.choices))}, got {v!r}")
        if spec.min is not None and v < spec.min:
            raise ConfigError(f"{key}: expected a number >= {spec.min:g}, got {v!r}")
        if spec.max is not None and v > spec.max:
            raise ConfigError(f"{key}: expected a number <= {spec.max:g}, got {v!r}")
    for key in task.refuses:
        why = task.refusal(key, getattr(cfg, key))
        if why:
            raise ConfigError(f"{key}: {getattr(cfg, key)!r} {why}")
    images = TRAIN_IMAGES.get(task.data) if isinstance(task.data, str) else None
    if images and cfg.train_size and cfg.train_size + (cfg.val_size or 0) > images:
        raise ConfigError(f"train_size: {cfg.train_size} + val_size {cfg.val_size or 0} is more than the {images:,} "
                          f"training images {task.data} has; use train_size <= {images - (cfg.val_size or 0):,}")
    if family_check and task.check is not None:
        task.check(cfg)
    if family_check and not _MEMORY_BY_LAUNCHER:
        from .env import memory_limit

        check_memory(cfg, *memory_limit())


# a submit checks memory against where the runs will go (the job's mem_gb on SLURM), not against
# the login node it runs on
_MEMORY_BY_LAUNCHER = False


@contextlib.contextmanager
def memory_checked_by_launcher():
    global _MEMORY_BY_LAUNCHER
    before, _MEMORY_BY_LAUNCHER = _MEMORY_BY_LAUNCHER, True
    try:
        yield
    finally:
        _MEMORY_BY_LAUNCHER = before


# the training split of each image dataset's published files: a train_size past it fails at set-up
# otherwise, after the run's folder exists (a smaller file on disk is still caught when it is read)
TRAIN_IMAGES = {"mnist": 60_000, "fashion_mnist": 60_000, "cifar10": 50_000}


def memory_needs(cfg: Any) -> list:
    """The task's estimate of the run's largest allocations: [(key, bytes, what)], largest first."""
    task = task_of(cfg)
    return sorted(task.memory(cfg), key=lambda n: -n[1]) if task.memory is not None else []


def check_memory(cfg: Any, limit: float, of_what: str) -> None:
    """Refuse a config whose estimated allocations exceed `limit` bytes, naming the key of the
    largest: sizes within every key's range can still need tens of GB together, and a run that
    finds out at set-up (or is killed by the kernel mid-epoch) leaves a failed run behind."""
    needs = memory_needs(cfg)
    total = sum(n[1] for n in needs)
    if total <= limit:
        return
    key, size, what = needs[0]
    gb = 2**30
    rest = f"; {total / gb:,.1f} GB in all" if len(needs) > 1 and total > size * 1.05 else ""
    raise ConfigError(f"{key}: {getattr(cfg, key)!r} needs about {size / gb:,.1f} GB for {what}{rest}, more than "
                      f"{of_what} ({limit / gb:,.1f} GB); lower {key}")
