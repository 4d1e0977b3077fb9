"""The training loop on generated real-format data: every registry entry, determinism, resume,
divergence, early stopping, failures, the results store and W&B offline."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from dl2bench import checkpoint as ckpt
from dl2bench.config import ConfigError, RunConfig
from dl2bench.optim import OPTIMIZERS, SCHEDULES, LRController
from dl2bench.regularizers import REGULARIZERS
from dl2bench.train import run

CURVE = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


def metrics(out: Path) -> pd.DataFrame:
    return pd.read_json(out / "metrics.jsonl", lines=True)


def test_run_writes_the_results_store(tiny, tmp_path):
    s = run({**tiny, "epochs": 3}, tmp_path)
    assert s["status"] == "finished" and s["epochs_completed"] == 3
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["run_id"] == s["run_id"] and cfg["optimizer"] == "momentum"  # the task's default, resolved
    m = metrics(tmp_path)
    assert list(m["epoch"]) == [1, 2, 3]
    for col in CURVE + ("train_time", "samples_per_s", "data_time", "eval_time", "peak_mem_mb"):
        assert m[col].notna().all(), col
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(s))
    # the generated data is learnable: the loop really trains
    assert s["best_val_acc"] > 0.5 and m["train_loss"].iloc[-1] < m["train_loss"].iloc[0]
    assert s["test_acc"] is not None and s["params"] == 52_650
    assert s["train_time_total"] == pytest.approx(m["train_time"].sum())
    for key in ("device_name", "cpu_model", "threads", "torch_version", "host", "flops_per_sample"):
        assert s[key] is not None, key
    assert s["threads"] == 1 and s["device"] == "cpu"
    assert not (tmp_path / "checkpoint.pt").exists()  # finished runs keep only the record


def test_time_to_target(tiny, tmp_path):
    s = run({**tiny, "epochs": 3}, tmp_path)
    m = metrics(tmp_path)
    for t in (0.80, 0.85, 0.87, 0.90):
        hit = m[m["val_acc"] >= t]
        if hit.empty:
            assert s[f"time_to_val_acc_{t:.2f}"] is None and s[f"epochs_to_val_acc_{t:.2f}"] is None
        else:
            e = int(hit["epoch"].iloc[0])
            assert s[f"epochs_to_val_acc_{t:.2f}"] == e
            assert s[f"time_to_val_acc_{t:.2f}"] == pytest.approx(m["train_time"][:e].sum())


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_trains(tiny, tmp_path, name):
    lr = {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.05}.get(name, 1e-3)
    s = run({**tiny, "optimizer": name, "lr": lr, "weight_decay": 1e-4}, tmp_path)
    m = metrics(tmp_path)
    assert s["status"] == "finished"
    assert m["train_loss"].iloc[-1] < math.log(10), "did not learn below chance loss"


def test_optimizer_hyperparameters_reach_torch():
    cfg = RunConfig(lr=0.1, momentum=0.8, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01, optimizer="adam", model="mlp")
    p = [torch.nn.Parameter(torch.zeros(2))]
    g = OPTIMIZERS["adam"](p, cfg).param_groups[0]
    assert (g["lr"], g["betas"], g["eps"], g["weight_decay"]) == (0.1, (0.8, 0.99), 1e-6, 0.01)
    g = OPTIMIZERS["nesterov"](p, cfg).param_groups[0]
    assert g["nesterov"] and g["momentum"] == 0.8
    assert OPTIMIZERS["sgd"](p, RunConfig(lr=0.1)).param_groups[0]["momentum"] == 0.0


@pytest.mark.parametrize("name", SCHEDULES.names())
@pytest.mark.parametrize("warmup", [0.0, 1.0])
def test_every_schedule_shapes_lr(name, warmup):
    cfg = RunConfig(lr=0.1, epochs=6, schedule=name, warmup_epochs=warmup, model="mlp")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ctl = LRController(opt, cfg, steps_per_epoch=10)
    lrs = []
    for _epoch in range(6):
        for _ in range(10):
            lrs.append(ctl.lr)
            ctl.step()
        ctl.epoch_end(val_loss=1.0)  # never improves after the first epoch
    if warmup:
        assert lrs[0] < lrs[5] < lrs[9] and lrs[0] == pytest.approx(ctl.base[0] * 0.1 * SCHEDULES[name](0, 60, cfg, 10))
    tail = lrs[10:]
    if name == "constant":
        assert set(tail) == {0.1}
    elif name == "step":  # a third of 6 epochs: x0.1 after epoch 2 and 4
        assert lrs[19] == pytest.approx(0.1) and lrs[20] == pytest.approx(0.01) and lrs[40] == pytest.approx(0.001)
    elif name == "cosine":
        assert all(a >= b for a, b in zip(tail, tail[1:])) and lrs[-1] < 0.001
    elif name == "onecycle":
        peak = max(range(60), key=lambda i: lrs[i])
        assert 15 <= peak <= 20 and lrs[peak] == pytest.approx(0.1, rel=0.01) and lrs[-1] < 0.001
    elif name == "plateau":  # patience 2: decays once val loss has stalled for 3 epochs
        assert lrs[39] == pytest.approx(0.1) and lrs[40] == pytest.approx(0.01)


@pytest.mark.parametrize("name", [n for n in SCHEDULES.names() if n != "constant"])
def test_every_schedule_runs(tiny, tmp_path, name):
    s = run({**tiny, "schedule": name, "epochs": 3, "warmup_epochs": 0.5}, tmp_path)
    assert s["status"] == "finished" and metrics(tmp_path)["lr"].notna().all()


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_every_regularizer_runs_and_acts(tiny, tmp_path, name):
    base = run({**tiny, "task": "cifar10", "model": "lenet", "epochs": 2, "seed": 3}, tmp_path / "base")
    s = run({**tiny, "task": "cifar10", "model": "lenet", "epochs": 2, "seed": 3, "regularizer": name},
            tmp_path / name)
    assert s["status"] in ("finished", "early_stopped")
    a, b = metrics(tmp_path / "base"), metrics(tmp_path / name)
    if name == "none":
        assert a["train_loss"].tolist() == b["train_loss"].tolist()
    elif name == "early_stopping":
        assert s["status"] == "finished"  # patience 3 cannot trigger in 2 epochs: tested below
    elif name == "grad_clip":  # clipping at norm 1 changes updates as soon as a gradient exceeds it
        assert a["train_loss"].tolist() != b["train_loss"].tolist()
    else:
        assert a["train_loss"].tolist() != b["train_loss"].tolist(), f"{name} changed nothing"
    if name == "batchnorm":
        assert s["params"] > base["params"]


def test_regularizer_strength_is_used():
    cfg = RunConfig(regularizer="dropout", reg_strength=0.2)
    assert REGULARIZERS["dropout"](cfg).model_kwargs == {"dropout": 0.2}
    assert REGULARIZERS["grad_clip"](cfg.replace(regularizer="grad_clip")).clip_norm == 0.2
    assert REGULARIZERS["label_smoothing"](RunConfig()).label_smoothing == 0.1
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.bias.fill_(5.0)  # biases are not penalised
    assert REGULARIZERS["l1"](RunConfig(reg_strength=0.5)).penalty(model).item() == pytest.approx(0.5 * 8)
    assert REGULARIZERS["l2"](RunConfig(reg_strength=0.5)).penalty(model).item() == pytest.approx(0.25 * 16)
    with pytest.raises(ConfigError, match="reg_strength"):
        REGULARIZERS["dropout"](RunConfig(reg_strength=1.5))


def test_early_stopping_stops_and_tests_the_best(tiny, tmp_path):
    # a tiny lr after a good start: validation accuracy stalls, so patience 1 stops the run
    s = run({**tiny, "epochs": 8, "regularizer": "early_stopping", "reg_strength": 1, "optimizer": "adam",
             "lr": 0.5}, tmp_path)
    m = metrics(tmp_path)
    if s["status"] == "early_stopped":
        assert len(m) < 8 and s["best_epoch"] == int(m["val_acc"].idxmax()) + 1
        assert len(m) == s["best_epoch"] + 1
    else:
        pytest.fail(f"expected early stop, got {s['status']}: {m['val_acc'].tolist()}")


def test_same_seed_same_metrics(tiny, tmp_path):
    cfg = {**tiny, "task": "cifar10", "model": "lenet", "regularizer": "augmentation", "deterministic": True}
    run(cfg, tmp_path / "a")
    run(cfg, tmp_path / "b")
    run({**cfg, "seed": 1}, tmp_path / "c")
    a, b, c = (metrics(tmp_path / x)[list(CURVE)] for x in "abc")
    assert a.equals(b)
    assert not a.equals(c)


def test_resume_matches_uninterrupted(tiny, tmp_path, monkeypatch):
    """Kill the run after epoch 2 of 4 (its checkpoint stays), then run again: the resumed run
    ends with the same metrics as an uninterrupted one, and no epoch is logged twice."""
    cfg = {**tiny, "task": "cifar10", "model": "lenet", "epochs": 4, "regularizer": "dropout",
           "schedule": "cosine", "deterministic": True}
    full = run(cfg, tmp_path / "full")

    import dl2bench.train as T

    real = T.Trainer.train_epoch

    def dies_in_epoch_3(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt  # what a SLURM kill looks like to the loop: not an Exception
        return real(self, epoch)

    monkeypatch.setattr(T.Trainer, "train_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut")
    assert (tmp_path / "cut" / "checkpoint.pt").exists() and not (tmp_path / "cut" / "summary.json").exists()
    assert len(metrics(tmp_path / "cut")) == 2
    monkeypatch.setattr(T.Trainer, "train_epoch", real)
    resumed = run(cfg, tmp_path / "cut")
    a, b = metrics(tmp_path / "full"), metrics(tmp_path / "cut")
    assert list(b["epoch"]) == [1, 2, 3, 4]
    assert a[list(CURVE)].equals(b[list(CURVE)])
    assert resumed["test_acc"] == full["test_acc"] and resumed["resumes"] == 1


def test_checkpoint_of_another_run_is_refused(tiny, tmp_path):
    ckpt.save(tmp_path / "checkpoint.pt", {"run_id": "someone-else"})
    s = run(tiny, tmp_path)
    assert s["status"] == "failed" and "belongs to run someone-else" in s["error"]


def test_divergence_is_recorded_and_clean(tiny, tmp_path):
    s = run({**tiny, "optimizer": "sgd", "lr": 1e6, "epochs": 5}, tmp_path)
    assert s["status"] == "diverged" and "non-finite" in s["reason"]
    assert s["test_acc"] is None and s["epochs_completed"] < 5
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["train_loss"] is None  # NaN is stored as null, valid JSON
    json.loads((tmp_path / "summary.json").read_text())


def test_failure_is_recorded(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("DL2BENCH_DATA", str(tmp_path / "empty"))
    from dl2bench import data as D

    monkeypatch.setattr(D.sources, "default_roots", lambda: [])
    s = run({**tiny, "task": "mnist"}, tmp_path / "out")
    assert s["status"] == "failed" and "DatasetNotFound" in s["error"] and "not found" in s["error"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("bad,key", [({"lr": -1.0}, "lr"), ({"precision": "fp16", "device": "cpu"}, "precision"), ({"model": "resnet"}, "model"), ({"optimizer": "adamm"}, "optimizer"),
                                     ({"device": "tpu"}, "device"), ({"learning_rate": 0.1}, "learning_rate"),
                                     ({"epochs": "three"}, "epochs"), ({"task": "imagenet"}, "task")])
def test_bad_config_raises_before_writing(tiny, tmp_path, bad, key):
    with pytest.raises(ConfigError, match=key):
        run({**tiny, **bad}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cuda_request_without_gpu_is_a_config_error(tiny, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="cuda"):
        run({**tiny, "device": "cuda"}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("opts", [{"loader": "dataloader", "num_workers": 0}, {"precision": "bf16"},
                                  {"channels_last": True}], ids=["dataloader", "bf16", "channels_last"])
def test_speed_options(tiny, tmp_path, opts):
    run({**tiny, "task": "cifar10", "model": "lenet"}, tmp_path / "a")
    s = run({**tiny, "task": "cifar10", "model": "lenet", **opts}, tmp_path / "b")
    assert s["status"] == "finished"
    if "loader" in opts:  # same batches in the same order (no augmentation), so the same curve
        a, b = metrics(tmp_path / "a"), metrics(tmp_path / "b")
        assert (a["train_loss"] - b["train_loss"]).abs().max() < 1e-4
    if "precision" in opts:
        assert s["best_val_acc"] > 0.3


@pytest.mark.slow  # torch.compile's first compilation
def test_compile(tiny, tmp_path):
    pytest.importorskip("torch._dynamo")
    s = run({**tiny, "compile": True, "epochs": 1}, tmp_path)
    assert s["status"] == "finished", s.get("error")


def test_wandb_offline_run_is_written(tiny, tmp_path):
    s = run({**tiny, "wandb": "offline", "group": "smoke", "tags": "a,b"}, tmp_path)
    files = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1 and s["run_id"] in files[0].name
    needles = (b"val/acc", b"smoke", b"best/val_acc", s["run_id"].encode())  # W&B's sectioned names
    # wandb's service process writes the file; on a loaded machine its last records (the summary)
    # were once seen landing just after finish() returned, so allow it a few seconds
    deadline = time.monotonic() + 15
    while True:
        blob = files[0].read_bytes()
        if all(n in blob for n in needles) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # the protobuf records carry the config, a per-epoch metric and the summary
    for needle in needles:
        assert needle in blob, (needle, len(blob), _wandb_log(tmp_path))


def test_wandb_failure_never_stops_training(tiny, tmp_path, monkeypatch):
    import wandb

    def broken(*a, **k):
        raise RuntimeError("server unreachable")

    monkeypatch.setattr(wandb, "init", broken)  # the W&B server is what cannot run here
    with pytest.warns(RuntimeWarning, match="W&B init failed"):
        s = run({**tiny, "wandb": "online"}, tmp_path)
    assert s["status"] == "finished" and len(metrics(tmp_path)) == 2


def _wandb_log(root: Path) -> str:
    logs = sorted(root.glob("wandb/offline-run-*/logs/debug*.log"))
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)


@pytest.mark.parametrize("model", ["mlp", "fc", "lenet", "wide_cnn"])
@pytest.mark.parametrize("task", ["mnist", "cifar10"])
def test_every_model_trains_on_every_input_shape(tiny, tmp_path, model, task):
    s = run({**tiny, "task": task, "model": model, "epochs": 1, "train_size": 128, "eval_batch_size": 128,
             "test_size": 64}, tmp_path)
    assert s["status"] == "finished" and s["params"] > 0 and s["flops_per_sample"] > 0
    assert math.isfinite(metrics(tmp_path)["train_loss"].iloc[0])


def test_fp16_with_auto_device_on_a_cpu_machine_is_refused(tiny, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="precision: fp16 needs a CUDA device"):
        run({**tiny, "precision": "fp16", "device": "auto"}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
