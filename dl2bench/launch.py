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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import submitit

from . import record as R
from .config import RunConfig
from .sweep import Sweep, SweepError, parameter_values
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
# the cluster's limits: how many array tasks one sbatch may have, how many jobs may still be queued

LIMITS_ENV = "DL2BENCH_SLURM_LIMITS"  # e.g. "MaxArraySize=101,MaxSubmitJobs=50": lower what the cluster says
LIMIT_KEYS = ("MaxArraySize", "MaxJobCount", "MaxSubmitJobs", "MaxJobs")


@dataclass
class ClusterLimits:
    """What SLURM lets one user submit now. Each array task counts as one job against MaxJobCount
    (every job record the controller holds, finished ones until MinJobAge) and MaxSubmitJobs (the
    user's pending and running jobs); MaxJobs only limits how many run at once, so it is reported,
    not packed for."""

    max_array_size: int  # array indices must be below it
    max_job_count: int
    jobs_held: int  # job records the controller holds, all users
    max_submit: Optional[int]  # per user (association), None where accounting does not say
    user_active: int  # this user's pending and running jobs
    max_jobs: Optional[int] = None
    source: str = "scontrol show config"

    def room(self) -> Tuple[int, str]:
        """How many more jobs (array tasks) may be submitted, and the limit that says so."""
        room = self.max_job_count - self.jobs_held
        why = f"MaxJobCount {self.max_job_count:,} with {self.jobs_held:,} job(s) held by the controller"
        if self.max_submit is not None and self.max_submit - self.user_active < room:
            room = self.max_submit - self.user_active
            why = f"MaxSubmitJobs {self.max_submit:,} per user with {self.user_active:,} of yours queued or running"
        return max(0, room), why


def _int_or_none(text: str) -> Optional[int]:
    text = text.strip()
    return int(text) if text.isdigit() else None


def _tighter(a: Optional[int], b: Optional[int]) -> Optional[int]:
    return b if a is None else a if b is None else min(a, b)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _slurm_cmd(cmd: List[str]) -> str:
    try:
        got = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return got.stdout if got.returncode == 0 else ""


def cluster_limits(account: str = "") -> ClusterLimits:
    """The limits read from the cluster once (scontrol, sacctmgr where accounting answers, squeue),
    each lowered by what DL2BENCH_SLURM_LIMITS says (tests and cautious users)."""
    config: Dict[str, str] = {}
    for line in _slurm_cmd(["scontrol", "show", "config"]).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    # SLURM's documented defaults, where a (very old) scontrol does not print them
    max_array = _int_or_none(config.get("MaxArraySize", "")) or 1001
    max_count = _int_or_none(config.get("MaxJobCount", "")) or 10000
    user = _user()
    max_submit = max_jobs = None
    sources = ["scontrol show config"]
    if shutil.which("sacctmgr"):
        out = _slurm_cmd(["sacctmgr", "-nP", "show", "assoc", f"user={user}", "format=Account,MaxSubmit,MaxJobs"])
        for line in out.splitlines():
            acct, _, rest = line.partition("|")
            if account and acct != account:
                continue
            sub, _, jobs = rest.partition("|")
            max_submit = _tighter(max_submit, _int_or_none(sub))  # several associations: the tightest
            max_jobs = _tighter(max_jobs, _int_or_none(jobs))
        if out:
            sources.append("sacctmgr")
    held = active = 0
    # one call: -r lists each array task (each counts), -t all also the finished records still held
    for line in _slurm_cmd(["squeue", "-h", "-r", "-t", "all", "-o", "%u|%T"]).splitlines():
        who, _, state = line.partition("|")
        held += 1
        if who == user and state in ("PENDING", "RUNNING", "SUSPENDED", "CONFIGURING", "COMPLETING", "REQUEUED"):
            active += 1
    limits = ClusterLimits(max_array, max_count, held, max_submit, active, max_jobs, " + ".join(sources + ["squeue"]))
    said = os.environ.get(LIMITS_ENV, "").strip()
    if said:
        fields = {"MaxArraySize": "max_array_size", "MaxJobCount": "max_job_count",
                  "MaxSubmitJobs": "max_submit", "MaxJobs": "max_jobs"}
        for item in said.split(","):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in fields or not value.strip().isdigit():
                raise LaunchError(f"{LIMITS_ENV}={said!r}: expected KEY=N[,KEY=N] with KEY one of "
                                  f"{', '.join(LIMIT_KEYS)} and N a whole number, got {item.strip()!r}")
            setattr(limits, fields[key], _tighter(getattr(limits, fields[key]), int(value)))
        limits.source += f" + {LIMITS_ENV}"
    return limits


