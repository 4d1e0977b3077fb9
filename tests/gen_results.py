"""Generated result stores in the real on-disk format (what dl2bench.track.Tracker writes), for the
report tests and benchmark: runs/<sweep>/<run>/{config.json, metrics.jsonl, summary.json} and an
optional manifest.json. Accuracies follow a saturating curve whose ceiling depends on the factor
levels, so the "right" winner is known to the tests.

Summaries are schema 2 (declared metrics, as dl2bench.train writes them) unless `schema=1` asks for
the classification-only format of older runs. Besides classification, `write_family_run` writes
autoencoder (`fashion_mnist_ae`), one-class anomaly (`fashion_mnist_anomaly`) and segmentation
(`shapes`) runs, with the examples.npz their report figures read.

    python tests/gen_results.py /tmp/bench_store --runs 1000 --epochs 20
    python tests/gen_results.py /tmp/mixed --mixed      # a classification, an autoencoder, an anomaly
                                                         # and a segmentation sweep folder
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
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

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


CLASSIFICATION_METRICS = {"acc": {"goal": "maximize", "unit": "", "label": "accuracy", "percent": True,
                                  "splits": ["train", "val", "test"]},
                          "loss": {"goal": "minimize", "unit": "nats", "label": "cross-entropy", "percent": False,
                                   "splits": ["train", "val", "test"]}}


def write_run(root: Path, overrides: Mapping[str, Any], *, status: str = "finished", device: str = "cpu",
              stop_at: Optional[int] = None, torn: bool = False, name: Optional[str] = None,
              threads: int = 2, rng: Optional[random.Random] = None, schema: int = 2,
              slowed: float = 1.0) -> Path:
    """One classification run folder. status: finished | early_stopped | diverged | failed |
    incomplete; stop_at is the epoch it stopped, diverged or was killed after; torn leaves a
    half-written last metrics line. schema 1: the summary of runs made before declared metrics.
    slowed: the second half of its epochs run at this fraction of the speed (another process came)."""
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
        # the warm-up steps are out of epoch 1's figure: a little slower, not 2x
        sps = speed * (0.93 if epoch == 1 else 1.0) * (slowed if epoch > epochs // 2 else 1.0) \
            * (1 + seed_rng.gauss(0, 0.03))
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
    if schema >= 2:
        s.update(schema=schema, family="classification", headline="acc", monitor="acc", metric="test_acc",
                 metrics=CLASSIFICATION_METRICS)
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


# ---------------------------------------------------------------------------------------------
# other task families (schema 2): autoencoder, one-class anomaly detection, segmentation

def _m(goal: str, unit: str, label: str, percent: bool = False, splits=("train", "val", "test")) -> Dict[str, Any]:
    return {"goal": goal, "unit": unit, "label": label, "percent": percent, "splits": list(splits)}


AE_METRICS = {"mse": _m("minimize", "MSE", "reconstruction MSE per pixel ([0, 1] pixels)"),
              "bce": _m("minimize", "nats/pixel", "binary cross-entropy per pixel")}
AE_LOSS = {"mse": _m("minimize", "MSE", "training loss: MSE per pixel"),
           "bce": _m("minimize", "nats/pixel", "training loss: binary cross-entropy per pixel")}
AUROC = _m("maximize", "", "AUROC, normal class vs the rest (score: reconstruction MSE)", splits=("test",))
SEG_METRICS = {"miou": _m("maximize", "", "mean IoU, foreground classes", splits=("val", "test")),
               "dice": _m("maximize", "", "mean Dice, foreground classes", splits=("val", "test")),
               "pixel_acc": _m("maximize", "", "pixel accuracy (all classes)", percent=True)}
SEG_LOSS = {"cross_entropy": _m("minimize", "nats/pixel", "cross-entropy per pixel"),
            "dice": _m("minimize", "1 - Dice", "soft Dice loss, all classes"),
            "boundary_ce": _m("minimize", "nats/pixel, weighted", "boundary-weighted cross-entropy per pixel"),
            "ce_dice": _m("minimize", "nats/pixel + (1 - Dice)", "cross-entropy + soft Dice loss")}
SHAPE_CLASSES = ["background", "circle", "square", "triangle", "ring", "cross"]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
AUROC_BY_CLASS = (0.86, 0.97, 0.84, 0.90, 0.88, 0.87, 0.76, 0.98, 0.80, 0.96)  # shirts are hard, trousers easy
# task -> (family, headline, monitor, targets of the monitored validation metric, config defaults)
FAMILY_TASKS = {
    "fashion_mnist_ae": ("autoencoder", "mse", "mse", (0.03, 0.02, 0.015, 0.01),
                         {"model": "dense_ae", "code_size": 32, "optimizer": "adam", "lr": 1e-3, "batch_size": 256,
                          "loss": "mse", "noise": "none", "noise_level": 0.0}),
    "fashion_mnist_anomaly": ("autoencoder", "auroc", "mse", (0.03, 0.02, 0.015, 0.01),
                              {"model": "dense_ae", "code_size": 32, "optimizer": "adam", "lr": 1e-3,
                               "batch_size": 128, "loss": "mse", "noise": "none", "noise_level": 0.0,
                               "normal_class": 0}),
    "shapes": ("segmentation", "miou", "miou", (0.5, 0.7, 0.8, 0.85, 0.9),
               {"model": "unet", "width": 16, "depth": 3, "image_size": 64, "optimizer": "adam", "lr": 3e-3,
                "batch_size": 32, "loss": "cross_entropy"}),
}
# family config keys, for a checkout whose dl2bench does not declare them (yet)
FAMILY_KEYS = {"code_size": None, "noise": "none", "noise_level": 0.0, "normal_class": None, "width": None,
               "depth": None, "image_size": None}


def family_config(overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """config_of for a family task: the task's defaults, family keys allowed even where this
    dl2bench does not know them."""
    task = overrides["task"]
    extra = {k: v for k, v in FAMILY_KEYS.items() if k not in RunConfig.keys()}
    known = {**FAMILY_TASKS[task][4], **overrides}
    mine = {k: known.pop(k) for k in list(known) if k in extra}
    cfg = config_of(known)
    cfg.update({**extra, **mine})
    hashed = {k: v for k, v in cfg.items() if k not in BOOKKEEPING and k != "run_id"}
    cfg["run_id"] = hashlib.sha1(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:12]
    return cfg


def family_finals(cfg: Mapping[str, Any], r: random.Random) -> Dict[str, float]:
    """The values a family run's metrics saturate at (before seed noise), from its config."""
    task = cfg["task"]
    if task == "shapes":
        miou = {"cross_entropy": 0.84, "dice": 0.87, "boundary_ce": 0.855, "ce_dice": 0.89}.get(cfg.get("loss"), 0.85)
        miou += {8: -0.04, 16: 0.0, 32: 0.012}.get(cfg.get("width"), 0.0) + r.gauss(0, 0.006)
        dice = 1 - (1 - miou) * 0.6
        loss = {"dice": 1 - dice, "ce_dice": 0.04 + (1 - dice)}.get(cfg.get("loss"), 0.02 + (1 - miou) * 0.3)
        return {"miou": miou, "dice": dice, "pixel_acc": 0.975 + 0.1 * (miou - 0.85), "loss": loss}
    code = cfg.get("code_size") or 32
    mse = 0.006 + 0.03 * (8 / code) ** 0.6
    mse *= 0.85 if cfg.get("model") == "conv_ae" else 1.0
    mse += {"gaussian": 0.02, "masking": 0.015}.get(cfg.get("noise"), 0.0) * (cfg.get("noise_level") or 0.0)
    out = {"mse": mse * (1 + r.gauss(0, 0.02)), "bce": 0.25 + 4 * mse * (1 + r.gauss(0, 0.02))}
    nc = cfg.get("normal_class")
    if nc is not None and nc >= 0:
        out["mse"] = 0.008 + 0.002 * nc + r.gauss(0, 0.0005)
        out["auroc"] = min(0.999, AUROC_BY_CLASS[nc] + (0.01 if cfg.get("model") == "conv_ae" else 0.0) + r.gauss(0, 0.01))
    out["loss"] = out["bce" if cfg.get("loss") == "bce" else "mse"]
    return out


