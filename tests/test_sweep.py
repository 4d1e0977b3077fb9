"""Sweep files -> runs: W&B's meaning kept, every bad input one clear error with exit status 2
and nothing written; the shipped sweeps; resource groups and the sbatch they become."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from dl2bench import launch
from dl2bench import sweep as S

ROOT = Path(__file__).resolve().parents[1]
SUBMIT = ROOT / "jobs" / "submit.py"
# attack sweeps expand against finished runs on disk: tests/families/test_adversarial.py trains those first
# sweeps over other sweeps' trained runs (attacks, a GAN's sampling, a GAN's feature classifier) are
# tested where those runs are made: tests/families/test_adversarial.py, tests/families/test_gan.py
SHIPPED = sorted(p for p in (ROOT / "sweeps").glob("*.yaml")
                 if not {"attack", "evaluate"} & set(yaml.safe_load(p.read_text()))
                 and "feature_run" not in yaml.safe_load(p.read_text())["parameters"])


def submit(*args, cwd=None, env=None):
    import os

    return subprocess.run([sys.executable, str(SUBMIT), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GRID = """
name: g
method: grid
metric: {name: test_acc, goal: maximize}
parameters:
  model: {values: [mlp, lenet]}
  seed: {values: [0, 1, 2]}
  lr: {value: 0.01}
slurm:
  smoke: {epochs: 1}
"""


def test_shipped_sweeps_are_present():
    names = {p.stem for p in SHIPPED}
    assert {"cifar_cnn", "optimizers", "inits", "regularizers", "cpu_vs_gpu", "smoke"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_sweep_is_valid_wandb_and_expands(path):
    sw = S.load(path)
    # what W&B would receive: the file minus the launcher block, accepted by W&B's own validator
    raw = yaml.safe_load(path.read_text())
    raw.pop("slurm")
    assert sw.wandb_config == raw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sweeps
    assert sweeps.schema_violations_from_proposed_config(raw) == []
    assert len(sw.runs) == S.grid_size(raw["parameters"]) and len({r.run_id() for r in sw.runs}) == len(sw.runs)
    smoke = S.load(path, smoke=True)
    assert all(r.epochs <= 3 for r in smoke.runs)
    assert [r.run_id() for r in smoke.runs] != [r.run_id() for r in sw.runs]


@pytest.mark.parametrize("params", [
    {"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y"]}, "c": {"value": 5}},
    {"z": {"values": [1, 2]}, "a": {"distribution": "int_uniform", "min": 2, "max": 5}},
    {"q": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25}, "m": {"values": [True, False]}},
    {"b": {"min": 1, "max": 3}, "a": {"values": [[1, 2], [3]]}},
])
def test_grid_matches_wandb_engine(params):
    """Our grid (used so that submitting skips importing the engine) is W&B's, in W&B's order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sweeps
    cfg = {"method": "grid", "parameters": params}
    theirs = [{k: v["value"] for k, v in r.config.items()} for r in sweeps.next_runs(cfg, [], n=10_000) if r]
    theirs = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in theirs]
    assert S.grid(params) == theirs
    assert S.grid_size(params) == len(theirs)


def test_random_is_reproducible_and_capped(tmp_path):
    p = write(tmp_path, """
name: r
method: random
run_cap: 6
parameters:
  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}
  optimizer: {values: [sgd, adam]}
""")
    a, b = S.load(p), S.load(p)
    assert len(a.runs) == 6 and [r.run_id() for r in a.runs] == [r.run_id() for r in b.runs]
    assert all(1e-4 <= r.lr <= 0.1 for r in a.runs) and len({r.lr for r in a.runs}) == 6


def test_overrides_and_group(tmp_path):
    sw = S.load(write(tmp_path, GRID), smoke=True, overrides={"device": "cpu", "train_size": "100"})
    assert {(r.epochs, r.device, r.train_size, r.group) for r in sw.runs} == {(1, "cpu", 100, "g")}
    assert len(sw.runs) == 6


