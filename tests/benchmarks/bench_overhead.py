"""Per-run overhead (issue 25, point 6): what a benchmark's many small runs cost beyond training.

    python tests/benchmarks/bench_overhead.py [--runs 8] [--wandb disabled offline] [--task two_moons]

Measures, each in its own way:
  process  a fresh `python -c "import dl2bench.train"`: interpreter start-up and imports, paid once
           per array task (median of 5);
  per run  N tiny runs trained one after the other in one process, as a packed array task trains
           them (dl2bench.launch.jobs.RunJob): wall time per run minus what the run itself timed as
           training, evaluation and test. The rest is the fixed cost of a run: config, data set-up,
           model build, the tracker (W&B init and finish), checkpoints, summary. The first run is
           reported apart (it loads the data and warms caches).
Then the cost per run of an array task that packs k runs: process / k + per run, for the k the
benchmark generator uses by default per size (dl2bench.benchmark.RUNS_PER_TASK). Prints threads and device.
The figures are medians over the runs; this machine is shared, so compare ratios within one run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def process_start(repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import dl2bench.train, dl2bench.launch.jobs"], check=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_run(task: str, n: int, wandb: str, extra: dict) -> tuple:
    import torch

    from dl2bench.train import run

    out = Path(tempfile.mkdtemp(prefix="overhead-"))
    rows = []
    for i in range(n):
        cfg = {"task": task, "epochs": 1, "seed": i, "device": "cpu", "wandb": wandb, **extra}
        t0 = time.perf_counter()
        s = run(cfg, out / f"r{i}")
        wall = time.perf_counter() - t0
        inside = sum(float(s.get(k) or 0.0) for k in ("train_time_total", "eval_time_total", "test_eval_time"))
        rows.append((wall, inside, s.get("status")))
    bad = [r for r in rows if r[2] != "finished"]
    if bad:
        raise SystemExit(f"error: {len(bad)} run(s) did not finish: {bad[:3]}")
    first = rows[0][0] - rows[0][1]
    rest = [w - i for w, i, _ in rows[1:]]
    return first, statistics.median(rest), statistics.median(w for w, _, _ in rows[1:]), torch.get_num_threads()


def main() -> int:
    from dl2bench.benchmark import RUNS_PER_TASK

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--wandb", nargs="+", default=["disabled", "offline"])
    ap.add_argument("--task", default="two_moons")
    a = ap.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    extra = {"train_size": 500, "val_size": 200, "test_size": 500} if a.task == "two_moons" else {}
    start = process_start()
    print(f"device cpu, {os.cpu_count()} cores; task {a.task}, 1 epoch, {a.runs} runs per setting")
    print(f"process start + imports (fresh interpreter, median of 5): {start:.2f} s")
    for mode in a.wandb:
        first, fixed, wall, threads = per_run(a.task, a.runs, mode, extra)
        print(f"wandb {mode:9s} threads {threads}: fixed cost per run {fixed:.2f} s (median; first run {first:.2f} s), "
              f"whole run {wall:.2f} s")
        for k in sorted({1, *RUNS_PER_TASK.values(), 32}):
            print(f"    {k:3d} run(s) per task: {start / k + fixed:.2f} s of overhead per run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
