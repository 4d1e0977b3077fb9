"""jobs/submit.py for real: a local SLURM cluster (../shared/slurm, started by .ci/run), the
local executor and the in-process debug executor, on generated Fashion-MNIST files.

Without a SLURM cluster the SLURM tests skip, unless DL2BENCH_REQUIRE_SLURM=1 (CI), where
they fail instead."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import SUBMIT, epochs_logged, sacct, sigint_as_in_a_terminal, submit, summaries, sweep_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cluster", ["slurm", "local", "debug"])
def test_sweep_finishes_and_resubmit_launches_nothing(tmp_path, job_env, cluster, request):
    if cluster == "slurm":
        request.getfixturevalue("need_slurm")
    p = sweep_file(tmp_path, f"arr_{cluster}", epochs=2)
    out = tmp_path / "runs"
    r = submit(job_env, p, "--cluster", cluster, "--out", out, "--wait", "--poll", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    root = out / f"arr_{cluster}"
    s = summaries(root)
    assert len(s) == 3 and {v["status"] for v in s.values()} == {"finished"}
    for rid in s:
        assert epochs_logged(root / rid) == [1, 2]
        assert (root / rid / "config.json").exists()
    manifest = json.loads((root / "manifest.json").read_text())
    assert set(manifest["runs"]) == set(s) and manifest["sweep"]["metric"]["name"] == "test_acc"
    sub = manifest["submissions"][0]
    assert sub["cluster"] == cluster and sub["git_sha"] is not None and len(sub["arrays"]) == 1
    if cluster == "slurm":  # one sbatch: every task is an element of the same array job
        assert len({j.split("_")[0] for j in sub["jobs"].values()}) == 1
        assert s[next(iter(s))]["slurm_job_id"] is not None
    again = submit(job_env, p, "--cluster", cluster, "--out", out)
    assert again.returncode == 0 and "nothing to submit" in again.stdout, again.stdout
    assert len(json.loads((root / "manifest.json").read_text())["submissions"]) == 1


def test_ctrl_c_during_wait_leaves_local_runs_running(tmp_path, job_env):
    """A real SIGINT to the process group of `submit.py --wait` (what Ctrl-C in a terminal sends): the
    command says the runs go on and exits 130 without a traceback, and the runs do finish."""
    import signal

    p = sweep_file(tmp_path, "ctrlc", epochs=3, seeds=(0, 1))
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, str(SUBMIT), str(p), "--cluster", "local", "--out", str(out), "--wait",
                             "--wandb", "disabled", "--poll", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **job_env}, start_new_session=True,
                            preexec_fn=sigint_as_in_a_terminal)
    root = out / "ctrlc"
    deadline = time.time() + 300
    while time.time() < deadline and not any(root.glob("*/metrics.jsonl")):
        time.sleep(0.2)
    assert any(root.glob("*/metrics.jsonl")), "no run started"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "what was queued keeps running" in err and "Traceback" not in err, err
    while time.time() < deadline and len(summaries(root)) < 2:
        time.sleep(1)
    s = summaries(root)
    assert len(s) == 2 and {v["status"] for v in s.values()} == {"finished"}, s
    st = submit(job_env, p, "--cluster", "local", "--out", out, "--status")
    assert st.returncode == 0 and "finished       2" in st.stdout and "results (1 setting(s)" in st.stdout, st.stdout


def test_wait_into_a_file_prints_progress_in_epochs(tmp_path, job_env):
    """Not a terminal (CI, nohup, a log file): a progress line at every interval (DL2BENCH_PROGRESS_EVERY,
    60 s by default; 0.5 s here), counting epochs across the sweep and naming the run that is training."""
    p = sweep_file(tmp_path, "progress", epochs=3, seeds=(0, 1), train_size=12000)
    r = submit({**job_env, "DL2BENCH_PROGRESS_EVERY": "0.5"}, p, "--cluster", "local", "--out", tmp_path / "runs",
               "--wait", "--poll", "0.25")
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l.startswith("[") and " epochs " in l]
    assert len(lines) >= 3, r.stdout
    assert lines[-1].split("] ")[1].startswith("runs 2/2 ended, epochs 6/6")
    assert any("now fashion_mnist mlp seed" in l for l in lines), lines
    assert any("left" in l for l in lines[:-1]), lines  # an estimate once epochs were measured
    assert "results (1 setting(s)" in r.stdout and "\r" not in r.stdout + r.stderr


def _unreachable_slurm_conf(tmp_path: Path) -> Path:
    """The local cluster's slurm.conf with the controller moved to a port nobody listens on: the real
    SLURM client tools, and a controller that does not answer (a login node whose slurmctld is down)."""
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    if not conf.is_file():
        pytest.skip(f"no {conf}: the SLURM client is not installed here")
    lines = [l for l in conf.read_text().splitlines() if not l.startswith("SlurmctldPort")]
    out = tmp_path / "slurm.conf"
    out.write_text("\n".join(lines + ["SlurmctldPort=6899"]) + "\n")
    return out


def test_cluster_auto_wants_a_controller_that_answers(tmp_path, job_env):
    """A bare sbatch binary is not a cluster: auto runs locally and says why; --cluster slurm refuses
    before anything is written (against a controller that is not there)."""
    if not shutil.which("sbatch"):
        pytest.skip("no SLURM client here (.ci/run installs it with ../shared/slurm/start-local-slurm.sh)")
    env = {**job_env, "SLURM_CONF": str(_unreachable_slurm_conf(tmp_path))}
    p = sweep_file(tmp_path, "nocontroller", epochs=1, seeds=(0,))
    out = tmp_path / "runs"
    r = submit(env, p, "--cluster", "auto", "--out", out, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "--cluster auto: sbatch is on PATH but no SLURM controller answered" in r.stderr
    assert "resource groups (local;" in r.stdout, r.stdout
    r = submit(env, p, "--cluster", "slurm", "--out", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: --cluster slurm: no SLURM controller answered"), r.stderr
    assert not out.exists()
    r = submit(env, p, "--cluster", "slurm", "--out", out, "--status")
    assert r.returncode == 2 and "nothing was submitted" in r.stderr, r.stderr


def test_refused_submission_leaves_nothing_behind(tmp_path, job_env, need_slurm):
    """sbatch refuses the array (a node feature no node has): no manifest, no job pickles, no folder;
    and on a resubmit the earlier record and summaries are as they were."""
    p = sweep_file(tmp_path, "refused", epochs=1, seeds=(0, 1), extra_slurm="  constraint: no_such_feature")
    out = tmp_path / "runs"
    r = submit(job_env, p, "--cluster", "slurm", "--out", out)
    assert r.returncode == 1 and r.stderr.startswith("error: nothing was submitted: "), r.stderr
    assert "Traceback" not in r.stderr and not (out / "refused").exists()
    # a sweep with history: one run finished, one failed (its summary says so); the refused relaunch
    # of the failed run changes nothing on disk
    (tmp_path / "ok").mkdir()
    ok = sweep_file(tmp_path / "ok", "refused", epochs=1, seeds=(0, 1))  # the same runs, no constraint
    assert submit(job_env, ok, "--cluster", "local", "--out", out, "--wait").returncode == 0
    root = out / "refused"
    failed = sorted(root.glob("*/summary.json"))[0]
    failed.write_text(json.dumps({**json.loads(failed.read_text()), "status": "failed"}))
    before = {f: f.read_bytes() for f in root.rglob("*") if f.is_file()}
    r = submit(job_env, p, "--cluster", "slurm", "--out", out)
    assert r.returncode == 1 and "nothing was submitted" in r.stderr, r.stderr
    assert {f: f.read_bytes() for f in root.rglob("*") if f.is_file()} == before


def _epoch_seconds(job_env, tmp_path) -> float:
    """How long one epoch of the requeue test's run takes here, measured as the job would run it."""
    code = ("import json,sys; from dl2bench.train import run; "
            "s=run({'task':'fashion_mnist','model':'mlp','epochs':3,'train_size':19000,'val_size':500,"
            "'threads':1,'wandb':'disabled','progress':'none','checkpoint':False}, sys.argv[1]); "
            "print(json.dumps([json.loads(l)['train_time']+json.loads(l)['eval_time'] for l in open(sys.argv[1]+'/metrics.jsonl')]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "probe")], capture_output=True, text=True,
                         env={**os.environ, **job_env}, check=True).stdout
    return max(json.loads(out.strip().splitlines()[-1])[1:])


