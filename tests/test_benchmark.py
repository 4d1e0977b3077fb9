"""A benchmark file (issue 25): workloads x an axis under a stated tuning protocol, made into one
tune and one final sweep per workload and a suite; axis values a task refuses are n/a with the reason."""
from __future__ import annotations

import math

import pytest


def write(tmp_path, body: str):
    path = tmp_path / "bench.yaml"
    path.write_text("name: b\nbenchmark:\n" + body)
    return path


def test_the_lr_grid_is_log_spaced_around_the_known_good_lr():
    from dl2bench.benchmark import lr_grid

    grid = lr_grid(0.01, 7, 3)
    assert grid[3] == 0.01 and len(grid) == 7
    assert math.isclose(grid[0], 0.01 / 10 ** 1.5, rel_tol=1e-3) and math.isclose(grid[-1], 0.01 * 10 ** 1.5, rel_tol=1e-3)
    ratios = [b / a for a, b in zip(grid, grid[1:])]
    assert max(ratios) / min(ratios) < 1.001  # evenly spaced in log


def test_a_benchmark_becomes_a_suite_of_tune_and_final_sweeps_with_refused_values_marked_na(tmp_path):
    from dl2bench import benchmark as B
    from dl2bench import suite as SU
    from dl2bench import sweep as S

    path = write(tmp_path, "  workloads: [fashion_mnist_mlp, two_moons_realnvp, fashion_mnist_dcgan]\n"
                           "  axis: {regularizer: [none, label_smoothing, l2]}\n  lr_grid: {points: 3, decades: 2}\n")
    out = tmp_path / "runs"
    suite, plan = B.generate(path, out)
    su = SU.load_suite(suite, root=out)
    names = [m.name for m in su.members]
    assert names.index("gan_features") < names.index("b-tune-fashion_mnist_dcgan")  # the GAN's instrument first
    assert su.member("b-final-two_moons_realnvp").needs == {"b-tune-two_moons_realnvp": "its select block's from"}
    # label smoothing does not apply to a flow or a GAN: n/a with the task's reason, never silently dropped
    assert "density model" in plan["n/a"]["two_moons_realnvp"]["label_smoothing"]
    assert set(plan["n/a"]["fashion_mnist_dcgan"]) == {"label_smoothing", "l2"}
    assert "fashion_mnist_mlp" not in plan["n/a"]
    tune = S.load(out / ".benchmarks" / "b" / "b-tune-two_moons_realnvp.yaml", root=out)
    assert sorted({r.regularizer for r in tune.runs}) == ["l2", "none"]
    assert sorted({r.lr for r in tune.runs}) == [0.0001, 0.001, 0.01]  # known-good 1e-3, two decades
    assert {r.epochs for r in tune.runs} == {5} and {r.seed for r in tune.runs} == {0}  # the smoke budget
    assert any("n/a: two_moons_realnvp x label_smoothing" in line for line in B.describe(plan))


@pytest.mark.parametrize("body, said", [
    ("  axis: {optimizer: [adam]}\n  budget: 3\n", "benchmark.budget: unknown key"),
    ("  axis: {optimizer: [adamm]}\n", "benchmark.axis.optimizer: unknown optimizer 'adamm'"),
    ("  axis: {lr: [0.1]}\n", "benchmark.axis: expected one key of"),
    ("  axis: {optimizer: all}\n  workloads: [mnist_mlp]\n", "benchmark.workloads: unknown workload 'mnist_mlp'"),
    ("  axis: {optimizer: all}\n  size: huge\n", "benchmark.size: expected one of smoke, laptop, full"),
    ("  axis: {optimizer: all}\n  lr_grid: {points: 0, decades: 3}\n", "benchmark.lr_grid"),
    ("  axis: {optimizer: all}\n  final_seeds: 0\n", "benchmark.final_seeds"),
    ("  axis: {optimizer: all}\n  budgets: [small]\n", "benchmark.budgets: small is every other point"),
    ("  axis: {optimizer: all}\n  budgets: [huge]\n", "benchmark.budgets: expected a list of one_shot"),
    ("  axis: {optimizer: all}\n  budgets: []\n", "benchmark.budgets: expected a list"),
    ("  axis: {optimizer: all}\n  workloads: [adding_lstm]\n  targets: {cartpole_dqn: 1}\n",
     "benchmark.targets.cartpole_dqn: not a workload of this benchmark"),
    ("  axis: {optimizer: all}\n  workloads: [adding_lstm]\n  targets: {adding_lstm: low}\n",
     "benchmark.targets.adding_lstm: expected a number"),
])
def test_a_bad_benchmark_file_is_one_error_naming_its_key(tmp_path, body, said):
    from dl2bench import benchmark as B
    from dl2bench.sweep import SweepError

    with pytest.raises(SweepError, match=said.replace("(", r"\(").replace("[", r"\[")):
        B.read(write(tmp_path, body))


