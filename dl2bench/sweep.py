"""W&B sweep YAML -> validated run configs.

A sweep file is a W&B sweep configuration, unchanged in meaning, plus one top-level `slurm:`
block of launcher settings that is removed before anything reaches W&B. Offline, grid sweeps are
expanded here in W&B's order, and random ones by W&B's own search engine (the `sweeps` package,
optional: it pins numpy<2); bayes needs the W&B server (online mode). Files are checked against W&B's
sweep schema (a copy ships with dl2bench). Every problem is one SweepError naming the file and the key.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from . import record
from .config import ConfigError, RunConfig

WANDB_KEYS = ("program", "method", "metric", "parameters", "run_cap", "early_terminate", "name",
              "description", "project", "entity", "command", "controller", "job", "image_uri", "apiVersion",
              "kind")
# W&B keys dl2bench refuses, each with why: a custom scheduler names a Python file whose functions W&B's
# controller imports and runs (no config value is ever executed here), and `metrics` exists only for one
UNSUPPORTED_WANDB_KEYS = {
    "scheduler": "a custom sweep scheduler imports and runs code named by the file; dl2bench runs no code "
                 "from a config (use method grid, random or bayes)",
    "metrics": "multi-objective sweeps need a custom scheduler, which dl2bench does not run (use metric)",
}
# the most runs one sweep may expand to offline: a typo in a range (max: 1e9) must be an error, not
# minutes of swapping; real studies reach ~50,000 runs
MAX_RUNS = 1_000_000
LAUNCH_BLOCK = "slurm"
ATTACK_BLOCK = "attack"  # which trained runs an attack sweep attacks (dl2bench's; W&B never sees it)
EVALUATE_BLOCK = "evaluate"  # the same block for any evaluation of trained runs (sampling a GAN's generator)
SELECT_BLOCK = "select"  # a final stage: the setting a tuning sweep chose, per group, rerun (dl2bench.tuning)
# the keys of a parameter spec in W&B's schema (sweeps/config/schema.json, its param_* definitions)
SPEC_KEYS = ("value", "values", "distribution", "min", "max", "mu", "sigma", "q", "a", "b", "probabilities",
             "parameters")
ATTACK_SOURCE_KEYS = ("from", "where", "run_ids", "task", "parameters")

# the launcher block: SLURM settings, plus how to run the sweep small (smoke) and locally
SLURM_KEYS: Dict[str, type] = {
    "partition": str, "account": str, "qos": str, "reservation": str, "constraint": str,
    "time_min": int, "cpus_per_task": int, "mem_gb": float, "gpus_per_task": int,
    "gpu_style": str,  # "gpus" (--gpus-per-task=N) or "gres" (--gres=gpu:N): clusters differ
    "gres_name": str,  # e.g. "gpu:a100" for --gres=gpu:a100:N
    "array_parallelism": int, "runs_per_task": int, "max_requeues": int, "signal_delay_s": int,
    "sbatch": dict,  # extra sbatch flags, e.g. {"mail-type": "END"}
    "setup": list,  # shell lines before the job starts (module load ...)
    "agent_stagger_s": float,  # online: seconds between agent starts within an array
    "smoke": dict,  # run-config overrides for --smoke: a laptop-sized version of the sweep
}
SLURM_DEFAULTS: Dict[str, Any] = {
    "partition": "", "account": "", "qos": "", "reservation": "", "constraint": "",
    "time_min": 60, "cpus_per_task": 4, "mem_gb": 8.0, "gpus_per_task": 1, "gpu_style": "gpus",
    "gres_name": "gpu", "array_parallelism": 64, "runs_per_task": 1, "max_requeues": 5,
    "signal_delay_s": 90, "sbatch": {}, "setup": [], "agent_stagger_s": 5.0, "smoke": {},
}


class SweepError(ValueError):
    """A bad sweep file or option: the message names the file, the key and what was expected."""


@dataclass
class Sweep:
    """A loaded sweep: W&B's part (as W&B would see it), the launcher block and the runs."""

    path: Path
    name: str
    wandb_config: Dict[str, Any]
    slurm: Dict[str, Any]
    runs: List[RunConfig] = field(default_factory=list)
    attack: List[Dict[str, Any]] = field(default_factory=list)  # the attack/evaluate block's sources, checked
    root: Path = Path("runs")  # the results root: where runs look for the runs they name (a GAN's feature_run)
    notes: List[str] = field(default_factory=list)  # what the command line changed that the file sweeps over
    selected: List[Any] = field(default_factory=list)  # select block: one tuning.Choice per group
    baseline: Dict[str, Any] = field(default_factory=dict)  # select block: the untuned setting, run beside

    @property
    def method(self) -> str:
        return self.wandb_config["method"]

    @property
    def metric(self) -> Dict[str, Any]:
        """The file's metric, else the headline metric its task declares (on the test split)."""
        given = self.wandb_config.get("metric")
        if given:
            return given
        tasks = [r.task for r in self.runs] or parameter_values(self.wandb_config["parameters"].get("task")) \
            or [RunConfig().task]
        from .registries import task_of

        task = task_of(RunConfig(task=str(tasks[0])))
        return {"name": record.test_key(task.headline), "goal": task.metric(task.headline).goal}


