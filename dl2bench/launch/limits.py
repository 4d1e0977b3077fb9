"""The cluster's limits: how many array tasks one sbatch may have, how many jobs may still be
queued, how a sweep's runs are laid out within them; and the lock under which one sweep is planned
and submitted. Imports no sibling (LaunchError lives here, the lowest module that raises it)."""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, TypeVar

# a resource group (executors.Resources): layout only uses it as a key, so this module needs no import of it
G = TypeVar("G")


class LaunchError(RuntimeError):
    """A request the executor cannot satisfy, found before anything is submitted."""


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


def layout(groups: Dict[G, int], per_task: int, limits: ClusterLimits) -> Tuple[int, Dict[G, List[int]], List[str]]:
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
    arrays: Dict[G, List[int]] = {}
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
