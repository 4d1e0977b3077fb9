"""Submission: the plan (what to launch, grouped by resources, laid out within the cluster's
limits), one job array per group with all-or-nothing on failure, the manifest entry, and the
online variant (a W&B sweep with an array of agents). The top of the package with progress."""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Tuple

from .. import record as R
from .. import runs
from ..config import RunConfig
from ..schema import BOOKKEEPING
from ..sweep import Sweep, SweepError, parameter_values
from .executors import Resources, check_satisfiable, chunk, controller_answers, gpus_offered, make_executor, resources
from .jobs import DONE, AgentJob, RunJob
from .limits import LOCK_NAME, LaunchError, cluster_limits, layout
from ..wandb_view import key as wandb_key
from ..wandb_view import SWEPT, swept_keys
from .status import load_manifest, rid_of, run_status, write_manifest

SET_ASIDE = f".{runs.SUMMARY}.relaunched"  # a relaunched run's old summary while its job is being queued


class _Held:
    value = ""

    def text(self) -> str:
        return self.value


@contextlib.contextmanager
def _stderr_held():
    """What child processes (sbatch) write to stderr, held back: on success it is passed on, on failure
    the error that names it is the one message."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    held = _Held()
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            yield held
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            held.value = f.read().decode(errors="replace")


@dataclass
class Plan:
    """What a submit would do: the runs to launch grouped by resources, and those skipped."""

    cluster: str
    groups: Dict[Resources, List[RunConfig]]
    skipped: Dict[str, Tuple[str, str]]  # run_id -> (status, reason)
    tasks_per_group: Dict[Resources, int]
    per_task: int
    arrays: Dict[Resources, List[int]] = field(default_factory=dict)  # tasks of each array, per group
    notes: List[str] = field(default_factory=list)  # splits and packing, one line each


def plan(sweep: Sweep, root: Path, cluster: str, force: bool = False, parallel: int = 1) -> Plan:
    """Decide what to launch: every run not done, not queued and not running (all with --force)."""
    manifest = load_manifest(root) if root.exists() else {"runs": {}, "submissions": []}
    manifest = {**manifest, "runs": {**manifest["runs"], **{rid_of(c): None for c in sweep.runs}}}
    status = run_status(root, manifest, mark_lost=False) if root.exists() else {}
    groups: Dict[Resources, List[RunConfig]] = {}
    skipped = {}
    offered = gpus_offered(cluster, sweep.slurm)
    for cfg in sweep.runs:
        rid = rid_of(cfg)
        st = status.get(rid, ("missing", ""))
        if not force and st[0] in DONE + (R.QUEUED, R.RUNNING):
            skipped[rid] = st
            continue
        groups.setdefault(resources(cfg, sweep.slurm, offered), []).append(cfg)
    if cluster == "slurm" and groups and controller_answers()[0]:  # no controller: check_satisfiable says so
        per_task, arrays, notes = layout({res: len(rs) for res, rs in groups.items()}, sweep.slurm["runs_per_task"],
                                         cluster_limits(sweep.slurm["account"]))
        return Plan(cluster, groups, skipped, {res: sum(a) for res, a in arrays.items()}, per_task, arrays, notes)
    if cluster == "slurm":
        per_task = sweep.slurm["runs_per_task"]
    elif cluster == "local":  # `parallel` processes share the machine; each runs its share in turn
        total = sum(len(v) for v in groups.values())
        per_task = max(1, math.ceil(total / max(1, parallel)))
    else:
        per_task = 1
    tasks = {res: math.ceil(len(rs) / per_task) for res, rs in groups.items()}
    return Plan(cluster, groups, skipped, tasks, per_task, {res: [t] for res, t in tasks.items()})


def submit(sweep: Sweep, root: Path, p: Plan, command: str) -> Dict[str, Any]:
    """Submit one job array per resource group and record it in the manifest (also on failure)."""
    from ..env import git_sha

    logs = root / "logs"
    existed = root.exists() and any(p.name != LOCK_NAME for p in root.iterdir())
    before = set(logs.iterdir()) if logs.is_dir() else set()
    root.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(root)
    manifest["sweep"] = {"name": sweep.name, "file": str(sweep.path), "method": sweep.method,
                         "metric": sweep.metric, "description": sweep.wandb_config.get("description", "")}
    manifest["wandb_config"] = sweep.wandb_config
    manifest["slurm"] = sweep.slurm
    as_dict = {}
    for cfg in sweep.runs:
        as_dict[rid_of(cfg)] = cfg.to_dict()  # this submit's settings (bookkeeping keys may differ from the last)
        manifest["runs"].setdefault(rid_of(cfg), as_dict[rid_of(cfg)])
    # before any job starts: a run names itself in W&B by the values its sweep varies
    runs.write_json(root / SWEPT, {"keys": swept_keys(list(as_dict.values()), ignore=BOOKKEEPING)})
    sub: Dict[str, Any] = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "cluster": p.cluster, "git_sha": git_sha(), "command": command,
                           "host": os.uname().nodename, "jobs": {}, "arrays": []}
    manifest.setdefault("submissions", []).append(sub)
    error = None
    undone = ""
    set_aside: List[Path] = []  # old summaries of relaunched runs: back in place if nothing is queued
    n_arrays = sum(len(p.arrays.get(res) or [1]) for res in p.groups)
    slurm = dict(sweep.slurm)
    # array_parallelism caps the sweep's tasks running at once: split into arrays, each gets its share
    slurm["array_parallelism"] = max(1, slurm["array_parallelism"] // n_arrays)
    try:
        for res, cfgs in p.groups.items():
            for cfg in cfgs:  # a relaunch starts from a clean record (the checkpoint stays)
                stale = root / rid_of(cfg) / runs.SUMMARY
                if stale.exists():
                    set_aside.append(stale)
                    stale.rename(stale.with_name(SET_ASIDE))
            parts = chunk(cfgs, p.per_task)
            start = 0
            for n_tasks in p.arrays.get(res) or [len(parts)]:
                these = parts[start : start + n_tasks]
                start += n_tasks
                items = [[(as_dict[rid_of(cfg)], f"{root}/{rid_of(cfg)}") for cfg in part] for part in these]
                ex = make_executor(p.cluster, logs, slurm, res, f"dl2bench-{sweep.name}")
                with _stderr_held() as held:
                    jobs = ex.map_array(RunJob(), items)
                sys.stderr.write(held.text())  # sbatch's warnings; a refusal is said once, below
                sub["arrays"].append({"resources": res.describe(), "runs": sum(map(len, these)), "tasks": len(jobs),
                                      "runs_per_task": p.per_task,
                                      "job_id": jobs[0].job_id.split("_")[0] if jobs else None})
                for job, part in zip(jobs, these):
                    for cfg in part:
                        sub["jobs"][rid_of(cfg)] = job.job_id
                if p.cluster == "debug":  # the debug executor runs a job when its result is asked for
                    for job in jobs:
                        job.result()
    except Exception as e:  # noqa: BLE001 - handled below: all arrays or none
        error = e
    if error is not None and sub["jobs"] and p.cluster == "slurm":
        # a later array was refused: cancel the earlier ones, so that a submit queues all of its runs or none
        masters = [a["job_id"] for a in sub["arrays"] if a["job_id"]]
        got = subprocess.run(["scancel", *masters], capture_output=True, text=True)
        if got.returncode == 0:
            undone = f" (the {len(masters)} array(s) queued before it were cancelled: {', '.join(masters)})"
            sub["jobs"].clear()
    if error is not None and not sub["jobs"]:
        # nothing was queued: leave nothing that looks like a submission (no manifest entry, no
        # job pickles); --status then says "nothing was submitted" instead of "missing"
        for f in (set(logs.iterdir()) if logs.is_dir() else set()) - before:
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        for f in set_aside:
            f.with_name(SET_ASIDE).rename(f)
        if not existed:
            shutil.rmtree(root, ignore_errors=True)
        raise LaunchError(f"nothing was submitted: {type(error).__name__}: {error}{undone}") from error
    for f in set_aside:
        f.with_name(SET_ASIDE).unlink(missing_ok=True)
    write_manifest(root, manifest)
    if error is not None:
        raise LaunchError(f"submission stopped after {len(sub['jobs'])} run(s) were queued: "
                          f"{type(error).__name__}: {error}") from error
    return sub


def submit_online(sweep: Sweep, root: Path, cluster: str, command: str) -> Dict[str, Any]:
    """Create a W&B sweep on the server, then one array of agents sharing its runs."""
    import wandb

    wb = sweep.wandb_config
    total = int(wb.get("run_cap") or 0)
    if wb["method"] == "grid" and not total:
        from ..sweep import grid_size

        total = grid_size(wb["parameters"])
    if not total:
        raise SweepError(f"{sweep.path}: run_cap: random and bayes sweeps need run_cap to size the agent array")
    device_values = parameter_values(wb["parameters"].get("device"))
    res = Resources(gpus=sweep.slurm["gpus_per_task"] if "cuda" in device_values else 0,
                    cpus=sweep.slurm["cpus_per_task"])
    check_satisfiable(cluster, {res: [None]}, sweep.slurm)  # before anything reaches W&B
    if isinstance(wb.get("metric"), dict) and wb["metric"].get("name"):  # W&B's summary names are sectioned
        wb = {**wb, "metric": {**wb["metric"], "name": wandb_key(wb["metric"]["name"])}}
    sweep_id = wandb.sweep(wb, project=wb.get("project") or "dl2bench", entity=wb.get("entity"))
    per = sweep.slurm["runs_per_task"]
    n_agents = math.ceil(total / per)
    root.mkdir(parents=True, exist_ok=True)
    ex = make_executor(cluster, root / "logs", sweep.slurm, res, f"dl2bench-{sweep.name}")
    job = AgentJob(sweep_id, wb.get("project") or "dl2bench", wb.get("entity") or "", str(root),
                   sweep.name, per, sweep.slurm["agent_stagger_s"],
                   min(n_agents, sweep.slurm["array_parallelism"]) if cluster == "slurm" else 1)
    jobs = ex.map_array(job, list(range(n_agents)))
    manifest = load_manifest(root)
    sub = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cluster": cluster,
           "wandb_sweep_id": sweep_id, "agents": n_agents, "runs_per_agent": per, "command": command,
           "job_id": jobs[0].job_id.split("_")[0] if jobs else None, "jobs": {}}
    manifest.setdefault("submissions", []).append(sub)
    manifest["sweep"] = {"name": sweep.name, "file": str(sweep.path), "method": sweep.method,
                         "metric": sweep.metric, "wandb_sweep_id": sweep_id}
    write_manifest(root, manifest)
    return sub
