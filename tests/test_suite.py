"""Suites (issue 25, point 4): several sweeps submitted as one, each after the sweeps it reads. The
order comes from the files (an attack/evaluate block's `from`, a GAN's feature_run) or `after:`; a
cycle, a missing sweep or a dependency nobody provides is one error before anything is submitted."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import assert_submit_refuses, fake_run

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "sweeps" / "suites" / "course.yaml"


def test_the_course_suite_lists_every_shipped_sweep_after_what_it_reads(tmp_path):
    from dl2bench import suite as SU

    su = SU.load_suite(COURSE, root=tmp_path)
    names = [m.name for m in su.members]
    assert sorted(names) == SU.suite_names()  # a new sweep file must join the course
    pos = {n: i for i, n in enumerate(names)}
    for later, first in [("attack_classifiers", "cifar_cnn"), ("attack_classifiers", "optimizers"),
                         ("gan", "gan_features"), ("gan_truncation", "gan"),
                         ("attack_adversarial_training", "adversarial_training")]:
        assert pos[first] < pos[later], (first, later)
        assert first in su.member(later).needs
    assert SU.is_suite(COURSE) and not SU.is_suite(ROOT / "sweeps" / "gan.yaml")


SWEEP = "name: {name}\nmethod: grid\nparameters:\n  task: {{value: fashion_mnist}}\n  lr: {{values: [0.1, 0.01]}}\n"


def write_suite(tmp_path, body: str, sweeps=("a", "b")) -> Path:
    for s in sweeps:
        (tmp_path / f"{s}.yaml").write_text(SWEEP.format(name=s))
    path = tmp_path / "suite.yaml"
    path.write_text("name: s\nsweeps:\n" + body)
    return path


@pytest.mark.parametrize("body, said", [
    ("  - {sweep: a, after: [b]}\n  - {sweep: b, after: [a]}\n", "a cycle: a -> b -> a"),
    ("  - a\n  - nothere\n", "sweep 'nothere': no such file"),
    ("  - {sweep: a, after: [zzz]}\n", "'zzz' is not a sweep of this suite"),
    ("  - a\n  - a\n", "listed twice"),
    ("  - {sweep: a, when: later}\n", "expected {sweep: FILE, after: [NAMES]}"),
    ("  - 3\n", "expected a sweep file's name or path"),
])
def test_a_bad_suite_is_one_error_and_nothing_is_queued(tmp_path, body, said):
    suite = write_suite(tmp_path, body)
    line = assert_submit_refuses([suite, "--out", tmp_path / "runs", "--cluster", "debug", "--wandb", "disabled"],
                                 "suite.yaml", tmp_path)
    assert said in line and not (tmp_path / "runs").exists()


def test_a_dependency_no_one_provides_is_refused_unless_it_already_finished(tmp_path):
    from dl2bench import suite as SU
    from dl2bench.sweep import SweepError

    (tmp_path / "atk.yaml").write_text("name: atk\nmethod: grid\nparameters:\n  attack_eps: {value: 0.1}\n"
                                       "attack:\n  from: victims\n  task: fashion_mnist_attack\n")
    suite = write_suite(tmp_path, "  - atk\n", sweeps=())
    with pytest.raises(SweepError, match="reads sweep 'victims', which the suite does not list"):
        SU.load_suite(suite, root=tmp_path / "runs")
    (tmp_path / "runs" / "victims").mkdir(parents=True)  # finished earlier, same --out
    assert SU.load_suite(suite, root=tmp_path / "runs").member("atk").needs == {}


def test_a_suite_runs_in_order_skips_what_a_failure_blocks_and_resubmits_nothing(tiny, tmp_path, capsys):
    """On this machine (--cluster debug): a classifier sweep, an attack sweep that reads it (expanded
    only once the classifiers exist), and a sweep that fails with the one that comes after it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("submit_cli", ROOT / "jobs" / "submit.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    keys = "".join(f"  {k}: {{value: {v}}}\n" for k, v in tiny.items() if k not in ("wandb",))
    (tmp_path / "victims.yaml").write_text(f"name: victims\nmethod: grid\nparameters:\n{keys}  epochs: {{value: 1}}\n"
                                           .replace("  epochs: {value: 2}\n", ""))
    (tmp_path / "atk.yaml").write_text("name: atk\nmethod: grid\nparameters:\n  attack: {value: fgsm}\n"
                                       "  attack_eps: {value: 0.1}\n  progress: {value: none}\n"
                                       "attack:\n  from: victims\n  task: fashion_mnist_attack\n")
    # a sweep whose run fails at set-up (more training examples than the tiny files hold), and one after it
    (tmp_path / "broken.yaml").write_text(f"name: broken\nmethod: grid\nparameters:\n{keys}"
                                          "  train_size: {value: 50000}\n")
    (tmp_path / "after_broken.yaml").write_text(f"name: after_broken\nmethod: grid\nparameters:\n{keys}")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nsweeps:\n  - atk\n  - victims\n  - broken\n  - {sweep: after_broken, after: [broken]}\n")
    out = tmp_path / "runs"
    args = [str(suite), "--out", str(out), "--cluster", "debug", "--wandb", "disabled"]
    code = cli.main(args)
    got = capsys.readouterr()
    said = got.out
    assert code == 1, said + got.err
    assert said.index("== victims") < said.index("== atk")  # listed first, run second
    assert "after_broken" in said and "not submitted: it needs broken, which did not finish" in said
    assert not (out / "after_broken").exists()
    attacks = [p for p in (out / "atk").iterdir() if (p / "summary.json").exists()]
    assert len(attacks) == 1  # one attack of the one trained classifier
    code = cli.main(args)
    again = capsys.readouterr().out
    assert again.count("nothing to submit") == 2, again  # victims and atk: done; broken's failed run reruns


def test_a_suite_on_slurm_is_one_submission_with_dependent_sweeps_held_by_slurm(tmp_path, job_env, need_slurm):
    """On the local SLURM: one submit queues the classifiers and an expander job for the attack sweep
    that reads them, which SLURM holds (reason Dependency) until the classifiers' array has ended; a
    sweep with a failed run stops the sweep after it, with the reason in --status; a resubmit of what
    finished queues nothing."""
    import subprocess

    from helpers import submit

    keys = ("  task: {value: fashion_mnist}\n  model: {value: mlp}\n  train_size: {value: 2000}\n"
            "  test_size: {value: 500}\n  epochs: {value: 1}\n  progress: {value: none}\n  threads: {value: 1}\n")
    (tmp_path / "victims.yaml").write_text(f"name: victims\nmethod: grid\nparameters:\n{keys}"
                                           "  lr: {values: [0.1, 0.01]}\n")
    (tmp_path / "atk.yaml").write_text("name: atk\nmethod: grid\nparameters:\n  attack: {value: fgsm}\n"
                                       "  attack_eps: {value: 0.1}\n  progress: {value: none}\n"
                                       "attack:\n  from: victims\n  task: fashion_mnist_attack\n")
    # fails at set-up on the job data (20,000 training images), after its array has been queued
    (tmp_path / "broken.yaml").write_text(f"name: broken\nmethod: grid\nparameters:\n{keys}"
                                          .replace("2000}", "50000}"))
    (tmp_path / "after_broken.yaml").write_text(f"name: after_broken\nmethod: grid\nparameters:\n{keys}")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nsweeps:\n  - atk\n  - victims\n  - broken\n  - {sweep: after_broken, after: [broken]}\n")
    out = tmp_path / "runs"
    flags = ("--cluster", "slurm", "--out", out, "--cpus-per-task", "1")
    r = submit(job_env, suite, *flags, "--partition", "nowhere")  # refused before anything is queued
    assert r.returncode == 2 and r.stderr.startswith("error: sweep victims (") and "nothing of the suite" in r.stderr
    assert not out.exists() and not subprocess.run(["squeue", "--me", "-h"], capture_output=True, text=True).stdout
    r = submit(job_env, suite, *flags)
    assert r.returncode == 0, r.stdout + r.stderr
    arrays = [line.split("job ")[1].split()[0] for line in r.stdout.splitlines() if line.startswith("queued ")]
    # held, so that the expanders are still waiting when we look (these runs take seconds)
    subprocess.run(["scontrol", "hold", *arrays], check=True, capture_output=True)
    held = subprocess.run(["squeue", "--me", "-h", "-o", "%j|%r|%E"], capture_output=True, text=True).stdout
    held = {line.split("|")[0]: line.split("|")[1:] for line in held.splitlines()}
    for name in ("atk", "after_broken"):  # queued, and held by SLURM until what they read has ended
        reason, needs = held[f"dl2bench-s-expand-{name}"]
        assert reason == "Dependency" and needs.startswith("afterany:"), held
    assert not (out / "atk").exists()  # expanded only once the classifiers exist
    st = submit(job_env, suite, *flags, "--status")
    assert outcomes(st.stdout)[-1]["atk"].startswith("expander job "), st.stdout
    assert "pending (Dependency): waiting for job(s)" in outcomes(st.stdout)[-1]["atk"], st.stdout

    again = submit(job_env, suite, *flags)  # a resubmit while all is in flight queues nothing
    assert again.returncode == 0, again.stdout + again.stderr
    queued = outcomes(again.stdout)[-1]
    assert queued["atk"].startswith("already waiting: expander job") and queued["victims"].startswith("nothing"), queued
    subprocess.run(["scontrol", "release", *arrays], check=True, capture_output=True)
    r = submit(job_env, suite, *flags, "--status", "--wait", "--poll", "1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert outcomes(r.stdout)[-1] == {
        "victims": "ok", "atk": "ok", "broken": "has failed runs",
        "after_broken": "not submitted: it needs broken, which has 1 failed run(s) of 1"}, r.stdout
    assert not (out / "after_broken").exists()
    attacks = [p for p in (out / "atk").iterdir() if (p / "summary.json").exists()]
    assert len(attacks) == 2  # both classifiers attacked: the attack sweep saw the whole of victims

    ok = tmp_path / "ok.yaml"
    ok.write_text("name: ok\nsweeps:\n  - atk\n  - victims\n")
    r = submit(job_env, ok, *flags)
    assert r.returncode == 0 and set(outcomes(r.stdout)[-1].values()) == {
        "nothing to submit: every run is done or in flight"}, r.stdout
    assert not subprocess.run(["squeue", "--me", "-h"], capture_output=True, text=True).stdout.strip()


def outcomes(said: str) -> list:
    """Each `suite NAME:` summary block printed, as {sweep: what it says}."""
    blocks = []
    for block in said.split("\nsuite ")[1:]:
        lines = block.split("\n")[1:]
        rows = [line.strip().split(None, 1) for line in lines if line.startswith("  ") and line.strip()]
        blocks.append({row[0]: row[1] if len(row) > 1 else "" for row in rows})
    return blocks


def test_tune_then_final_chooses_on_validation_and_reruns_the_choice_over_seeds(tiny, tmp_path, capsys):
    """The two stages of the tuning protocol as a suite: the final sweep's select block chooses, per
    optimizer, the lr whose runs reached the best validation accuracy (median over seeds), and reruns
    it and the untuned baseline lr over three seeds."""
    import importlib.util
    import json
    import statistics

    spec = importlib.util.spec_from_file_location("submit_cli", ROOT / "jobs" / "submit.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    keys = "".join(f"  {k}: {{value: {v}}}\n" for k, v in tiny.items() if k not in ("wandb", "epochs"))
    (tmp_path / "tune.yaml").write_text(f"name: tune\nmethod: grid\nparameters:\n{keys}  epochs: {{value: 1}}\n"
                                        "  optimizer: {values: [sgd, adam]}\n  lr: {values: [0.3, 0.01, 0.0001]}\n"
                                        "  seed: {values: [0, 1]}\n")
    (tmp_path / "final.yaml").write_text("name: final\nmethod: grid\nparameters:\n  seed: {values: [0, 1, 2]}\n"
                                         "select:\n  from: tune\n  per: [optimizer]\n  tune: [lr]\n"
                                         "  baseline: {lr: 0.01}\n  budgets: {small: {lr: [0.3, 0.0001]}}\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: bench\nsweeps:\n  - final\n  - tune\n")
    out = tmp_path / "runs"
    code = cli.main([str(suite), "--out", str(out), "--cluster", "debug", "--wandb", "disabled"])
    said = capsys.readouterr()
    assert code == 0, said.out + said.err
    best = {}  # what the protocol must choose, from the tuning runs' own summaries
    for run in (out / "tune").iterdir():
        if (run / "summary.json").exists():
            cfg = json.loads((run / "config.json").read_text())
            acc = json.loads((run / "summary.json").read_text())["best_val_acc"]
            best.setdefault(cfg["optimizer"], {}).setdefault(cfg["lr"], []).append(acc)
    chosen = {opt: max(by_lr, key=lambda lr: statistics.median(by_lr[lr])) for opt, by_lr in best.items()}
    # the small budget chooses only among the values it lists (a subset of the same tuning runs)
    small = {opt: max((0.3, 0.0001), key=lambda lr: statistics.median(by_lr[lr])) for opt, by_lr in best.items()}
    final = [json.loads((r / "config.json").read_text()) for r in (out / "final").iterdir()
             if (r / "summary.json").exists()]
    got = {}
    for cfg in final:
        got.setdefault(cfg["optimizer"], {}).setdefault(cfg["lr"], set()).add(cfg["seed"])
    for opt, lr in chosen.items():
        assert got[opt][lr] == {0, 1, 2} and got[opt][0.01] == {0, 1, 2} and got[opt][small[opt]] == {0, 1, 2}
        assert set(got[opt]) == {lr, 0.01, small[opt]}
    assert "select: sgd: chose" in said.err and "select: adam: chose" in said.err
    assert "select: sgd (small budget): chose" in said.err


@pytest.mark.parametrize("block, key", [
    ("{from: tune, tune: [lr], pick: best}", "select.pick: unknown key"),
    ("{from: tune}", "select: expected a mapping with from"),
    ("{from: tune, tune: []}", "select.tune: expected at least one"),
    ("{from: tune, tune: [lr], baseline: {momentum: 0.9}}", "select.baseline: expected values of the tuned keys"),
    ("{from: tune, tune: [lrr]}", "select.tune"),
    ("{from: tune, tune: [lr], budgets: {large: {lr: [0.1]}}}", "select.budgets: expected named subsets"),
    ("{from: tune, tune: [lr], budgets: {small: {momentum: [0.9]}}}", "select.budgets: expected named subsets"),
    ("{from: elsewhere, tune: [lr]}", "select.from: 'elsewhere': no such folder"),
    ("{from: tune, tune: [lr]}", "select.from: run r1 in"),  # a tuning run that failed: not chosen on fewer seeds
])
def test_a_bad_select_block_is_one_error_naming_its_key(tmp_path, block, key):
    import json

    out = tmp_path / "runs"
    failed = fake_run(out / "tune", "r1")
    (failed / "summary.json").write_text(json.dumps({"run_id": "r1", "status": "failed"}))
    final = tmp_path / "final.yaml"
    final.write_text(f"name: final\nmethod: grid\nparameters:\n  seed: {{values: [0, 1]}}\nselect: {block}\n")
    assert_submit_refuses([final, "--out", out, "--cluster", "debug", "--dry-run"], key, tmp_path)
