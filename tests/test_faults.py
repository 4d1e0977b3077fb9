"""What clusters and machines do to runs, done for real: a corrupted or truncated checkpoint, a
disk that fills up (a small tmpfs), a training process SIGKILLed under the local SLURM, the W&B
service process killed mid-run. For each: what the user sees, and that no finished epoch is lost
or logged twice -- metrics.jsonl, summary.json and the W&B offline run agree."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dl2bench import checkpoint as ckpt
from dl2bench import wandb_log as W
from dl2bench.train import run
from helpers import SUBMIT, killed_at, sacct, sweep_file

ROOT = Path(__file__).resolve().parents[1]


def epochs(run_dir: Path):
    return [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def curves(run_dir: Path):
    return [{k: v for k, v in json.loads(line).items() if k.startswith(("train_loss", "val_"))}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# checkpoints that cannot be trusted

@pytest.mark.parametrize("damage", ["truncated", "flipped", "not_ours"])
def test_a_damaged_checkpoint_is_named_and_never_resumed_from(tiny, tmp_path, monkeypatch, damage):
    """The run says which file is bad and why, sets it aside, and trains from epoch 1: its numbers
    are an uninterrupted run's, every epoch logged once."""
    cfg = {**tiny, "epochs": 3, "deterministic": True}
    full = run(cfg, tmp_path / "full")
    out = tmp_path / "cut"
    killed_at(monkeypatch, cfg, out, at=3)
    p = out / "checkpoint.pt"
    data = p.read_bytes()
    if damage == "truncated":
        p.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":  # one byte in the middle: the zip may still open; the hash does not match
        i = len(data) // 2
        p.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    else:  # a bare torch.save file, as an older or foreign tool writes
        buf = io.BytesIO()
        torch.save({"run_id": "x"}, buf)
        p.write_bytes(buf.getvalue())
    s = run(cfg, out)
    why = {"truncated": "truncated (", "flipped": "corrupted (its SHA-256", "not_ours": "not a dl2bench checkpoint"}
    assert s["status"] == "finished" and s["resumes"] == 0
    assert str(p) in s["checkpoint_discarded"] and why[damage] in s["checkpoint_discarded"]
    assert "set aside as checkpoint.pt.corrupt, trained from epoch 1" in s["checkpoint_discarded"]
    assert (out / "checkpoint.pt.corrupt").exists()
    assert epochs(out) == [1, 2, 3] and curves(out) == curves(tmp_path / "full")
    assert s["test_acc"] == full["test_acc"]


def test_checkpoints_load_tensors_only(tmp_path):
    """A checkpoint whose bytes are intact but hold pickled code is refused before anything runs:
    loading is torch.load(weights_only=True)."""
    import hashlib

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buf = io.BytesIO()
    torch.save({"run_id": "x", "model": Evil()}, buf)
    body = buf.getvalue()
    p = tmp_path / "checkpoint.pt"
    p.write_bytes(b"%s %s %d\n" % (ckpt.MAGIC, hashlib.sha256(body).hexdigest().encode(), len(body)) + body)
    with pytest.raises(ckpt.CheckpointError, match="does not load"):
        ckpt.load(p)
    assert not marker.exists()


def test_numpy_state_round_trips(tmp_path):
    """A replay buffer's arrays and a NumPy generator's state come back as they went in."""
    import numpy as np

    rs = np.random.RandomState(3)
    state = {"obs": np.arange(12, dtype=np.float32).reshape(3, 4), "done": np.array([True, False]),
             "sampler": rs.get_state(), "pos": np.int64(7), "nested": [np.zeros(2, np.uint8), (1, "a")]}
    ckpt.save(tmp_path / "c.pt", state)
    back = ckpt.load(tmp_path / "c.pt")
    assert back["obs"].dtype == np.float32 and (back["obs"] == state["obs"]).all()
    assert back["done"].tolist() == [True, False] and back["pos"] == 7 and isinstance(back["pos"], int)
    rs2 = np.random.RandomState()
    rs2.set_state(back["sampler"])
    assert rs2.randint(1 << 30) == rs.randint(1 << 30)
    assert back["nested"][1] == (1, "a")


# ---------------------------------------------------------------------------------------------
# a full disk

