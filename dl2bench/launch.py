"""Launch: run configs -> submitit job arrays (one sbatch per resource group), a manifest of
what was submitted, and the status of every run (from its summary.json, else its job's state).

A run's folder is runs/<sweep>/<run_id>/ and its run_id is a hash of its config, so submitting a
sweep again launches only what is missing or failed, and a requeued job finds its checkpoint.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import submitit

from . import record as R
from .config import RunConfig
from .sweep import Sweep, SweepError, _values
from .track import write_json_atomic

DONE = R.DONE
# SLURM states in which a job will still run (or is running) by itself
SLURM_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
                "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED", "SPECIAL_EXIT"}
CLUSTERS = ("auto", "slurm", "local", "debug")
UNKNOWN_GRACE_S = 120


class LaunchError(RuntimeError):
    """A request the executor cannot satisfy, found before anything is submitted."""


# ---------------------------------------------------------------------------------------------
# what runs on the node

def read_summary(out_dir: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads((Path(out_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


class RunJob(submitit.helpers.Checkpointable):
    """One array task: trains its runs one after the other, skipping those already done. On
    timeout or preemption submitit calls `checkpoint` (inherited: resubmit the same call), the
    job is requeued, and each run resumes from its own per-epoch checkpoint."""

    def __call__(self, items: Sequence[Tuple[Dict[str, Any], str]]) -> List[str]:
        from .train import run

        statuses = []
        for config, out_dir in items:
            done = read_summary(Path(out_dir))
            if done and done.get("status") in DONE:
                statuses.append(done["status"])
                continue
            statuses.append(run(config, out_dir)["status"])
        return statuses


class AgentJob(submitit.helpers.Checkpointable):
    """Online: one array task runs a W&B agent for `count` runs of sweep `sweep_id`; agents of
    one array start `stagger_s` apart (agents started together can get the same parameters)."""

    def __init__(self, sweep_id: str, project: str, entity: str, out_root: str, group: str,
                 count: int, stagger_s: float, parallel: int = 1):
        self.sweep_id, self.project, self.entity = sweep_id, project, entity
        self.out_root, self.group, self.count, self.stagger_s = out_root, group, count, stagger_s
        self.parallel = max(1, parallel)

    def __call__(self, index: int) -> None:
        import functools

        import wandb

        # only tasks that can start together need spreading out: at most `parallel` run at once
        time.sleep(self.stagger_s * (index % self.parallel))
        wandb.agent(self.sweep_id, function=functools.partial(agent_train, self.out_root, self.group),
                    count=self.count, project=self.project or None, entity=self.entity or None)

    def checkpoint(self, *args: Any, **kwargs: Any):
        # tell the sweep this run was preempted, so W&B hands it (same run id) to the next agent
        wb = sys.modules.get("wandb")
        if wb is not None and wb.run is not None:
            try:
                wb.run.mark_preempting()
            except Exception:  # noqa: BLE001 - requeueing matters more than the W&B flag
                pass
        return super().checkpoint(*args, **kwargs)


def agent_train(out_root: str, group: str) -> None:
    """The function a W&B agent calls: parameters from wandb.config, then the one training loop."""
    import wandb

    # the agent's run (the agent sets its sweep parameters); Tracker mirrors into it
    wb_run = wandb.run or wandb.init()
    params = {k: v for k, v in dict(wb_run.config).items() if k in RunConfig.keys()}
    cfg = RunConfig.from_dict({**params, "group": group, "wandb": "online"}).resolve()
    from .train import run

    run(cfg, Path(out_root) / cfg.run_id())


# ---------------------------------------------------------------------------------------------
# planning: resource groups and the executor for each

@dataclass(frozen=True)
class Resources:
    """What one array asks for; runs that ask for the same share an array (one sbatch)."""

    gpus: int
    cpus: int

    def describe(self) -> str:
        return f"{self.gpus} GPU, {self.cpus} CPUs" if self.gpus else f"CPU only, {self.cpus} CPUs"


def resources(cfg: RunConfig, slurm: Dict[str, Any], gpus_offered: bool) -> Resources:
    """device cuda asks for GPUs; auto asks for them where the cluster offers any; cpu never."""
    wants = cfg.device == "cuda" or (cfg.device == "auto" and gpus_offered)
    return Resources(gpus=slurm["gpus_per_task"] if wants else 0, cpus=cfg.threads or slurm["cpus_per_task"])


def gpus_offered(cluster: str, slurm: Dict[str, Any]) -> bool:
    """Whether `device: auto` runs should ask for a GPU: on SLURM when the partition has GPU gres."""
    if cluster != "slurm" or not shutil.which("sinfo") or not controller_answers()[0]:
        return False  # no controller: check_satisfiable says so, without waiting for sinfo to give up
    gres = _sinfo("%G", slurm["partition"])
    return "gpu" in gres


SET_ASIDE = ".summary.json.relaunched"  # a relaunched run's old summary while its job is being queued
PING_TIMEOUT_S = 5.0  # a controller that answers does so in milliseconds; one that is gone may hang


@functools.lru_cache(maxsize=1)  # asked by pick_cluster, plan and check_satisfiable within one command
def controller_answers(timeout: float = PING_TIMEOUT_S) -> Tuple[bool, str]:
    """Whether a SLURM controller answers `scontrol ping` (UP) within `timeout` seconds, and what it said."""
    if not shutil.which("scontrol"):
        return False, "scontrol is not on PATH"
    try:
        got = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"scontrol ping gave no answer within {timeout:g} s"
    text = " ".join((got.stdout + got.stderr).split()) or f"exit status {got.returncode}"
    up = got.returncode == 0 and " UP" in f" {got.stdout}"
    return up, text.split(" ***")[0]


def pick_cluster(cluster: str) -> Tuple[str, str]:
    """The executor to use, and a note for the user when `auto` chose something they may not expect:
    a login node's sbatch is not enough, its controller must answer (quickly)."""
    if cluster not in CLUSTERS:
        raise SweepError(f"--cluster: expected one of {', '.join(CLUSTERS)}, got {cluster!r}")
    if cluster == "auto":
        if not shutil.which("sbatch"):
            return "local", ""
        up, said = controller_answers()
        if up:
            return "slurm", ""
        return "local", (f"--cluster auto: sbatch is on PATH but no SLURM controller answered ({said}); running "
                         "on this machine instead (--cluster slurm insists on SLURM)")
    return cluster, ""


