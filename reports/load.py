"""Results -> pandas: the local results store (runs/<sweep>/<run>/{config.json, metrics.jsonl,
summary.json} + optional manifest.json) read into one `Sweep`: a runs frame (one row per run:
config + summary) and a curves frame (one row per run x epoch). The W&B adapter (wandb_source.py)
builds the same records, so everything after `assemble` never knows where the data came from."""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from dl2bench import record as R
from dl2bench.runs import CONFIG, METRICS, SUMMARY
from dl2bench.config import BOOKKEEPING as RUN_BOOKKEEPING
from dl2bench.config import KEY_SPECS
from dl2bench.record import SCHEMA_VERSION

from .units import MetricDecl, TaskDecl, from_registry, parse_summary

# Config keys that never change results (the ones the run id leaves out), so they never count as
# factors; seed is the replicate axis.
BOOKKEEPING = RUN_BOOKKEEPING | {"run_id"} | {k for k, spec in KEY_SPECS.items() if not spec.factor}
# a run that evaluated another run's weights (an attack) says how that run was made: its settings
# become columns `evaluated.<key>`, so runs group by the model they evaluated
EVALUATED = "evaluated_config"
EVALUATED_PREFIX = "evaluated."
REPLICATE = "seed"
STATUSES = R.STATUSES + (R.INCOMPLETE,)
COUNTED = R.COUNTED  # runs whose final metric means what it says
# config.json records what was asked for ("auto", 0 = "as many as there are"); the summary
# records what the run got, and that is what a reader compares
RESOLVED_BY_SUMMARY = {"device": ("auto", None, ""), "threads": (0, None)}
# identity and bookkeeping columns the loader adds to every row
ID_COLUMNS = ("sweep", "run", "path", "config_source")
# summary.json without a `schema` key is schema 1, which only classification tasks ever wrote
# (best_val_acc, test_acc, ...): its declarations come from the task registry
V1_FAMILY = "classification"
UNKNOWN_TASK = "unknown task"  # runs whose config (and so task) is unknown


class ReportError(Exception):
    """A bad input; the message names the path and what is wrong with it (exit status 2)."""


@dataclass
class Sweep:
    """Everything a report is built from; runs and curves are keyed by (sweep, run)."""

    name: str
    metric: str  # a column of `runs`: the first task's ranking column (the only one in a one-task sweep)
    goal: str  # maximize | minimize
    runs: pd.DataFrame
    curves: pd.DataFrame
    config_keys: List[str]  # the runs columns that came from the run configs
    sources: List[str]
    git_sha: List[str] = field(default_factory=list)  # from the manifests
    created: List[str] = field(default_factory=list)  # from the manifests
    notes: List[str] = field(default_factory=list)  # what the reader must know (fallbacks, damage)
    tasks: Dict[str, TaskDecl] = field(default_factory=dict)  # task -> its declarations, in folder order
    ranking: Dict[str, Tuple[str, str]] = field(default_factory=dict)  # task -> (runs column, goal)
    key_tasks: Dict[str, set] = field(default_factory=dict)  # config/summary key -> tasks whose runs have it
    described: List[str] = field(default_factory=list)  # "<sweep>: <its file's description>", from the manifests
    smoke: List[str] = field(default_factory=list)  # "<sweep>: <its --smoke overrides>" for sweeps submitted so
    damaged: List[str] = field(default_factory=list)  # files that could not be read: the report goes on without them

    def task_of(self) -> pd.Series:
        """Each run's task (UNKNOWN_TASK where its config is unknown)."""
        if "task" not in self.runs.columns:
            return pd.Series(UNKNOWN_TASK, index=self.runs.index)
        known = self.runs["task"].dropna().unique()
        fill = str(known[0]) if len(known) == 1 else UNKNOWN_TASK  # one task: a run without config is its
        return self.runs["task"].where(self.runs["task"].notna(), fill).astype(str)

    def part(self, task: str) -> "Sweep":
        """The runs of one task as a Sweep of their own (a copy; the config keys that are empty for
        them, e.g. another family's settings, left out)."""
        mask = (self.task_of() == task).to_numpy()
        runs = self.runs[mask]
        runs = runs[[c for c in runs.columns if task in self.key_tasks.get(c, (task,))]].copy()
        keys = set(zip(runs["sweep"], runs["run"]))
        curves = self.curves[[k in keys for k in zip(self.curves["sweep"], self.curves["run"])]] \
            if len(self.curves) else self.curves
        decl = self.tasks.get(task) or TaskDecl(task)
        metric, goal = self.ranking.get(task, (self.metric, self.goal))
        return Sweep(name=self.name, metric=metric, goal=goal, runs=runs, curves=curves.copy(),
                     config_keys=self.keys_for(decl), sources=self.sources, git_sha=self.git_sha,
                     created=self.created, notes=self.notes, tasks={task: decl}, ranking={task: (metric, goal)},
                     described=self.described, smoke=self.smoke)

    def keys_for(self, decl: TaskDecl) -> List[str]:
        """The config keys of one task's runs: those its configs have, less another family's keys
        (every config.json lists every family's keys, at their defaults)."""
        return [k for k in self.config_keys
                if (decl.task in self.key_tasks.get(k, {decl.task}) or UNKNOWN_TASK in self.key_tasks.get(k, ()))
                and _key_family(k) in (None, decl.family)]


