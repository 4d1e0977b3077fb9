"""Generated result stores in the real on-disk format (what dl2bench.track.Tracker writes), for the
report tests and benchmark: runs/<sweep>/<run>/{config.json, metrics.jsonl, summary.json} and an
optional manifest.json. Accuracies follow a saturating curve whose ceiling depends on the factor
levels, so the "right" winner is known to the tests.

    python tests/gen_results.py /tmp/bench_store --runs 1000 --epochs 20
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import random
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from dl2bench.config import BOOKKEEPING, RunConfig

TARGETS = (0.80, 0.85, 0.87, 0.90)  # fashion_mnist's, as tasks.py records them
CPU = "Intel(R) Xeon(R) Processor"
GPU = "NVIDIA H100 80GB HBM3"


def ceiling(cfg: Mapping[str, Any]) -> float:
    """The accuracy a config's curve saturates at: adam > momentum > sgd, and a few other effects."""
    acc = 0.86
    acc += {"adam": 0.03, "momentum": 0.015, "sgd": 0.0, "adamw": 0.025, "rmsprop": 0.01}.get(cfg.get("optimizer"), 0.0)
    acc += {"cnn": 0.03, "mlp": 0.0}.get(cfg.get("model"), 0.0)
    lr = cfg.get("lr") or 0.01
    acc -= 0.01 * abs(math.log10(lr) + 2.5)  # best around 3e-3
    acc += {"none": 0.0, "dropout": 0.005, "weight_decay": 0.004}.get(cfg.get("regularizer"), 0.0)
    return min(acc, 0.97)