def check_satisfiable(cluster: str, groups: Dict[Resources, List[RunConfig]], slurm: Dict[str, Any]) -> None:
    """Everything the executor cannot do is reported before anything is submitted."""
    gpu_runs = sum(len(r) for res, r in groups.items() if res.gpus)
    if cluster in ("local", "debug") and gpu_runs:
        import importlib.util

        has_gpu = False
        if importlib.util.find_spec("torch") is not None and shutil.which("nvidia-smi"):
            has_gpu = subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
        if not has_gpu:
            raise LaunchError(f"{gpu_runs} run(s) need device=cuda, but --cluster {cluster} runs on this "
                              "machine, which has no CUDA GPU. Run them on a GPU cluster (--cluster slurm), "
                              "or add --set device=cpu to run everything on the CPU")
    if cluster == "slurm":
        if not shutil.which("sbatch"):
            raise LaunchError("--cluster slurm: sbatch is not on PATH (is this a SLURM login node?); "
                              "use --cluster local to run on this machine")
        up, said = controller_answers()
        if not up:
            raise LaunchError(f"--cluster slurm: no SLURM controller answered ({said}); nothing was submitted. "
                              "Start it (or ask your admins), or use --cluster local to run on this machine")
        part = slurm["partition"]
        if part:
            got = subprocess.run(["sinfo", "-h", "-p", part, "-o", "%P"], capture_output=True, text=True,
                                 timeout=PING_TIMEOUT_S)
            if got.returncode == 0 and not got.stdout.strip():
                raise LaunchError(f"slurm.partition: no partition {part!r} on this cluster "
                                  f"(sinfo lists: {_sinfo('%P')})")
        cpus = [int(c) for c in _sinfo("%c", part).split() if c.isdigit()]
        need = max((res.cpus for res in groups), default=0)
        if cpus and need > max(cpus):
            raise LaunchError(f"slurm.cpus_per_task: runs ask for {need} CPUs per task, but the largest node"
                              f"{' in ' + part if part else ''} has {max(cpus)}; pass --cpus-per-task "
                              f"{max(cpus)} (or less)")
        if gpu_runs:
            gres = _sinfo("%G", part)
            if gres and all(g in ("(null)", "") for g in gres.split()):
                raise LaunchError(f"{gpu_runs} run(s) need device=cuda, but the cluster's nodes"
                                  f"{' in ' + part if part else ''} offer no GPUs (sinfo %G: {gres}). "
                                  "Choose a GPU partition (--partition), or --set device=cpu")