def load(path: str | Path, smoke: bool = False, overrides: Optional[Mapping[str, str]] = None,
         online: bool = False, root: str | Path = "runs") -> Sweep:
    """Read and validate a sweep file; offline (online=False) also expand it into run configs.
    `root` is the results root, where an attack block's `from` folders are looked up."""
    path = Path(path)
    where = str(path)
    raw = read_yaml(path)
    for key, why in UNSUPPORTED_WANDB_KEYS.items():
        if key in raw:
            raise SweepError(f"{where}: {key}: not supported by dl2bench: {why}")
    unknown = sorted(set(raw) - set(WANDB_KEYS) - {LAUNCH_BLOCK, ATTACK_BLOCK, EVALUATE_BLOCK, SELECT_BLOCK})
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], [*WANDB_KEYS, LAUNCH_BLOCK, ATTACK_BLOCK, EVALUATE_BLOCK,
                                                      SELECT_BLOCK], n=1)
        raise SweepError(f"{where}: unknown top-level key {unknown[0]!r}"
                         + (f" (did you mean {hint[0]!r}?)" if hint else "") + "; expected W&B sweep keys "
                         f"({', '.join(WANDB_KEYS)}), the launcher block {LAUNCH_BLOCK!r} or the "
                         f"{ATTACK_BLOCK!r} / {EVALUATE_BLOCK!r} / {SELECT_BLOCK!r} block")
    if SELECT_BLOCK in raw and (ATTACK_BLOCK in raw or EVALUATE_BLOCK in raw):
        raise SweepError(f"{where}: {SELECT_BLOCK}: a final stage reruns chosen settings; it evaluates no other "
                         f"runs (no {ATTACK_BLOCK!r} or {EVALUATE_BLOCK!r} block beside it)")
    if ATTACK_BLOCK in raw and EVALUATE_BLOCK in raw:
        raise SweepError(f"{where}: {EVALUATE_BLOCK}: give the trained runs in one block ({ATTACK_BLOCK!r} or "
                         f"{EVALUATE_BLOCK!r}), not both")
    block = ATTACK_BLOCK if ATTACK_BLOCK in raw else EVALUATE_BLOCK
    slurm = slurm_block({} if raw.get(LAUNCH_BLOCK) is None else raw[LAUNCH_BLOCK], where)
    attack = attack_block(raw[block], where, Path(root), block) if block in raw else []
    if attack and online:
        raise SweepError(f"{where}: {block}: an evaluation sweep's runs come from local run folders, which "
                         "W&B's sweep server cannot list; submit it without online sweep mode (each run still "
                         "logs to W&B with --set wandb=online)")
    wb = {k: copy.deepcopy(v) for k, v in raw.items()
          if k not in (LAUNCH_BLOCK, ATTACK_BLOCK, EVALUATE_BLOCK, SELECT_BLOCK)}
    for key in ("method", "parameters"):
        if key not in wb:
            raise SweepError(f"{where}: missing required key {key!r}")
    name = str(wb.get("name") or path.stem)
    if name.startswith("."):  # '.', '..' and hidden names: a folder that is not the sweep's own
        raise SweepError(f"{where}: name: {name!r} must not start with '.' (it names the sweep's folder under "
                         "--out); start it with a letter or digit")
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SweepError(f"{where}: name: {name!r} must be letters, digits, '-', '_' or '.' (it names a folder)")
    if len(name.encode()) > MAX_NAME:  # a folder name has at most 255 bytes; its lock and files add to it
        raise SweepError(f"{where}: name: {len(name.encode())} bytes long; a sweep name names a folder, at most "
                         f"{MAX_NAME} bytes")
    _validate_wandb(wb, where)
    _validate_parameters(wb["parameters"], where, values=not attack)
    overrides = dict(overrides or {})
    collapsed = [f"--set {k}={v}: replaces the {len(spec['values'])} values the sweep file gives {k} "
                 f"({', '.join(map(str, spec['values']))}); every run uses {v}"
                 for k, v in overrides.items() for spec in [wb["parameters"].get(k)]
                 if isinstance(spec, dict) and isinstance(spec.get("values"), list) and len(spec["values"]) > 1]
    if smoke:
        overrides = {**slurm["smoke"], **overrides}
    _check_keys(overrides, f"{where}: --set/smoke")
    try:  # each value's type once here, not once per run in a message that shows the run's parameters
        RunConfig.from_dict(overrides)
    except ConfigError as e:
        raise SweepError(f"{where}: --set/smoke: {e}") from None
    sweep = Sweep(path, name, wb, slurm, attack=attack, root=Path(root), notes=collapsed)
    if SELECT_BLOCK in raw:
        if online:
            raise SweepError(f"{where}: {SELECT_BLOCK}: a final stage is chosen from local run folders, which W&B's "
                             "sweep server cannot read; submit it without online sweep mode")
        sweep.selected, sweep.baseline = select_block(raw[SELECT_BLOCK], where, Path(root))
        sweep.notes += [f"{SELECT_BLOCK}: {describe_choice(c)}" for c in sweep.selected]
    if not online:
        sweep.runs = expand(sweep, overrides)
    elif overrides:
        raise SweepError(f"{where}: --smoke/--set change runs locally; in online mode W&B picks the "
                         "parameters, so put them in the sweep file's parameters instead")
    return sweep