@pytest.fixture
def small_disk(tmp_path):
    """A 48 MiB tmpfs (needs root, as .ci/run has); unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {r.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): run as root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write until the file system says it is full; returns the filler file."""
    filler = folder / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    return filler


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint(tiny, tmp_path, small_disk, monkeypatch):
    """The disk fills during epoch 2: the run fails with a message that says what is kept and what
    to do; the checkpoint of epoch 1 is intact, no temporary file is left; once space is back the
    same command resumes and ends with an uninterrupted run's numbers, every epoch logged once."""
    import dl2bench.train.loop as T

    cfg = {**tiny, "epochs": 3, "deterministic": True}
    full = run(cfg, tmp_path / "full")
    out = small_disk / "run"
    real = T.Trainer.train_epoch
    filler = []

    def fills_the_disk(self, epoch):
        if epoch == 2:
            filler.append(fill(small_disk))
        return real(self, epoch)

    monkeypatch.setattr(T.Trainer, "train_epoch", fills_the_disk)
    try:
        s = run(cfg, out)
        said = s["error"]
        assert s["status"] == "failed"
    except T.RecordError as e:  # not even the summary fitted
        said = str(e)
    assert "No space left on device" in said or "cannot write" in said, said
    assert f"The checkpoint of epoch 1 in {out / 'checkpoint.pt'} is intact" in said, said
    assert "Free space and run it again to resume" in said
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]
    assert len(ckpt.load(out / "checkpoint.pt")["history"]) == 1
    monkeypatch.setattr(T.Trainer, "train_epoch", real)
    filler[0].unlink()
    s = run(cfg, out)
    assert s["status"] == "finished" and s["resumes"] == 1
    assert epochs(out) == [1, 2, 3] and curves(out) == curves(tmp_path / "full")
    assert s["test_acc"] == full["test_acc"]


def test_disk_full_on_the_command_line_is_one_error(tiny, tmp_path, small_disk):
    """From `python -m dl2bench.train`: exit 1, one 'error:' line, no traceback."""
    fill(small_disk)
    r = subprocess.run([sys.executable, "-m", "dl2bench.train", *sum(([f"--{k}", str(v)] for k, v in tiny.items()), []),
                        "--out", str(small_disk / "run")], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "DL2BENCH_DATA": os.environ["DL2BENCH_DATA"]})
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], r.stderr


# ---------------------------------------------------------------------------------------------
# W&B agrees with the local record