def _sinfo(fmt: str, partition: str = "") -> str:
    cmd = ["sinfo", "-h", "-o", fmt] + (["-p", partition] if partition else [])
    try:
        got = subprocess.run(cmd, capture_output=True, text=True, timeout=PING_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # a controller that does not answer: check_satisfiable says so
        return ""
    return " ".join(sorted(set(got.stdout.split()))) if got.returncode == 0 else ""


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


@functools.lru_cache(maxsize=1)
def _detach_local_jobs() -> None:
    """Start submitit's local job controllers in a session of their own. Otherwise they share the
    terminal's process group, and Ctrl-C in `submit.py --wait` (SIGINT to that whole group) kills
    the runs instead of leaving them to finish, as a SLURM job outlives its login shell."""
    import submitit.local.local as L

    start = L.start_controller

    @functools.wraps(start)
    def detached(*args: Any, **kwargs: Any):
        # nor do they hold our stdout/stderr: `submit.py | tee log` (or a test's pipe) would
        # otherwise stay open until the last run ends; the jobs log to their own files anyway
        folder = Path(kwargs.get("folder") or args[0])
        folder.mkdir(parents=True, exist_ok=True)
        popen = subprocess.Popen
        with open(folder / "local-controller.err", "ab") as err:
            subprocess.Popen = functools.partial(popen, start_new_session=True, stdin=subprocess.DEVNULL,  # type: ignore[misc]
                                                 stdout=subprocess.DEVNULL, stderr=err)
            try:
                return start(*args, **kwargs)
            finally:
                subprocess.Popen = popen  # type: ignore[misc]

    L.start_controller = detached


def make_executor(cluster: str, folder: Path, slurm: Dict[str, Any], res: Resources, name: str):
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster, slurm_max_num_timeout=slurm["max_requeues"])
    if cluster == "slurm":
        extra = dict(slurm["sbatch"])
        if slurm["reservation"]:
            extra["reservation"] = slurm["reservation"]
        params: Dict[str, Any] = dict(
            timeout_min=slurm["time_min"], cpus_per_task=res.cpus, mem_gb=slurm["mem_gb"], name=name,
            slurm_array_parallelism=slurm["array_parallelism"], slurm_signal_delay_s=slurm["signal_delay_s"],
            slurm_additional_parameters=extra)
        for key in ("partition", "account", "qos", "constraint"):
            if slurm[key]:
                params[f"slurm_{key}"] = slurm[key]
        if slurm["setup"]:
            params["slurm_setup"] = list(slurm["setup"])
        if res.gpus:
            if slurm["gpu_style"] == "gres":
                params["slurm_gres"] = f"{slurm['gres_name']}:{res.gpus}"
            else:
                params["slurm_gpus_per_task"] = res.gpus
        ex.update_parameters(**params)
    elif cluster == "local":
        _detach_local_jobs()
        ex.update_parameters(timeout_min=slurm["time_min"], gpus_per_node=res.gpus, name=name)
    else:
        ex.update_parameters(timeout_min=slurm["time_min"], name=name)
    return ex


