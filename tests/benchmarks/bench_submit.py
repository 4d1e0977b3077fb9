"""Submit benchmark: a grid (1,000 runs by default) from command start to all tasks queued on SLURM.

    python tests/benchmarks/bench_submit.py [--runs 1000] [--repeats 3] [--keep]
    python tests/benchmarks/bench_submit.py --runs 50000 --repeats 1 --status   # issue 12

Each repeat runs `python jobs/submit.py grid.yaml --cluster slurm` as a user would (a fresh
process: interpreter start-up and imports are counted), then checks with `squeue -r` that every
task is queued and with the manifest that every run is in one queued task, and cancels the jobs.
A grid beyond the cluster's MaxArraySize is split into several arrays, and beyond what it still
takes (MaxJobCount, MaxSubmitJobs) packed several runs per task: the arrays, tasks and runs per task
are printed. --status also times `submit.py --status` over the queued sweep. Prints the wall time
per repeat, the median, and the size of the per-task files submitit wrote. Targets: <= 2 s for
1,000 runs (issue 3). Needs a SLURM cluster (../shared/slurm/start-local-slurm.sh starts one).
The jobs are queued to start an hour later (sbatch --begin), so none runs meanwhile.
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


def queued(jobs) -> set:
    out = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(jobs), "-o", "%i"], capture_output=True,
                         text=True).stdout
    return set(out.split())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="leave the jobs queued")
    ap.add_argument("--status", action="store_true", help="also time `submit.py --status` over the queued sweep")
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
            cmd = [sys.executable, str(ROOT / "jobs" / "submit.py"), str(sweep), "--cluster", "slurm",
                   "--wandb", "disabled", "--out", str(Path(tmp) / "runs"), "--sbatch", "begin=now+1hour"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                print(r.stdout, r.stderr, file=sys.stderr)
                return 1
            root = Path(tmp) / "runs" / f"bench{args.runs}"
            sub = json.loads((root / "manifest.json").read_text())["submissions"][-1]
            jobs = [a["job_id"] for a in sub["arrays"]]
            try:
                tasks = queued(jobs)
                every = len(sub["jobs"]) == args.runs and set(sub["jobs"].values()) <= tasks
                size = sum(p.stat().st_size for p in (root / "logs").rglob("*") if p.is_file())
                per = sorted({a["runs_per_task"] for a in sub["arrays"]})
                for line in r.stdout.splitlines():
                    if line.startswith(("packed", f"{args.runs:,} runs in")):
                        print(f"  submit.py said: {line}")
                print(f"repeat {i}: {wall:.2f} s from command start to return; arrays (sbatch calls): "
                      f"{len(sub['arrays'])}; tasks queued: {len(tasks):,} (every run in one: {every}); "
                      f"runs per task: {'/'.join(map(str, per))}; per-task files {size / 1e6:.1f} MB; "
                      f"manifest {(root / 'manifest.json').stat().st_size / 1e6:.1f} MB")
                if args.status:
                    t = time.perf_counter()
                    st = subprocess.run(cmd[:-2] + ["--status"], capture_output=True, text=True)
                    counts = " ".join(l.split()[0] + "=" + l.split()[1] for l in st.stdout.splitlines()
                                      if l.split()[:1] and l.split()[0] in ("queued", "running", "failed"))
                    print(f"  --status over it: {time.perf_counter() - t:.2f} s (exit {st.returncode}; {counts})")
            finally:
                if not args.keep:
                    subprocess.run(["scancel", *jobs])
            if not every:
                print("not every run was queued", file=sys.stderr)
                return 1
            times.append(wall)
            time.sleep(2)
    print(f"median {statistics.median(times):.2f} s for {args.runs:,} runs" + (" (target <= 2 s)" if args.runs <= 1000 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
