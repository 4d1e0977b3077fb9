"""The benchmark report (issue 25): the statistics checked against hand computations, and a real
small benchmark (two synthetic-data workloads, so no dataset is needed) run through submit.py and
built into HTML and PDF."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from reports import bench_stats as ST

ROOT = Path(__file__).resolve().parents[1]


def test_performance_ratios_profiles_and_their_area_match_a_hand_computation():
    cost = {"p1": {"a": 10.0, "b": 20.0, "c": math.inf},  # c never reached the target on p1
            "p2": {"a": 30.0, "b": 15.0, "c": 15.0},
            "p3": {"a": 5.0, "b": 5.0}}  # c is n/a on p3: left out, not a failure
    r = ST.ratios(cost)
    assert r["p1"] == {"a": 1.0, "b": 2.0, "c": math.inf} and r["p2"]["a"] == 2.0 and r["p3"] == {"a": 1.0, "b": 1.0}
    assert list(ST.profile(r, "a", [1.0, 2.0])) == [2 / 3, 1.0]
    assert list(ST.profile(r, "c", [1.0, 4.0])) == [0.5, 0.5]  # over the 2 workloads it runs on
    # area up to tau 4: mean of (4 - r) / 3 with r capped to [1, 4]
    assert ST.area(r, "a") == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert ST.area(r, "c") == pytest.approx((0 + 1) / 2)
    assert ST.area(ST.ratios({"p": {"a": 1.0, "b": 100.0}}), "b") == 0.0


def test_ranks_share_ties_and_holm_adjusts_like_the_textbook():
    assert ST.ranks({"a": 0.9, "b": 0.8, "c": 0.9}, "higher") == {"a": 1.5, "b": 3.0, "c": 1.5}
    assert ST.ranks({"a": 0.1, "b": math.nan}, "lower") == {"a": 1.0, "b": 2.0}
    # Holm: sorted p 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (monotone), in the input's order
    assert ST.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])


def test_pairwise_welch_with_holm_resolves_a_clear_gap_and_not_noise():
    seeds = {"p1": {"a": [0.90, 0.91, 0.905, 0.902], "b": [0.70, 0.71, 0.705, 0.69], "c": [0.89, 0.93, 0.88, 0.92]},
             "p2": {"a": [1.0, 1.01, 0.99, 1.0], "b": [2.0, 2.1, 1.9, 2.05], "c": [1.0, 1.2, 0.9, 1.1]}}
    better = {"p1": "higher", "p2": "lower"}
    pairs = ST.pairwise(seeds, better)
    assert pairs[("a", "b")] == {"win": 2, "tie": 0, "loss": 0}  # a better on both, whatever the direction
    assert pairs[("a", "c")] == {"win": 0, "tie": 2, "loss": 0}  # within the noise: not resolved
    lo, hi = ST.bootstrap_ranks(seeds, better, n=300)["b"]
    assert lo == hi == 3.0  # b is last on every resample
    assert ST.mean_ranks(seeds, better)["b"] == 3.0


def test_the_good_lr_band_is_the_contiguous_run_of_points_near_the_best():
    lrs = [0.001, 0.01, 0.1, 1.0, 10.0]
    lo, hi, width = ST.band(lrs, [0.5, 0.85, 0.9, 0.88, 0.2], "higher", tolerance=0.05)
    assert (lo, hi) == (0.01, 1.0) and width == pytest.approx(2.0)
    assert ST.band(lrs, [0.5, 0.9, 0.1, 0.89, 0.2], "higher", 0.05)[2] == 0.0  # not contiguous: one point
    assert ST.median_time([1.0, math.inf, math.inf]) == math.inf  # most seeds never reached it
    assert ST.median_time([1.0, 3.0, math.inf]) == 3.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_small_real_benchmark_runs_as_one_command_and_its_report_says_what_it_found(tmp_path):
    bench = tmp_path / "reg.yaml"
    bench.write_text("name: reg\nbenchmark:\n  workloads: [two_moons_realnvp, adding_lstm]\n"
                     "  axis: {regularizer: [none, l2, label_smoothing]}\n  lr_grid: {points: 3, decades: 2}\n"
                     "  final_seeds: 2\n  targets: {adding_lstm: 0.0001}\n")
    out = tmp_path / "runs"
    env_cmd = [sys.executable, str(ROOT / "jobs" / "submit.py"), str(bench), "--cluster", "local", "--out", str(out),
               "--wandb", "disabled", "--set", "device=cpu", "--set", "epochs=1", "--set", "train_size=500"]
    done = subprocess.run(env_cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # a stated target the known-good setting misses: warned with what it reaches
    assert "warning: targets.adding_lstm: the stated target 0.0001 is not reached" in done.stderr
    assert "final seed(s) reach 0." in done.stderr
    folder = out / ".benchmarks" / "reg"
    plan = json.loads((folder / "benchmark.json").read_text())
    assert set(plan["n/a"]["adding_lstm"]) == {"label_smoothing"}
    built = subprocess.run([sys.executable, str(ROOT / "reports" / "build.py"), str(folder)], capture_output=True,
                           text=True, cwd=ROOT, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    html = (folder / "report.html").read_text()
    assert "Performance profiles" in html and "Mean rank over workloads" in html and "verdict" in html
    assert "n/a: does not apply to sequence models" in html  # the refused value, with the task's reason
    # the stated target for adding is out of reach at smoke size: said, with the measured value
    assert "the stated target 0.0001 is not reached by the known-good setting" in html
    for w in ("two_moons_realnvp", "adding_lstm"):
        assert f"{w}: validation metric vs learning rate" in html
    from reports import benchmark as BR

    b = BR.load(folder)
    c = BR.cells(b)
    for w in b.workloads.values():
        for v in ("none", "l2"):
            cell = c[w.name][(v, "large")]
            assert len(cell.tests) == 2  # the final seeds, reported on test
            assert any(math.isclose(cell.lr, x, rel_tol=1e-3) for x in w.info["lr_grid"])
            assert c[w.name][(v, "one_shot")].lr == w.info["known_lr"]
    tl = subprocess.run(["pdftotext", str(folder / "report.pdf"), "-"], capture_output=True, text=True)
    assert tl.returncode == 0 and "Benchmark report: reg" in tl.stdout and "Pairwise" in tl.stdout