def chunk(items: List[Any], per_task: int) -> List[List[Any]]:
    return [items[i : i + per_task] for i in range(0, len(items), per_task)]


# ---------------------------------------------------------------------------------------------
# the manifest and run status

def manifest_path(root: Path) -> Path:
    return root / "manifest.json"


def load_manifest(root: Path) -> Dict[str, Any]:
    path = manifest_path(root)
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        return {"runs": {}, "submissions": []}
    except ValueError as e:
        raise SweepError(f"{path}: unreadable manifest ({e}); move it away to start afresh") from None
    problem = manifest_problem(m)
    if problem:
        raise SweepError(f"{path}: {problem} (edited by hand?); restore it, or move it away to start afresh "
                         "(runs already done are found again by their folders)")
    return m


def manifest_problem(m: Any) -> Optional[str]:
    """What is wrong with a manifest's shape, as the launcher wrote it; None when nothing is."""
    if not isinstance(m, dict):
        return f"expected a JSON object, found {type(m).__name__}"
    runs = m.get("runs", {})
    if not isinstance(runs, dict) or not all(isinstance(c, dict) or c is None for c in runs.values()):
        return "'runs' must map each run id to its config"
    subs = m.get("submissions", [])
    if not isinstance(subs, list):
        return "'submissions' must be a list"
    for i, sub in enumerate(subs):
        if not isinstance(sub, dict):
            return f"submissions[{i}] must be an object"
        try:
            datetime.fromisoformat(str(sub.get("time")))
        except ValueError:
            return f"submissions[{i}].time must be an ISO date and time, found {sub.get('time')!r}"
        jobs = sub.get("jobs", {})
        if not isinstance(jobs, dict) or not all(isinstance(j, str) for j in jobs.values()):
            return f"submissions[{i}].jobs must map each run id to a job id"
    return None


def job_states(cluster: str, job_ids: Sequence[str]) -> Dict[str, str]:
    """State of each job id: one sacct call for SLURM (no per-job polling), a pid check locally."""
    ids = sorted(set(j for j in job_ids if j))
    if not ids:
        return {}
    if cluster == "slurm":
        masters = sorted({j.split("_")[0] for j in ids})
        got = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(masters)],
                             capture_output=True, text=True)
        states: Dict[str, str] = {}
        for line in got.stdout.splitlines():
            if "|" not in line:
                continue
            jid, state = line.split("|", 1)
            state = state.split()[0] if state else "UNKNOWN"
            for one in _expand_array_ids(jid):
                states[one] = state
        if any(j not in states and j.split("_")[0] not in states for j in ids):
            # accounting lags behind (or is off): squeue knows the live ones
            q = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(masters)],
                               capture_output=True, text=True)
            for line in q.stdout.splitlines():
                jid, _, state = line.partition("|")
                states.setdefault(jid.strip(), state.strip())
        return {j: states.get(j, states.get(j.split("_")[0], "UNKNOWN")) for j in ids}
    if cluster == "local":
        return {j: "RUNNING" if _pid_alive(j) else "ENDED" for j in ids}
    return {j: "ENDED" for j in ids}  # debug ran in-process


def _expand_array_ids(jid: str) -> List[str]:
    """'12_[3-5,7%2]' -> ['12_3', '12_4', '12_5', '12_7'] (pending array tasks are listed so)."""
    if "_[" not in jid:
        return [jid]
    master, spec = jid.split("_[", 1)
    out = []
    for part in spec.rstrip("]").split("%")[0].split(","):
        a, _, b = part.partition("-")
        out += [f"{master}_{i}" for i in range(int(a), int(b or a) + 1)]
    return out


