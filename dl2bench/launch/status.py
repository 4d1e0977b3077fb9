"""The manifest (what was submitted, for which runs) and the status of every run: from its
summary.json, else from its job's state (sacct/squeue on SLURM, the controller's pid locally).
Imports only jobs (read_summary)."""
from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import record as R
from ..config import RunConfig
from ..sweep import SweepError
from .. import runs
from .jobs import read_summary

# SLURM states in which a job will still run (or is running) by itself
SLURM_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
                "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED", "SPECIAL_EXIT"}
UNKNOWN_GRACE_S = 120


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
        runs.write_json(manifest_path(root), manifest)
        return
    try:
        text = json.dumps(manifest, sort_keys=True, allow_nan=False)
    except ValueError:  # a NaN somewhere: JSON has none, null as the results store writes it
        text = json.dumps(runs.clean(manifest), sort_keys=True)
    with runs.atomic(manifest_path(root), "w") as f:
        f.write(text + "\n")


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
                runs.write_json(root / rid / runs.SUMMARY, {"run_id": rid, "status": R.FAILED,
                                                                "reason": reason, "error": reason,
                                                                "job_id": jid, "job_state": st})
    return out

