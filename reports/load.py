"""Results -> pandas: the local results store (runs/<sweep>/<run>/{config.json, metrics.jsonl,
summary.json} + optional manifest.json) read into one `Sweep`: a runs frame (one row per run:
config + summary) and a curves frame (one row per run x epoch). The W&B adapter (wandb_source.py)
builds the same records, so everything after `assemble` never knows where the data came from."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import pandas as pd

from dl2bench.config import BOOKKEEPING as RUN_BOOKKEEPING

# Config keys that never change results (the ones the run id leaves out), so they never count as
# factors; seed is the replicate axis.
BOOKKEEPING = RUN_BOOKKEEPING | {"run_id"}
REPLICATE = "seed"
STATUSES = ("finished", "early_stopped", "diverged", "failed", "incomplete")
COUNTED = ("finished", "early_stopped")  # runs whose final metric means what it says
# config.json records what was asked for ("auto", 0 = "as many as there are"); the summary
# records what the run got, and that is what a reader compares
RESOLVED_BY_SUMMARY = {"device": ("auto", None, ""), "threads": (0, None)}
DEFAULT_METRIC = ("test_acc", "maximize")
FALLBACK_METRIC = "best_val_acc"
# identity and bookkeeping columns the loader adds to every row
ID_COLUMNS = ("sweep", "run", "path", "config_source")


class ReportError(Exception):
    """A bad input; the message names the path and what is wrong with it (exit status 2)."""


@dataclass
class Sweep:
    """Everything a report is built from; runs and curves are keyed by (sweep, run)."""

    name: str
    metric: str  # a column of `runs`
    goal: str  # maximize | minimize
    runs: pd.DataFrame
    curves: pd.DataFrame
    config_keys: List[str]  # the runs columns that came from the run configs
    sources: List[str]
    git_sha: List[str] = field(default_factory=list)  # from the manifests
    created: List[str] = field(default_factory=list)  # from the manifests
    notes: List[str] = field(default_factory=list)  # what the reader must know (fallbacks, damage)


# ---------------------------------------------------------------------------------------------
# the local results store

def read_json(path: Path) -> Any:
    """Parse one JSON file; unreadable or invalid JSON raises ReportError naming the file."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ReportError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def read_metrics(path: Path, complete: bool) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """metrics.jsonl -> rows. A run killed mid-write leaves a torn last line: for a run without
    summary.json that line is dropped (and said); any other bad line is a ReportError."""
    if not path.exists():
        return [], None
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ReportError(f"{path}: cannot read ({e.strerror or e})") from None
    rows: List[Dict[str, Any]] = []
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
            raise ReportError(f"{path}: line {i} is not a JSON object ({e})") from None
        rows.append(row)
    return rows, note


def is_run_folder(p: Path) -> bool:
    return p.is_dir() and any((p / f).exists() for f in ("config.json", "summary.json", "metrics.jsonl"))


def read_store(folder: Path) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """One sweep folder (or one run folder) -> (manifest or {}, run records)."""
    if not folder.exists():
        raise ReportError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder (expected a sweep folder runs/<sweep>/)")
    if is_run_folder(folder):  # a single run's folder given directly
        return {}, [read_run(folder, folder.parent.name or folder.name)]
    manifest: Dict[str, Any] = {}
    if (folder / "manifest.json").exists():
        manifest = read_json(folder / "manifest.json")
        if not isinstance(manifest, dict):
            raise ReportError(f"{folder / 'manifest.json'}: expected a JSON object")
    try:
        children = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as e:
        raise ReportError(f"{folder}: cannot list ({e.strerror or e})") from None
    if not children:
        raise ReportError(f"{folder}: empty folder, no runs to report (a run folder holds config.json)")
    name = sweep_name(manifest, folder)
    planned = manifest_runs(manifest)
    runs = [read_run(p, name, planned.get(p.name)) for p in children if is_run_folder(p)]
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
    config = read_json(run_dir / "config.json") if (run_dir / "config.json").exists() else {}
    if not isinstance(config, dict):
        raise ReportError(f"{run_dir / 'config.json'}: expected a JSON object")
    source = "run" if config else "manifest" if planned else "none"
    if not config and planned:
        config = dict(planned)
    summary = None
    if (run_dir / "summary.json").exists():
        summary = read_json(run_dir / "summary.json")
        if not isinstance(summary, dict):
            raise ReportError(f"{run_dir / 'summary.json'}: expected a JSON object")
    metrics, note = read_metrics(run_dir / "metrics.jsonl", complete=summary is not None)
    notes = [note] if note else []
    if not config:
        notes.append(f"{run_dir}: no config.json and not in manifest.json; its factor levels are unknown")
    return {"sweep": sweep, "run": run_dir.name, "path": str(run_dir), "config": config, "config_source": source,
            "summary": summary, "metrics": metrics, "notes": notes}


def sweep_name(manifest: Dict[str, Any], folder: Path) -> str:
    sweep = manifest.get("sweep") if isinstance(manifest.get("sweep"), dict) else {}
    return str(sweep.get("name") or folder.resolve().name)


def manifest_metric(manifest: Dict[str, Any]) -> Optional[Tuple[str, str]]:
    sweep = manifest.get("sweep") if isinstance(manifest.get("sweep"), dict) else {}
    metric = sweep.get("metric")
    if isinstance(metric, dict) and metric.get("name"):
        return str(metric["name"]), str(metric.get("goal") or "maximize").lower()
    return None


def load_folders(folders: Sequence[Path]) -> Sweep:
    """Read one or more sweep folders into one Sweep (named and scored by the first manifest)."""
    if not folders:
        raise ReportError("no input: give one or more sweep folders, or --wandb ENTITY/PROJECT")
    records: List[Dict[str, Any]] = []
    names, metric, shas, created = [], None, [], []
    for folder in map(Path, folders):
        manifest, runs = read_store(folder)
        records += runs
        names.append(runs[0]["sweep"] if is_run_folder(folder) else sweep_name(manifest, folder))
        metric = metric or manifest_metric(manifest)
        # dl2bench's launcher records each submission (time, git sha); older manifests, one of each
        subs = [s for s in manifest.get("submissions") or [] if isinstance(s, dict)]
        shas += [str(s["git_sha"]) for s in subs if s.get("git_sha")]
        if manifest.get("git_sha"):
            shas.append(str(manifest["git_sha"]))
        if subs and subs[0].get("time"):
            created.append(str(subs[0]["time"]) + (f" ({len(subs)} submissions)" if len(subs) > 1 else ""))
        elif manifest.get("created"):
            created.append(str(manifest["created"]))
    name = " + ".join(dict.fromkeys(names))
    return assemble(name, metric, records, [str(f) for f in folders], shas, created)


# ---------------------------------------------------------------------------------------------
# records -> frames (shared with the W&B adapter)

def assemble(name: str, metric: Optional[Tuple[str, str]], records: Iterable[Dict[str, Any]],
             sources: List[str], git_sha: Sequence[str] = (), created: Sequence[str] = ()) -> Sweep:
    """Run records {sweep, run, path, config, config_source, summary|None, metrics, notes[, reason]}
    -> a Sweep. config_source: "run" (its config.json), "manifest", or "none" (unknown)."""
    rows, curve_rows, notes = [], [], []
    config_keys: Dict[str, None] = {}
    for rec in records:
        config, summary = rec["config"], rec["summary"]
        config_keys.update(dict.fromkeys(k for k in config if k not in ID_COLUMNS))
        row: Dict[str, Any] = {"sweep": rec["sweep"], "run": rec["run"], "path": rec["path"],
                               "config_source": rec.get("config_source", "run"), **config}
        for key, unresolved in RESOLVED_BY_SUMMARY.items():
            if summary and summary.get(key) is not None and row.get(key) in unresolved:
                row[key] = summary[key]
        if summary is None:
            epochs = len(rec["metrics"])
            row.update(status="incomplete",
                       reason=rec.get("reason") or f"no summary.json: still running or killed after {epochs} epoch(s)",
                       epochs_completed=sum(1 for m in rec["metrics"] if "val_acc" in m))
        else:
            # keys in both (run_id, task; device/threads resolved above) keep the config's value
            row.update((k, v) for k, v in summary.items() if k not in ID_COLUMNS and k not in config)
            if row.get("status") not in STATUSES:
                row["reason"] = f"unknown status {row.get('status')!r} in summary.json; " + str(row.get("reason") or "")
                row["status"] = "failed"
        rows.append(row)
        for m in rec["metrics"]:
            if m.get("epoch") is not None:
                curve_rows.append({"sweep": rec["sweep"], "run": rec["run"], **m})
        notes += rec.get("notes", [])
    runs = pd.DataFrame(rows)
    if runs.empty:
        raise ReportError(f"{', '.join(sources)}: no runs")
    dup = runs.duplicated(["sweep", "run"], keep=False)
    if dup.any():  # the same folder name in two inputs with one sweep name: tell them apart
        runs.loc[dup, "sweep"] = runs.loc[dup, "path"].map(lambda p: str(Path(p).parent))
    curves = pd.DataFrame(curve_rows)
    if curves.empty:
        curves = pd.DataFrame(columns=["sweep", "run", "epoch"])
    curves = curves.astype({"epoch": int})
    for c in curves.columns.difference(["sweep", "run"]):
        curves[c] = pd.to_numeric(curves[c], errors="coerce")
    metric_name, goal, note = choose_metric(metric, runs)
    if note:
        notes.append(note)
    if metric_name not in runs.columns:  # no run has finished yet: every figure must still work
        runs[metric_name] = float("nan")
    for col in runs.columns:  # JSON numbers with nulls -> float with NaN, so aggregations just work
        if runs[col].dtype == object and col not in config_keys:  # (strings such as "13.0" stay strings)
            vals = runs[col].dropna()
            if len(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                runs[col] = pd.to_numeric(runs[col], errors="coerce")
    return Sweep(name=name, metric=metric_name, goal=goal, runs=runs, curves=curves,
                 config_keys=[k for k in config_keys], sources=list(sources),
                 git_sha=list(dict.fromkeys(git_sha)), created=list(created), notes=notes)


def choose_metric(metric: Optional[Tuple[str, str]], runs: pd.DataFrame) -> Tuple[str, str, Optional[str]]:
    """The manifest's metric, else test_acc (maximize), else best_val_acc; says why if it fell back."""
    def present(col: str) -> bool:
        return col in runs.columns and pd.to_numeric(runs[col], errors="coerce").notna().any()

    if metric:
        name, goal = metric
        goal = "minimize" if goal.startswith("min") else "maximize"
        candidates = [name, f"best_{name}" if goal == "maximize" else f"final_{name}", f"final_{name}"]
        for c in candidates:
            if present(c):
                note = None if c == name else f"the sweep's metric {name!r} is not in the run summaries; using {c!r}"
                return c, goal, note
        fallback = f"the sweep's metric {name!r} is in no run summary; "
    else:
        fallback = ""
    name, goal = DEFAULT_METRIC
    if present(name):
        return name, goal, (fallback + f"using {name}") if fallback else None
    note = fallback + f"no run has {name}; ranking by {FALLBACK_METRIC} (validation) instead"
    return FALLBACK_METRIC, "maximize", note