def _pid_alive(pid: str) -> bool:
    try:
        stat = Path(f"/proc/{int(pid.split('_')[0])}/stat").read_text()
        return stat.split(") ", 1)[1][0] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def run_status(root: Path, manifest: Dict[str, Any], mark_lost: bool = True) -> Dict[str, Tuple[str, str]]:
    """run_id -> (status, reason): finished/diverged/early_stopped/failed from summary.json;
    queued/running from the job's state; failed for a job that ended without a summary (which is
    then recorded in the run's summary.json); missing for never submitted."""
    jobs: Dict[str, Tuple[str, str]] = {}
    fresh = set()  # jobs submitted moments ago may not be known to sacct/squeue yet
    now = datetime.now(timezone.utc)
    for sub in manifest.get("submissions", []):
        recent = (now - datetime.fromisoformat(sub["time"])).total_seconds() < UNKNOWN_GRACE_S
        for rid, jid in sub.get("jobs", {}).items():
            jobs[rid] = (sub.get("cluster", "slurm"), jid)
            if recent:
                fresh.add(jid)
    out: Dict[str, Tuple[str, str]] = {}
    pending = []
    for rid in manifest["runs"]:
        s = read_summary(root / rid)
        if s is not None:
            out[rid] = (s.get("status", R.FAILED), s.get("reason") or s.get("error") or "")
        elif rid in jobs:
            pending.append(rid)
        else:
            out[rid] = (R.MISSING, "never submitted")
    by_cluster: Dict[str, List[str]] = {}
    for rid in pending:
        by_cluster.setdefault(jobs[rid][0], []).append(jobs[rid][1])
    states: Dict[Tuple[str, str], str] = {}
    for cluster, ids in by_cluster.items():
        for jid, st in job_states(cluster, ids).items():
            states[(cluster, jid)] = st
    for rid in pending:
        cluster, jid = jobs[rid]
        st = states.get((cluster, jid), "UNKNOWN")
        if st in SLURM_ACTIVE or (cluster == "local" and st == "RUNNING") or (st == "UNKNOWN" and jid in fresh):
            out[rid] = (R.RUNNING if st == "RUNNING" else R.QUEUED, f"job {jid} {st}")
        else:
            late = read_summary(root / rid)
            if late is not None:  # it finished between the two looks
                out[rid] = (late.get("status", R.FAILED), late.get("reason") or "")
                continue
            reason = f"job {jid} ended ({st}) without writing a summary"
            out[rid] = (R.FAILED, reason)
            if mark_lost and st != "UNKNOWN":
                (root / rid).mkdir(parents=True, exist_ok=True)
                write_json_atomic(root / rid / "summary.json", {"run_id": rid, "status": R.FAILED,
                                                                "reason": reason, "error": reason,
                                                                "job_id": jid, "job_state": st})
    return out


# ---------------------------------------------------------------------------------------------
# submission

@dataclass
class Plan:
    """What a submit would do: the runs to launch grouped by resources, and those skipped."""

    cluster: str
    groups: Dict[Resources, List[RunConfig]]
    skipped: Dict[str, Tuple[str, str]]  # run_id -> (status, reason)
    tasks_per_group: Dict[Resources, int]
    per_task: int


def plan(sweep: Sweep, root: Path, cluster: str, force: bool = False, parallel: int = 1) -> Plan:
    """Decide what to launch: every run not done, not queued and not running (all with --force)."""
    manifest = load_manifest(root) if root.exists() else {"runs": {}, "submissions": []}
    manifest = {**manifest, "runs": {**manifest["runs"], **{c.run_id(): None for c in sweep.runs}}}
    status = run_status(root, manifest, mark_lost=False) if root.exists() else {}
    groups: Dict[Resources, List[RunConfig]] = {}
    skipped = {}
    offered = gpus_offered(cluster, sweep.slurm)
    for cfg in sweep.runs:
        rid = cfg.run_id()
        st = status.get(rid, ("missing", ""))
        if not force and st[0] in DONE + (R.QUEUED, R.RUNNING):
            skipped[rid] = st
            continue
        groups.setdefault(resources(cfg, sweep.slurm, offered), []).append(cfg)
    if cluster == "slurm":
        per_task = sweep.slurm["runs_per_task"]
    elif cluster == "local":  # `parallel` processes share the machine; each runs its share in turn
        total = sum(len(v) for v in groups.values())
        per_task = max(1, math.ceil(total / max(1, parallel)))
    else:
        per_task = 1
    tasks = {res: math.ceil(len(rs) / per_task) for res, rs in groups.items()}
    return Plan(cluster, groups, skipped, tasks, per_task)