def read_yaml(path: Path) -> Dict[str, Any]:
    import yaml

    try:
        text = path.read_text()
    except OSError as e:
        from .shipped import names

        shipped = names()
        hint = (f"; the shipped sweeps are sweeps/<name>.yaml for {', '.join(shipped)} (the name alone "
                "will do)" if isinstance(e, FileNotFoundError) and shipped else "")
        raise SweepError(f"{path}: cannot read sweep file ({e.strerror}){hint}") from None
    try:
        data = yaml.load(text, Loader=_strict_loader())  # a SafeLoader: no tag can import or run anything
    except _AliasBomb as e:
        raise SweepError(f"{path}:{e.line}: {e.why}") from None
    except _DuplicateKey as e:
        raise SweepError(f"{path}:{e.line}: {e.key}: duplicate key (YAML would silently keep only the "
                         "last one)") from None
    except yaml.reader.ReaderError as e:  # a character YAML cannot hold; its str() spans lines
        raise SweepError(f"{path}: YAML syntax error: character {chr(e.character) if isinstance(e.character, int) else e.character!r}"
                         f" at offset {e.position}: "
                         f"{e.reason}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        if "could not determine a constructor for the tag" in problem:
            problem = (f"the tag {problem.split('tag', 1)[1].strip()} is not allowed: a sweep file is plain "
                       "YAML data, read with a safe loader (nothing in it is imported or run)")
        raise SweepError(f"{path}{at}: YAML syntax error: {problem}") from None
    if data is None:
        raise SweepError(f"{path}: the file is empty; expected a mapping of sweep keys (method, parameters, ...)")
    if not isinstance(data, dict):
        raise SweepError(f"{path}: expected a mapping of sweep keys (method, parameters, ...), "
                         f"got {type(data).__name__}")
    _check_plain_keys(data, str(path), "")
    return data


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int):
        super().__init__(key)
        self.key, self.line = key, line


@functools.lru_cache(maxsize=1)
def _strict_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """Safe loading that refuses a key given twice in one mapping, and aliases that expand past
        MAX_YAML_NODES values (a 1 KB "billion laughs" file would otherwise hang every later walk)."""

        def construct_document(self, node):
            _expanded_size(node, {}, set())
            return super().construct_document(node)

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # a merged anchor's keys may be overridden: that is what merging is for
                    key = self.construct_object(key_node, deep=True)
                    try:
                        dup = key in seen
                        seen.add(key)
                    except TypeError:  # an unhashable key: the base class says so with its position
                        break
                    if dup:
                        raise _DuplicateKey(str(key), key_node.start_mark.line + 1)
            return super().construct_mapping(node, deep=deep)

    return Loader


# the largest shipped sweep has a few hundred values; a generated one with many grid points, thousands
MAX_YAML_NODES = 100_000


class _AliasBomb(Exception):
    def __init__(self, line: int, why: str):
        super().__init__(why)
        self.line, self.why = line, why


def _expanded_size(node, memo: Dict[int, int], open_: set) -> int:
    """How many values the document holds once every alias is expanded; counted on the composed
    graph (an alias is a shared node), so a bomb is measured without being expanded."""
    import yaml

    if id(node) in memo:
        return memo[id(node)]
    if id(node) in open_:
        raise _AliasBomb(node.start_mark.line + 1, "an alias refers to the node that holds it (a recursive "
                         "structure), which has no JSON form")
    size = 1
    if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
        open_.add(id(node))
        children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
        for child in children:
            size += _expanded_size(child, memo, open_)
            if size > MAX_YAML_NODES:
                raise _AliasBomb(node.start_mark.line + 1, f"its aliases expand to more than {MAX_YAML_NODES:,} "
                                 "values (an alias bomb?); write the values out or use fewer nested aliases")
        open_.discard(id(node))
    memo[id(node)] = size
    return size


def _check_plain_keys(obj: Any, where: str, at: str) -> None:
    """Every mapping key a string and every value JSON's: W&B's server holds JSON, so a YAML key such
    as 1, yes or null would reach it as another key than the one written, and a date or !!binary
    value as a string it never was."""
    if not isinstance(obj, (dict, list, str, int, float, type(None))):
        raise SweepError(f"{where}: {at.rstrip('.') or 'the file'}: {obj!r} is a YAML {type(obj).__name__}, not "
                         "plain data (a string, number, true/false, null, list or mapping); quote it if it is text")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise SweepError(f"{where}: {at}{k!r}: keys must be strings (YAML read this key as "
                                 f"{type(k).__name__}); quote it")
            _check_plain_keys(v, where, f"{at}{k}.")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_plain_keys(v, where, f"{at.rstrip('.')}[{i}].")


