"""The flat run config: its fields are the schema (nanoGPT style), primitives only, so it
pickles small, hashes stably and goes to wandb.init(config=...) as it is.

The schema (schema.py) is the core keys plus the keys each task family declares in its own module
(`KEYS` in dl2bench/families/<family>/task.py), so a family adds its settings without touching this file.
The run id hashes every key of the first schema and, of every key added since, only the values
that differ from the task's default: adding a key never orphans an existing run."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import typing
from typing import Any, Dict, Mapping, Tuple

from .errors import ConfigError
from .schema import BOOKKEEPING, CHOICES, KEY_DOCS, KEY_SPECS, V1_KEYS

__all__ = ["ConfigError", "RunConfig", "BOOKKEEPING", "CHOICES", "KEY_DOCS", "KEY_SPECS", "V1_KEYS"]


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

    @staticmethod
    def recipe_of(config: Mapping[str, Any]) -> Dict[str, Any]:
        """What describes how a run's model was trained: its core keys and its own family's, no
        bookkeeping. Written into model.pt (runs.save_weights); an evaluator reports it for the run it
        evaluates (a model.pt written before recipes gets it from its config here)."""
        from .families import TASKS

        task = config.get("task")
        family = TASKS[task]().family if task in TASKS else None
        return {k: v for k, v in config.items() if k in KEY_SPECS and k not in BOOKKEEPING
                and KEY_SPECS[k].family in (None, family)}

    def recipe(self) -> Dict[str, Any]:
        return self.recipe_of(self.to_dict())

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
    from . import registries

    return registries.resolve(RunConfig(task=task), check=False).to_dict()


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
                value = int(value)
            elif isinstance(value, str):
                value = int(value)
            elif not isinstance(value, int):
                raise ValueError
            if not -2 ** 63 <= value < 2 ** 63:  # torch, numpy and the results' JSON readers hold int64
                raise ConfigError(f"{key}: expected an integer that fits in 64 bits, got {value!r}")
            return value
        if base is float:
            if isinstance(value, (bool, list, dict)):
                raise ValueError
            value = float(value)
            if not math.isfinite(value):  # a NaN or infinite setting is a typo, and no JSON can hold it
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return value
        if base is str:
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                if "\0" in str(value):  # no path, name or W&B field can hold it
                    raise ConfigError(f"{key}: a NUL byte in {str(value)!r}")
                return str(value)
            raise ValueError
    except ConfigError:
        raise
    except (TypeError, ValueError, OverflowError):
        pass
    raise ConfigError(f"{key}: expected {base.__name__}, got {value!r}")