def test_wandb_gets_an_epoch_killed_between_its_checkpoint_and_its_log_line(tiny, tmp_path, monkeypatch):
    """Killed after epoch 2's checkpoint but before its metrics line: the resumed run writes the
    line and sends W&B the epoch it never had; W&B and metrics.jsonl then hold 1..3 once each."""
    import dl2bench.track as TR

    cfg = {**tiny, "epochs": 3, "wandb": "offline"}
    real = TR.Tracker.log

    def dies_logging_epoch_2(self, row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt
        return real(self, row)

    monkeypatch.setattr(TR.Tracker, "log", dies_logging_epoch_2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "r")
    _finish_wandb()
    assert epochs(tmp_path / "r") == [1]
    monkeypatch.setattr(TR.Tracker, "log", real)
    s = run(cfg, tmp_path / "r")
    assert s["status"] == "finished" and s["resumes"] == 1
    assert epochs(tmp_path / "r") == [1, 2, 3]
    assert _wandb_epochs(tmp_path / "r", 3) == [1, 2, 3]


def _finish_wandb():
    import wandb

    if wandb.run is not None:
        wandb.run.finish(exit_code=1)


def _wandb_epochs(run_dir: Path, n: int, wait: float = 20.0):
    """W&B's service writes the file: give its last records a moment to land."""
    deadline = time.monotonic() + wait
    while True:
        got = W.logged_epochs(run_dir)
        if len(got) >= n or time.monotonic() > deadline:
            return sorted(got)
        time.sleep(0.3)


def _children(pid: int):
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow  # a real W&B service process killed
def test_wandb_service_killed_mid_run_costs_nothing_local(tiny, tmp_path):
    """SIGKILL the wandb-core service a run talks to, mid-run: training and the local record go on
    to the end, with one warning that W&B was dropped."""
    cfg = {**tiny, "epochs": 30, "wandb": "offline", "progress": "log"}
    args = sum(([f"--{k}", str(v)] for k, v in cfg.items()), [])
    out = tmp_path / "r"
    p = subprocess.Popen([sys.executable, "-m", "dl2bench.train", *args, "--out", str(out)], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "WANDB_DIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 120
        killed = None
        while killed is None:
            if p.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run ended before W&B could be killed: {p.communicate()[1][-3000:]}")
            lines = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []
            cores = [c for c in _children(p.pid) if "wandb-core" in _cmdline(c)]
            if lines and cores:
                os.kill(cores[0], signal.SIGKILL)
                killed = len(lines)
            time.sleep(0.05)
        stdout, stderr = p.communicate(timeout=300)
    finally:
        p.kill()
    assert killed < 25, "killed too late to mean anything"
    assert p.returncode == 0, stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "finished" and epochs(out) == list(range(1, 31))
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.count("continuing with the local record only") == 1, stderr[-3000:]


# ---------------------------------------------------------------------------------------------
# SIGKILL under SLURM, then resubmit

def test_sigkilled_training_process_resumes_on_resubmit(tmp_path, job_env, need_slurm):
    """kill -9 of the job's Python process mid-run (what the OOM killer does): --status says the run
    failed, the same submit command relaunches it, and it resumes from its last checkpoint; the
    finished run has every epoch once in metrics.jsonl and in W&B's offline record."""
    p = sweep_file(tmp_path, "sigkill", epochs=6, seeds=(0,), train_size=19000)
    out = tmp_path / "runs"
    env = {**os.environ, **job_env, "WANDB_MODE": "offline"}

    def submit_(*extra, timeout=600):
        return subprocess.run([sys.executable, str(SUBMIT), str(p), "--cluster", "slurm", "--out", str(out),
                               "--wandb", "offline", *extra], capture_output=True, text=True, env=env,
                              timeout=timeout)

    r = submit_()
    assert r.returncode == 0, r.stderr
    root = out / "sigkill"
    (rid, job), = json.loads((root / "manifest.json").read_text())["submissions"][0]["jobs"].items()
    try:
        deadline = time.monotonic() + 180
        while len(epochs(root / rid)) < 2 if (root / rid / "metrics.jsonl").exists() else True:
            assert time.monotonic() < deadline, "the job never trained two epochs"
            time.sleep(0.5)
        logs = str(root / "logs")
        victims = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
                   and "submitit.core._submit" in _cmdline(int(d.name)) and logs in _cmdline(int(d.name))]
        assert victims, "no training process found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while sacct(job).get(job, "RUNNING").split(" ")[0] in ("RUNNING", "PENDING", "COMPLETING"):
            assert time.monotonic() < deadline, sacct(job)
            time.sleep(1)
        before = epochs(root / rid)
        assert 2 <= len(before) < 6 and not (root / rid / "summary.json").exists() or \
            json.loads((root / rid / "summary.json").read_text())["status"] == "failed"
        st = submit_("--status")
        assert st.returncode == 1 and "failed         1" in st.stdout, st.stdout + st.stderr
        again = submit_("--wait", "--poll", "2", timeout=900)
        assert again.returncode == 0 and "queued 1 run(s)" in again.stdout, again.stdout + again.stderr
        job2 = json.loads((root / "manifest.json").read_text())["submissions"][1]["jobs"][rid]
        deadline = time.monotonic() + 120  # --wait ends at summary.json; W&B's finish comes after it
        while sacct(job2).get(job2, "RUNNING").split(" ")[0] in ("RUNNING", "PENDING", "COMPLETING"):
            assert time.monotonic() < deadline, sacct(job2)
            time.sleep(1)
    finally:
        subprocess.run(["scancel", "--name", "dl2bench-sigkill"], capture_output=True)
    s = json.loads((root / rid / "summary.json").read_text())
    assert s["status"] == "finished" and s["resumes"] == 1, s
    assert epochs(root / rid) == [1, 2, 3, 4, 5, 6]
    assert _wandb_epochs(root / rid, 6) == [1, 2, 3, 4, 5, 6]


# ---------------------------------------------------------------------------------------------
# a manifest edited by hand

@pytest.mark.parametrize("text, said", [
    ("[1]", "expected a JSON object, found list"),
    ('{"runs": [1, 2]}', "'runs' must map each run id to its config"),
    ('{"runs": {}, "submissions": "x"}', "'submissions' must be a list"),
    ('{"runs": {}, "submissions": [{"jobs": {}}]}', "submissions[0].time must be an ISO date and time"),
    ('{"runs": {}, "submissions": [{"time": "2026-12-01T10:00:00", "jobs": {"a": 5}}]}',
     "submissions[0].jobs must map each run id to a job id"),
    ('{"runs": {', "unreadable manifest"),
])
@pytest.mark.parametrize("action", ["--status", "--dry-run", "submit"])
def test_a_manifest_edited_by_hand_is_named_not_a_traceback(tmp_path, text, said, action):
    """--status, --dry-run and a submission each stop at a damaged manifest with one error that
    names it and what is wrong (exit 2), and submit nothing."""
    p = tmp_path / "mf.yaml"
    p.write_text("name: mf\nmethod: grid\nparameters:\n  task: {value: fashion_mnist}\n  epochs: {value: 1}\n")
    (tmp_path / "runs" / "mf").mkdir(parents=True)
    (tmp_path / "runs" / "mf" / "manifest.json").write_text(text)
    r = subprocess.run([sys.executable, str(SUBMIT), str(p), "--out", str(tmp_path / "runs"), "--cluster", "debug",
                        "--wandb", "disabled"] + ([action] if action != "submit" else []),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "manifest.json" in err[0] and said in err[0], r.stderr
    # (.submit.lock, the lock two submits of one sweep take turns on, may stay: it holds nothing)
    assert sorted(q.name for q in (tmp_path / "runs" / "mf").iterdir() if q.name != ".submit.lock") == ["manifest.json"]


# ---------------------------------------------------------------------------------------------
# a node drained, or down under a running job

def _node() -> str:
    return subprocess.run(["sinfo", "-h", "-o", "%n"], capture_output=True, text=True).stdout.split()[0]


def _resume(node: str) -> None:
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)


def test_drained_node_is_said_and_a_node_failure_is_requeued_and_resumed(tmp_path, job_env, need_slurm):
    """Drained while the runs wait: --status says they wait for a drained node (not merely "queued"),
    and they run once it is resumed. Down under a running job: SLURM requeues it, --status never
    calls it failed, and the run resumes from its checkpoint with every epoch logged once."""
    node = _node()
    env = {**os.environ, **job_env}
    out = tmp_path / "runs"

    def submit_(p, *extra, timeout=600):
        return subprocess.run([sys.executable, str(SUBMIT), str(p), "--cluster", "slurm", "--out", str(out),
                               "--wandb", "disabled", *extra], capture_output=True, text=True, env=env,
                              timeout=timeout)

    drained = sweep_file(tmp_path, "drained", epochs=2, seeds=(0, 1), train_size=2000)
    down = sweep_file(tmp_path, "down", epochs=40, seeds=(0,), train_size=19000)
    try:
        r = subprocess.run(["scontrol", "update", f"nodename={node}", "state=drain", "reason=dl2bench test"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert submit_(drained).returncode == 0
        st = submit_(drained, "--status")
        assert st.returncode == 0 and "queued         2" in st.stdout, st.stdout
        # SLURM's own words follow in brackets; which of its reasons it gives depends on when the
        # scheduler last looked ("ReqNodeNotAvail, UnavailableNodes:vm" or "Nodes required for job are DOWN, ...")
        said = re.search(r"2 queued run\(s\) waiting for a node that is drained or down \((.+?)\); it starts", st.stdout)
        assert said and any(r in said.group(1) for r in ("ReqNodeNotAvail", "Nodes required for job are DOWN")), st.stdout
        _resume(node)
        done = submit_(drained, "--wait", "--poll", "2")
        assert done.returncode == 0 and "finished       2" in done.stdout, done.stdout + done.stderr

        assert submit_(down).returncode == 0
        root = out / "down"
        (rid,) = json.loads((root / "manifest.json").read_text())["runs"]
        deadline = time.monotonic() + 180
        while not (root / rid / "metrics.jsonl").exists() or len(epochs(root / rid)) < 2:
            assert time.monotonic() < deadline, "the job never trained two epochs"
            time.sleep(0.3)
        r = subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=dl2bench test"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        time.sleep(3)
        st = submit_(down, "--status")
        assert "failed" not in st.stdout and ("queued         1" in st.stdout or "running        1" in st.stdout), \
            st.stdout
        _resume(node)
        done = submit_(down, "--wait", "--poll", "2", timeout=900)
        assert done.returncode == 0 and "finished       1" in done.stdout, done.stdout + done.stderr
        s = json.loads((root / rid / "summary.json").read_text())
        assert s["status"] == "finished" and s["resumes"] >= 1, s
        assert epochs(root / rid) == list(range(1, 41))
    finally:
        _resume(node)
        subprocess.run(["scancel", "--name", "dl2bench-drained"], capture_output=True)
        subprocess.run(["scancel", "--name", "dl2bench-down"], capture_output=True)
