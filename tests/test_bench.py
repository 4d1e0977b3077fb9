"""Benchmark mode (dl2bench/train/bench.py): the record it writes, that it goes through the training
step itself, and its bad inputs. Small and fast: these check the figures are sane, never how
fast anything is."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dl2bench.config import ConfigError, RunConfig
from dl2bench.train import bench as B
from dl2bench.train import run
from dl2bench.train.step import DefaultStep
from helpers import assert_cli_refuses

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"mode": "benchmark", "bench_repeats": 3, "bench_seconds": 0.3, "warmup_steps": 1, "infer_batch_size": 32}


@pytest.fixture
def bench_cfg(tiny):
    return {**tiny, **QUICK}


def test_benchmark_writes_a_runs_record_with_sane_figures(bench_cfg, tmp_path):
    out = tmp_path / "b"
    s = run(bench_cfg, out)
    assert s["status"] == "finished", s.get("error")
    assert json.loads((out / "summary.json").read_text())["run_id"] == s["run_id"]
    assert json.loads((out / "config.json").read_text())["mode"] == "benchmark"
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["repeat"] for r in rows] == [1, 2, 3]  # one row per timed repeat
    for name in ("train_samples_per_s", "train_step_ms", "infer_samples_per_s", "latency_ms"):
        lo, med, hi, iqr = (s[f"{name}_{k}"] for k in ("min", "median", "max", "iqr"))
        assert 0 < lo <= med <= hi and iqr >= 0, name
        assert s[f"{name}_q1"] <= med <= s[f"{name}_q3"]
    assert s["train_samples_per_s_median"] == sorted(r["samples_per_s"] for r in rows)[1]
    assert s["samples_per_s"] == s["train_samples_per_s_median"]  # what the report's speed figures read
    # counted over a real step: forward, weight gradients (= forward) and input gradients for all
    # layers but the first (784-64-32-10): 2F + 2(64*32 + 32*10), not the 3F shortcut
    assert s["train_flops_per_sample"] == 2 * s["flops_per_sample"] + 2 * (64 * 32 + 32 * 10)
    assert s["train_flops_source"].startswith("counted")
    assert math.isclose(s["train_flop_per_s"], s["train_flops_per_sample"] * s["samples_per_s"])
    assert math.isclose(s["infer_flop_per_s"], s["flops_per_sample"] * s["infer_samples_per_s_median"])
    assert 0 < s["train_fraction_of_peak"] < 1.5 and 0 < s["infer_fraction_of_peak"] < 1.5
    assert s["peak_kind"] == "measured" and "roofline" in s["peak_source"]  # a CPU: measured here
    assert s["device"] == "cpu" and s["threads"] == 1 and s["peak_mem_mb"] > 0
    assert s["bench_repeats"] == 3 and s["bench_steps_per_repeat"] >= 1 and s["infer_batch_size"] == 32
    assert s["epochs_completed"] == 0 and not (out / "checkpoint.pt").exists()


def test_benchmark_goes_through_the_training_step(bench_cfg, tmp_path, monkeypatch):
    """The loop's own DefaultStep does the work: its optimizer's state moves, every step counted."""
    calls = []
    real = DefaultStep.__call__

    def counted(self, batch, detail):
        calls.append(self)
        return real(self, batch, detail)

    monkeypatch.setattr(DefaultStep, "__call__", counted)
    seen = {}
    real_run = B.benchmark

    def spy(prepared, between=None):
        before = {k: v.clone() for k, v in prepared.model.state_dict().items()}
        out = real_run(prepared, between)
        seen["moved"] = any(not torch.equal(before[k], v) for k, v in prepared.model.state_dict().items())
        seen["momentum"] = len(prepared.step.opt.state) > 0
        return out

    monkeypatch.setattr(B, "benchmark", spy)
    s = run({**bench_cfg, "bench_steps": 2}, tmp_path / "b")
    assert s["status"] == "finished", s.get("error")
    assert seen == {"moved": True, "momentum": True}
    # the counted step + warm-up + repeats x steps, one step object
    assert len(calls) == 1 + 1 + 3 * 2 and len(set(map(id, calls))) == 1


def test_a_model_that_raises_fails_the_benchmark_as_it_fails_training(bench_cfg, tmp_path, monkeypatch):
    """Raising in a training-mode forward (FLOPs are counted in eval mode, so setup gets through):
    the step is where both modes meet it, and both record it the same way."""
    from torch import nn

    from dl2bench.families import MODELS

    class Exploding(nn.Module):
        def __init__(self, in_shape, num_classes, **_):
            super().__init__()
            self.lin = nn.Linear(int(torch.tensor(in_shape).prod()), num_classes)

        def forward(self, x):
            if self.training:
                raise RuntimeError("forward exploded")
            return self.lin(x.flatten(1))

    monkeypatch.setitem(MODELS._entries, "exploding", Exploding)
    monkeypatch.setitem(MODELS._meta, "exploding", {"family": "classification"})
    for mode in ("train", "benchmark"):
        s = run({**bench_cfg, "model": "exploding", "mode": mode}, tmp_path / mode)
        assert s["status"] == "failed" and s["error"] == "RuntimeError: forward exploded", (mode, s.get("error"))
        assert "step" in s["traceback"]
        assert json.loads((tmp_path / mode / "summary.json").read_text())["status"] == "failed"


# bf16 on a CPU without native bf16 (AVX2 only: this AMD EPYC) is emulated: its roofline matmuls
# alone took over 5 minutes here, so it is slow-tier with a longer limit
@pytest.mark.parametrize("opts", [{"loader": "dataloader", "num_workers": 0}, {"loader": "dataloader", "num_workers": 1},
                                  pytest.param({"precision": "bf16"}, marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
                                  {"channels_last": True}],
                         ids=["dataloader", "dataloader-worker", "bf16", "channels_last"])
def test_benchmark_speed_options(bench_cfg, tmp_path, opts):
    s = run({**bench_cfg, "task": "cifar10", "model": "lenet", "bench_steps": 2, **opts}, tmp_path)
    assert s["status"] == "finished", s.get("error")
    assert s["train_samples_per_s_median"] > 0 and s["infer_samples_per_s_median"] > 0
    assert opts.get("precision", "fp32") in s["peak_source"]


@pytest.mark.parametrize("changes, key", [
    ({"precision": "fp16", "device": "cpu"}, "precision"),
    ({"mode": "bench"}, "mode"),
    ({"bench_repeats": 0}, "bench_repeats"),
    ({"bench_seconds": -1}, "bench_seconds"),
    ({"infer_batch_size": 0}, "infer_batch_size"),
    ({"bench_steps": -2}, "bench_steps"),
])
def test_bad_benchmark_inputs_are_one_clear_error(bench_cfg, tmp_path, changes, key):
    if key == "precision" and torch.cuda.is_available():
        pytest.skip("fp16 is fine where CUDA is")
    with pytest.raises(ConfigError, match=f"^{key}: "):
        run({**bench_cfg, **changes}, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_cli_refuses_fp16_benchmark_on_cpu(bench_cfg, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 is fine where CUDA is")
    assert_cli_refuses({k: v for k, v in {**bench_cfg, "precision": "fp16", "device": "cpu"}.items()
                        if k not in ("wandb",)}, "precision", tmp_path)


def test_new_keys_leave_training_run_ids_alone():
    base = RunConfig(task="cifar10").resolve()
    same = RunConfig(task="cifar10", mode="train", bench_repeats=7, bench_seconds=6.0).resolve()
    assert base.run_id() == same.run_id()
    assert RunConfig(task="cifar10", mode="benchmark").resolve().run_id() != base.run_id()


def test_known_peaks_and_their_sources():
    v, src = B.known_peak("NVIDIA H100 80GB HBM3", "bf16")
    assert v == 989e12 and "datasheet" in src and "H100 SXM" in src
    assert B.known_peak("NVIDIA H100 PCIe", "fp32")[0] == 51e12
    assert B.known_peak("NVIDIA H200", "fp32")[0] == 67e12
    assert B.known_peak("NVIDIA A100-SXM4-80GB", "bf16")[0] == 312e12
    assert B.known_peak("Tesla V100-SXM2-16GB", "bf16") is None  # no bf16 units: measured instead
    assert B.known_peak("Some Future GPU", "fp32") is None


def test_measured_peak_is_cached_per_process():
    B.measured_peak.cache_clear()
    a = B.measured_peak("cpu", "fp32", 1)
    b = B.measured_peak("cpu", "fp32", 1)
    assert a == b and a[0] > 1e8 and a[1] in B.ROOFLINE_SIZES["cpu"] and B.measured_peak.cache_info().hits == 1


def test_a_step_the_flop_counter_cannot_count_falls_back_to_3x_and_says_so(bench_cfg, tmp_path, monkeypatch):
    import torch.utils.flop_counter as FC

    def refuse(self):
        raise RuntimeError("this op has no FLOP formula")

    real_run = B.benchmark

    def refusing_counter(prepared, between=None):  # after setup, which counts forward FLOPs with it too
        monkeypatch.setattr(FC.FlopCounterMode, "__enter__", refuse)  # torch's counter, not our code
        return real_run(prepared, between)

    monkeypatch.setattr(B, "benchmark", refusing_counter)
    s = run(bench_cfg, tmp_path / "b")
    assert s["status"] == "finished", s.get("error")
    assert s["train_flops_per_sample"] == 3 * s["flops_per_sample"] > 0
    assert "approximation" in s["train_flops_source"]


def test_spread_statistics():
    s = B.spread([3.0, 1.0, 2.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 100.0
    assert s["q1"] == 2.0 and s["q3"] == 4.0 and s["iqr"] == 2.0
    assert B.spread([5.0])["iqr"] == 0.0


# ---------------------------------------------------------------------------------------------
# the sweep and the report

def test_cpu_vs_gpu_sweep_expands_to_benchmark_runs_and_a_cpu_half():
    from dl2bench import sweep as S

    full = S.load(ROOT / "sweeps" / "cpu_vs_gpu.yaml")
    assert all(r.mode == "benchmark" for r in full.runs)
    assert {r.device for r in full.runs} == {"cpu", "cuda"} and {r.precision for r in full.runs} == {"fp32", "bf16"}
    assert {r.model for r in full.runs} == {"mlp", "fc", "lenet", "wide_cnn"} and len({r.batch_size for r in full.runs}) == 3
    for half in (S.load(ROOT / "sweeps" / "cpu_vs_gpu.yaml", overrides={"device": "cpu"}),
                 S.load(ROOT / "sweeps" / "cpu_vs_gpu.yaml", smoke=True)):
        assert {r.device for r in half.runs} == {"cpu"} and len(half.runs) == len(full.runs) // 2
    smoke = S.load(ROOT / "sweeps" / "cpu_vs_gpu.yaml", smoke=True)
    assert all(r.bench_steps == 1 and r.bench_repeats == 3 for r in smoke.runs)


@pytest.fixture(scope="module")
def cpu_half(data_root, tmp_path_factory):
    """A CPU-only benchmark sweep, recorded by real runs: 2 models x 2 batch sizes x 2 thread counts."""
    import os

    old = os.environ.get("DL2BENCH_DATA")
    os.environ["DL2BENCH_DATA"] = str(data_root)
    root = tmp_path_factory.mktemp("cpu_vs_gpu")
    try:
        for model in ("mlp", "lenet"):
            for batch in (16, 64):
                for threads in (1, 2):
                    cfg = RunConfig.from_dict({**QUICK, "task": "fashion_mnist", "model": model, "batch_size": batch,
                                               "threads": threads, "device": "cpu", "val_size": 100,
                                               "wandb": "disabled", "progress": "none", "bench_steps": 2})
                    s = run(cfg, root / cfg.resolve().run_id())
                    assert s["status"] == "finished", s.get("error")
    finally:
        if old is None:
            os.environ.pop("DL2BENCH_DATA", None)
        else:
            os.environ["DL2BENCH_DATA"] = old
    return root


@pytest.mark.slow  # a benchmark sweep and its report
def test_report_of_the_cpu_half_says_not_run_for_the_gpu(cpu_half, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from reports.analysis import analyse
    from reports.build import build_report
    from reports.load import load_folders
    from reports.tables import benchmark_speedup

    sw = load_folders([cpu_half])
    a = analyse(sw)
    (t,) = list(benchmark_speedup(a))
    df = t.df
    assert len(df) == 4  # model x batch size (one precision)
    for col in ("GPU training samples/s", "GPU inference samples/s", "GPU batch-1 latency ms"):
        assert (df[col] == "not run").all(), df[col]
    assert (df["training speedup GPU/CPU (×)"] == "–").all()
    assert df["CPU training samples/s"].str.contains("IQR").all() and df["CPU threads"].isin(["1", "2"]).all()
    assert "not run" in t.caption and "--set device=cpu" in t.caption
    paths = build_report(sw, tmp_path / "out")
    html = paths["report.html"].read_text()
    for key in ("benchmark-speedup", "throughput-vs-batch", "utilisation", "thread-scaling"):
        assert f'id="{key}"' in html or f"id='{key}'" in html or key in html, key
    assert "not run" in html and "measured matmul roofline" in html
    assert "counted by torch&#x27;s flop counter" in html or "counted by torch's flop counter" in html


def test_report_marks_failed_gpu_runs_not_missing(cpu_half, tmp_path):
    """A GPU run that failed (a node without memory) reads 'not run (1 failed)', not a blank."""
    import shutil

    from reports.analysis import analyse
    from reports.load import load_folders
    from reports.tables import benchmark_speedup

    root = tmp_path / "sweep"
    shutil.copytree(cpu_half, root)
    src = next(p for p in root.iterdir() if json.loads((p / "config.json").read_text())["model"] == "mlp")
    gpu = root / "gpu-run"
    gpu.mkdir()
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(device="cuda", run_id="gpu-run")
    (gpu / "config.json").write_text(json.dumps(cfg))
    summ = json.loads((src / "summary.json").read_text())
    summ = {k: v for k, v in summ.items() if not k.startswith(("train_", "infer_", "latency_"))}
    summ.update(status="failed", error="CUDA out of memory", run_id="gpu-run", device="cuda", device_name="NVIDIA H100")
    (gpu / "summary.json").write_text(json.dumps(summ))
    (t,) = list(benchmark_speedup(analyse(load_folders([root]))))
    row = t.df[(t.df["model"] == "mlp") & (t.df["batch size"] == str(cfg["batch_size"]))].iloc[0]
    assert row["GPU training samples/s"] == "not run (1 failed)"


def test_report_speedup_of_a_gpu_run_is_gpu_over_cpu(cpu_half, tmp_path):
    """A (copied, relabelled) GPU run 10x faster than the CPU run of its configuration: speedup 10."""
    import shutil

    from reports.analysis import analyse
    from reports.load import load_folders
    from reports.tables import benchmark_speedup

    root = tmp_path / "sweep"
    shutil.copytree(cpu_half, root)
    lenet = [p for p in sorted(root.iterdir()) if json.loads((p / "config.json").read_text())["model"] == "lenet"
             and json.loads((p / "config.json").read_text())["batch_size"] == 16]
    # the table divides by the CPU's fastest thread count
    src = max(lenet, key=lambda p: json.loads((p / "summary.json").read_text())["train_samples_per_s_median"])
    cfg = json.loads((src / "config.json").read_text())
    threads = cfg["threads"]
    summ = json.loads((src / "summary.json").read_text())
    gpu = root / "gpu-run"
    gpu.mkdir()
    cfg.update(device="cuda", threads=1, run_id="gpu-run")
    (gpu / "config.json").write_text(json.dumps(cfg))
    fast = {k: (v * 10 if k.startswith(("train_samples_per_s", "infer_samples_per_s")) or k == "samples_per_s"
                else v / 10 if k.startswith("latency_ms") else v) for k, v in summ.items()}
    fast.update(run_id="gpu-run", device="cuda", device_name="NVIDIA H100 80GB HBM3", threads=1)
    (gpu / "summary.json").write_text(json.dumps(fast))
    (t,) = list(benchmark_speedup(analyse(load_folders([root]))))
    row = t.df[(t.df["model"] == "lenet") & (t.df["batch size"] == str(cfg["batch_size"]))].iloc[0]
    for head in ("training", "inference", "batch-1"):
        assert float(row[f"{head} speedup GPU/CPU (×)"]) == pytest.approx(10, rel=1e-2), head
    assert row["CPU threads"] == str(threads) and "IQR" in row["GPU training samples/s"]
    assert "NVIDIA H100" in t.caption
    others = t.df[~((t.df["model"] == "lenet") & (t.df["batch size"] == str(cfg["batch_size"])))]
    assert (others["GPU training samples/s"] == "not run").all()


def test_unsteady_benchmark_repeats_are_called_repeats(cpu_half, tmp_path):
    """A benchmark run whose second repeat ran at a third of the speed is flagged, in repeats, not epochs."""
    import shutil

    from reports.analysis import analyse
    from reports.load import load_folders
    from reports.tables import unsteady_throughput

    root = tmp_path / "sweep"
    shutil.copytree(cpu_half, root)
    run_dir = sorted(p for p in root.iterdir() if p.is_dir())[0]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows[1]["samples_per_s"] = rows[0]["samples_per_s"] / 3
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (t,) = unsteady_throughput(analyse(load_folders([root])))
    assert run_dir.name in t.df["run"].tolist()  # (a real run of the fixture may be unsteady too, on a busy machine)
    assert "repeats" in t.df.columns and "epochs" not in t.df.columns
    assert any(c.startswith("slowest – fastest repeat") for c in t.df.columns)
    assert "timed repeats" in t.caption and "epoch" not in t.caption


def test_wait_counts_a_benchmark_runs_repeats():
    from dl2bench.launch import progress

    assert progress._units({"mode": "benchmark", "epochs": 30}) == 7  # bench_repeats' default, not epochs
    assert progress._units({"mode": "benchmark", "bench_repeats": 3}) == 3
    assert progress._units({"epochs": 5}) == 5 and progress._units(None) == 0


def test_between_repeats_runs_outside_the_clocks_once_per_repeat_and_after_the_last(bench_cfg, tmp_path):
    """The hook bench_mode.py interleaves its bare loop through (run's between_repeats): before
    every timed repeat of each phase and once after the last, with that phase's calls per repeat;
    time spent in it is not in the benchmark's figures."""
    import time

    seen = []

    def slow(phase, r, calls):
        seen.append((phase, r, calls))
        time.sleep(0.05)  # 50 ms per call: inside the clocks it would dwarf a 2-step repeat of this MLP

    s = run({**bench_cfg, "bench_steps": 2}, tmp_path / "b", between_repeats=slow)
    assert s["status"] == "finished", s.get("error")
    for phase, n, calls in (("train", 3, 2), ("latency", s["bench_latency_repeats"], s["bench_latency_calls"]),
                            ("infer", s["bench_infer_repeats"], s["bench_infer_calls"])):
        assert [x for x in seen if x[0] == phase] == [(phase, r, calls) for r in range(n + 1)], phase
    assert s["train_time_total"] < 3 * 0.05  # the sleeps were not timed


def test_between_repeats_is_refused_outside_benchmark_mode(bench_cfg, tmp_path):
    with pytest.raises(ValueError, match="^between_repeats: "):
        run({**bench_cfg, "mode": "train"}, tmp_path / "b", between_repeats=lambda *a: None)
    assert not (tmp_path / "b").exists()


def test_benchmark_sees_the_prepared_run_not_the_trainer():
    """bench.py reads a Prepared run (prepare.py) and imports nothing of the loop's."""
    import ast

    tree = ast.parse((ROOT / "dl2bench" / "train" / "bench.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported and not any(m and "loop" in m for m in imported), imported
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "benchmark"]
    assert ast.unparse(fn.args.args[0].annotation) == "Prepared"
    assert not (ROOT / "dl2bench" / "bench.py").exists()