def _shape_mask(kind: int, size: int, cy: float, cx: float, rad: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size].astype(float)
    dy, dx = yy - cy, xx - cx
    d = np.hypot(dy, dx)
    if kind == 1:
        return d <= rad
    if kind == 2:
        return (abs(dy) <= rad * 0.85) & (abs(dx) <= rad * 0.85)
    if kind == 3:
        return (dy <= rad * 0.8) & (dy >= -rad) & (abs(dx) <= (dy + rad) * 0.6)
    if kind == 4:
        return (d <= rad) & (d >= rad * 0.55)
    return ((abs(dy) <= rad * 0.3) & (abs(dx) <= rad)) | ((abs(dx) <= rad * 0.3) & (abs(dy) <= rad))


def _blur(x: np.ndarray, passes: int) -> np.ndarray:
    for _ in range(passes):
        p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
        x = sum(p[..., i:i + x.shape[-2], j:j + x.shape[-1]] for i in range(3) for j in range(3)) / 9.0
    return x


def write_examples(out: Path, cfg: Mapping[str, Any], finals: Mapping[str, float], seed: int) -> None:
    """examples.npz as the family's `final` hook writes it: 8 fixed test images and the model's output."""
    g = np.random.default_rng(12345)  # the same test images in every run
    own = np.random.default_rng(seed)  # this run's errors
    n = 8
    if cfg["task"] == "shapes":
        size = 64
        image = g.integers(0, 70, size=(n, 3, size, size)).astype(float)
        truth = np.zeros((n, size, size), np.uint8)
        for i in range(n):
            for _ in range(2 + i % 2):
                kind = int(g.integers(1, len(SHAPE_CLASSES)))
                cy, cx, rad = g.uniform(14, 50), g.uniform(14, 50), g.uniform(7, 14)
                m = _shape_mask(kind, size, cy, cx, rad)
                image[i][:, m] = g.integers(120, 255, size=3)[:, None]
                truth[i][m] = kind
        q = finals["miou"]
        pred = truth.copy()
        for i in range(n):  # shift each image's mask a little, and flip a few pixels, the worse the run
            shift = int(round((1 - q) * 12 * own.uniform(0.3, 1)))
            pred[i] = np.roll(truth[i], (int(own.integers(-1, 2)) * shift, int(own.integers(-1, 2)) * shift), (0, 1))
            flip = own.random((size, size)) < (1 - q) * 0.05
            pred[i][flip] = own.integers(0, len(SHAPE_CLASSES), size=int(flip.sum()))
        np.savez_compressed(out / "examples.npz", image=image.astype(np.uint8), truth=truth, pred=pred)
        return
    size = 28
    original = np.zeros((n, 1, size, size))
    for i in range(n):
        original[i, 0] = _shape_mask(1 + i % 5, size, 14 + g.uniform(-2, 2), 14 + g.uniform(-2, 2), 8 + i % 3) * 230.0
    original = _blur(original, 1)
    noise, level = cfg.get("noise"), cfg.get("noise_level") or 0.0
    fixed = np.random.default_rng(20240612)  # the same corruption in every run
    if noise == "gaussian":
        noisy = np.clip(original + level * 255 * fixed.standard_normal(original.shape), 0, 255)
    elif noise == "masking":
        noisy = original * (fixed.random(original.shape) >= level)
    else:
        noisy = original.copy()
    passes = max(0, int(round(finals["mse"] * 120)))
    recon = _blur(original, passes) + own.normal(0, 6, original.shape)
    nc = cfg.get("normal_class")
    if nc is not None and nc >= 0:  # only the normal class's look is learnt: others drift towards it
        proto = original[nc % n]
        for i in range(n):
            if i != nc % n:
                recon[i] = 0.5 * _blur(original[i:i + 1], 3)[0] + 0.5 * proto
    to8 = lambda x: np.clip(np.round(x), 0, 255).astype(np.uint8)  # noqa: E731
    np.savez_compressed(out / "examples.npz", original=to8(original), noisy=to8(noisy), reconstructed=to8(recon),
                        labels=np.arange(n, dtype=np.int64))


