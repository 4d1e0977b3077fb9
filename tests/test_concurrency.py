"""Many writers, readers in between: 16 runs of one sweep training at once into one folder (local
executor, --parallel 16) while `--status` and `reports/build.py` read it over and over. Every
reader call succeeds, and every record the writers leave is whole."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from helpers import SUBMIT

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "reports" / "build.py"


def test_sixteen_writers_and_readers_meanwhile(tmp_path, job_env):
    p = tmp_path / "crowd.yaml"
    p.write_text("""
name: crowd
method: grid
parameters:
  task: {value: fashion_mnist}
  model: {value: mlp}
  seed: {values: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]}
  epochs: {value: 8}
  train_size: {value: 1000}
  val_size: {value: 200}
  threads: {value: 1}
  progress: {value: log}
""")
    out = tmp_path / "runs"
    env = {**os.environ, **job_env}
    base = [sys.executable, str(SUBMIT), str(p), "--cluster", "local", "--out", str(out), "--wandb", "disabled"]
    r = subprocess.run(base + ["--parallel", "16"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "16 run(s) submitted" in r.stdout, r.stdout + r.stderr
    root = out / "crowd"
    overlapped, failures = 0, []
    deadline = time.monotonic() + 900
    while len(list(root.glob("*/summary.json"))) < 16:
        assert time.monotonic() < deadline, "the runs did not finish"
        st = subprocess.run(base + ["--status"], capture_output=True, text=True, env=env, timeout=300)
        # 0: all done, 1: some not done yet; anything else (2: bad input, a traceback) is a failure
        if st.returncode not in (0, 1) or "Traceback" in st.stderr:
            failures.append(("status", st.returncode, st.stderr[-1500:]))
        if list(root.glob("*/config.json")):  # a report needs one run folder
            # a report begun while runs were still writing (on a loaded machine one read can take
            # longer than the whole sweep, so this is counted, not the number of reads)
            overlapped += len(list(root.glob("*/summary.json"))) < 16
            rep = subprocess.run([sys.executable, str(BUILD), str(root), "--out", str(tmp_path / "report")],
                                 capture_output=True, text=True, env=env, timeout=300)
            if rep.returncode != 0:
                failures.append(("report", rep.returncode, rep.stderr[-1500:]))
    assert not failures, failures
    assert overlapped >= 1, "no report was built while the runs were writing"
    for run in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "logs"):
        s = json.loads((run / "summary.json").read_text())
        assert s["status"] == "finished", (run.name, s.get("error"))
        lines = (run / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 9)), run.name
        json.loads((run / "config.json").read_text())
    assert not [q for q in root.rglob(".*tmp*")], "temporary files left behind"
    st = subprocess.run(base + ["--status"], capture_output=True, text=True, env=env, timeout=300)
    assert st.returncode == 0 and "finished       16" in st.stdout, st.stdout
