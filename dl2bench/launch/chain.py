"""A suite on SLURM as one submission: the sweeps that need nothing are queued at once, and each
dependent sweep gets a small expander job that SLURM holds (`--dependency=afterany:...`, squeue
reason Dependency) until every job of the sweeps it reads has ended. The expander then checks
that those runs all ended well, expands the sweep from their results and queues it, and points the
expanders still waiting on it at the arrays it just queued (`scontrol update ... Dependency=`).

afterany and a check, not afterok: an array task that trains several runs exits 0 when one of them
fails, so SLURM's own verdict would let a dependent read a failed run. A dependency that did not end
well leaves its dependents unexpanded, each with the reason in the suite's state, which `--status`
prints. The state lives in OUT/.suites/<suite>/state.json, written under the suite's lock (the
top-level submit and the expanders all hold it while they queue and retarget).

The expander runs `jobs/submit.py SUITE --expand NAME` with the submit's own flags: a compute node
must be allowed to call sbatch, as SLURM allows by default.
"""
from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .. import record as R
from .executors import Resources, make_executor
from .limits import LaunchError
from .status import load_manifest, manifest_path, run_status

STATE = "state.json"
EXPANDER_TIME_MIN = 30  # expanding and queueing a 50,000-run sweep takes about a minute
EXPANDER_MEM_GB = 4


def suite_dir(out: str | Path, suite: str) -> Path:
    return Path(out) / ".suites" / suite


def load_state(folder: Path) -> Dict[str, Any]:
    path = folder / STATE
    if not path.is_file():
        return {"members": {}}
    try:
        got = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LaunchError(f"{path}: unreadable ({e}); remove it if no expander job of this suite is queued") from None
    if not isinstance(got, dict) or not isinstance(got.get("members"), dict):
        raise LaunchError(f"{path}: expected a JSON object with members; remove it if no expander job of this "
                          "suite is queued")
    return got


def write_state(folder: Path, state: Dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{STATE}.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(folder / STATE)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def live_jobs() -> Dict[str, str]:
    """This user's jobs SLURM still holds: job (or array) id -> reason it waits ('None' when running)."""
    got = subprocess.run(["squeue", "--me", "-h", "-o", "%F|%r"], capture_output=True, text=True)
    if got.returncode:
        raise LaunchError(f"squeue: {got.stderr.strip() or f'exit status {got.returncode}'}")
    out: Dict[str, str] = {}
    for line in got.stdout.splitlines():
        jid, _, reason = line.partition("|")
        if jid.strip():
            out.setdefault(jid.strip(), reason.strip())
    return out


def sweep_arrays(out: Path, name: str) -> List[str]:
    """Every array a sweep's manifest says was queued for it."""
    root = out / name
    if not manifest_path(root).exists():
        return []
    subs = load_manifest(root).get("submissions") or []
    return [str(a["job_id"]) for s in subs for a in (s.get("arrays") or []) if a.get("job_id")]


def waits_on(out: Path, needs: Sequence[str], state: Dict[str, Any], live: Dict[str, str]) -> List[str]:
    """The jobs a dependent sweep must wait for: the live arrays and expanders of what it needs."""
    ids = set()
    for dep in needs:
        exp = (state["members"].get(dep) or {}).get("expander")
        if exp and exp in live:
            ids.add(exp)
        ids.update(j for j in sweep_arrays(out, dep) if j in live)
    return sorted(ids, key=lambda j: int(j) if j.isdigit() else 0)


def dependency_problem(out: Path, dep: str, state: Dict[str, Any]) -> Optional[str]:
    """Why sweep `dep` cannot be read by a dependent yet; None when every run of it ended well
    (finished, early-stopped or diverged: a diverged run is a result, a failed one is not)."""
    said = (state["members"].get(dep) or {}).get("outcome", "")
    if said.startswith("not submitted"):
        return f"{dep}, which was {said}"
    root = out / dep
    if not manifest_path(root).exists():
        return f"{dep}, which was never submitted"
    st = run_status(root, load_manifest(root))
    counts: Dict[str, int] = {}
    for s, _ in st.values():
        counts[s] = counts.get(s, 0) + 1
    bad = [f"{counts[s]} {s}" for s in (R.FAILED, R.MISSING, R.QUEUED, R.RUNNING) if counts.get(s)]
    return f"{dep}, which has {', '.join(bad)} run(s) of {len(st)}" if bad else None


def queue_expander(out: Path, suite: str, member: str, after: Sequence[str], argv: Sequence[str], cwd: str,
                   slurm: Dict[str, Any]) -> str:
    """An expander job for `member`, held until every job in `after` has ended."""
    from .jobs import CommandJob

    folder = suite_dir(out, suite) / "logs"
    slurm = {**slurm, "time_min": EXPANDER_TIME_MIN, "mem_gb": min(float(slurm["mem_gb"]), EXPANDER_MEM_GB),
             "sbatch": {**slurm["sbatch"], "dependency": "afterany:" + ":".join(after)}}
    ex = make_executor("slurm", folder, slurm, Resources(gpus=0, cpus=1), f"dl2bench-{suite}-expand-{member}")
    try:
        job = ex.submit(CommandJob(list(argv), cwd))
    except Exception as e:  # noqa: BLE001 - sbatch's refusal, said as ours
        raise LaunchError(f"the expander of sweep {member} was refused: {type(e).__name__}: {e}") from e
    return str(job.job_id)


def retarget(out: Path, members: Sequence[Any], state: Dict[str, Any]) -> List[str]:
    """Point each waiting expander at what its sweeps' jobs are now (an expander that just queued its
    sweep's arrays replaces itself by them). Returns one line per change."""
    live = live_jobs()
    lines = []
    for m in members:
        exp = (state["members"].get(m.name) or {}).get("expander")
        if not m.needs or not exp or live.get(exp) in (None, "None"):  # gone, or already running
            continue
        after = waits_on(out, list(m.needs), state, live)
        dep = "afterany:" + ":".join(after) if after else ""
        got = subprocess.run(["scontrol", "update", f"JobId={exp}", f"Dependency={dep}"], capture_output=True,
                             text=True)
        if got.returncode:
            lines.append(f"could not update the dependency of job {exp} ({m.name}): {got.stderr.strip()}")
            continue
        state["members"][m.name]["after"] = after
        lines.append(f"{m.name}: expander job {exp} now waits for " + (", ".join(after) if after else "nothing"))
    return lines


def describe(entry: Dict[str, Any], reason: str) -> str:
    """A dependent sweep's line for --status while its expander is queued (`reason`: squeue's)."""
    waiting = f"waiting for job(s) {', '.join(entry.get('after') or []) or '?'}"
    return f"expander job {entry['expander']} " + ("running" if reason == "None" else f"pending ({reason}): {waiting}")