def _registry_names() -> List[str]:
    try:
        from dl2bench.families import TASKS

        return TASKS.names()
    except Exception:  # noqa: BLE001
        return []


def _key_family(key: str) -> Optional[str]:
    """The family that declares a config key (None for core keys and keys unknown here)."""
    try:
        from dl2bench.config import KEY_SPECS

        return KEY_SPECS[key].family if key in KEY_SPECS else None
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------------------------------------
# the local results store

_MISSING = object()  # read_json_if_there's answer for "no such file", where null is a JSON value


try:  # a 50,000-run store is 150,000 files and ~0.5 GB of JSON: orjson parses it ~3x faster
    import orjson

    def parse_json(text: str) -> Any:
        """json.loads, by orjson where it can; what orjson refuses (NaN, huge integers, damage)
        goes to json.loads, so values and error messages are the standard library's."""
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text)
    dumps = orjson.dumps
except ImportError:  # pragma: no cover - orjson is a dependency; a bare environment still works
    parse_json = json.loads
    dumps = json.dumps


def read_json(path: Path) -> Any:
    """Parse one JSON file; a missing, unreadable or invalid one raises ReportError naming the file."""
    obj = read_json_if_there(path, _MISSING)
    if obj is _MISSING:
        raise ReportError(f"{path}: cannot read (No such file or directory)")
    return obj