def layout(groups: Dict[Resources, int], per_task: int, limits: ClusterLimits) -> Tuple[int, Dict[Resources, List[int]], List[str]]:
    """How the runs of each resource group are laid out: the runs per task (at least `per_task`,
    more where the tasks would not fit in what the cluster still takes), the task count of each
    array of each group (array indices below MaxArraySize) and one line per thing the user should know."""
    notes: List[str] = []
    room, why = limits.room()
    total = sum(groups.values())
    if not total:
        return per_task, {}, notes
    if room < len(groups):
        raise LaunchError(f"the cluster takes {room} more job(s) ({why}; read from {limits.source}), and "
                          f"{total:,} run(s) in {len(groups)} resource group(s) need at least {len(groups)}; "
                          "nothing was submitted. Wait for queued jobs to end (squeue --me), or ask your admins")
    tasks = lambda p: sum(math.ceil(n / p) for n in groups.values())  # noqa: E731
    packed = max(per_task, math.ceil(total / room))
    while tasks(packed) > room:
        packed += 1
    if packed > per_task:
        notes.append(f"packed {packed} runs per task: the cluster takes at most {room:,} more jobs ({why})")
    arrays: Dict[Resources, List[int]] = {}
    cap = max(1, limits.max_array_size)
    for res, n in groups.items():
        t = math.ceil(n / packed)
        k = math.ceil(t / cap)
        arrays[res] = [t // k + (i < t % k) for i in range(k)]  # as even as can be: 5,000 -> 5 x 1,000
    n_arrays = sum(len(a) for a in arrays.values())
    if n_arrays > len(groups):
        biggest = max(max(a) for a in arrays.values())
        notes.append(f"{total:,} runs in {n_arrays} arrays of ≤{biggest:,} tasks (the cluster's MaxArraySize "
                     f"is {limits.max_array_size:,})")
    return packed, arrays, notes


LOCK_NAME = ".submit.lock"


@contextlib.contextmanager
def sweep_lock(root: Path, wait_s: float = 600.0, say=None):
    """Held while a submit plans, submits and writes the manifest, so that two submits of one sweep
    never queue the same run twice: the second waits, then plans against what the first queued."""
    import fcntl

    made = [d for d in (root, *root.parents) if not d.exists()]  # removed again if nothing is submitted
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told and say is not None:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                say(f"another submit of this sweep is under way ({holder or 'its pid unknown'}); waiting for it "
                    f"to finish (up to {wait_s:g} s)")
                told = True
            os.close(fd)
            if time.monotonic() > deadline:
                raise LaunchError(f"{path}: another submit of this sweep held the lock for over {wait_s:g} s; "
                                  "nothing was submitted. If no submit.py is running, remove the file") from None
            time.sleep(0.1)
            continue
        # the holder before us may have removed the folder (its submission failed): lock the file that is there
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
        root.mkdir(parents=True, exist_ok=True)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename} since {time.strftime('%H:%M:%S')}\n".encode(), 0)
        yield path
    finally:
        try:
            # nothing was submitted (the folder holds only the lock, or is gone): leave no trace
            if root.exists() and {p.name for p in root.iterdir()} == {LOCK_NAME} and root in made:
                path.unlink()
            for d in made:
                if d.exists():
                    d.rmdir()
        except OSError:  # not empty: something was submitted there
            pass
        os.ftruncate(fd, 0)  # the holder's line goes with the hold: a sweep's files change only by what it submits
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# the manifest and run status

_RUN_IDS: Dict[int, Tuple[Any, str]] = {}