def test_budgets_make_the_final_stage_one_shot_small_and_large_and_one_shot_alone_skips_tuning(tmp_path):
    """one_shot is the known-good lr (the select block's baseline), small chooses among every other
    grid point (a named subset of the same grid: no extra tuning run), large among all of them."""
    import yaml

    from dl2bench import benchmark as B

    path = write(tmp_path, "  workloads: [adding_lstm]\n  axis: {optimizer: [sgd, adam]}\n"
                           "  lr_grid: {points: 5, decades: 2}\n")
    _, plan = B.generate(path, tmp_path / "runs")
    final = yaml.safe_load((tmp_path / "runs" / ".benchmarks" / "b" / "b-final-adding_lstm.yaml").read_text())
    grid = plan["workloads"]["adding_lstm"]["lr_grid"]
    assert final["select"]["baseline"] == {"lr": 0.003}
    assert final["select"]["budgets"] == {"small": {"lr": grid[::2]}} and len(grid[::2]) == 3
    path = write(tmp_path, "  workloads: [adding_lstm]\n  axis: {optimizer: [sgd, adam]}\n  budgets: [one_shot]\n")
    suite, plan = B.generate(path, tmp_path / "one")
    names = [p.name for p in (tmp_path / "one" / ".benchmarks" / "b").glob("*.yaml")]
    assert sorted(names) == ["b-final-adding_lstm.yaml", "suite.yaml"]  # nothing to tune
    final = yaml.safe_load((tmp_path / "one" / ".benchmarks" / "b" / "b-final-adding_lstm.yaml").read_text())
    assert final["parameters"]["lr"] == {"value": 0.003} and final["parameters"]["optimizer"] == {"values": ["sgd", "adam"]}


def test_small_runs_are_packed_per_array_task_unless_the_benchmark_says_otherwise(tmp_path):
    """Point 6: a smoke benchmark's runs pay one process start per 16 of them (bench_overhead.py)."""
    import yaml

    from dl2bench import benchmark as B

    path = write(tmp_path, "  workloads: [adding_lstm]\n  axis: {optimizer: [sgd]}\n")
    B.generate(path, tmp_path / "a")
    tune = yaml.safe_load((tmp_path / "a" / ".benchmarks" / "b" / "b-tune-adding_lstm.yaml").read_text())
    assert tune["slurm"]["runs_per_task"] == B.RUNS_PER_TASK["smoke"] == 16
    path.write_text(path.read_text() + "  size: full\nslurm: {runs_per_task: 2}\n")
    B.generate(path, tmp_path / "b")
    final = yaml.safe_load((tmp_path / "b" / ".benchmarks" / "b" / "b-final-adding_lstm.yaml").read_text())
    assert final["slurm"]["runs_per_task"] == 2


def test_adamw_beside_adam_without_weight_decay_is_said_to_repeat_adam(tmp_path):
    """adamw decouples the decay from the gradient; at weight_decay 0 there is none, so its runs are
    adam's. The smoke benchmark showed two identical rows; the protocol now says why."""
    from dl2bench import benchmark as B

    path = write(tmp_path, "  workloads: [fashion_mnist_mlp]\n  axis: {optimizer: [sgd, adam, adamw]}\n")
    _, plan = B.generate(path, tmp_path / "runs")
    assert any("note: fashion_mnist_mlp: adamw = adam here" in line for line in B.describe(plan))
    path = write(tmp_path, "  workloads: [fashion_mnist_mlp]\n  axis: {optimizer: [sgd, adamw]}\n")
    _, plan = B.generate(path, tmp_path / "runs2")
    assert not any("adamw = adam" in line for line in B.describe(plan))