def slurm_block(block: Any, where: str) -> Dict[str, Any]:
    """The launcher block checked key by key, with defaults filled; SweepError names the bad key."""
    if not isinstance(block, dict):
        raise SweepError(f"{where}: {LAUNCH_BLOCK}: expected a mapping, got {type(block).__name__}")
    out = dict(SLURM_DEFAULTS)
    for k, v in block.items():
        if k not in SLURM_KEYS:
            raise SweepError(f"{where}: {LAUNCH_BLOCK}.{k}: unknown launcher key; valid keys: "
                             + ", ".join(SLURM_KEYS))
        want = SLURM_KEYS[k]
        ok = isinstance(v, want) and not (want is not bool and isinstance(v, bool))
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v, ok = float(v), True
        if not ok:
            raise SweepError(f"{where}: {LAUNCH_BLOCK}.{k}: expected {want.__name__}, got {v!r}")
        out[k] = v
    if out["gpu_style"] not in ("gpus", "gres"):
        raise SweepError(f"{where}: {LAUNCH_BLOCK}.gpu_style: expected 'gpus' or 'gres', got {out['gpu_style']!r}")
    for k in ("time_min", "cpus_per_task", "array_parallelism", "runs_per_task"):
        if out[k] < 1:
            raise SweepError(f"{where}: {LAUNCH_BLOCK}.{k}: expected a number >= 1, got {out[k]!r}")
    for k in ("mem_gb", "gpus_per_task", "max_requeues", "signal_delay_s", "agent_stagger_s"):
        if not 0 <= out[k] < 2 ** 31:  # NaN fails this too; sbatch takes 32-bit numbers
            raise SweepError(f"{where}: {LAUNCH_BLOCK}.{k}: expected a number >= 0, got {out[k]!r}")
    for k in ("time_min", "cpus_per_task", "array_parallelism", "runs_per_task"):
        if out[k] >= 2 ** 31:
            raise SweepError(f"{where}: {LAUNCH_BLOCK}.{k}: expected a number below 2**31, got {out[k]!r}")
    for k in ("partition", "account", "qos", "reservation", "constraint", "gres_name"):
        if any(c in out[k] for c in "\n\r\0"):  # each becomes one #SBATCH line of the job script
            raise SweepError(f"{where}: {LAUNCH_BLOCK}.{k}: a line break or NUL byte in {out[k]!r}")
    for k, v in out["sbatch"].items():
        if not (isinstance(k, str) and k.replace("-", "").replace("_", "").isalnum() and k.isascii()):
            raise SweepError(f"{where}: {LAUNCH_BLOCK}.sbatch.{k}: expected an sbatch option name "
                             "(letters, digits, '-'), e.g. mail-type")
        if isinstance(v, (dict, list)) or v is None or any(c in str(v) for c in "\n\r\0"):
            raise SweepError(f"{where}: {LAUNCH_BLOCK}.sbatch.{k}: expected one value on one line, got {v!r}")
    for i, line in enumerate(out["setup"]):
        if not isinstance(line, str) or "\0" in line:
            raise SweepError(f"{where}: {LAUNCH_BLOCK}.setup[{i}]: expected a shell line (a string), got {line!r}")
    _check_keys(out["smoke"], f"{where}: {LAUNCH_BLOCK}.smoke")
    try:  # the values' types now, not when --smoke is first used
        RunConfig.from_dict(out["smoke"])
    except ConfigError as e:
        raise SweepError(f"{where}: {LAUNCH_BLOCK}.smoke.{e}") from None
    return out


MAX_NAME = 100


def attack_block(block: Any, where: str, root: Path, name: str = ATTACK_BLOCK) -> List[Dict[str, Any]]:
    """The attack block: one source or a list of them, each `from` a folder of trained runs (a sweep's
    folder under the results root, or a path), optionally narrowed by `where` (config key -> value or
    list of values) and `run_ids` (prefixes), with its own `task` and `parameters` (replacing the
    file's for these runs: e.g. an eps grid per dataset). Each source gets its attackable runs
    (finished, with weights) as `victims`; SweepError names the key when there are none."""
    from . import runs

    label = f"{where}: {name}"
    sources = block if isinstance(block, list) else [block]
    if not sources:
        raise SweepError(f"{label}: expected a source (from: <sweep folder>) or a list of them")
    out = []
    for i, src in enumerate(sources):
        at = f"{label}[{i}]" if isinstance(block, list) else label
        if not isinstance(src, dict) or "from" not in src:
            raise SweepError(f"{at}: expected a mapping with 'from' (a folder of trained runs), got {src!r}")
        bad = sorted(set(src) - set(ATTACK_SOURCE_KEYS))
        if bad:
            raise SweepError(f"{at}.{bad[0]}: unknown key; valid keys: {', '.join(ATTACK_SOURCE_KEYS)}")
        folder = from_folder(src["from"], root, f"{at}.from", "that sweep")
        task = src.get("task")
        if task is not None:
            from .families import TASKS

            if not isinstance(task, str) or task not in TASKS or TASKS[task]().trains:
                raise SweepError(f"{at}.task: expected the name of one task that evaluates trained runs (e.g. "
                                 f"fashion_mnist_attack), got {task!r}")
        cond = src.get("where") or {}
        if not isinstance(cond, dict):
            raise SweepError(f"{at}.where: expected a mapping of config key -> value(s), got {cond!r}")
        _check_keys(cond, f"{at}.where")
        ids = src.get("run_ids") or []
        if not isinstance(ids, list) or not all(isinstance(r, str) for r in ids):
            raise SweepError(f"{at}.run_ids: expected a list of run ids, got {ids!r}")
        params = src.get("parameters") or {}
        if not isinstance(params, dict):
            raise SweepError(f"{at}.parameters: expected a mapping of W&B parameter specs, got {params!r}")
        _validate_parameters(params, f"{at}", values=False)
        victims = []
        for run in runs.runs_in(folder):
            cfg = runs.maybe_json(run / runs.CONFIG)
            if cfg is None or not runs.finished_with_weights(run):
                continue  # unfinished or unreadable: not attackable
            summary = runs.summary(run) or {}
            rid = summary.get("run_id") or run.name
            if ids and not any(rid.startswith(r) for r in ids):
                continue
            if any(cfg.get(k) not in (v if isinstance(v, list) else [v]) for k, v in cond.items()):
                continue
            victims.append({"run_id": rid, "task": cfg.get("task"), "model": cfg.get("model"), "seed": cfg.get("seed", 0)})
        if not victims:
            raise SweepError(f"{at}.from: {folder} holds no finished runs with trained weights ({runs.WEIGHTS})"
                             + (" that match where/run_ids" if cond or ids else ""))
        out.append({"folder": str(folder.resolve()), "task": src.get("task"), "parameters": params,
                    "victims": victims})
    return out