BAD = [
    ("method: grid\nparameters: {lr: {values: [0.1, 0.2]\n", "s.yaml:3:1: YAML syntax error"),
    (GRID + "bogus: 1\n", "unknown top-level key 'bogus'"),
    (GRID + "paramters: {}\n", "unknown top-level key 'paramters' (did you mean 'parameters'?)"),
    (GRID.replace("seed: {values:", "seed: {valuse:"), "parameters.seed.valuse: unknown key (did you mean 'values'?)"),
    (GRID.replace("seed:", "sed:"), "parameters.sed: unknown parameter (did you mean 'seed'?)"),
    (GRID.replace("lenet", "lenett"), "parameters.model: model: unknown model 'lenett'"),
    (GRID.replace("lr: {value: 0.01}", "lr: {min: 0.001, max: 0.1}"), "parameters.lr: a grid sweep takes only"),
    (GRID.replace("lr: {value: 0.01}", "lr: {value: -1}"), "parameters.lr: lr: expected a positive number"),
    (GRID.replace("lr: {value: 0.01}", "lr: {value: fast}"), "parameters.lr: lr: expected float, got 'fast'"),
    (GRID.replace("smoke: {epochs: 1}", "smoke: {epochs: 1}\n  partitoin: gpu"), "slurm.partitoin: unknown launcher key"),
    (GRID.replace("smoke: {epochs: 1}", "smoke: {epoch: 1}"), "slurm.smoke: unknown run config key 'epoch'"),
    (GRID.replace("smoke: {epochs: 1}", "time_min: soon"), "slurm.time_min: expected int, got 'soon'"),
    (GRID.replace("method: grid", "method: bayes"), "bayes needs the W&B server"),
    (GRID.replace("method: grid", "method: random"), "run_cap: a random sweep needs run_cap"),
    (GRID.replace("method: grid", "method: gird"), "not a valid W&B sweep"),
    (GRID.replace("  lr: {value: 0.01}", "  opt: {parameters: {lr: {value: 0.1}}}"), "parameters.opt: nested parameters"),
    ("- just\n- a list\n", "expected a mapping"),
    (GRID.replace("lr: {value: 0.01}", "lr: 0.01"), "parameters.lr: expected a mapping ({value: 0.01} for one value"),
    (GRID.replace("method: grid", "method: random\nrun_cap: 2").replace("lr: {value: 0.01}", "lr: {min: 0.1, max: 0.001}"),
     "lr: min 0.1 is not less than max 0.001"),
]


