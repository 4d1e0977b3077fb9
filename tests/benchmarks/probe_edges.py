"""Every family key at its declared edges (min, max, each choice), as real runs through the train
command line: a config that validation accepts must train, or fail only for a reason the user can
act on (a dataset not on this machine). Issue 24 used it to find config errors that surfaced only at
set-up, after the run folder existed. Slow (minutes per family); not a test.

    python tests/benchmarks/probe_edges.py [--family sequence] [--timeout 90] > probe.log

Each line: exit status (or TIMEOUT), the config, and the last line of stderr when it failed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# small budgets, so that each probe is one short run of the edge value, not of the defaults
RL = ("mouse_grid", "cartpole", "gym")
SMALL = {"classification": {"train_size": 256, "test_size": 256}, "rl": {"epoch_steps": 200, "learning_starts": 50,
                                                                           "buffer_size": 500},
         "char_lm": {"lm_steps": 5, "lm_eval_chars": 2000}}


def edge_configs(family: str = ""):
    from dl2bench.config import ConfigError, RunConfig
    from dl2bench.families import TASKS
    from dl2bench.schema import KEY_SPECS

    for t in TASKS.names():
        task = TASKS[t]()
        if not task.trains or (family and task.family != family):
            continue
        for k, s in KEY_SPECS.items():
            if s.family != task.family or s.bookkeeping:
                continue
            for v in [v for v in (s.min, s.max) if v is not None] + list(s.choices):
                if "int" in str(s.type):
                    v = int(v)
                cfg = {"task": t, k: v}
                try:
                    RunConfig.from_dict(cfg).resolve()
                except ConfigError:
                    continue  # refused at validation: the fuzz tests hold those to one line
                yield cfg


def small(cfg):
    if cfg["task"] == "char_lm":
        extra = SMALL["char_lm"]
    elif cfg["task"] in RL:
        extra = SMALL["rl"]
    else:
        extra = SMALL["classification"]
    return {k: v for k, v in extra.items() if k not in cfg}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="")
    p.add_argument("--timeout", type=float, default=90.0)
    args = p.parse_args()
    for cfg in edge_configs(args.family):
        out = Path(tempfile.mkdtemp(prefix="probe-"))
        argv = [sys.executable, "-m", "dl2bench.train", f"--out={out / 'run'}", "--wandb=disabled", "--epochs=1",
                "--save_weights=false", "--checkpoint=false"]
        argv += [f"--{k}={v}" for k, v in {**cfg, **small(cfg)}.items()]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT, env=os.environ)
            tail = (r.stderr.strip().splitlines() or [""])[-1][:200] if r.returncode else ""
            print(r.returncode, cfg, tail, flush=True)
        except subprocess.TimeoutExpired:
            print("TIMEOUT", cfg, flush=True)
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
