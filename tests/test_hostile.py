"""Bad and hostile input against the families and the sweeps over trained runs (issue 24): no
config value may import code, read the wrong runs, or end in a traceback. Each case goes through a
real entry point (in-process: exit 2, one line naming the key, nothing written)."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import assert_cli_refuses, assert_submit_refuses, fake_run


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


def gz_of(text: bytes) -> bytes:
    import gzip

    return gzip.compress(text)


def corrupted(data: bytes) -> bytes:
    body = bytearray(data)
    for i in range(20, len(body) - 10, 7):  # past the header, before the trailer: the deflate stream
        body[i] ^= 0x5A
    return bytes(body)


LINES = b"To be, or not to be, that is the question.\n" * 200


@pytest.mark.parametrize("content, said", [
    (b"", "holds 0 characters"),  # once: "use a context below 0"
    (b"short text", "holds 10 characters"),
    (corrupted(gz_of(LINES)), "not a readable gzip file"),  # once: a zlib.error traceback
    (gz_of(LINES)[:40], "not a readable gzip file"),  # cut short: once an EOFError traceback
    (b"\xff\xfe\x00bad" * 100, "not UTF-8 text"),
])
def test_a_corpus_that_cannot_be_a_text_is_one_line(tmp_path, content, said):
    corpus = tmp_path / "corpus.bin"
    corpus.write_bytes(content)
    line = assert_cli_refuses({"task": "char_lm", "model": "lstm", "corpus": str(corpus)}, "corpus", tmp_path)
    assert said in line


def test_a_gzip_bomb_corpus_is_refused_without_being_expanded(tmp_path, monkeypatch):
    """300 KB that would expand to 300 MiB (the cap here is lowered to 1 MiB: the same code path)."""
    import gzip
    import tracemalloc

    from dl2bench.families.sequence import task as seq

    monkeypatch.setattr(seq, "MAX_CORPUS_BYTES", 2**20)
    seq.read_corpus.cache_clear()
    bomb = tmp_path / "bomb.txt.gz"
    with gzip.open(bomb, "wb") as f:
        for _ in range(64):
            f.write(b"a" * 2**20)
    tracemalloc.start()
    line = assert_cli_refuses({"task": "char_lm", "model": "lstm", "corpus": str(bomb)}, "corpus", tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "decompresses to more than 1 MiB" in line
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB held while refusing a 64 MiB bomb"


def alias_bomb(levels: int = 9) -> str:
    lines = ["name: bomb", "method: grid", "lol: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    lines.append(f"parameters: {{lr: {{values: *l{levels}}}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(20)  # once: more than 60 s
@pytest.mark.parametrize("text, said", [
    (alias_bomb(), "expand to more than 100,000 values"),  # 400 bytes, 9**10 values expanded
    ("name: r\nmethod: grid\nparameters: &p {lr: {values: [1, *p]}}\n", "recursive structure"),
])
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, text, said):
    sweep = tmp_path / "bomb.yaml"
    sweep.write_text(text)
    line = assert_submit_refuses([sweep, "--dry-run", "--out", tmp_path / "runs", "--cluster", "debug"], "bomb.yaml:",
                                 tmp_path)
    assert said in line


def test_aliases_within_the_bound_still_work(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nmethod: grid\nparameters:\n  lr: &two {values: [0.1, 0.01]}\n  momentum: *two\n")
    code, said = submit_main([sweep, "--dry-run", "--out", tmp_path / "runs", "--cluster", "debug"], capsys)
    assert code == 0 and "4 run(s)" in said.out, said


@pytest.mark.parametrize("source, key", [
    ("  task: [fashion_mnist_attack]\n", "attack.task"),  # once: unhashable list, a traceback
    ("  task: fashion_mnist\n", "attack.task"),  # a task that trains
    ("  task: fashion_mnist_attack\n  parameters: {attack_run: {value: dddddd}}\n", "attack_run"),
])
def test_an_attack_source_says_what_is_wrong_with_it(tmp_path, source, key):
    out = tmp_path / "results"
    fake_run(out / "victims", "aaaaaa111111")
    sweep = tmp_path / "attack.yaml"
    sweep.write_text("name: atk\nmethod: grid\nparameters:\n  attack_eps: {value: 0.1}\nattack:\n  from: victims\n"
                     + source)
    line = assert_submit_refuses([sweep, "--dry-run", "--out", out, "--cluster", "debug"], key, tmp_path)
    assert "Traceback" not in line


@pytest.mark.parametrize("where", ["file", "set"])
def test_an_attack_run_given_beside_the_block_is_refused_not_ignored(tmp_path, where):
    """The block chose the runs and the given attack_run was dropped without a word."""
    out = tmp_path / "results"
    fake_run(out / "victims", "aaaaaa111111")
    sweep = tmp_path / "attack.yaml"
    extra = "  attack_run: {value: ffffff}\n" if where == "file" else ""
    sweep.write_text(f"name: atk\nmethod: grid\nparameters:\n  attack_eps: {{value: 0.1}}\n{extra}attack:\n"
                     "  from: victims\n  task: fashion_mnist_attack\n")
    setting = ["--set", "attack_run=ffffff"] if where == "set" else []
    line = assert_submit_refuses([sweep, *setting, "--dry-run", "--out", out, "--cluster", "debug"], "attack_run:",
                                 tmp_path)
    assert "would be ignored" in line


@pytest.mark.parametrize("config, key", [  # each within its key's range; together tens of GB or more
    ({"task": "adding", "seq_len": 100000}, "seq_len"),
    ({"task": "char_lm", "model": "lstm", "context": 100000}, "context"),
    ({"task": "char_lm", "model": "lstm", "hidden_size": 100000}, "hidden_size"),
    ({"task": "mouse_grid", "buffer_size": 10**8, "epoch_steps": 10**8}, "buffer_size"),
    ({"task": "shapes", "image_size": 1024}, "image_size"),
    ({"task": "two_moons", "flow_hidden": 16384, "flow_depth": 64}, "flow_hidden"),
    ({"task": "fashion_mnist_ae", "code_size": 10**8}, "code_size"),
])
def test_sizes_that_cannot_fit_in_memory_are_refused_at_validation(tmp_path, monkeypatch, config, key):
    """Once: the run started, was killed or failed at set-up (exit 1) and left a run folder."""
    from dl2bench import env

    monkeypatch.setattr(env, "memory_limit", lambda: (8 * 2**30, "this machine's memory"))
    line = assert_cli_refuses(config, key, tmp_path)
    assert "GB for" in line and "more than this machine's memory (8.0 GB)" in line


def test_the_defaults_of_every_task_fit_a_laptop():
    """The estimates must not refuse what the course runs: every task's defaults under 4 GB."""
    from dl2bench import registries
    from dl2bench.config import RunConfig
    from dl2bench.families import TASKS

    for name in TASKS.names():
        cfg = registries.resolve(RunConfig.from_dict({"task": name}), check=False)
        total = sum(b for _, b, _ in registries.memory_needs(cfg))
        assert total < 4 * 2**30, (name, registries.memory_needs(cfg))


