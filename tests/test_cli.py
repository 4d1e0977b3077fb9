"""`python -m dl2bench.train`: both argument styles, clear errors with exit status 2, logs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dl2bench.config import ConfigError, RunConfig
from dl2bench.train import parse_args
from helpers import sigint_as_in_a_terminal


def cli(args, env_extra=None, **kw):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "dl2bench.train", *args], capture_output=True, text=True,
                          env=env, timeout=300, **kw)


def test_both_argument_styles_mean_the_same():
    a, _, _ = parse_args(["--lr", "0.001", "--optimizer", "adam", "--epochs", "3", "--compile", "false"])
    b, _, _ = parse_args(["--lr=0.001", "--optimizer=adam", "--epochs=3", "--compile=False"])
    assert a == b and a.lr == 0.001 and a.epochs == 3 and a.compile is False
    c, out, rerun = parse_args(["--batch-size=32", "--out", "x/y"])
    assert c.batch_size == 32 and out == "x/y" and rerun is False
    assert parse_args(["--rerun=true"])[2] is True


@pytest.mark.parametrize("args,needle", [
    (["--learning_rate=0.1"], "unknown key --learning_rate"),
    (["--epochs=three"], "epochs: expected int, got 'three'"),
    (["--compile=maybe"], "compile: expected bool"),
    (["--lr"], "--lr needs a value"),
    (["lr=0.1"], "unexpected argument 'lr=0.1'"),
    (["--rerun=perhaps"], "rerun: expected true or false"),
])
def test_parse_errors_name_the_key(args, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        parse_args(args)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        parse_args(["--lrate=1"])
    for k in RunConfig.keys():
        assert f"--{k}" in str(e.value)


def test_cli_run_with_agent_style_args(data_root, tmp_path):
    out = tmp_path / "try"
    p = cli(["--task=fashion_mnist", "--model=mlp", "--optimizer=adam", "--lr=0.001", "--epochs=2",
             "--val_size=100", "--wandb=disabled", f"--out={out}"], {"DL2BENCH_DATA": str(data_root)})
    assert p.returncode == 0, p.stderr
    # not a terminal: one plain log line per epoch (SLURM logs), no progress bar
    lines = [l for l in p.stdout.splitlines() if " epoch " in l]
    assert len(lines) == 2 and "val_acc" in lines[0] and "samples/s" in lines[0]
    assert "\r" not in p.stdout + p.stderr
    assert json.loads((out / "config.json").read_text())["optimizer"] == "adam"
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path):
    """The real process once; the same refusals in-process below (a process start costs ~3 s)."""
    out = tmp_path / "never"
    p = cli(["--model=resnet50", f"--out={out}", "--wandb=disabled"])
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: model: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists()


@pytest.mark.parametrize("args", [["--bogus=1"], ["--lr=-3"], ["--task=imagenet"]])
def test_cli_bad_input_in_process_exits_2_and_writes_nothing(tmp_path, args, capsys):
    from dl2bench.train.cli import main

    out = tmp_path / "never"
    assert main([*args, f"--out={out}", "--wandb=disabled"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()


def test_cli_failed_run_exits_1_with_reason(tmp_path):
    p = cli(["--task=mnist", f"--out={tmp_path / 'o'}", "--wandb=disabled", f"--data_root={tmp_path / 'none'}"],
            {"DL2BENCH_CACHE": str(tmp_path / "cache")}, cwd=tmp_path)
    if p.returncode == 0:
        pytest.skip("a real MNIST copy is installed on this machine")
    assert p.returncode == 1 and "DatasetNotFound" in p.stderr and str(tmp_path / "none") in p.stderr


def test_help_lists_keys(capsys):
    from dl2bench.train.cli import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--optimizer" in out and "--reg_strength" in out


@pytest.mark.slow  # three real training processes
def test_a_finished_run_is_not_trained_again_unless_asked(data_root, tmp_path):
    out = tmp_path / "once"
    args = ["--task=fashion_mnist", "--model=mlp", "--epochs=1", "--val_size=100", "--wandb=offline", f"--out={out}"]
    env = {"DL2BENCH_DATA": str(data_root)}
    assert cli(args, env).returncode == 0
    before = (out / "summary.json").read_bytes()
    again = cli(args, env)
    assert again.returncode == 0 and "is already done" in again.stdout and str(out) in again.stdout
    assert (out / "summary.json").read_bytes() == before  # not retrained, not overwritten
    assert len(list((out / "wandb").glob("offline-run-*"))) == 1  # no second W&B run with the same id
    rerun = cli(args + ["--rerun=true"], env)
    assert rerun.returncode == 0 and "is already done" not in rerun.stdout
    assert json.loads((out / "summary.json").read_text())["finished_at"] >= json.loads(before)["finished_at"]
    # another config into the same folder would overwrite this run's record: refused, named
    other = cli(args[:1] + ["--model=lenet"] + args[2:], env)
    assert other.returncode == 2 and other.stderr.startswith("error: out: ") and "holds the results of run" in other.stderr


@pytest.mark.slow  # a real process signalled and resumed
def test_ctrl_c_stops_a_run_cleanly_and_the_same_command_resumes(data_root, tmp_path):
    """A real SIGINT (what Ctrl-C sends) to a run in its second epoch: a message, exit 130, no traceback;
    the checkpoint stays, and the same command carries on from it."""
    import signal
    import time

    out = tmp_path / "int"
    args = [sys.executable, "-m", "dl2bench.train", "--task=fashion_mnist", "--model=lenet", "--epochs=30",
            "--val_size=100", "--wandb=disabled", "--threads=1", f"--out={out}"]
    env = {**os.environ, "DL2BENCH_DATA": str(data_root)}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=sigint_as_in_a_terminal)
    deadline = time.time() + 240
    while time.time() < deadline and not ((out / "metrics.jsonl").exists()
                                          and (out / "metrics.jsonl").read_text().count("\n") >= 1):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: every finished epoch is checkpointed in" in err
    assert (out / "checkpoint.pt").exists() and not (out / "summary.json").exists()
    done = (out / "metrics.jsonl").read_text().count("\n")
    resumed = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0 and f"resuming after epoch {done}" in resumed.stdout, resumed.stderr