def read_json_if_there(path: Path, missing: Any) -> Any:
    """read_json, or `missing` where the file is not there (one open, no separate exists())."""
    try:
        with open(path) as f:  # not Path.read_text: its overhead shows at 100,000 files
            text = f.read()
    except FileNotFoundError:
        return missing
    except OSError as e:
        raise ReportError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ReportError(f"{path}: invalid JSON: not UTF-8 text (byte {e.start})") from None
    try:
        return parse_json(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def read_metrics(path: Path, complete: bool) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """metrics.jsonl -> rows. A run killed mid-write leaves a torn last line: for a run without
    summary.json that line is dropped (and said); any other bad line makes the file Damaged."""
    try:
        with open(path, errors="replace") as f:  # a damaged byte spoils its own line only
            text = f.read()
    except FileNotFoundError:
        return [], None
    except OSError as e:
        raise ReportError(f"{path}: cannot read ({e.strerror or e})") from None
    # the whole file as one JSON array: one parse per run instead of one per epoch (50,000 runs x 20
    # epochs); anything odd (a torn line, a non-object) is found line by line below, as before
    try:
        rows = parse_json("[" + ",".join(line for line in text.splitlines() if line.strip()) + "]")
        if all(isinstance(r, dict) for r in rows):
            return rows, None
    except ValueError:
        pass
    lines = text.splitlines()
    rows = []
    note = None
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if not complete and i == len(lines):
                note = f"{path}: dropped a torn last line {i} (the run was killed while writing it)"
                break
            # damaged in the middle: no curve of this run can be trusted, its summary still can
            raise Damaged(f"{path}: line {i} is not a JSON object ({e}); this run's learning curves are left out") from None
        rows.append(row)
    return rows, note


class Damaged(ValueError):
    """A run's file that cannot be read: the report goes on without it and says so."""


def read_json_or_damaged(path: Path, missing: Any = _MISSING) -> Any:
    """read_json_if_there, damage raised as Damaged."""
    try:
        return read_json_if_there(path, missing)
    except ReportError as e:
        if "cannot read" in str(e):  # a permission or I/O problem, not damage: the user must act
            raise
        raise Damaged(str(e)) from None


def is_run_folder(p: Path) -> bool:
    return p.is_dir() and any((p / f).exists() for f in (CONFIG, SUMMARY, METRICS))


def read_store(folder: Path) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """One sweep folder (or one run folder) -> (manifest or {}, run records)."""
    if not folder.exists():
        raise ReportError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder (expected a sweep folder runs/<sweep>/)")
    if is_run_folder(folder):  # a single run's folder given directly
        return {}, [read_run(folder, folder.parent.name or folder.name)]
    manifest: Dict[str, Any] = {}
    damage = []
    if (folder / "manifest.json").exists():
        try:
            manifest = read_json_or_damaged(folder / "manifest.json")
            if not isinstance(manifest, dict):
                raise Damaged(f"{folder / 'manifest.json'}: expected a JSON object, found {type(manifest).__name__}")
        except Damaged as e:
            manifest = {}
            damage.append(f"{e}; the sweep is named after its folder, and runs that never started are not "
                          "listed")
    try:
        children = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as e:
        raise ReportError(f"{folder}: cannot list ({e.strerror or e})") from None
    if not children:
        raise ReportError(f"{folder}: empty folder, no runs to report (a run folder holds config.json)")
    name = sweep_name(manifest, folder)
    planned = manifest_runs(manifest)
    with _read_ahead(children, (CONFIG, SUMMARY, METRICS)):
        runs = [read_run(p, name, planned.get(p.name)) for p in children if is_run_folder(p)]
    if runs and damage:
        runs[0]["damaged"] = damage + runs[0].get("damaged", [])
    have = {p.name for p in children}
    for rid, cfg in planned.items():  # submitted (or planned) but no folder yet: queued, not lost
        if rid not in have:
            runs.append({"sweep": name, "run": rid, "path": str(folder / rid), "config": cfg or {},
                         "config_source": "manifest" if cfg else "none", "summary": None, "metrics": [],
                         "reason": "not started: listed in manifest.json, no run folder yet", "notes": []})
    if not runs:
        nested = [p.name for p in children if p.is_dir() and any(is_run_folder(q) for q in p.iterdir())]
        hint = f"; it holds sweep folders ({', '.join(nested[:5])}): pass those" if nested else ""
        raise ReportError(f"{folder}: no run folders in it (a run folder holds config.json, "
                          f"metrics.jsonl and, once done, summary.json){hint}")
    return manifest, runs


READ_AHEAD_MIN = 1000  # run folders; 50,000 runs not in the page cache: load 27.5 s -> 20 s


@contextmanager
def _read_ahead(folders: Sequence[Path], names: Sequence[str]):
    """While the body reads `folders` in order, a child process (xargs cat) reads their files
    ahead of it into the page cache, on the other core and outside this process's GIL: a store
    not in the cache is otherwise 150,000 small reads each waiting on the disk. Threads here were
    slower (their loop competes with the parsing for the GIL). Small stores: no child."""
    import shutil
    import subprocess

    xargs = shutil.which("xargs") if len(folders) >= READ_AHEAD_MIN else None
    if xargs is None:
        yield
        return
    proc = None
    try:
        proc = subprocess.Popen([xargs, "-0", "-r", "cat", "--"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        paths = b"".join(os.fsencode(os.path.join(d, n)) + b"\0" for d in folders for n in names)
        writer = threading.Thread(target=_feed, args=(proc, paths), daemon=True)
        writer.start()
    except OSError:
        proc = None
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def _feed(proc, data: bytes) -> None:
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except OSError:  # killed once the reading was done: nothing left to read ahead
        pass


def manifest_runs(manifest: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """run_id -> its config ({} if unknown) from the manifest's "runs", whichever of the shapes
    {run_id: config}, [config with run_id] or [run_id] it has; {} for anything else."""
    runs = manifest.get("runs")
    out: Dict[str, Dict[str, Any]] = {}
    if isinstance(runs, dict):
        for rid, cfg in runs.items():
            out[str(rid)] = dict(cfg) if isinstance(cfg, dict) else {}
    elif isinstance(runs, list):
        for r in runs:
            if isinstance(r, dict) and r.get("run_id"):
                out[str(r["run_id"])] = dict(r)
            elif isinstance(r, str):
                out[r] = {}
    return out


def read_run(run_dir: Path, sweep: str, planned: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """One run folder -> a record; no summary.json means still running or killed: 'incomplete'.
    A folder without config.json (a job lost before it started) takes its config from the manifest."""
    damaged: List[str] = []
    corrupt = None

    def whole(name: str) -> Optional[Dict[str, Any]]:
        try:
            obj = read_json_or_damaged(run_dir / name)
            if obj is _MISSING:
                return None
            if not isinstance(obj, dict):
                raise Damaged(f"{run_dir / name}: expected a JSON object, found {type(obj).__name__}")
            return obj
        except Damaged as e:
            damaged.append(str(e))
            return None

    config = whole(CONFIG) or {}
    if damaged:
        damaged[-1] += ("; its config is taken from manifest.json" if planned else
                        "; its factor levels are unknown")
    source = "run" if config else "manifest" if planned else "none"
    if not config and planned:
        config = dict(planned)
    n = len(damaged)
    summary = whole(SUMMARY)
    if len(damaged) > n:
        corrupt = f"{SUMMARY} is damaged ({damaged[-1].split(': ', 1)[-1]}): its results are not counted"
        damaged[-1] += "; the run is listed as failed and its results are not counted"
    try:
        metrics, note = read_metrics(run_dir / METRICS, complete=summary is not None or corrupt is not None)
    except Damaged as e:
        metrics, note = [], None
        damaged.append(str(e))
    notes = [note] if note else []
    if not config:
        notes.append(f"{run_dir}: no config.json and not in manifest.json; its factor levels are unknown")
    rec = {"sweep": sweep, "run": run_dir.name, "path": str(run_dir), "config": config, "config_source": source,
           "summary": summary, "metrics": metrics, "notes": notes, "damaged": damaged}
    if corrupt:
        rec["corrupt"] = corrupt
    return rec


def sweep_name(manifest: Dict[str, Any], folder: Path) -> str:
    sweep = manifest.get("sweep") if isinstance(manifest.get("sweep"), dict) else {}
    return str(sweep.get("name") or folder.resolve().name)


def manifest_metric(manifest: Dict[str, Any]) -> Optional[Tuple[str, Optional[str]]]:
    sweep = manifest.get("sweep") if isinstance(manifest.get("sweep"), dict) else {}
    metric = sweep.get("metric")
    if isinstance(metric, dict) and metric.get("name"):  # no goal: the task's declared one
        return str(metric["name"]), (str(metric["goal"]).lower() if metric.get("goal") else None)
    return None


def _without_gc(fn, *args):
    """fn(*args) with the cyclic garbage collector paused: parsed JSON and the rows made from it
    hold no cycles, and a 50,000-run store is millions of new dicts and lists, each allocation
    burst triggering a collection that walks everything made so far (measured: 29 s -> 24 s for
    read_store)."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        return fn(*args)
    finally:
        if was:
            gc.enable()


def load_folders(folders: Sequence[Path]) -> Sweep:
    """Read one or more sweep folders into one Sweep (named and scored by the first manifest)."""
    if not folders:
        raise ReportError("no input: give one or more sweep folders, or --wandb ENTITY/PROJECT")
    records: List[Dict[str, Any]] = []
    names, shas, created, described, smoke = [], [], [], [], []
    metric: Dict[str, Tuple[str, str]] = {}  # sweep name -> its manifest's metric
    for folder in map(Path, folders):
        manifest, runs = _without_gc(read_store, folder)
        records += runs
        names.append(runs[0]["sweep"] if is_run_folder(folder) else sweep_name(manifest, folder))
        if manifest_metric(manifest) and names[-1] not in metric:
            metric[names[-1]] = manifest_metric(manifest)
        # dl2bench's launcher records each submission (time, git sha); older manifests, one of each
        subs = [s for s in manifest.get("submissions") or [] if isinstance(s, dict)]
        shas += [str(s["git_sha"]) for s in subs if s.get("git_sha")]
        if manifest.get("git_sha"):
            shas.append(str(manifest["git_sha"]))
        if subs and subs[0].get("time"):
            created.append(str(subs[0]["time"]) + (f" ({len(subs)} submissions)" if len(subs) > 1 else ""))
        elif manifest.get("created"):
            created.append(str(manifest["created"]))
        about = manifest.get("sweep") if isinstance(manifest.get("sweep"), dict) else {}
        if about.get("description"):
            described.append(f"{names[-1]}: {' '.join(str(about['description']).split())}")
        if any(" --smoke" in str(s.get("command", "")) for s in subs):
            over = (manifest.get("slurm") or {}).get("smoke") or {}
            smoke.append(f"{names[-1]}: " + (", ".join(f"{k} {v:,}" if isinstance(v, int) and not isinstance(v, bool)
                                                       else f"{k} {v}" for k, v in over.items()) or "--smoke"))
    name = " + ".join(dict.fromkeys(names))
    sw = _without_gc(assemble, name, metric, records, [str(f) for f in folders], shas, created)
    sw.described, sw.smoke = list(dict.fromkeys(described)), list(dict.fromkeys(smoke))
    return sw


# ---------------------------------------------------------------------------------------------
# records -> frames (shared with the W&B adapter)

def assemble(name: str, metric: Any, records: Iterable[Dict[str, Any]],
             sources: List[str], git_sha: Sequence[str] = (), created: Sequence[str] = ()) -> Sweep:
    """Run records {sweep, run, path, config, config_source, summary|None, metrics, notes[, reason]}
    -> a Sweep. config_source: "run" (its config.json), "manifest", or "none" (unknown).
    `metric`: the sweep's stated metric (name, goal|None) for every run, {sweep name: (name, goal)},
    or None (each task's declared headline)."""
    rows, curve_rows, notes = [], [], []
    damaged: List[str] = []
    curve_keys: List[Tuple[str, str, int]] = []  # (sweep, run, epochs) in curve_rows' order
    config_keys: Dict[str, None] = {}
    declared: Dict[str, Dict[str, set]] = {}  # task -> metric name -> the distinct declarations
    heads: Dict[str, Dict[Tuple, int]] = {}  # task -> (family, headline, monitor) -> runs
    newer: Dict[Any, int] = {}  # schema versions this report does not know -> runs
    v1: set = set()  # tasks with a schema-1 summary
    key_tasks: Dict[str, set] = {}
    own: Dict[str, Dict[Tuple[str, str], int]] = {}  # task -> the summaries' own (metric, goal) -> runs
    shapes: set = set()  # (task, keys) already noted: the runs of a sweep share a few key sets
    decls: Dict[Tuple, Any] = {}  # parse_summary's results by what they were parsed from
    curve_cols: Dict[str, None] = {}  # the epoch rows' keys, in first-logged order
    takes: Dict[Tuple, List[str]] = {}  # the summary keys a row takes, by (summary keys, config keys)
    for rec in records:
        config, summary = rec["config"], rec["summary"]
        evaluated = (summary or {}).get(EVALUATED)
        if isinstance(evaluated, dict):
            config = {**config, **{f"{EVALUATED_PREFIX}{k}": v for k, v in evaluated.items()
                                   if not isinstance(v, (dict, list))}}
        rec_task = str(config.get("task") or (summary or {}).get("task") or UNKNOWN_TASK)
        shape = (rec_task, tuple(config))
        if shape not in shapes:
            shapes.add(shape)
            config_keys.update(dict.fromkeys(k for k in config if k not in ID_COLUMNS))
            for k in config:
                key_tasks.setdefault(k, set()).add(rec_task)
        row: Dict[str, Any] = {"sweep": rec["sweep"], "run": rec["run"], "path": rec["path"],
                               "config_source": rec.get("config_source", "run"), **config}
        for key, unresolved in RESOLVED_BY_SUMMARY.items():
            if summary and summary.get(key) is not None and row.get(key) in unresolved:
                row[key] = summary[key]
        if summary is None and rec.get("corrupt"):
            row.update(status=R.FAILED, reason=rec["corrupt"],
                       epochs_completed=sum(1 for m in rec["metrics"] if any(str(k).startswith("val_") for k in m)))
        elif summary is None:
            epochs = len(rec["metrics"])
            row.update(status=R.INCOMPLETE,
                       reason=rec.get("reason") or f"no summary.json: still running or killed after {epochs} epoch(s)",
                       epochs_completed=sum(1 for m in rec["metrics"] if any(str(k).startswith("val_") for k in m)))
        else:
            # keys in both (run_id, task; device/threads resolved above) keep the config's value;
            # the declarations are read below, lists (class names) kept as JSON text
            # the runs of a sweep share a few (summary keys, config keys) shapes: which keys to take is
            # worked out once per shape and the values copied in C (50,000 runs x ~50 keys: 5 s -> 0.3 s)
            tk = (tuple(summary), tuple(config))
            take = takes.get(tk)
            if take is None:
                take = takes[tk] = [k for k in summary if k not in ID_COLUMNS and k not in config
                                    and k not in ("metrics", EVALUATED)]
            if take:
                vals = [summary[k] for k in take]
                row.update(zip(take, vals))
                if not _SCALARS.issuperset(map(type, vals)):  # lists, or anything W&B's API hands over
                    row.update((k, json.dumps(v)) for k, v in zip(take, vals) if isinstance(v, (list, tuple, dict)))
            shape = (rec_task, tuple(summary))
            if shape not in shapes:
                shapes.add(shape)
                for k in summary:
                    key_tasks.setdefault(k, set()).add(rec_task)
            schema = summary.get("schema", 1)
            row["schema"] = schema
            if not isinstance(schema, int) or isinstance(schema, bool) or schema > SCHEMA_VERSION or schema < 1:
                newer[schema] = newer.get(schema, 0) + 1
            task = rec_task
            if isinstance(summary.get("metric"), str) and summary.get("goal") in ("maximize", "minimize"):
                key = (summary["metric"], summary["goal"])
                own.setdefault(task, {})[key] = own.get(task, {}).get(key, 0) + 1
            if schema == 1:
                v1.add(task)
            if schema != 1:
                # the runs of a task declare the same things: parse each distinct declaration once
                # (50,000 summaries: ~2.5 s of the load)
                try:
                    dkey = (task, schema, summary.get("family"), summary.get("headline"), summary.get("metric"),
                            summary.get("monitor"), dumps(summary.get("metrics")))
                except (TypeError, ValueError):  # not JSON-able after all: parse it, uncached
                    dkey = None
                if dkey is None or dkey not in decls:
                    d = parse_summary(task, summary, schema if isinstance(schema, int) else SCHEMA_VERSION)
                    if dkey is not None:
                        decls[dkey] = d
                else:
                    d = decls[dkey]
                if d is not None:
                    for m in d.metrics.values():
                        declared.setdefault(task, {}).setdefault(m.name, set()).add(m)
                    key = (d.family, d.headline, d.monitor)
                    heads.setdefault(task, {})[key] = heads.get(task, {}).get(key, 0) + 1
            if row.get("status") not in STATUSES:
                row["reason"] = f"unknown status {row.get('status')!r} in summary.json; " + str(row.get("reason") or "")
                row["status"] = R.FAILED
        rows.append(row)
        n_before = len(curve_rows)
        curve_rows += [m for m in rec["metrics"] if m.get("epoch") is not None]
        if len(curve_rows) > n_before:
            ks = set().union(*curve_rows[n_before:])  # in C; the runs of a task log the same keys
            if not ks.issubset(curve_cols):  # rare: new keys, kept in the order they were logged
                for m in curve_rows[n_before:]:
                    curve_cols.update(dict.fromkeys(m))
        curve_keys.append((rec["sweep"], rec["run"], len(curve_rows) - n_before))
        notes += rec.get("notes", [])
        damaged += rec.get("damaged", [])
    notes += damaged
    runs = pd.DataFrame(rows)
    if runs.empty:
        raise ReportError(f"{', '.join(sources)}: no runs")
    dup = runs.duplicated(["sweep", "run"], keep=False)
    if dup.any():  # the same folder name in two inputs with one sweep name: tell them apart
        runs.loc[dup, "sweep"] = runs.loc[dup, "path"].map(lambda p: str(Path(p).parent))
    # the epoch rows as they are, their run's keys added as whole columns (not copied into each row)
    # the columns named up front: pandas would otherwise list each of ~1,000,000 rows' keys in Python
    curves = pd.DataFrame(curve_rows, columns=list(curve_cols) or None)
    if not curves.empty:
        counts = [n for _, _, n in curve_keys]
        curves = curves.drop(columns=[c for c in ("sweep", "run") if c in curves.columns])
        curves.insert(0, "run", np.repeat(np.array([r for _, r, _ in curve_keys], dtype=object), counts))
        curves.insert(0, "sweep", np.repeat(np.array([s for s, _, _ in curve_keys], dtype=object), counts))
    if curves.empty:
        curves = pd.DataFrame(columns=["sweep", "run", "epoch"])
    curves = curves.astype({"epoch": int})
    for c in curves.columns.difference(["sweep", "run"]):
        curves[c] = pd.to_numeric(curves[c], errors="coerce")
    for v, n in newer.items():
        notes.append(f"{n} run{'s' if n != 1 else ''} wrote summary.json schema {v!r}, which this report does not "
                     f"know (it reads schemas 1-{SCHEMA_VERSION}): read as schema {SCHEMA_VERSION}, so values named "
                     "differently there are missing. A newer dl2bench reads them in full.")
    sw = Sweep(name=name, metric="", goal="maximize", runs=runs, curves=curves, config_keys=list(config_keys),
               sources=list(sources), git_sha=list(dict.fromkeys(git_sha)), created=list(created), notes=notes,
               key_tasks=key_tasks, damaged=damaged)
    tasks = list(dict.fromkeys(sw.task_of()))
    several = len(tasks) > 1
    for task in tasks:
        decl, why = declarations(task, declared.get(task, {}), heads.get(task, {}), task in v1)
        sw.tasks[task] = decl
        notes += [f"{task}: {w}" if several else w for w in why]
        sub = runs[(sw.task_of() == task).to_numpy()]
        stated = [metric[s] for s in dict.fromkeys(sub["sweep"]) if s in metric] if isinstance(metric, dict) \
            else [metric] if metric else []
        said = max(own[task].items(), key=lambda kv: kv[1])[0] if own.get(task) else None
        col, goal, note = choose_metric(stated, sub, decl, said)
        if note:
            notes.append(f"{task}: {note}" if several else note)
        sw.ranking[task] = (col, goal)
        if col not in runs.columns:  # no run has finished yet: every figure must still work
            runs[col] = float("nan")
    sw.metric, sw.goal = sw.ranking[tasks[0]]
    for col in runs.columns:  # JSON numbers with nulls -> float with NaN, so aggregations just work
        if runs[col].dtype == object and col not in config_keys:  # (strings such as "13.0" stay strings)
            vals = runs[col].dropna()
            # pandas' C type inference, not a Python check per value (50,000 runs x 150 columns)
            if len(vals) and pd.api.types.infer_dtype(vals, skipna=True) in ("integer", "floating",
                                                                              "mixed-integer-float"):
                runs[col] = pd.to_numeric(runs[col], errors="coerce")
    return sw


_SCALARS = frozenset((str, int, float, bool, type(None)))  # what needs no JSON text in a cell


def declarations(task: str, declared: Dict[str, set], heads: Dict[Tuple, int],
                 v1: bool = False) -> Tuple[TaskDecl, List[str]]:
    """A task's declarations from its runs' summaries (schema 2 on), else from the task registry
    (schema-1 summaries, and runs without a summary yet); with what the reader must know."""
    why: List[str] = []
    if not declared:
        d = from_registry(task)
        if d is None and v1:  # a schema-1 task this dl2bench no longer has: any classification task's
            d = next((x for x in map(from_registry, _registry_names()) if x and x.family == V1_FAMILY), None)
            if d is not None:
                d = TaskDecl(task, d.family, d.headline, d.monitor, d.metrics, source="registry")
                why.append(f"task {task!r} is not in this dl2bench's task registry; its schema-1 summaries "
                           f"are read with the {V1_FAMILY} declarations")
        if d is None:
            return TaskDecl(task), [f"task {task!r} declares no metrics readable here (no schema-2 summary, and "
                                    "not in this dl2bench's task registry): values are shown without units"]
        return d, why
    (family, headline, monitor), _ = max(heads.items(), key=lambda kv: kv[1])
    if len(heads) > 1:
        why.append(f"the runs name different headline metrics ({', '.join(sorted({str(h[1]) for h in heads}))}); "
                   f"using {headline}")
    metrics = {}
    for name, decls in declared.items():
        if len(decls) == 1:
            metrics[name] = next(iter(decls))
            continue
        ds = sorted(decls, key=lambda m: (m.unit, m.label))
        first = ds[0]
        metrics[name] = MetricDecl(name, first.goal, " | ".join(dict.fromkeys(m.unit for m in ds if m.unit)),
                                   " | ".join(dict.fromkeys(m.said for m in ds)), all(m.percent for m in ds),
                                   first.splits, mixed=True)
        why.append(f"the runs measure {name} differently ({'; '.join(f'{m.said}, {m.unit}' for m in ds)}): "
                   f"compare {name} only between runs with the same setting")
    return TaskDecl(task, family, headline, monitor or headline, metrics, source="summary"), why


def choose_metric(stated: Sequence[Tuple[str, Optional[str]]], runs: pd.DataFrame, decl: TaskDecl,
                  said: Optional[Tuple[str, str]] = None) -> Tuple[str, str, Optional[str]]:
    """The sweep's stated metric, else the task's declared test_<headline>, else the validation
    best_val_<monitor>; for a task whose declarations are unknown, the summaries' own `metric`.
    Says why if it fell back. The goal of a declared metric is the declared one."""
    def present(col: str) -> bool:
        return col in runs.columns and pd.to_numeric(runs[col], errors="coerce").notna().any()

    fallback = ""
    for name, goal in stated:
        declared_goal = decl.goal_of(name)
        goal = "minimize" if str(goal or declared_goal or "maximize").startswith("min") else "maximize"
        conflict = ""
        if declared_goal and declared_goal != goal:
            conflict = f"the sweep says {goal} {name}, but the task declares it {declared_goal}d; using {declared_goal}"
            goal = declared_goal
        candidates = [name, f"best_{name}" if goal == "maximize" else f"final_{name}", f"final_{name}"]
        for c in candidates:
            if present(c):
                note = None if c == name else f"the sweep's metric {name!r} is not in the run summaries; using {c!r}"
                note = "; ".join(n for n in (conflict, note) if n) or None
                return c, decl.goal_of(c) or goal, note
        fallback = fallback or f"the sweep's metric {name!r} is in no run summary; "
    default, fb = decl.default_metric, decl.fallback_metric
    if default and present(default[0]):
        return default[0], default[1], (fallback + f"using {default[0]}") if fallback else None
    if fb and present(fb[0]):
        return fb[0], fb[1], fallback + f"no run has {default[0]}; ranking by {fb[0]} (validation) instead"
    if default:
        return default[0], default[1], (fallback + f"no run has {default[0]} yet") if fallback else None
    if stated:
        name, goal = stated[0]
        return name, "minimize" if str(goal or "").startswith("min") else "maximize", None
    if said and present(said[0]):
        return said[0], said[1], f"no declared metrics: ranking by the summaries' own metric {said[0]} ({said[1]})"
    return "test_loss", "minimize", "no declared metric and no stated one: ranking by test_loss"