def test_a_sweep_is_checked_against_the_jobs_mem_gb_not_the_login_node(tmp_path, monkeypatch):
    from dl2bench import env, launch, registries
    from dl2bench.config import RunConfig

    monkeypatch.setattr(env, "memory_limit", lambda: (2**40, "this machine's memory"))  # a big login node
    with registries.memory_checked_by_launcher():
        cfg = RunConfig.from_dict({"task": "mouse_grid", "buffer_size": 10**7, "epoch_steps": 10**7}).resolve()
    launch.check_memory("local", [cfg], {"mem_gb": 4.0})  # fits this machine
    with pytest.raises(launch.LaunchError, match=r"buffer_size: 10000000 needs about 3\.9 GB .* the job's "
                                                 r"slurm\.mem_gb \(2\.0 GB\)"):
        launch.check_memory("slurm", [cfg], {"mem_gb": 2.0})
    sweep = tmp_path / "big.yaml"
    sweep.write_text("name: big\nmethod: grid\nparameters:\n  task: {value: mouse_grid}\n"
                     "  buffer_size: {values: [1000, 100000000]}\n  epoch_steps: {value: 100000000}\n")
    monkeypatch.setattr(env, "memory_limit", lambda: (8 * 2**30, "this machine's memory"))
    line = assert_submit_refuses([sweep, "--out", tmp_path / "runs", "--cluster", "debug", "--wandb", "disabled"],
                                 "buffer_size: 100000000", tmp_path)
    assert line.startswith("error: run ") and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["..", ".", ".hidden"])