def from_folder(value: Any, root: Path, at: str, what: str) -> Path:
    """A block's `from`, by one rule: a relative folder is under the results root (--out), never the
    working folder, where a same-named folder would silently supply other runs."""
    folder = Path(str(value))
    if not folder.is_absolute():
        folder = root / folder
    if not folder.is_dir():
        raise SweepError(f"{at}: {value!r}: no such folder (looked in {folder}); run {what} first")
    return folder


def select_block(block: Any, where: str, root: Path) -> tuple:
    """The select block: `from` a tuning sweep's folder (under the results root unless absolute), one
    choice `per` value of these keys, of the `tune` keys' values; `baseline` (optional) is the untuned
    setting of the tuned keys, run beside the choice (the one-shot budget)."""
    from . import tuning

    at = f"{where}: {SELECT_BLOCK}"
    if not isinstance(block, dict) or "from" not in block or "tune" not in block:
        raise SweepError(f"{at}: expected a mapping with from (the tuning sweep) and tune (the keys chosen), "
                         f"got {block!r}")
    bad = sorted(set(block) - set(tuning.SELECT_KEYS))
    if bad:
        raise SweepError(f"{at}.{bad[0]}: unknown key; valid keys: {', '.join(tuning.SELECT_KEYS)}")
    lists = {}
    for key in ("per", "tune"):
        v = block.get(key) or []
        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list) or not all(isinstance(k, str) for k in v):
            raise SweepError(f"{at}.{key}: expected a list of config keys, got {block.get(key)!r}")
        _check_keys(dict.fromkeys(v), f"{at}.{key}")
        lists[key] = v
    if not lists["tune"]:
        raise SweepError(f"{at}.tune: expected at least one config key to choose (e.g. [lr])")
    baseline = block.get("baseline") or {}
    if not isinstance(baseline, dict) or set(baseline) - set(lists["tune"]):
        raise SweepError(f"{at}.baseline: expected values of the tuned keys ({', '.join(lists['tune'])}), "
                         f"got {block.get('baseline')!r}")
    budgets = block.get("budgets") or {}
    if not isinstance(budgets, dict) or not all(
            isinstance(b, dict) and b and set(b) <= set(lists["tune"]) and all(isinstance(v, list) and v for v in b.values())
            for b in budgets.values()) or "large" in budgets:
        raise SweepError(f"{at}.budgets: expected named subsets of the tuned values, e.g. {{small: {{lr: [0.001, "
                         f"0.1]}}}} (large, every value tried, is always chosen), got {block.get('budgets')!r}")
    folder = from_folder(block["from"], root, f"{at}.from", "the tuning sweep")
    try:
        return tuning.select(folder, lists["per"], lists["tune"], budgets), baseline
    except ConfigError as e:
        raise SweepError(f"{where}: {e}") from None


def describe_choice(c: Any) -> str:
    tried = ", ".join(f"{'/'.join(map(str, t))}: {m:.4g}" for t, m in c.medians.items())
    budget = "" if c.budget == "large" else f" ({c.budget} budget)"
    return (f"{'/'.join(map(str, c.group)) or 'all'}{budget}: chose {'/'.join(map(str, c.chosen))} "
            f"({c.metric} {c.score:.4g}, {c.goal}; median over seeds of {tried})")


def _check_keys(d: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(d) - set(RunConfig.keys()))
    if unknown:
        raise SweepError(f"{where}: unknown run config key {unknown[0]!r}; valid keys: {', '.join(RunConfig.keys())}")


def _sweeps_module(where: Optional[str] = None, why: str = ""):
    """W&B's sweep engine (the `sweeps` package), or None when it is not installed. It pins numpy<2,
    which has no wheels for Python 3.13, so it is no install requirement: what needs it (`where`
    given) is refused in one line saying what to do instead."""
    try:
        with warnings.catch_warnings():  # its pydantic config predates pydantic 2: noise, not news
            warnings.simplefilter("ignore")
            import sweeps
        if not hasattr(sweeps, "next_runs"):  # a checkout's sweeps/ folder on sys.path, imported as a namespace
            raise ImportError("not W&B's sweeps")
    except ImportError:
        if where is None:
            return None
        raise SweepError(f"{where}: {why} W&B's sweep engine, the `sweeps` package, which is not installed "
                         "(pip install sweeps: it needs numpy<2, so Python <= 3.12); or run the sweep online "
                         "(--wandb online), where W&B's server picks the runs") from None
    return sweeps


