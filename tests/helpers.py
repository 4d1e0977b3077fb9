"""What the tests share: tiny datasets written in the real on-disk formats (IDX, CIFAR-10 pickles,
an image folder and a tar of one), refusals checked through the real entry points, the local SLURM
cluster's helpers, and a run killed mid-epoch. Fixtures live in conftest.py; no test module imports
another."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

N_TRAIN, N_TEST = 600, 200
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


SHARED = Path(os.environ.get("DL2BENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


def need(path: Path, how: str) -> None:
    """Skip without a real dataset; fail instead where CI promises it (DL2BENCH_REQUIRE_REAL_DATA=1)."""
    if not path.exists():
        if os.environ.get("DL2BENCH_REQUIRE_REAL_DATA") == "1":
            pytest.fail(f"{path} is missing ({how})")
        pytest.skip(f"{path} is missing ({how})")


def assert_cli_refuses(config: dict, key: str, tmp_path: Path) -> str:
    """`python -m dl2bench.train` with this config, called in-process (test_cli.py runs the real
    process once): exit 2, one error line naming `key`, no traceback, nothing written. Returns the line."""
    import contextlib

    from dl2bench.train.cli import main

    out = tmp_path / "refused"
    args = [f"--{k}={v}" for k, v in config.items()]
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        code = main([*args, f"--out={out}", "--wandb=disabled"])
    said = err.getvalue()
    assert code == 2 and said.startswith(f"error: {key}: ") and said.count("\n") == 1, said
    assert "Traceback" not in said and not out.exists()
    return said.strip()


def assert_submit_refuses(args, key: str, watched: Path) -> str:
    """`python jobs/submit.py ARGS`, called in-process: exit 2, one error line naming `key`, no
    traceback, and nothing under `watched` changed. Returns the error line."""
    import contextlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("submit_cli", ROOT / "jobs" / "submit.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    before = sorted(str(p) for p in watched.rglob("*"))
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        code = cli.main([str(a) for a in args])
    said = err.getvalue()
    assert code == 2 and said.count("\n") == 1 and f"{key}" in said, said
    assert "Traceback" not in said
    assert sorted(str(p) for p in watched.rglob("*")) == before, "something was written"
    return said.strip()


def learnable_images(n: int, shape, seed: int):
    """Noise plus a bright class-specific stripe, so a model can beat chance in a few steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    rng.shuffle(y)
    x = rng.integers(0, 60, size=(n, *shape), dtype=np.uint8)
    h = shape[-2]
    band = max(1, h // 10)
    for i, c in enumerate(y):
        x[i, ..., c * band : (c + 1) * band, :] = 230
    return x, y.astype(np.uint8)


def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_idx_dataset(folder: Path, seed: int = 0, gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        x, y = learnable_images(n, (28, 28), seed + (prefix == "t10k"))
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, gz)


def make_cifar_pickles(folder: Path, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    x, y = learnable_images(N_TRAIN, (3, 32, 32), seed)
    for i, part in enumerate(np.array_split(np.arange(N_TRAIN), 5), start=1):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": x[part].reshape(len(part), -1), "labels": y[part].tolist()}, f)
    tx, ty = learnable_images(N_TEST, (3, 32, 32), seed + 1)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": tx.reshape(N_TEST, -1), "labels": ty.tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES}, f)


def image_folder_items(seed: int = 0, n_train: int = 60, n_test: int = 20, fmt: str = "PNG"):
    """(relative path, encoded bytes, pixels, label) for a tiny CIFAR-like image folder."""
    from PIL import Image

    out = []
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        x, y = learnable_images(n, (32, 32, 3), s)
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(x[i]).save(buf, format=fmt)
            out.append((f"{split}/{CLASSES[y[i]]}/{i:04d}.{fmt.lower()}", buf.getvalue(), x[i], int(y[i])))
    return out

def killed_at(monkeypatch, cfg, out, at):
    """run(cfg, out) stopped at the start of epoch `at` by a KeyboardInterrupt, its checkpoint left
    behind and no summary written."""
    import dl2bench.train.loop as T
    from dl2bench.train import run

    real = T.Trainer.train_epoch

    def dies(self, epoch):
        if epoch == at:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(T.Trainer, "train_epoch", dies)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out)
    monkeypatch.setattr(T.Trainer, "train_epoch", real)
    assert (Path(out) / "checkpoint.pt").exists() and not (Path(out) / "summary.json").exists()


def sigint_as_in_a_terminal() -> None:
    """Popen preexec_fn for the Ctrl-C tests: SIGINT back to its default in the child. A shell that
    runs the suite in the background (`... &`, nohup) starts it with SIGINT ignored, children inherit
    that, and Python then installs no KeyboardInterrupt handler: the run would never hear the signal."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


# ---------------------------------------------------------------------------------------------
# the local SLURM cluster and jobs/submit.py

ROOT = Path(__file__).resolve().parents[1]
SUBMIT = ROOT / "jobs" / "submit.py"


def slurm_up() -> bool:
    if not shutil.which("sbatch"):
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0


def sweep_file(tmp_path: Path, name: str, epochs: int, seeds=(0, 1, 2), train_size: int = 2000,
               extra_slurm: str = "") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""
name: {name}
method: grid
metric: {{name: test_acc, goal: maximize}}
parameters:
  task: {{value: fashion_mnist}}
  model: {{value: mlp}}
  seed: {{values: {list(seeds)}}}
  epochs: {{value: {epochs}}}
  train_size: {{value: {train_size}}}
  val_size: {{value: 500}}
  threads: {{value: 1}}
  progress: {{value: log}}
slurm:
  time_min: 5
  cpus_per_task: 1
  mem_gb: 1
{extra_slurm}""")
    return p


