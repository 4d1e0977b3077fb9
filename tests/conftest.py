"""Shared fixtures: tiny datasets written in the real on-disk formats (IDX, CIFAR-10 pickles,
an image folder and a tar of one), so every test runs the real loading code."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
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



def assert_cli_refuses(config: dict, key: str, tmp_path: Path) -> None:
    """`python -m dl2bench.train` with this config: exit 2, one error line naming `key`, no
    traceback, nothing written."""
    import subprocess
    import sys

    out = tmp_path / "refused"
    args = [f"--{k}={v}" for k, v in config.items()]
    got = subprocess.run([sys.executable, "-m", "dl2bench.train", *args, f"--out={out}", "--wandb=disabled"],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert got.returncode == 2 and got.stderr.startswith(f"error: {key}: "), got.stderr
    assert "Traceback" not in got.stderr and not out.exists()


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


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """No test reads the user's data or cache, or talks to W&B's servers."""
    monkeypatch.setenv("DL2BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    from dl2bench.data import datasets

    datasets._load.cache_clear()
    yield
    datasets._load.cache_clear()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root with MNIST, Fashion-MNIST (torchvision layout) and CIFAR-10 (pickles)."""
    root = tmp_path_factory.mktemp("data")
    make_idx_dataset(root / "MNIST" / "raw", seed=1)
    make_idx_dataset(root / "FashionMNIST" / "raw", seed=2)
    make_cifar_pickles(root / "cifar-10-batches-py", seed=3)
    return root


@pytest.fixture
def tiny(data_root, monkeypatch):
    """Config keys for a run of a second or so on the generated data."""
    monkeypatch.setenv("DL2BENCH_DATA", str(data_root))
    return {"task": "fashion_mnist", "model": "mlp", "epochs": 2, "batch_size": 32, "val_size": 100,
            "wandb": "disabled", "progress": "none", "threads": 1, "eval_batch_size": 256}


@pytest.fixture
def killed_then_resumed(monkeypatch):
    """run(cfg, out) killed at the start of epoch `at` (a KeyboardInterrupt: what a SLURM kill looks
    like to the loop, not an Exception), then run again to the end; returns the resumed summary."""
    from dl2bench.train import run

    def go(cfg, out, at):
        killed_at(monkeypatch, cfg, out, at)
        return run(cfg, out)

    return go


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