def _validate_wandb(wb: Dict[str, Any], where: str) -> None:
    """W&B's own schema: a file `wandb sweep` accepts must mean the same here, and vice versa."""
    params = wb.get("parameters")
    if isinstance(params, dict):
        for name, spec in _flat_specs(params):
            if not isinstance(spec, dict):  # W&B's schema says only "not valid under any of the given schemas"
                raise SweepError(f"{where}: parameters.{name}: expected a mapping ({{value: {spec!r}}} for one value, "
                                 f"{{values: [...]}} for several, or a distribution), got the plain value {spec!r}")
    violations = list(dict.fromkeys(_schema_violations(_jsonable(wb))))  # the engine repeats some
    if violations:
        if isinstance(params, dict):  # W&B says "not valid under any of the given schemas": name the key
            import difflib

            for name, spec in _flat_specs(params):
                for bad in sorted(set(spec) - set(SPEC_KEYS)) if isinstance(spec, dict) else ():
                    hint = difflib.get_close_matches(bad, SPEC_KEYS, n=3)
                    # a list is meant for values, a scalar for value
                    if {"value", "values"} <= set(hint):
                        hint = ["values" if isinstance(spec[bad], list) else "value"]
                    raise SweepError(f"{where}: parameters.{name}.{bad}: unknown key"
                                     + (f" (did you mean {hint[0]!r}?)" if hint else "")
                                     + f"; a parameter takes {', '.join(SPEC_KEYS)}")
        raise SweepError(f"{where}: not a valid W&B sweep: " + "; ".join(violations))
    for name, spec in _flat_specs(wb["parameters"]):
        for k in ("min", "max", "q", "mu", "sigma", "a", "b"):
            if isinstance(spec.get(k), float) and not math.isfinite(spec[k]):
                raise SweepError(f"{where}: parameters.{name}.{k}: expected a finite number, got {spec[k]!r}")
    method = wb["method"]
    if method == "custom":
        raise SweepError(f"{where}: method: custom needs a custom scheduler, which dl2bench does not run; "
                         "use grid, random or bayes")
    if method == "grid":
        for name, spec in _flat_specs(wb["parameters"]):
            if isinstance(spec, dict) and ("distribution" in spec and spec["distribution"] not in
                                           ("categorical", "constant", "int_uniform", "q_uniform")
                                           or ("min" in spec and "distribution" not in spec
                                               and not all(isinstance(spec[k], int) for k in ("min", "max")))):
                raise SweepError(f"{where}: parameters.{name}: a grid sweep takes only values, value, "
                                 f"int_uniform or q_uniform; {spec} is continuous (use method: random)")
            if isinstance(spec, dict) and "probabilities" in spec:
                raise SweepError(f"{where}: parameters.{name}: probabilities mean nothing in a grid sweep")
        if not any(isinstance(s, dict) and "parameters" in s for s in wb["parameters"].values()):
            size = grid_size(wb["parameters"])
            if size > MAX_RUNS:
                raise SweepError(f"{where}: parameters: the grid has {size:.3g} runs, more than dl2bench expands "
                                 f"in one sweep ({MAX_RUNS:,}); narrow a range or split the sweep")
    run_cap = wb.get("run_cap")
    if isinstance(run_cap, int) and run_cap > MAX_RUNS:
        raise SweepError(f"{where}: run_cap: {run_cap} is more runs than dl2bench expands in one sweep "
                         f"({MAX_RUNS:,})")


def _schema_violations(wb: Dict[str, Any]) -> List[str]:
    """W&B's verdict on the file: its JSON schema, then the checks its engine makes beside the schema.
    Grid sweeps get those from the copies below: importing the whole `sweeps` engine (scipy,
    scikit-learn) costs ~0.9 s, half the budget for queueing a 1,000-run grid; every other method
    goes through the engine itself where it is installed, else through the same copies
    (tests/test_fuzz.py holds both to W&B's verdict)."""
    errors = [(".".join(map(str, e.absolute_path)) + ": " if e.absolute_path else "") + e.message
              for e in _wandb_schema().iter_errors(wb)]
    if errors:  # the engine would repeat these, and trips over some shapes they describe (parameters: 5)
        return errors
    engine = None if wb.get("method") == "grid" else _sweeps_module()
    if engine is None:  # a grid, or no engine installed: its checks beside the schema, copied below
        return _engine_checks(wb.get("parameters") or {})
    try:
        return list(engine.schema_violations_from_proposed_config(wb))
    except Exception as e:  # noqa: BLE001 - the engine is not ours: whatever it raises is its refusal
        return [str(e) or type(e).__name__]


# W&B's first log-uniform distributions, which its engine refuses with a pointer to the *_values ones
_DEPRECATED = {"log_uniform": "log_uniform_values", "inv_log_uniform": "inv_log_uniform_values",
               "q_log_uniform": "q_log_uniform_values"}


def _engine_checks(params: Dict[str, Any]) -> List[str]:
    """The checks of sweeps.config.schema_violations_from_proposed_config that its JSON schema cannot
    express (validate_min_max, validate_categorical_prob, check_for_deprecated_distributions), on the
    top-level parameters as it makes them."""
    import numbers

    out = []
    for name, spec in params.items():
        lo, hi = spec.get("min"), spec.get("max")
        if isinstance(lo, numbers.Real) and isinstance(hi, numbers.Real) and lo >= hi:
            out.append(f"{name}: min {lo} is not less than max {hi}")
        if "values" in spec and "probabilities" in spec:
            if len(spec["values"]) != len(spec["probabilities"]):
                out.append(f"Parameter {name}: values {spec['values']} and probabilities "
                           f"{spec['probabilities']} are not the same length")
            elif not abs(sum(spec["probabilities"]) - 1.0) <= 1e-8 + 1e-5:  # numpy.isclose's tolerance
                out.append(f"Parameter {name}: Probabilities {spec['probabilities']} do not sum to 1")
        if spec.get("distribution") in _DEPRECATED:
            out.append(f"{name}: distribution {spec['distribution']!r} is deprecated by W&B; use "
                       f"{_DEPRECATED[spec['distribution']]!r}")
    return out