def test_timed_out_run_is_requeued_and_resumes(tmp_path, job_env, need_slurm):
    """A run with ~40 s of work under a 1-minute limit: SLURM signals, the job checkpoints and is
    requeued, the run resumes from its last epoch; every epoch is logged exactly once.

    Seen on the local cluster: with a 1-minute limit the signal comes ~15 s into each allocation
    (SLURM may signal up to a minute early), so a run advances ~8 s of training per allocation
    after start-up; hence modest work and a generous requeue allowance."""
    per_epoch = _epoch_seconds(job_env, tmp_path)
    epochs = max(10, math.ceil(40 / per_epoch))
    p = sweep_file(tmp_path, "requeue", epochs=epochs, seeds=(0,), train_size=19000,
                   extra_slurm="  max_requeues: 30\n  signal_delay_s: 30\n")
    out = tmp_path / "runs"
    r = submit(job_env, p, "--cluster", "slurm", "--out", out, "--time-min", "1", "--wait", "--poll", "2",
               timeout=900)
    root = out / "requeue"
    (rid,) = json.loads((root / "manifest.json").read_text())["runs"]
    s = summaries(root).get(rid, {})
    logs = "\n".join(p.read_text()[-2000:] for p in (root / "logs").glob("*.out"))
    assert r.returncode == 0 and s.get("status") == "finished", (r.stdout, r.stderr, s, logs)
    assert s["resumes"] >= 1, f"never requeued ({epochs} epochs of {per_epoch:.2f} s): {logs}"
    assert epochs_logged(root / rid) == list(range(1, epochs + 1))
    assert s["epochs_completed"] == epochs


