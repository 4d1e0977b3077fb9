"""Sweeps larger than the cluster lets one sbatch or one user have, and two submits of one sweep at
once, against the real local SLURM (../shared/slurm). The jobs are queued with a start time an
hour away (sbatch --begin), so nothing runs on this small machine, and are cancelled at the end.

The cluster's limits are read from scontrol/sacctmgr/squeue; DL2BENCH_SLURM_LIMITS lowers them
where a test needs a tighter cluster than the local one."""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dl2bench.launch import ClusterLimits, LaunchError, Resources, cluster_limits, layout

ROOT = Path(__file__).resolve().parents[1]
SUBMIT = ROOT / "jobs" / "submit.py"
LATER = ["--sbatch", "begin=now+1hour"]  # queued for real, never started


def grid(tmp_path: Path, name: str, runs: int) -> Path:
    """A grid of `runs` runs (a multiple of 10): 10 seeds x runs/10 learning rates, one resource group."""
    lrs = [round(0.0001 * (i + 1), 7) for i in range(runs // 10)]
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""
name: {name}
method: grid
parameters:
  task: {{value: fashion_mnist}}
  model: {{value: mlp}}
  epochs: {{value: 1}}
  seed: {{values: {list(range(10))}}}
  lr: {{values: {lrs}}}
slurm:
  time_min: 5
  cpus_per_task: 1
  mem_gb: 1
""")
    return p


def submit(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, str(SUBMIT), *map(str, args), "--wandb", "disabled"], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def queued_tasks(masters) -> list:
    out = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(masters), "-o", "%i"], capture_output=True,
                         text=True).stdout
    return out.split()


def max_array_size() -> int:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    return int(re.search(r"MaxArraySize\s*=\s*(\d+)", out).group(1))


def my_active_jobs() -> int:
    return len(subprocess.run(["squeue", "-h", "-r", "--me", "-t", "PD,R,S,CF,CG", "-o", "%i"], capture_output=True,
                              text=True).stdout.split())


@pytest.fixture
def need_slurm():
    if not shutil.which("sbatch") or subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode:
        if os.environ.get("DL2BENCH_REQUIRE_SLURM") == "1":
            pytest.fail("no SLURM cluster: .ci/run starts one with ../shared/slurm/start-local-slurm.sh")
        pytest.skip("no SLURM cluster here (start one with ../shared/slurm/start-local-slurm.sh)")


@pytest.fixture
def cancel_after():
    names = []
    yield names.append
    for name in names:
        subprocess.run(["scancel", "--name", f"dl2bench-{name}"], capture_output=True)


def limits(array=1001, count=10000, held=0, submit=None, active=0) -> ClusterLimits:
    return ClusterLimits(array, count, held, submit, active)


def test_layout_splits_at_the_array_limit_and_packs_to_fit():
    cpu, gpu = Resources(0, 1), Resources(1, 1)
    per, arrays, notes = layout({cpu: 5000}, 1, limits())
    assert per == 1 and arrays[cpu] == [1000] * 5, arrays
    assert notes == ["5,000 runs in 5 arrays of ≤1,000 tasks (the cluster's MaxArraySize is 1,001)"]
    per, arrays, notes = layout({cpu: 50000}, 1, limits(held=0))
    assert per == 5 and sum(arrays[cpu]) == 10000 and max(arrays[cpu]) <= 1001, (per, arrays)
    assert notes[0].startswith("packed 5 runs per task: the cluster takes at most 10,000 more jobs (MaxJobCount")
    # the user's own limit is the tighter one; two groups each need their own tasks
    per, arrays, notes = layout({cpu: 100, gpu: 7}, 1, limits(submit=30, active=10))
    assert sum(arrays[cpu]) + sum(arrays[gpu]) <= 20 and per == 6, (per, arrays)
    assert "MaxSubmitJobs 30 per user with 10 of yours queued or running" in notes[0]
    assert layout({cpu: 10}, 4, limits()) == (4, {cpu: [3]}, [])  # the sweep's runs_per_task is kept
    with pytest.raises(LaunchError, match=r"the cluster takes 0 more job\(s\) \(MaxSubmitJobs 5 per user"):
        layout({cpu: 10}, 1, limits(submit=5, active=5))
    with pytest.raises(LaunchError, match="need at least 2"):
        layout({cpu: 10, gpu: 10}, 1, limits(count=1))


def test_sweep_over_the_array_limit_is_queued_in_several_arrays(tmp_path, need_slurm, cancel_after):
    """1,100 runs on a cluster whose MaxArraySize is 1,001 (before: 'Invalid job array specification'
    and nothing queued): two arrays, every task in squeue, each run queued once; --status reads both
    arrays with one sacct call; a resubmit queues nothing."""
    cap = max_array_size()
    n = 10 * (cap // 10 + 10)  # just over one array
    room, why = cluster_limits().room()
    if room < 2 * n:  # finished jobs stay held for MinJobAge (300 s): a benchmark just before fills it
        pytest.skip(f"the cluster takes only {room} more jobs now ({why}): runs would be packed; try again later")
    p, out = grid(tmp_path, "split", n), tmp_path / "runs"
    cancel_after("split")
    r = submit(p, "--cluster", "slurm", "--out", out, *LATER)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{n:,} runs in 2 arrays of ≤{n // 2:,} tasks (the cluster's MaxArraySize is {cap:,})" in r.stdout, r.stdout
    root = out / "split"
    sub = json.loads((root / "manifest.json").read_text())["submissions"][-1]
    masters = [a["job_id"] for a in sub["arrays"]]
    assert len(masters) == 2 and all(a["tasks"] <= cap and a["runs_per_task"] == 1 for a in sub["arrays"])
    assert len(sub["jobs"]) == n and len(set(sub["jobs"].values())) == n  # one task per run, none shared
    tasks = queued_tasks(masters)
    assert len(tasks) == n and set(tasks) == set(sub["jobs"].values())
    # sacct wrapped (the real one runs) to count how often --status asks it
    shim = tmp_path / "bin"
    shim.mkdir()
    real = subprocess.run(["which", "sacct"], capture_output=True, text=True).stdout.strip()
    (shim / "sacct").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/sacct.calls\nexec {real} \"$@\"\n")
    (shim / "sacct").chmod(0o755)
    st = submit(p, "--cluster", "slurm", "--out", out, "--status", env={"PATH": f"{shim}:{os.environ['PATH']}"})
    assert st.returncode == 0 and f"queued         {n}" in st.stdout, st.stdout + st.stderr
    calls = (tmp_path / "sacct.calls").read_text().splitlines()
    assert len(calls) == 1 and all(m in calls[0] for m in masters), calls
    again = submit(p, "--cluster", "slurm", "--out", out)
    assert again.returncode == 0 and f"nothing to submit: all {n:,} run(s)" in again.stdout, again.stdout


def test_runs_are_packed_when_the_cluster_takes_few_more_jobs(tmp_path, need_slurm, cancel_after):
    """A per-user MaxSubmitJobs a few jobs above what this user has queued (set through
    DL2BENCH_SLURM_LIMITS, as sacctmgr would say it): 60 runs are packed several to a task, split
    at a MaxArraySize of 8, and every run is in exactly one queued task."""
    room = 12
    env = {"DL2BENCH_SLURM_LIMITS": f"MaxSubmitJobs={my_active_jobs() + room},MaxArraySize=8"}
    p, out = grid(tmp_path, "packed", 60), tmp_path / "runs"
    cancel_after("packed")
    r = submit(p, "--cluster", "slurm", "--out", out, *LATER, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    said = re.search(r"packed (\d+) runs per task: the cluster takes at most (\d+) more jobs \(MaxSubmitJobs", r.stdout)
    assert said, r.stdout
    per, took = int(said.group(1)), int(said.group(2))  # other users' jobs may have come or gone meanwhile
    sub = json.loads((out / "packed" / "manifest.json").read_text())["submissions"][-1]
    tasks = sum(a["tasks"] for a in sub["arrays"])
    assert per >= 5 and tasks <= took and all(a["tasks"] <= 8 and a["runs_per_task"] == per for a in sub["arrays"])
    assert len(sub["arrays"]) >= 2 and len(sub["jobs"]) == 60
    by_task = {}
    for rid, jid in sub["jobs"].items():
        by_task.setdefault(jid, []).append(rid)
    assert max(map(len, by_task.values())) == per and len(by_task) == tasks
    assert sorted(queued_tasks([a["job_id"] for a in sub["arrays"]])) == sorted(by_task)


def test_no_room_at_all_is_one_error_and_nothing_queued(tmp_path, need_slurm):
    p, out = grid(tmp_path, "noroom", 20), tmp_path / "runs"
    r = submit(p, "--cluster", "slurm", "--out", out, *LATER, env={"DL2BENCH_SLURM_LIMITS": "MaxSubmitJobs=0"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: the cluster takes 0 more job(s) (MaxSubmitJobs 0 per user"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "nothing was submitted" in r.stderr
    assert not out.exists()
    assert not subprocess.run(["squeue", "-h", "--name", "dl2bench-noroom"], capture_output=True, text=True).stdout
    r = submit(p, "--cluster", "slurm", "--out", out, env={"DL2BENCH_SLURM_LIMITS": "MaxSubmit=3"})
    assert r.returncode == 2 and "expected KEY=N[,KEY=N] with KEY one of MaxArraySize" in r.stderr, r.stderr
    assert not out.exists()


def test_two_submits_of_one_sweep_queue_each_run_once(tmp_path, need_slurm, cancel_after):
    """Two real submit.py processes of one sweep, started while the sweep's lock is held (so that
    they surely overlap): one queues every run, the other waits, then says what the first queued."""
    p, out = grid(tmp_path, "twice", 40), tmp_path / "runs"
    root = out / "twice"
    root.mkdir(parents=True)
    cancel_after("twice")
    env = {**os.environ, "DL2BENCH_SLURM_LIMITS": "MaxArraySize=16"}  # three sbatch calls: a longer window
    with open(root / ".submit.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        procs = [subprocess.Popen([sys.executable, str(SUBMIT), str(p), "--cluster", "slurm", "--out", str(out),
                                   "--wandb", "disabled", *LATER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for _ in range(2)]
        told = [proc.stderr.readline() for proc in procs]  # each says it waits before it can plan
        assert all(t.startswith("another submit of this sweep is under way") for t in told), told
        fcntl.flock(held, fcntl.LOCK_UN)
    results = [(proc.wait(timeout=120), proc.stdout.read(), proc.stderr.read()) for proc in procs]
    assert [rc for rc, _, _ in results] == [0, 0], results
    outs = sorted((o for _, o, _ in results), key=lambda o: "nothing to submit" in o)
    assert "40 run(s) submitted" in outs[0] and "nothing to submit: all 40 run(s)" in outs[1], outs
    manifest = json.loads((root / "manifest.json").read_text())
    (sub,) = manifest["submissions"]
    masters = [a["job_id"] for a in sub["arrays"]]
    assert f"queued 40 run(s) in {len(masters)} array(s): job {', '.join(masters)}" in outs[1], outs[1]
    assert len(queued_tasks(masters)) == 40 and len(set(sub["jobs"].values())) == 40