def write_family_run(root: Path, overrides: Mapping[str, Any], *, status: str = "finished", device: str = "cpu",
                     stop_at: Optional[int] = None, rng: Optional[random.Random] = None, examples: bool = True,
                     schema: int = 2) -> Path:
    """One run of a FAMILY_TASKS task (overrides must name the task): schema-2 summary with the
    task's declared metrics, metrics.jsonl and examples.npz."""
    rng = rng or random.Random(0)
    cfg = family_config(overrides)
    family, headline, monitor, targets, _ = FAMILY_TASKS[cfg["task"]]
    dev = cfg["device"] if cfg["device"] != "auto" else device
    out = root / cfg["run_id"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
    r = random.Random(int(cfg["run_id"], 16))
    finals = family_finals(cfg, r)
    if family == "segmentation":
        metrics = {**SEG_METRICS, "loss": SEG_LOSS[cfg.get("loss") or "cross_entropy"]}
    else:
        metrics = {**AE_METRICS, "loss": AE_LOSS[cfg.get("loss") or "mse"]}
        if "auroc" in finals:
            metrics["auroc"] = AUROC
    epochs = cfg["epochs"]
    last = epochs if status == "finished" else (stop_at or max(1, epochs // 2))
    speed = (30000.0 if family == "autoencoder" else 900.0) * (25.0 if dev == "cuda" else 1.0)
    n_train = cfg["train_size"] or (6000 if cfg.get("normal_class") is not None else 55000) \
        if family == "autoencoder" else 2000
    rows: List[Dict[str, Any]] = []
    for epoch in range(1, last + 1):
        sps = speed * (0.93 if epoch == 1 else 1.0) * (1 + r.gauss(0, 0.03))
        row: Dict[str, Any] = {"epoch": epoch, "lr": cfg["lr"] if family == "autoencoder" else None,
                               "train_time": n_train / sps, "data_time": 0.1 * n_train / sps, "samples_per_s": sps,
                               "peak_mem_mb": 700.0 + epoch, "eval_time": 0.05}
        for name, d in metrics.items():
            final = finals[name]
            start = final * 3 if d["goal"] == "minimize" else final * 0.5
            v = final + (start - final) * math.exp(-epoch / 1.8)
            v *= 1 + r.gauss(0, 0.01)
            if "val" in d["splits"]:
                row[f"val_{name}"] = v
            if "train" in d["splits"]:
                row[f"train_{name}"] = v * (0.97 if d["goal"] == "minimize" else 1.01)
        row["train_loss"] = row.get("train_loss", row.get("val_loss"))
        if status == "diverged" and epoch == last:
            row = {k: row[k] for k in ("epoch", "lr", "train_time", "data_time", "samples_per_s", "peak_mem_mb")}
            row["train_loss"] = None
        rows.append(row)
    with open(out / "metrics.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    if status == "incomplete":
        return out
    mon, better = f"val_{monitor}", (min if metrics[monitor]["goal"] == "minimize" else max)
    done = [x for x in rows if mon in x]
    best = better(done, key=lambda x: x[mon]) if done else None
    counted = status in ("finished", "early_stopped") and best is not None
    s: Dict[str, Any] = {
        "run_id": cfg["run_id"], "status": status, "task": cfg["task"], "schema": schema, "family": family,
        "headline": headline, "monitor": monitor, "metric": f"test_{headline}", "goal": metrics[headline]["goal"],
        "metrics": metrics,
        "reason": {"diverged": f"non-finite training loss in epoch {last}",
                   "early_stopped": f"no {mon} gain for 2 epochs; best at epoch {best['epoch'] if best else 0}"}.get(status),
        "epochs_completed": len(done), f"best_val_{monitor}": best[mon] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "final_train_loss": rows[-1].get("train_loss") if rows else None,
    }
    for name, d in metrics.items():
        if "val" in d["splits"]:
            s[f"final_val_{name}"] = done[-1].get(f"val_{name}") if done else None
        if "test" in d["splits"]:
            s[f"test_{name}"] = finals[name] * (1 + rng.gauss(0, 0.004)) if counted else None
    s.update({
        "test_eval_time": 0.1, "train_time_total": sum(x["train_time"] for x in rows), "eval_time_total": 0.05 * len(done),
        "samples_per_s": speed * (1 + rng.gauss(0, 0.02)), "started_at": "2026-12-01T09:00:00+00:00",
        "finished_at": "2026-12-01T09:04:00+00:00", "resumes": 0, "device": dev,
        "device_name": GPU if dev == "cuda" else CPU, "cpu_model": CPU, "threads": cfg["threads"] or 2,
        "torch_version": "2.14.1+cu130", "cuda_version": "13.0" if dev == "cuda" else None,
        "python_version": "3.11.7", "host": "gpu01" if dev == "cuda" else "vm", "git_sha": "5c2e0a1f" + "0" * 32,
        "params": 222384, "data_source": "generated", "n_train": n_train,
    })
    if status == "failed":
        s["error"] = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    cum, reached = 0.0, {}
    for x in rows:
        cum += x["train_time"]
        for t in targets:
            v = x.get(mon)
            ok = v is not None and (v <= t if metrics[monitor]["goal"] == "minimize" else v >= t)
            if t not in reached and ok:
                reached[t] = (cum, x["epoch"])
    for t in targets:
        tt = f"{t:.2f}" if float(f"{t:.2f}") == t else f"{t:g}"
        s[f"time_to_val_{monitor}_{tt}"], s[f"epochs_to_val_{monitor}_{tt}"] = reached.get(t, (None, None))
    if family == "segmentation":
        s["classes"] = SHAPE_CLASSES
    nc = cfg.get("normal_class")
    if nc is not None and nc >= 0:
        s["normal_class_name"] = FASHION[nc]
    if counted and examples:
        write_examples(out, cfg, finals, int(cfg["run_id"], 16) % 2**32)
        s["examples"] = "examples.npz"
    (out / "summary.json").write_text(json.dumps(s, indent=1, sort_keys=True) + "\n")
    return out


def write_family_grid(root: Path, task: str, grid: Mapping[str, Sequence[Any]], seeds: Iterable[int] = (0, 1),
                      fixed: Optional[Mapping[str, Any]] = None, manifest: Optional[str] = None,
                      metric: Optional[Tuple[str, str]] = None) -> List[Path]:
    """Every combination of `grid` x seeds of a family task as finished runs; a grid value that is a
    mapping sets several keys at once (noise with its level)."""
    if manifest:
        write_manifest(root, manifest, *(metric or (f"test_{FAMILY_TASKS[task][1]}",
                                                     "minimize" if FAMILY_TASKS[task][1] == "mse" else "maximize")))
    rng = random.Random(3)
    out = []
    for values in itertools.product(*grid.values()):
        over: Dict[str, Any] = {"task": task, "epochs": 6, **(fixed or {})}
        for k, v in zip(grid, values):
            over.update(v if isinstance(v, Mapping) else {k: v})
        for seed in seeds:
            out.append(write_family_run(root, {**over, "seed": seed}, rng=rng))
    return out


def write_mixed(root: Path, small: bool = False) -> List[Path]:
    """Four sweep folders: classification, autoencoder, anomaly and segmentation (small: fewer runs,
    for tests)."""
    seeds = (0, 1) if small else (0, 1, 2)
    folders = [root / n for n in ("classify", "autoencoder", "anomaly", "segmentation")]
    write_grid(folders[0], {"optimizer": ["sgd", "adam"]} if small else {"optimizer": ["sgd", "momentum", "adam"]},
               seeds=seeds, manifest="classify")
    write_family_grid(folders[1], "fashion_mnist_ae",
                      {"model": ["dense_ae", "conv_ae"], "code_size": [8, 32] if small else [8, 16, 32, 64],
                       **({} if small else {"noise": [{"noise": "none", "noise_level": 0.0},
                                                      {"noise": "gaussian", "noise_level": 0.3}]})},
                      seeds=seeds, manifest="autoencoder")
    write_family_grid(folders[2], "fashion_mnist_anomaly",
                      {"normal_class": list(range(4 if small else 10)), **({} if small else {"model": ["dense_ae", "conv_ae"]})},
                      seeds=seeds[:2], manifest="anomaly")
    write_family_grid(folders[3], "shapes",
                      {"loss": ["cross_entropy", "dice", "boundary_ce", "ce_dice"], "width": [16] if small else [8, 16]},
                      seeds=seeds, manifest="segmentation")
    return folders


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
    ap.add_argument("--mixed", action="store_true", help="four sweep folders of four task families instead")
    a = ap.parse_args(argv)
    if a.mixed:
        folders = write_mixed(a.out)
        print(" ".join(str(f) for f in folders))
        return 0
    write_bench_store(a.out, a.runs, a.epochs)
    print(f"{a.runs} runs x {a.epochs} epochs in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