def test_cancelled_job_is_failed_then_relaunched(tmp_path, job_env, need_slurm):
    p = sweep_file(tmp_path, "cancel", epochs=400, seeds=(0,), train_size=19000)
    out = tmp_path / "runs"
    r = submit(job_env, p, "--cluster", "slurm", "--out", out)
    assert r.returncode == 0, r.stderr
    root = out / "cancel"
    manifest = json.loads((root / "manifest.json").read_text())
    (rid, job), = manifest["submissions"][0]["jobs"].items()
    try:
        deadline = time.monotonic() + 120
        while not (root / rid / "metrics.jsonl").exists() or not (root / rid / "metrics.jsonl").read_text():
            assert time.monotonic() < deadline, "the job never started training"
            time.sleep(1)
        subprocess.run(["scancel", job], check=True)
        deadline = time.monotonic() + 120
        while sacct(job).get(job, "").split(" ")[0] != "CANCELLED":
            assert time.monotonic() < deadline, sacct(job)
            time.sleep(1)
        st = submit(job_env, p, "--cluster", "slurm", "--out", out, "--status")
        assert st.returncode == 1 and "failed         1" in st.stdout and "CANCELLED" in st.stdout, st.stdout
        assert summaries(root)[rid]["status"] == "failed"
        again = submit(job_env, p, "--cluster", "slurm", "--out", out)
        assert again.returncode == 0 and "queued 1 run(s)" in again.stdout, again.stdout + again.stderr
        subs = json.loads((root / "manifest.json").read_text())["submissions"]
        assert len(subs) == 2 and subs[1]["jobs"][rid] != job
        assert rid not in summaries(root)  # the stale failure is cleared when the run is relaunched
    finally:
        subprocess.run(["scancel", "--name", "dl2bench-cancel"], capture_output=True)


def test_main_command_on_the_local_slurm(tmp_path, need_slurm):
    """The README's main job, `sweeps/cifar_cnn.yaml`, against the local cluster (dry run: the
    cluster has 2 CPUs, so the file's 8 CPUs per task is refused with the fix)."""
    r = submit({}, ROOT / "sweeps" / "cifar_cnn.yaml", "--cluster", "slurm", "--dry-run", "--out", tmp_path / "runs")
    assert r.returncode == 2 and "--cpus-per-task" in r.stderr
    r = submit({}, ROOT / "sweeps" / "cifar_cnn.yaml", "--cluster", "slurm", "--dry-run", "--cpus-per-task", "2",
               "--out", tmp_path / "runs")
    assert r.returncode == 0 and "9 run(s) in 9 task(s)" in r.stdout