@pytest.mark.parametrize("text,needle", BAD, ids=[n.split(":")[0][:30] for _, n in BAD])
def test_bad_sweep_is_one_clear_error_exit_2_nothing_written(tmp_path, text, needle):
    p = write(tmp_path, text)
    r = submit(p, "--cluster", "local", "--out", tmp_path / "runs", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count(needle) == 1, r.stderr  # once: not repeated by W&B's engine
    assert r.stderr.startswith(f"error: {p}") or "YAML" in r.stderr or "mapping" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args,needle", [
    (["--cluster", "cloud"], "--cluster: expected one of"),
    (["--set", "lr"], "--set 'lr': expected KEY=VALUE"),
    (["--set", "lr=-2"], "lr: expected a positive number"),
    (["--set", "bogus=1"], "unknown run config key 'bogus'"),
    (["--gres", "gpu"], "--gres 'gpu': expected NAME:COUNT"),
    (["--gpu-style", "both"], "gpu_style: expected 'gpus' or 'gres'"),
    (["--set", "device=cuda"], "need device=cuda, but --cluster local runs on this machine"),
])
def test_bad_options_exit_2_nothing_written(tmp_path, args, needle):
    if "device=cuda" in args and _has_gpu():
        pytest.skip("this machine has a GPU")
    r = submit(write(tmp_path, GRID), "--cluster", "local", "--out", tmp_path / "runs", *args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_file(tmp_path):
    r = submit(tmp_path / "nope.yaml")
    assert r.returncode == 2 and "nope.yaml: cannot read sweep file" in r.stderr
    assert "the shipped sweeps are sweeps/<name>.yaml for" in r.stderr and "cifar_cnn" in r.stderr


def test_dry_run_prints_runs_and_groups_writes_nothing(tmp_path):
    p = write(tmp_path, GRID.replace("  lr: {value: 0.01}", "  lr: {value: 0.01}\n  device: {values: [cpu, cuda]}"))
    r = submit(p, "--dry-run", "--cluster", "debug", "--out", tmp_path / "runs")
    assert "12 run(s)" in r.stdout and "CPU only" in r.stdout and "1 GPU" in r.stdout
    for rid in (c.run_id() for c in S.load(p).runs):
        assert rid in r.stdout
    assert not (tmp_path / "runs").exists()


def _has_gpu() -> bool:
    import shutil

    return bool(shutil.which("nvidia-smi"))


def test_resource_groups_and_sbatch_flags(tmp_path):
    """cpu runs ask for no GPU, cuda runs for one: two arrays; --gpus vs --gres as configured."""
    p = write(tmp_path, GRID.replace("  lr: {value: 0.01}", "  lr: {value: 0.01}\n  device: {values: [cpu, cuda]}"))
    sw = S.load(p)
    plan = launch.plan(sw, tmp_path / "runs", "slurm")
    assert sorted((r.gpus, len(c)) for r, c in plan.groups.items()) == [(0, 6), (1, 6)]
    sl = {**sw.slurm, "partition": "gpu", "account": "proj", "qos": "high", "reservation": "course",
          "constraint": "a100", "sbatch": {"mail-type": "END"}}
    texts = {}
    for style in ("gpus", "gres"):
        for res in plan.groups:
            ex = launch.make_executor("slurm", tmp_path / "logs", {**sl, "gpu_style": style, "gres_name": "gpu:a100"}, res, "x")
            texts[(style, res.gpus)] = ex._executor._make_submission_file_text("cmd", "uid")
    cpu = texts[("gpus", 0)]
    assert "gpu" not in cpu.replace("--partition=gpu", "").replace("gpu_", "").lower() or "--gres" not in cpu
    assert "--gpus-per-task" not in cpu and "--gres" not in cpu
    assert "#SBATCH --gpus-per-task=1" in texts[("gpus", 1)]
    assert "#SBATCH --gres=gpu:a100:1" in texts[("gres", 1)]
    for flag in ("--partition=gpu", "--account=proj", "--qos=high", "--reservation=course",
                 "--constraint=a100", "--mail-type=END", "--cpus-per-task=4"):
        assert f"#SBATCH {flag}" in cpu, flag


def test_online_sends_wandb_the_file_minus_slurm(tmp_path, monkeypatch):
    """The W&B server cannot be reached here: wandb.sweep and wandb.agent are replaced by fakes
    that record their arguments; everything up to them runs for real (debug executor)."""
    import wandb

    seen = {}

    def fake_sweep(config, project=None, entity=None):
        seen["config"], seen["project"] = config, project
        return "sw3ep1d"

    def fake_agent(sweep_id, function, count, project=None, entity=None):
        seen.setdefault("agents", []).append((sweep_id, count))

    monkeypatch.setattr(wandb, "sweep", fake_sweep)
    monkeypatch.setattr(wandb, "agent", fake_agent)
    p = write(tmp_path, GRID)
    sw = S.load(p, online=True)
    assert sw.runs == []  # online: W&B chooses the parameters
    sw.slurm["runs_per_task"] = 4
    sw.slurm["agent_stagger_s"] = 0.0
    sub = launch.submit_online(sw, tmp_path / "runs" / "g", "debug", "cmd")
    raw = yaml.safe_load(GRID)
    raw.pop("slurm")
    # the metric under the name the runs' summaries have in W&B (dl2bench.wandb_view: test_acc is test/acc)
    assert seen["config"]["metric"]["name"] == raw["metric"]["name"].replace("test_", "test/", 1) != raw["metric"]["name"]
    raw["metric"]["name"] = seen["config"]["metric"]["name"]
    assert seen["config"] == raw and sub["wandb_sweep_id"] == "sw3ep1d"
    assert sub["agents"] == 2  # 6 grid points, 4 runs per agent
    manifest = json.loads((tmp_path / "runs" / "g" / "manifest.json").read_text())
    assert manifest["sweep"]["wandb_sweep_id"] == "sw3ep1d"


def test_agent_function_trains_with_the_agents_run(tiny, tmp_path, monkeypatch):
    """What an agent's function does: read wandb.config of the agent's run, train, mirror into it."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    run = wandb.init(config={"task": "fashion_mnist", "model": "mlp", "epochs": 1, "val_size": 100,
                             "progress": "none", "threads": 1, "not_ours": 3}, dir=str(tmp_path), mode="offline")
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # each W&B extra lands too (the model artifact)
            launch.agent_train(str(tmp_path / "runs"), "g")
        assert run.summary["status"] == "finished" and run.config["run_id"]
    finally:
        wandb.finish()
    (out,) = [p for p in (tmp_path / "runs").iterdir()]
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


def test_array_id_expansion():
    from dl2bench.launch import status

    assert status._expand_array_ids("12_[3-5,7%2]") == ["12_3", "12_4", "12_5", "12_7"]
    assert status._expand_array_ids("12_4") == ["12_4"]
