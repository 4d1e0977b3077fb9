"""What W&B holds of a run (issue 26): its own keys only, a name from the swept values, a job type,
sectioned metric names with the declared goals, no declarations blob, and one W&B id per training.
Read back from the real offline record (`run-<id>.wandb`, W&B's protobuf records) with
dl2bench.wandb_log.read_run: wandb >= 0.30 ships no reader of its own (design.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dl2bench import wandb_log as W
from dl2bench import wandb_view as V
from helpers import wandb_record

ROOT = Path(__file__).resolve().parents[1]


def test_sectioned_names_go_back_to_the_local_ones_one_to_one():
    local = ["train_loss", "train_acc", "train_time", "val_acc", "val_loss", "test_acc", "best_val_acc",
             "final_val_fid", "time_to_val_acc_0.85", "epochs_to_val_acc_0.85", "epoch", "lr", "samples_per_s",
             # a metric whose own name starts like a section: still one-to-one
             "val_best_x", "test_final_y", "best_val_best_x"]
    names = [V.key(k) for k in local]
    assert names[:5] == ["train/loss", "train/acc", "train/time", "val/acc", "val/loss"]
    assert V.key("best_val_acc") == "best/val_acc" and V.key("epoch") == "epoch"
    assert len(set(names)) == len(local)
    assert [V.local_key(n) for n in names] == local


def test_a_name_from_the_swept_values_and_the_job_type():
    cfg = {"task": "fashion_mnist", "model": "mlp", "optimizer": "adam", "lr": 0.0031622776, "seed": 2}
    assert V.name(cfg, ["optimizer", "lr", "seed"], "abcdef123456") == "optimizer=adam lr=0.00316 seed=2 [abcdef]"
    assert V.name(cfg, None, "abcdef123456") == "task=fashion_mnist model=mlp optimizer=adam seed=2 [abcdef]"
    assert V.swept_keys([{"a": 1, "seed": 0, "b": 2}, {"a": 1, "seed": 1, "b": 3}]) == ["b", "seed"]
    assert V.swept_keys([{"a": 1}, {"a": 2}]) == ["a"]  # one key: itemgetter gives no tuple
    assert V.swept_keys([{"a": [1], "b": 0}, {"a": [2], "b": 0}]) == ["a"]  # unhashable: compared one by one
    assert V.job_type("train", True) == "train" and V.job_type("train", False) == "evaluate"
    assert V.job_type("benchmark", True) == "benchmark"


def _submit(sweep: Path, out: Path, data_root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DL2BENCH_DATA": str(data_root), "WANDB_MODE": "offline"}
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "submit.py"), str(sweep), "--cluster", "local",
                        "--wait", "--out", str(out), "--wandb", "offline", *extra],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r



@pytest.mark.slow  # four real runs in two sweeps' local jobs, W&B offline
def test_the_offline_record_holds_the_runs_own_keys_sectioned_metrics_and_one_id_per_training(data_root, tmp_path):
    sweep = tmp_path / "opt.yaml"
    sweep.write_text("""
name: opt
method: grid
metric: {name: best_val_acc, goal: maximize}
parameters:
  task: {value: fashion_mnist}
  model: {value: mlp}
  optimizer: {values: [sgd, adam]}
  seed: {value: 0}
  epochs: {value: 2}
  train_size: {value: 300}
  val_size: {value: 100}
  test_size: {value: 100}
  threads: {value: 1}