def test_a_sweep_name_of_dots_says_what_a_name_may_be(tmp_path, name):
    """Once: '..' was told a name may hold '.', which it already did."""
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP.format(name=f"'{name}'"))
    line = assert_submit_refuses([sweep, "--dry-run", "--out", tmp_path / "runs", "--cluster", "debug"], "name:",
                                 tmp_path)
    assert "must not start with '.'" in line


@pytest.mark.parametrize("args, needle", [
    (["--gres", "a:b:c"], "expected NAME:COUNT"),  # once: "too many values to unpack"
    (["--set", "a:b:c"], "expected KEY=VALUE"),
    (["--sbatch", "a:b:c"], "expected KEY=VALUE"),
])
def test_colon_separated_values_get_a_message_not_an_unpacking_error(tmp_path, args, needle):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP.format(name="s"))
    line = assert_submit_refuses([sweep, *args, "--dry-run", "--out", tmp_path / "runs", "--cluster", "debug"],
                                 args[0], tmp_path)
    assert needle in line and "unpack" not in line


def spoil(run: Path, name: str, how: str) -> None:
    import os

    target = run / name
    target.unlink()
    if how == "fifo":
        os.mkfifo(target)  # once: the read blocked forever
    else:
        target.write_text({"list": "[1, 2]", "string": '"finished"', "number": "3"}[how])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["list", "string", "number", "fifo"])
@pytest.mark.parametrize("name", ["config.json", "summary.json"])
def test_a_spoilt_run_folder_is_one_line_in_every_reader(tmp_path, how, name):
    """The same folder read by an attack (train command line and an attack sweep) and as a GAN's
    feature classifier: no traceback, no hang, nothing written."""
    from dl2bench import runs

    assert name in (runs.CONFIG, runs.SUMMARY)
    out = tmp_path / "results"
    run = fake_run(out / "victims", "eeeeee555555")
    spoil(run, name, how)
    line = assert_cli_refuses({"task": "fashion_mnist_attack", "attack_run": str(run)}, "attack_run", tmp_path)
    assert "Traceback" not in line
    assert_cli_refuses({"task": "fashion_mnist_gan", "feature_run": str(run)}, "feature_run", tmp_path)
    sweep = tmp_path / "attack.yaml"
    sweep.write_text(ATTACK)
    line = assert_submit_refuses([sweep, "--dry-run", "--out", out, "--cluster", "debug"], "attack.from", tmp_path)
    assert "holds no finished runs" in line


@pytest.mark.parametrize("task, size", [("fashion_mnist", 10**7), ("cifar10_ae", 49_000), ("mnist_gan", 60_000)])
def test_a_train_size_past_the_dataset_is_refused_at_validation(tmp_path, task, size):
    """Once: the run started, failed at set-up (ValueError) and left its folder."""
    line = assert_cli_refuses({"task": task, "train_size": size}, "train_size", tmp_path)
    assert "training images" in line


@pytest.mark.parametrize("config, floor", [  # found by running every family key at its bounds
    ({"task": "adding", "param_budget": 1}, "22"),
    ({"task": "copy", "param_budget": 10, "model": "transformer"}, "smallest transformer"),
])
def test_a_param_budget_below_the_smallest_model_is_refused_at_validation(tmp_path, config, floor):
    line = assert_cli_refuses(config, "param_budget", tmp_path)  # once: exit 1 at set-up, a run folder left
    assert floor in line