def config_of(overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """A full resolved-looking config (every RunConfig key) with its run_id, as config.json holds."""
    base = {**RunConfig().to_dict(), "model": "mlp", "epochs": 4, "batch_size": 64, "optimizer": "momentum",
            "lr": 0.01, "wandb": "disabled", "group": "generated"}
    base.update(overrides)
    unknown = set(base) - set(RunConfig.keys())
    if unknown:
        raise ValueError(f"not config keys: {sorted(unknown)}")
    hashed = {k: v for k, v in base.items() if k not in BOOKKEEPING}
    base["run_id"] = hashlib.sha1(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:12]
    return base


def write_run(root: Path, overrides: Mapping[str, Any], *, status: str = "finished", device: str = "cpu",
              stop_at: Optional[int] = None, torn: bool = False, name: Optional[str] = None,
              threads: int = 2, rng: Optional[random.Random] = None) -> Path:
    """One run folder. status: finished | early_stopped | diverged | failed | incomplete; stop_at is
    the epoch it stopped, diverged or was killed after; torn leaves a half-written last metrics line."""
    rng = rng or random.Random(0)
    cfg = config_of(overrides)
    # a config left at device "auto" (as users do) gets its device from `device`, as the summary says
    dev = cfg["device"] if cfg["device"] != "auto" else device
    out = root / (name or cfg["run_id"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")

    epochs = cfg["epochs"]
    last = epochs if status == "finished" else (stop_at or max(1, epochs // 2))
    top = ceiling(cfg)
    seed_rng = random.Random(int(cfg["run_id"], 16))
    speed = (40000.0 if cfg.get("model") == "mlp" else 6000.0) * (cfg["batch_size"] / 64) ** 0.5
    speed *= 25.0 if dev == "cuda" else 1.0
    n_train = cfg["train_size"] or 55000
    rows: List[Dict[str, Any]] = []
    for epoch in range(1, last + 1):
        acc = top - (top - 0.55) * math.exp(-epoch / 1.6) + seed_rng.gauss(0, 0.004)
        sps = speed * (0.6 if epoch == 1 else 1.0) * (1 + seed_rng.gauss(0, 0.03))
        row = {"epoch": epoch, "lr": cfg["lr"], "train_time": n_train / sps, "data_time": 0.1 * n_train / sps,
               "samples_per_s": sps, "peak_mem_mb": 900.0 + epoch, "train_loss": -math.log(acc) * 0.9,
               "train_acc": acc + 0.01, "val_loss": -math.log(acc) * 1.05, "val_acc": round(acc, 4),
               "eval_time": 0.02}
        if status == "diverged" and epoch == last:
            row = {k: row[k] for k in ("epoch", "lr", "train_time", "data_time", "samples_per_s", "peak_mem_mb")}
            row["train_loss"] = None  # NaN is stored as null
        rows.append(row)
    with open(out / "metrics.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        if torn:
            f.write('{"epoch": %d, "lr": 0.01, "train_ti' % (last + 1))
    if status == "incomplete":
        return out

    done = [r for r in rows if "val_acc" in r]
    best = max(done, key=lambda r: r["val_acc"]) if done else None
    test = None if status in ("diverged", "failed") or not done else best["val_acc"] + rng.gauss(0, 0.002)
    s: Dict[str, Any] = {
        "run_id": cfg["run_id"], "status": status, "task": cfg["task"], "metric": "val_acc", "goal": "maximize",
        "reason": {"diverged": f"non-finite training loss in epoch {last}",
                   "early_stopped": f"no val_acc gain for 2 epochs; best at epoch {best['epoch'] if best else 0}"}.get(status),
        "epochs_completed": len(done),
        "best_val_acc": best["val_acc"] if best else None, "best_epoch": best["epoch"] if best else None,
        "final_val_acc": done[-1]["val_acc"] if done else None,
        "final_val_loss": done[-1]["val_loss"] if done else None,
        "final_train_loss": rows[-1]["train_loss"] if rows else None,
        "test_acc": test, "test_loss": None if test is None else -math.log(test), "test_eval_time": 0.02,
        "train_time_total": sum(r["train_time"] for r in rows), "eval_time_total": 0.02 * len(done),
        "samples_per_s": speed * (1 + rng.gauss(0, 0.02)),
        "started_at": "2026-11-26T13:23:53+00:00", "finished_at": "2026-11-26T13:24:12+00:00", "resumes": 0,
        "device": dev, "device_name": GPU if dev == "cuda" else CPU, "cpu_model": CPU,
        "threads": cfg["threads"] or threads, "torch_version": "2.14.1+cu130",
        "cuda_version": "13.0" if dev == "cuda" else None, "cudnn_version": 91200 if dev == "cuda" else None,
        "python_version": "3.11.7", "host": "gpu01" if dev == "cuda" else "vm", "slurm_job_id": None,
        "slurm_array_job_id": None, "slurm_array_task_id": None, "git_sha": "4b164219ce30c6c5ad6b53dcef8a81510491ec30",
        "params": 52650, "flops_per_sample": 105088, "data_source": "Fashion-MNIST: /usr/share/datasets/fashion-mnist",
        "n_train": n_train, "steps_per_epoch": n_train // cfg["batch_size"],
    }
    if status == "failed":
        s["error"] = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
        s["traceback"] = "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory."
    cum = 0.0
    for t in TARGETS:
        s[f"time_to_val_acc_{t:.2f}"] = s[f"epochs_to_val_acc_{t:.2f}"] = None
    for r in rows:
        cum += r["train_time"]
        for t in TARGETS:
            if s[f"epochs_to_val_acc_{t:.2f}"] is None and r.get("val_acc", -1) >= t:
                s[f"time_to_val_acc_{t:.2f}"], s[f"epochs_to_val_acc_{t:.2f}"] = cum, r["epoch"]
    (out / "summary.json").write_text(json.dumps(s, indent=1, sort_keys=True) + "\n")
    return out


def write_manifest(root: Path, name: str, metric: str = "test_acc", goal: str = "maximize") -> None:
    """manifest.json as the launch layer writes it (only the keys the report may rely on)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({
        "sweep": {"name": name, "method": "grid", "metric": {"name": metric, "goal": goal}},
        "runs": [], "git_sha": "4b164219ce30c6c5ad6b53dcef8a81510491ec30", "created": "2026-11-26T13:20:00+00:00"},
        indent=1) + "\n")


def write_grid(root: Path, grid: Mapping[str, Sequence[Any]], seeds: Iterable[int] = (0, 1, 2),
               fixed: Optional[Mapping[str, Any]] = None, devices: Sequence[str] = ("cpu",),
               manifest: Optional[str] = None) -> List[Path]:
    """Every combination of `grid` x seeds x devices as finished runs; returns the run folders."""
    if manifest:
        write_manifest(root, manifest)
    keys = list(grid)
    out = []
    rng = random.Random(1)
    for values in itertools.product(*grid.values()):
        for device in devices:
            for seed in seeds:
                over = {**(fixed or {}), **dict(zip(keys, values)), "seed": seed}
                if len(devices) > 1:
                    over["device"] = device
                out.append(write_run(root, over, device=device, rng=rng))
    return out


def write_bench_store(root: Path, runs: int = 1000, epochs: int = 20) -> Path:
    """A large sweep: 5 optimizers x 5 lrs x 2 batch sizes x 2 devices x seeds, ~2% bad runs."""
    grid = {"optimizer": ["sgd", "momentum", "adam", "adamw", "rmsprop"], "lr": [0.1, 0.03, 0.01, 3e-3, 1e-3],
            "batch_size": [64, 256], "device": ["cpu", "cuda"]}
    combos = list(itertools.product(*grid.values()))
    write_manifest(root, "bench")
    rng = random.Random(2)
    for i in range(runs):
        values = dict(zip(grid, combos[i % len(combos)]))
        seed = i // len(combos)
        status = "finished"
        if i % 97 == 5:
            status = "diverged"
        elif i % 131 == 7:
            status = "failed"
        elif i % 149 == 11:
            status = "incomplete"
        write_run(root, {**values, "seed": seed, "epochs": epochs}, status=status, stop_at=epochs // 3,
                  rng=rng)
    return root


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=20)
    a = ap.parse_args(argv)
    write_bench_store(a.out, a.runs, a.epochs)
    print(f"{a.runs} runs x {a.epochs} epochs in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
