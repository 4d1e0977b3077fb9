#!/usr/bin/env python
"""Diff the summaries of two smoke trees (the same sweeps at the same seeds, before and after a change).

    python tests/benchmarks/smoke_diff.py /tmp/smokes_before /tmp/smokes_after

Run ids must match one for one; within a run, every summary value must be equal except those that
measure time, speed, memory or the machine (their names are listed below). Prints each difference and
a count; exit 1 where anything differs.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

# what a rerun of the same computation may change: clocks, throughput, memory, where and when it ran
VOLATILE = re.compile(
    r"(time|seconds|_s$|_ms$|per_s|samples_s|throughput|latency|flops?_per_s|utili[sz]ation|peak|memory|mem_|rss"
    r"|host|git|slurm|job|started|ended|finished_at|date|cpu|threads_used|pid|wandb|torch|cuda|python|version|platform"
    r"|repeats?$|bench_|_iqr|_q1|_q3|_median|_min$|_max$|warm|fraction_of_peak|roofline|path|folder|root)")


def runs(tree: Path) -> dict:
    out = {}
    for s in sorted(tree.glob("*/*/summary.json")):
        out[(s.parent.parent.name, s.parent.name)] = json.loads(s.read_text())
    return out


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def main(argv) -> int:
    before, after = (Path(a) for a in argv[1:3])
    a, b = runs(before), runs(after)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            diffs.append(f"{key[0]}/{key[1]}: only {'after' if key in b else 'before'}")
            continue
        for k in sorted(set(a[key]) | set(b[key])):
            if VOLATILE.search(k):
                continue
            va, vb = a[key].get(k, "<absent>"), b[key].get(k, "<absent>")
            if not same(va, vb):
                diffs.append(f"{key[0]}/{key[1]}: {k}: {va!r} -> {vb!r}")
    sweeps = sorted({s for s, _ in set(a) | set(b)})
    print(f"{len(set(a) & set(b))} runs in both over {len(sweeps)} sweeps ({', '.join(sweeps)}); "
          f"{len(diffs)} difference(s) outside times")
    for d in diffs:
        print("  " + d)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