def rid_of(cfg: RunConfig) -> str:
    """cfg.run_id(), worked out once per config object: the config module caches 4,096 ids, and a
    50,000-run sweep asks for each id several times (then each asking hashes the whole config again)."""
    got = _RUN_IDS.get(id(cfg))
    if got is None or got[0] is not cfg:  # the object is kept with its id, so an id is never reused
        got = _RUN_IDS[id(cfg)] = (cfg, cfg.run_id())
    return got[1]


INDENTED_UP_TO = 2000  # runs; a bigger manifest is written compact


def write_manifest(root: Path, manifest: Dict[str, Any]) -> None:
    """The manifest, atomically. Indented JSON (readable, editable) up to INDENTED_UP_TO runs; beyond
    it compact: an indent makes json use its pure-Python encoder, 30 s and 140 MB for 50,000 runs."""
    if len(manifest.get("runs") or ()) <= INDENTED_UP_TO:
        write_json_atomic(manifest_path(root), manifest)
        return
    from .track import clean

    try:
        text = json.dumps(manifest, sort_keys=True, allow_nan=False)
    except ValueError:  # a NaN somewhere: JSON has none, null as the results store writes it
        text = json.dumps(clean(manifest), sort_keys=True)
    path = manifest_path(root)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


# sacct states of an attempt after which SLURM may queue the same job again (JobRequeue=1, --requeue)
MAYBE_REQUEUED = {"NODE_FAIL", "PREEMPTED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "BOOT_FAIL", "TIMEOUT"}


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
        if any((j not in states and j.split("_")[0] not in states) or states.get(j) in MAYBE_REQUEUED for j in ids):
            # accounting lags behind (or is off), or shows the attempt a node failure ended while SLURM
            # has already queued the job again: squeue knows the live ones, and its word wins
            q = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(masters)],
                               capture_output=True, text=True)
            for line in q.stdout.splitlines():
                jid, _, state = line.partition("|")
                if state.strip():
                    states[jid.strip()] = state.strip()
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


# SLURM's pending reasons that need someone to act, in words (the reason itself follows in brackets)
NODE_REASONS = ("ReqNodeNotAvail", "NodeDown", "Nodes required for job are DOWN", "DRAINED")


def pending_reasons(job_ids: Sequence[str]) -> Dict[str, str]:
    """Why each pending SLURM job waits, where it is not simply its turn (Priority, Resources,
    BeginTime...): one squeue call. A drained or down node is said in words: the job starts only
    when an admin resumes the node, however long the user waits."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    masters = sorted({j.split("_")[0] for j in ids})
    try:
        q = subprocess.run(["squeue", "-h", "-r", "-t", "PENDING", "-o", "%i|%r", "-j", ",".join(masters)],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for line in q.stdout.splitlines():
        jid, _, reason = line.partition("|")
        reason = reason.strip()
        if any(r in reason for r in NODE_REASONS):
            out[jid.strip()] = (f"waiting for a node that is drained or down ({reason}); it starts when the node "
                                "is resumed (sinfo -R says why it is out)")
    return out


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
    waiting = pending_reasons([jid for (cluster, jid), st in states.items() if cluster == "slurm" and st == "PENDING"])
    for rid in pending:
        cluster, jid = jobs[rid]
        st = states.get((cluster, jid), "UNKNOWN")
        if st in SLURM_ACTIVE or (cluster == "local" and st == "RUNNING") or (st == "UNKNOWN" and jid in fresh):
            why = f": {waiting[jid]}" if jid in waiting else ""
            out[rid] = (R.RUNNING if st == "RUNNING" else R.QUEUED, f"job {jid} {st}{why}")
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
    from .env import git_sha

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
                stale = root / rid_of(cfg) / "summary.json"
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
        from .sweep import grid_size

        total = grid_size(wb["parameters"])
    if not total:
        raise SweepError(f"{sweep.path}: run_cap: random and bayes sweeps need run_cap to size the agent array")
    device_values = parameter_values(wb["parameters"].get("device"))
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
    write_manifest(root, manifest)
    return sub