""")
    out = tmp_path / "runs"
    said = _submit(sweep, out, data_root).stdout
    sync = next(line for line in said.splitlines() if line.startswith("to W&B, once the runs end: "))
    assert json.loads((out / "opt" / V.SWEPT).read_text())["keys"] == ["optimizer"]
    run_dirs = sorted(p for p in (out / "opt").iterdir() if (p / "summary.json").exists())
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        rid = run_dir.name
        local = json.loads((run_dir / "config.json").read_text())
        rec = wandb_record(run_dir, rid)
        assert rec["id"] == rid and rec["job_type"] == "train" and rec["group"] == "opt"
        assert rec["name"] == f"optimizer={local['optimizer']} [{rid[:6]}]"
        # the run's own keys: core and the classification family's; none of another family's
        # (a GAN's, a DQN's, an attack's), which made a W&B filter `attack = pgd` match every classifier
        from dl2bench.config import RunConfig
        from dl2bench.schema import KEY_SPECS

        assert set(rec["config"]) == set(RunConfig.recipe_of(local)) | {"run_id"}
        assert {KEY_SPECS[k].family for k in rec["config"] if k != "run_id"} <= {None, "classification"}
        assert "attack" not in rec["config"] and "wandb" not in rec["config"]
        assert rec["config"]["optimizer"] == local["optimizer"]
        # metrics in sections, one row per epoch against `epoch`; the monitored metric's best shown
        rows = [r for r in rec["history"] if "epoch" in r]
        assert [r["epoch"] for r in rows] == [1, 2]
        assert {"train/loss", "val/acc", "val/loss"} <= set(rows[0]) and "val_acc" not in rows[0]
        assert rec["metrics"]["val/acc"]["summary"] == ["max"] and rec["metrics"]["val/loss"]["summary"] == ["min"]
        assert rec["metrics"]["val/acc"]["step_metric"] == "epoch"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert rec["summary"]["test/acc"] == pytest.approx(summary["test_acc"])
        assert rec["summary"]["best/val_acc"] == pytest.approx(summary["best_val_acc"])
        assert "metrics" not in rec["summary"] and "metrics" in summary  # local files keep their schema
    # a forced rerun trains again: under a fresh W&B id, so a sync does not interleave two trainings
    first = run_dirs[0]
    _submit(sweep, out, data_root, "--force")
    assert (first / "wandb" / "dl2bench_id").read_text().strip() == f"{first.name}-2"
    again = wandb_record(first, f"{first.name}-2")
    assert [r["epoch"] for r in again["history"] if "epoch" in r] == [1, 2]
    assert W.logged_epochs(first, first.name) == [1, 2]  # the first training's record is untouched
    # seen without a server: the record as JSON, every attempt
    shown = subprocess.run([sys.executable, "-m", "dl2bench.wandb_log", str(first)], capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0 and shown.stdout.count('"job_type": "train"') == 2, shown.stderr
    # the printed upload finds every attempt of every run (wandb's own dry run: no server needed)
    upload, lineage = sync.split(": ", 1)[1].split(" && ")
    dry = subprocess.run(["bash", "-c", upload + " --dry-run"], capture_output=True, text=True, timeout=300)
    assert "Would sync 4 run(s)" in dry.stdout + dry.stderr, dry.stdout + dry.stderr
    # then the lineage offline runs cannot declare: training runs use no other run's model
    assert lineage == f"python -m dl2bench.wandb_lineage {out / 'opt'}"
    dry = subprocess.run(["bash", "-c", lineage.replace("python", sys.executable, 1) + " --dry-run"],
                         capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0 and "nothing to declare" in dry.stdout, dry.stdout + dry.stderr


def test_a_wandb_init_that_fails_after_starting_leaves_no_open_run_for_the_next(tiny, tmp_path, monkeypatch):
    """Seen building this: define_metric raised after wandb.init; the open W&B run then took the next
    packed run's config and epochs (its Tracker took it for a sweep agent's run)."""
    import wandb

    from dl2bench.train import run

    real = wandb.sdk.wandb_run.Run.define_metric
    calls = {"n": 0}

    def once_broken(self, name, *a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise TypeError("define_metric() got an unexpected keyword argument")  # as an API change would
        return real(self, name, *a, **k)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "define_metric", once_broken)
    with pytest.warns(RuntimeWarning, match="W&B init failed"):
        first = run({**tiny, "wandb": "offline", "seed": 1}, tmp_path / "a")
    second = run({**tiny, "wandb": "offline", "seed": 2}, tmp_path / "b")
    assert first["status"] == second["status"] == "finished"
    assert wandb.run is None
    rec = wandb_record(tmp_path / "b", second["run_id"])
    assert rec["config"].get("seed") == 2 and [r["epoch"] for r in rec["history"] if "epoch" in r] == [1, 2], rec
    assert not list((tmp_path / "a").glob(f"wandb/offline-run-*/run-{second['run_id']}.wandb"))
