"""Submit benchmark: a 1,000-run grid from command start to all tasks queued on SLURM.

    python tests/benchmarks/bench_submit.py [--runs 1000] [--repeats 3] [--keep]

Each repeat runs `python jobs/submit.py grid.yaml --cluster slurm` as a user would (a fresh
process: interpreter start-up and imports are counted), then checks with `squeue -r` that every
task is queued and with the manifest that there was one array (one sbatch) per resource group,
and cancels the jobs. Prints the wall time per repeat, the median, and the size of the per-task
files submitit wrote. Target (issue 3): <= 2 s for 1,000 runs. Needs a SLURM cluster
(../shared/slurm/start-local-slurm.sh starts one on localhost).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def grid_yaml(n: int) -> str:
    """A grid of n runs (a multiple of 10): 10 seeds x n/10 learning rates, one resource group."""
    lrs = [round(0.001 * (i + 1), 6) for i in range(n // 10)]
    return f"""
name: bench{n}
method: grid
parameters:
  task: {{value: fashion_mnist}}
  model: {{value: mlp}}
  epochs: {{value: 1}}
  seed: {{values: {list(range(10))}}}
  lr: {{values: {lrs}}}
slurm:
  time_min: 5
  cpus_per_task: 1
  mem_gb: 1
  array_parallelism: 1
"""


def queued(job: str) -> int:
    out = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%i"], capture_output=True, text=True).stdout
    return len(out.split())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="leave the jobs queued")
    args = ap.parse_args()
    host = os.uname()
    print(f"# {host.nodename} {host.machine}, {os.cpu_count()} cores, python {sys.version.split()[0]}; "
          f"sbatch {subprocess.run(['sbatch', '--version'], capture_output=True, text=True).stdout.strip()}")
    times = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            sweep = Path(tmp) / "grid.yaml"
            sweep.write_text(grid_yaml(args.runs))
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, str(ROOT / "jobs" / "submit.py"), str(sweep), "--cluster", "slurm",
                                "--wandb", "disabled", "--out", str(Path(tmp) / "runs")], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                print(r.stdout, r.stderr, file=sys.stderr)
                return 1
            root = Path(tmp) / "runs" / f"bench{args.runs}"
            sub = json.loads((root / "manifest.json").read_text())["submissions"][-1]
            job = sub["arrays"][0]["job_id"]
            n_queued = queued(job)
            size = sum(p.stat().st_size for p in (root / "logs").rglob("*") if p.is_file())
            print(f"repeat {i}: {wall:.2f} s from command start to return; arrays (sbatch calls): "
                  f"{len(sub['arrays'])}; tasks queued: {n_queued}/{args.runs}; per-task files "
                  f"{size / 1e6:.1f} MB ({size / args.runs * 100 / 1e6:.2f} MB per 100 tasks); "
                  f"manifest {(root / 'manifest.json').stat().st_size / 1e6:.1f} MB")
            if not args.keep:
                subprocess.run(["scancel", job])
            if n_queued != args.runs:
                print("not every task was queued", file=sys.stderr)
                return 1
            times.append(wall)
            time.sleep(2)
    print(f"median {statistics.median(times):.2f} s for {args.runs} runs (target <= 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