def submit(sweep: Sweep, root: Path, p: Plan, command: str) -> Dict[str, Any]:
    """Submit one job array per resource group and record it in the manifest (also on failure)."""
    from .env import git_sha

    logs = root / "logs"
    existed = root.exists()
    before = set(logs.iterdir()) if logs.is_dir() else set()
    root.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(root)
    manifest["sweep"] = {"name": sweep.name, "file": str(sweep.path), "method": sweep.method,
                         "metric": sweep.metric, "description": sweep.wandb_config.get("description", "")}
    manifest["wandb_config"] = sweep.wandb_config
    manifest["slurm"] = sweep.slurm
    for cfg in sweep.runs:
        manifest["runs"].setdefault(cfg.run_id(), cfg.to_dict())
    sub: Dict[str, Any] = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "cluster": p.cluster, "git_sha": git_sha(), "command": command,
                           "host": os.uname().nodename, "jobs": {}, "arrays": []}
    manifest.setdefault("submissions", []).append(sub)
    error = None
    set_aside: List[Path] = []  # old summaries of relaunched runs: back in place if nothing is queued
    try:
        for res, cfgs in p.groups.items():
            for cfg in cfgs:  # a relaunch starts from a clean record (the checkpoint stays)
                stale = root / cfg.run_id() / "summary.json"
                if stale.exists():
                    set_aside.append(stale)
                    stale.rename(stale.with_name(SET_ASIDE))
            items = [(cfg.to_dict(), str(root / cfg.run_id())) for cfg in cfgs]
            ex = make_executor(p.cluster, logs, sweep.slurm, res, f"dl2bench-{sweep.name}")
            with _stderr_held() as held:
                jobs = ex.map_array(RunJob(), chunk(items, p.per_task))
            sys.stderr.write(held.text())  # sbatch's warnings; a refusal is said once, below
            sub["arrays"].append({"resources": res.describe(), "runs": len(cfgs), "tasks": len(jobs),
                                  "job_id": jobs[0].job_id.split("_")[0] if jobs else None})
            for job, part in zip(jobs, chunk(cfgs, p.per_task)):
                for cfg in part:
                    sub["jobs"][cfg.run_id()] = job.job_id
            if p.cluster == "debug":  # the debug executor runs a job when its result is asked for
                for job in jobs:
                    job.result()
    except Exception as e:  # noqa: BLE001 - what was queued stays recorded, then the error surfaces
        error = e
    if error is not None and not sub["jobs"]:
        # nothing was queued: leave nothing that looks like a submission (no manifest entry, no
        # job pickles); --status then says "nothing was submitted" instead of "missing"
        for f in (set(logs.iterdir()) if logs.is_dir() else set()) - before:
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        for f in set_aside:
            f.with_name(SET_ASIDE).rename(f)
        if not existed:
            shutil.rmtree(root, ignore_errors=True)
        raise LaunchError(f"nothing was submitted: {type(error).__name__}: {error}") from error
    for f in set_aside:
        f.with_name(SET_ASIDE).unlink(missing_ok=True)
    write_json_atomic(manifest_path(root), manifest)
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
        from .sweep import grid_size

        total = grid_size(wb["parameters"])
    if not total:
        raise SweepError(f"{sweep.path}: run_cap: random and bayes sweeps need run_cap to size the agent array")
    device_values = _values(wb["parameters"].get("device"))
    res = Resources(gpus=sweep.slurm["gpus_per_task"] if "cuda" in device_values else 0,
                    cpus=sweep.slurm["cpus_per_task"])
    check_satisfiable(cluster, {res: [None]}, sweep.slurm)  # before anything reaches W&B
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
    write_json_atomic(manifest_path(root), manifest)
    return sub