# W&B's sweep schema, copied byte for byte from the `sweeps` package (MIT licence: the .LICENSE file
# beside it), so that validating needs no engine installed; tests/test_install.py fails when they differ
SCHEMA = Path(__file__).resolve().parent / "wandb_sweep_schema.json"


@functools.lru_cache(maxsize=1)
def _wandb_schema():
    import jsonschema

    # the engine's two formats (sweeps/config/schema.py): an int `min` is an int_uniform, not a uniform
    formats = jsonschema.FormatChecker()
    formats.checks("float")(lambda v: isinstance(v, float))
    formats.checks("integer")(lambda v: isinstance(v, int))
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()), format_checker=formats)


def _flat_specs(params: Dict[str, Any], prefix: str = ""):
    for name, spec in params.items():
        if isinstance(spec, dict) and isinstance(spec.get("parameters"), dict):
            yield from _flat_specs(spec["parameters"], f"{prefix}{name}.")
        else:
            yield prefix + name, spec


def _validate_parameters(params: Dict[str, Any], where: str, values: bool = True) -> None:
    """Names always; categorical values against the task(s) when `values` (an attack sweep's runs
    need their attacked run to resolve, so they are checked as they expand)."""
    keys = RunConfig.keys()
    for name, spec in params.items():
        if isinstance(spec, dict) and "parameters" in spec:
            raise SweepError(f"{where}: parameters.{name}: nested parameters are not supported: a dl2bench "
                             "run config is flat (one key per setting); list its keys directly")
        if name not in keys:
            import difflib

            hint = difflib.get_close_matches(name, keys, n=1)
            raise SweepError(f"{where}: parameters.{name}: unknown parameter"
                             + (f" (did you mean {hint[0]!r}?)" if hint else "")
                             + f"; valid parameters: {', '.join(keys)}")
    # categorical values are checked now, each against the sweep's task(s) with their defaults
    # (whether a model or a family's key fits depends on the task); sampled ones after expansion
    if not values:
        return
    tasks = [str(t) for t in parameter_values(params.get("task"))] or [RunConfig().task]
    from .schema import KEY_SPECS

    for name, spec in params.items():
        if not KEY_SPECS[name].factor:
            continue  # it names another run, looked up in the results folder as the runs expand
        for v in parameter_values(spec):
            errors = []
            for task in ([str(v)] if name == "task" else tasks):
                try:
                    _check_value(task, name, v)
                    break
                except ConfigError as e:
                    errors.append(e)
            else:
                raise SweepError(f"{where}: parameters.{name}: {errors[0]}") from None


def _check_value(task: str, name: str, value: Any) -> None:
    """One parameter value on the task's defaults: names and ranges, and the family's own check where
    the defaults alone can pass it. A family check that fails on a key the sweep did not name here (a
    GAN's feature_run, a Gymnasium env_id) waits for the runs, which carry every key."""
    from . import registries

    cfg = registries.resolve(RunConfig.from_dict({"task": task, name: value}), check=False)
    registries.validate(cfg, family_check=False)
    try:
        registries.validate(cfg)
    except ConfigError as e:
        if str(e).split(":", 1)[0] == name:
            raise


def _grid_axes(params: Dict[str, Any]) -> List[tuple]:
    """(name, values) per swept parameter, as W&B's grid search builds them: names sorted,
    int_uniform as range(min, max + 1), q_uniform as arange(min, max, q) (max excluded)."""
    axes = []
    for name in sorted(params):
        spec = params[name]
        if "values" in spec:
            axes.append((name, list(spec["values"])))
        elif spec.get("distribution") == "int_uniform" or ("min" in spec and "distribution" not in spec):
            axes.append((name, list(range(spec["min"], spec["max"] + 1))))
        elif spec.get("distribution") == "q_uniform":
            n = max(0, math.ceil((spec["max"] - spec["min"]) / spec["q"]))
            axes.append((name, [spec["min"] + i * spec["q"] for i in range(n)]))
    return axes


def _axis_len(spec: Dict[str, Any]) -> float:
    """How many values `_grid_axes` would list for one parameter, without listing them (a float:
    a q_uniform over a wide range with a tiny q has more values than an int can be asked for)."""
    if "values" in spec:
        return len(spec["values"])
    if spec.get("distribution") == "int_uniform" or ("min" in spec and "distribution" not in spec):
        return max(0, spec["max"] - spec["min"] + 1)
    if spec.get("distribution") == "q_uniform":
        return max(0.0, math.ceil(min((spec["max"] - spec["min"]) / spec["q"], 1e300)))
    return 1


def grid_size(params: Dict[str, Any]) -> int:
    size = math.prod(_axis_len(spec) for spec in params.values())
    return int(size) if size <= MAX_RUNS else size


