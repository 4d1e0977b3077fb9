"""Suites (issue 25, point 4): several sweeps submitted as one, each after the sweeps it reads. The
order comes from the files (an attack/evaluate block's `from`, a GAN's feature_run) or `after:`; a
cycle, a missing sweep or a dependency nobody provides is one error before anything is submitted."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import assert_submit_refuses

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
