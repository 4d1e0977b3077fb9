"""Bad and hostile input against the families and the sweeps over trained runs (issue 24): no
config value may import code, read the wrong runs, or end in a traceback. Each case goes through a
real entry point (in-process: exit 2, one line naming the key, nothing written)."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import assert_cli_refuses, assert_submit_refuses


@pytest.fixture
def trap(tmp_path, monkeypatch):
    """A module on sys.path that leaves a file behind if anything imports it."""
    box = tmp_path / "mods"
    box.mkdir()
    marker = tmp_path / "IMPORTED"
    (box / "evil_env.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\nclass Env: pass\n")
    monkeypatch.syspath_prepend(str(box))
    return marker


@pytest.mark.parametrize("env_id", ["evil_env:Env", "evil_env:CartPole-v1", "CartPole-v9"])
def test_an_env_id_never_imports_code_on_the_command_line(tmp_path, trap, env_id):
    assert_cli_refuses({"task": "gym", "env_id": env_id}, "env_id", tmp_path)
    assert not trap.exists()


def test_an_env_id_never_imports_code_from_a_sweep_file_even_in_a_dry_run(tmp_path, trap):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nmethod: grid\nparameters:\n  task: {value: gym}\n  env_id: {value: 'evil_env:Env'}\n")
    line = assert_submit_refuses([sweep, "--dry-run", "--out", tmp_path / "runs", "--cluster", "debug"], "env_id",
                                 tmp_path)
    assert "refused" in line and not trap.exists()


def test_a_registered_env_whose_extra_package_is_missing_is_one_line(tmp_path):
    pytest.importorskip("gymnasium")
    try:
        import Box2D  # noqa: F401
        pytest.skip("Box2D is installed here")
    except ImportError:
        pass
    assert_cli_refuses({"task": "gym", "env_id": "LunarLander-v3"}, "env_id", tmp_path)


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


def submit_main(args, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("submit_cli", Path(__file__).parents[1] / "jobs" / "submit.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr()


def test_a_relative_from_is_under_out_never_the_working_folder(tmp_path, monkeypatch, capsys):
    work, out = tmp_path / "work", tmp_path / "results"
    fake_run(work / "victims", "aaaaaa111111")  # a same-named folder where the command is typed
    fake_run(out / "victims", "bbbbbb222222")
    monkeypatch.chdir(work)
    sweep = work / "attack.yaml"
    sweep.write_text("name: atk\nmethod: grid\nparameters:\n  attack_eps: {value: 0.1}\n"
                     "attack:\n  from: victims\n  task: fashion_mnist_attack\n")
    code, said = submit_main([sweep, "--dry-run", "--out", out, "--cluster", "debug"], capsys)
    assert code == 0, said.err
    assert f"evaluates 1 trained run(s) from {(out / 'victims').resolve()}/" in said.out


ATTACK = "name: atk\nmethod: grid\nparameters:\n  attack_eps: {value: 0.1}\nattack:\n  from: victims\n  task: fashion_mnist_attack\n"


@pytest.mark.parametrize("payload, why", [
    (b"garbage", "not a readable dl2bench weights file"),
    (None, "not a dl2bench weights file"),  # a torch file of ours in form only
    ("pickle", "not a readable dl2bench weights file"),  # a pickled object: weights_only refuses it
])
def test_a_bad_model_pt_in_the_attacked_run_is_refused_before_anything_is_written(tmp_path, payload, why):
    import pathlib

    import torch

    from dl2bench import runs

    out = tmp_path / "results"
    run = fake_run(out / "victims", "cccccc333333")
    if payload is None:
        torch.save({"format": "something else"}, run / runs.WEIGHTS)
    elif payload == "pickle":
        torch.save({"format": runs.WEIGHTS_FORMAT, "trap": pathlib.Path("x")}, run / runs.WEIGHTS)
    else:
        (run / runs.WEIGHTS).write_bytes(payload)
    sweep = tmp_path / "attack.yaml"
    sweep.write_text(ATTACK)
    line = assert_submit_refuses([sweep, "--out", out, "--cluster", "debug", "--wandb", "disabled"], "attack_run",
                                 tmp_path)
    assert why in line and "weights_only" not in line
    assert_cli_refuses({"task": "fashion_mnist_attack", "attack_run": str(run)}, "attack_run", tmp_path)


def test_a_feature_run_must_be_a_classifier_of_the_gans_data(tmp_path):
    """An autoencoder of the same dataset once passed: the GAN was scored in the wrong features."""
    from dl2bench import runs

    ae = fake_run(tmp_path, "ae0000000000")
    runs.write_json(ae / runs.CONFIG, {**runs.config(ae), "task": "fashion_mnist_ae", "model": "dense_ae"})
    assert_cli_refuses({"task": "fashion_mnist_gan", "feature_run": str(ae)}, "feature_run", tmp_path)


SWEEP = "name: {name}\nmethod: grid\nparameters:\n  task: {{value: fashion_mnist}}\n  lr: {{values: [0.1, 0.01]}}\n"


def test_a_sweep_name_too_long_for_a_folder_is_one_line_and_leaves_no_folder(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP.format(name="a" * 300))
    line = assert_submit_refuses([sweep, "--out", tmp_path / "runs", "--cluster", "debug", "--wandb", "disabled"],
                                 "name:", tmp_path)
    assert "300 bytes" in line and not (tmp_path / "runs").exists()


def test_out_that_is_a_file_is_one_line(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP.format(name="s"))
    (tmp_path / "afile").write_text("mine")
    for extra in (["--dry-run"], []):
        line = assert_submit_refuses([sweep, "--out", tmp_path / "afile", "--cluster", "debug", *extra], "--out",
                                     tmp_path)
        assert "is a file" in line
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_key_given_twice_is_refused_not_last_one_wins(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP.format(name="s"))
    line = assert_submit_refuses([sweep, "--set", "epochs=1", "--set", "epochs=2", "--dry-run", "--out",
                                  tmp_path / "runs", "--cluster", "debug"], "--set epochs", tmp_path)
    assert "given twice" in line
    from dl2bench.config import ConfigError
    from dl2bench.train import parse_args

    with pytest.raises(ConfigError, match="lr: given twice"):
        parse_args(["--lr", "0.1", "--lr=0.2"])
    assert parse_args(["--lr", "0.1", "--lr=0.1"])[0].lr == 0.1  # the same value twice says the same thing


def test_set_on_a_swept_key_says_it_collapses_the_sweep(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP.format(name="s"))
    code, said = submit_main([sweep, "--set", "lr=0.5", "--dry-run", "--out", tmp_path / "runs", "--cluster", "debug"],
                             capsys)
    assert code == 0
    assert "note: --set lr=0.5: replaces the 2 values the sweep file gives lr (0.1, 0.01)" in said.err
    assert "1 run(s)" in said.out