def grid(params: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every combination, in the order W&B's grid search proposes them (tests check it is so)."""
    constants = {k: v["value"] for k, v in params.items() if "value" in v}
    axes = _grid_axes(params)
    names = [n for n, _ in axes]
    return [{**constants, **dict(zip(names, combo))} for combo in itertools.product(*(v for _, v in axes))]


def expand(sweep: Sweep, overrides: Mapping[str, Any]) -> List[RunConfig]:
    """Grid: every combination; random: run_cap draws (seeded by the file, so a resubmit draws the
    same runs); bayes: an error (it needs results fed back through the W&B server)."""
    where, wb = str(sweep.path), sweep.wandb_config
    method = wb["method"]
    if method == "bayes":
        raise SweepError(f"{where}: method: bayes needs the W&B server to feed results back; run it "
                         "with --wandb online (an API key and network), or use grid or random offline")
    if sweep.attack:
        if method != "grid":
            raise SweepError(f"{where}: method: an evaluation sweep is a grid over its sources' runs; got {method!r}")
        points = []
        for src in sweep.attack:  # every point of the (source's) grid, against every run of the source
            for point in grid({**wb["parameters"], **src["parameters"]}):
                for v in src["victims"]:
                    task = point.get("task") or src["task"] or evaluator_of(v["task"], where)
                    run_key, from_key = _run_keys(task, where)
                    for k in (run_key, from_key):  # the block chooses the runs; a value here would be dropped
                        if k in point or k in overrides:
                            given = "--set" if k in overrides else "parameters"
                            raise SweepError(f"{where}: {k}: set by the attack/evaluate block from the runs it "
                                             f"lists, so the value in {given} would be ignored; choose runs with "
                                             "the block's from/where/run_ids instead")
                    # the evaluated run's seed is the evaluation's: a report averages over the seeds trained
                    points.append({"seed": v["seed"], **point, "task": task, run_key: v["run_id"],
                                   from_key: src["folder"]})
    elif sweep.selected:
        if method != "grid":
            raise SweepError(f"{where}: method: a final stage is a grid over its chosen settings; got {method!r}")
        points = []
        for choice in sweep.selected:  # the chosen setting, and the untuned one, at every point (each seed)
            for setting in ({}, sweep.baseline) if sweep.baseline else ({},):
                for point in grid(wb["parameters"]):
                    points.append({**choice.config, **setting, **point})
    elif method == "grid":
        points = grid(wb["parameters"])
        if wb.get("run_cap"):
            points = points[: int(wb["run_cap"])]
    else:
        if not wb.get("run_cap"):
            raise SweepError(f"{where}: run_cap: a random sweep needs run_cap (how many runs to draw) "
                             "when it is expanded offline")
        sweeps = _sweeps_module(f"{where}: method", "a random sweep is expanded offline by")
        state = random.getstate()
        random.seed(int(hashlib.sha1(json.dumps(_jsonable(wb), sort_keys=True).encode()).hexdigest()[:12], 16))
        try:
            proposed = sweeps.next_runs(_jsonable(wb), [], n=int(wb["run_cap"]))
        except ValueError as e:
            raise SweepError(f"{where}: {e}") from None
        finally:
            random.setstate(state)
        points = [{k: v["value"] for k, v in r.config.items()} for r in proposed if r is not None]
    runs, seen = [], set()
    for i, point in enumerate(points):
        params = {k: _plain(v) for k, v in point.items()}
        for k in _from_keys(params.get("task", RunConfig().task)):  # runs named by id are looked up here
            if k not in params and k not in overrides:
                params[k] = str(sweep.root.resolve())
        try:
            cfg = RunConfig.from_dict({**params, **overrides, "group": sweep.name}).resolve()
        except ConfigError as e:
            raise SweepError(f"{where}: run {i} {params}: {e}") from None
        rid = cfg.run_id()
        if rid not in seen:  # a random sweep may draw the same point twice: run it once
            seen.add(rid)
            runs.append(cfg)
    if not runs:
        raise SweepError(f"{where}: parameters: the sweep expands to no runs")
    return runs


def evaluator_of(task: str, where: str) -> str:
    """The task that evaluates a trained run of `task` when the sweep names none: the one task that does
    not train, evaluates that family and reads the same data (fashion_mnist -> fashion_mnist_attack)."""
    from .families import TASKS

    if task not in TASKS:
        raise SweepError(f"{where}: a trained run's task {task!r} is unknown here")
    t = TASKS[task]()
    found = [n for n in TASKS.names() if not TASKS[n]().trains and TASKS[n]().evaluates == t.family
             and TASKS[n]().data == t.data]
    if len(found) != 1:
        raise SweepError(f"{where}: parameters.task: name the task that evaluates the {task} runs"
                         + (f" (one of {', '.join(found)})" if found else f" (no task evaluates {t.family} runs)"))
    return found[0]


def _run_keys(task: str, where: str):
    from .families import TASKS

    if task not in TASKS or TASKS[task]().trains:
        raise SweepError(f"{where}: parameters.task: {task!r} does not evaluate trained runs (an evaluation "
                         "sweep's task must, e.g. fashion_mnist_attack)")
    return TASKS[task]().run_keys


@functools.lru_cache(maxsize=64)
def _from_keys(task: str) -> tuple:
    """The bookkeeping `*_from` keys of the task's family: where a run looks up the runs it names
    (a GAN's feature classifier); a sweep points them at its results root."""
    from .families import TASKS
    from .schema import KEY_SPECS

    if task not in TASKS:
        return ()
    family = TASKS[task]().family
    return tuple(k for k, spec in KEY_SPECS.items() if spec.family == family and spec.bookkeeping and k.endswith("_from"))


def _plain(v: Any) -> Any:
    """numpy scalars from the sweeps package -> Python values (JSON, YAML, hashing)."""
    return v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes, list, dict)) else v


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def parameter_values(spec: Any) -> List[Any]:
    """The values a parameter spec lists (`value` or `values`); [] for distributions."""
    if not isinstance(spec, dict):
        return []
    return list(spec.get("values", [spec["value"]] if "value" in spec else []))