def submit(env, *args, timeout=600):
    r = subprocess.run([sys.executable, str(SUBMIT), *map(str, args), "--wandb", "disabled"],
                       capture_output=True, text=True, env={**os.environ, **env}, timeout=timeout)
    return r


def summaries(root: Path):
    return {p.parent.name: json.loads(p.read_text()) for p in root.glob("*/summary.json")}


def epochs_logged(run_dir: Path):
    return [json.loads(l)["epoch"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def sacct(job: str):
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", job], capture_output=True,
                         text=True).stdout
    return dict(l.split("|", 1) for l in out.splitlines() if "|" in l)


def fake_run(folder: Path, rid: str, task: str = "fashion_mnist", weights: bool = True) -> Path:
    """A finished classifier run's folder (config, summary, the weights of an untrained mlp)."""
    from dl2bench import runs
    from dl2bench.families import MODELS

    run = folder / rid
    run.mkdir(parents=True)
    config = {"task": task, "model": "mlp", "seed": 0, "run_id": rid}
    runs.write_json(run / runs.CONFIG, config)
    runs.write_json(run / runs.SUMMARY, {"status": "finished", "run_id": rid})
    if weights:
        build = {"model": "mlp", "args": [[1, 28, 28], 10], "kwargs": {}}
        runs.save_weights(run, rid, config, config, build, MODELS["mlp"]((1, 28, 28), 10))
    return run


def wandb_record(run_dir: Path, wandb_id: str):
    """A run's offline W&B record (dl2bench.wandb_log.read_run) once it has ended: wandb's service
    process writes the file, and on a loaded machine its last records were seen landing after
    finish() returned."""
    import time

    from dl2bench import wandb_log

    files = sorted(Path(run_dir).glob(f"wandb/offline-run-*/run-{wandb_id}.wandb"))
    assert files, sorted(p.name for p in Path(run_dir).glob("wandb/*"))
    deadline = time.monotonic() + 30
    while True:
        rec = wandb_log.read_run(files[-1])
        if rec["exit_code"] is not None or time.monotonic() > deadline:
            return rec
        time.sleep(0.2)
