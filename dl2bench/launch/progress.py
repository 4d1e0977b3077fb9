"""Waiting for a sweep: a progress bar (or a line a minute where stderr is no terminal) in epochs, with
the time left estimated from the epochs measured so far; then the runs by status and a small table
of the finished runs' results. What `submit.py --wait` and `submit.py --status` print. The top of the
package with submit: imports only status."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .. import record as R
from .. import runs
from .status import load_manifest, run_status


def wait(root: Path, cluster: str, poll) -> int:
    from tqdm import tqdm

    poll = poll or (10.0 if cluster == "slurm" else 1.0)  # sacct is shared: do not hammer it
    manifest = load_manifest(root)
    total = len(manifest["runs"])
    # progress in epochs, not runs: a sweep's slow runs may come last, and a run is many minutes.
    # A benchmark run's rows are its timed repeats, so it counts those, and the line says so.
    epochs = {rid: _units(c) for rid, c in manifest["runs"].items()}
    total_epochs = sum(epochs.values())
    modes = {(c or {}).get("mode") == "benchmark" for c in manifest["runs"].values()}
    unit = "repeats" if modes == {True} else "epochs/repeats" if modes == {True, False} else "epochs"
    tty = sys.stderr.isatty()
    bar = tqdm(total=total_epochs or total, desc=unit, unit=unit.split("/")[0].rstrip("s"), disable=not tty)
    last_line = 0.0
    submitted = _submitted_at(manifest)  # the manifest is read once: so is this
    every = float(os.environ.get("DL2BENCH_PROGRESS_EVERY", "60"))  # seconds between lines when not a terminal
    while True:
        st = run_status(root, manifest)
        ended = sum(1 for s, _ in st.values() if s not in ("queued", "running", "missing"))
        logged = {rid: _epoch_times(root / rid) for rid in epochs}
        done = sum(epochs[rid] if st[rid][0] not in ("queued", "running", "missing") else len(logged[rid])
                   for rid in epochs) if total_epochs else ended
        now = time.monotonic()
        # the run training now: running, with epochs logged and no summary yet (a task runs its runs in turn)
        running = sorted((rid for rid, (s_, _) in st.items() if s_ == "running"),
                         key=lambda rid: (not (root / rid / runs.METRICS).exists(), rid))
        left = _seconds_left(manifest["runs"], epochs, logged, st, _in_progress(root, running, submitted))
        eta = f", about {_minutes(left)} left" if left is not None else ""
        what = f"; now {_describe(manifest['runs'][running[0]])}" if running else ""
        bar.n = done
        bar.set_postfix_str(f"runs {ended}/{total}{eta}", refresh=True)
        if not tty and (now - last_line >= every or ended == total):  # a log file or CI: a line a minute
            print(f"[{time.strftime('%H:%M:%S')}] runs {ended}/{total} ended, {unit} {done}/{total_epochs}{eta}"
                  f"{what}", flush=True)
            last_line = now
        if all(s not in ("queued", "running") for s, _ in st.values()):
            break
        time.sleep(poll)
    bar.close()
    return report_status(root, st)


def _units(config) -> int:
    """The rows a run writes to metrics.jsonl: its epochs, or a benchmark run's timed repeats."""
    from ..schema import KEY_SPECS

    c = config or {}
    if c.get("mode") == "benchmark":
        return int(c.get("bench_repeats") or KEY_SPECS["bench_repeats"].default)
    return int(c.get("epochs") or 0)


def _submitted_at(manifest) -> dict:
    """run id -> when (epoch seconds) the latest submission that queued it was made."""
    from datetime import datetime

    submitted = {}
    for sub in (manifest or {}).get("submissions") or []:
        try:
            at = datetime.fromisoformat(sub["time"]).timestamp()
        except (KeyError, TypeError, ValueError):
            continue
        for rid in sub.get("jobs") or {}:
            submitted[rid] = max(submitted.get(rid, 0.0), at)
    return submitted


def _in_progress(root: Path, running: list, submitted=None):
    """(run id, seconds since its last epoch ended, or since it started) of the run training now. Never
    counted from before the job that runs it was submitted (`submitted`: _submitted_at): a run
    resubmitted after its job was killed still holds that attempt's files, hours old, and they made
    the first line promise 1031 min."""
    submitted = submitted or {}
    for rid in running:
        for name in (runs.METRICS, runs.CONFIG):
            try:
                since = max((root / rid / name).stat().st_mtime, submitted.get(rid, 0.0))
            except OSError:
                continue
            return rid, max(0.0, time.time() - since)
    return None


def _epoch_times(run_dir: Path) -> list:
    """Seconds of each logged epoch of a run (training and evaluation)."""
    import json

    try:
        rows = [json.loads(line) for line in (run_dir / runs.METRICS).read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []
    return [float(r.get("train_time") or 0) + float(r.get("eval_time") or 0) for r in rows]


def _seconds_left(configs, epochs, logged, st, current=None):
    """The epochs still to run, each costed at the measured epoch time of runs of the same model (else of
    any run), divided among the runs training at once; None before any epoch was measured. Models differ
    by 100x in cost, so a sweep-wide rate would promise the end too early when the slow ones come last.
    `current`: (run id, seconds its epoch in progress has taken so far): an epoch of that model takes at
    least that long, which corrects the guess for a model not measured yet (or a machine slowed down)."""
    import statistics

    by_model, every = {}, []
    for rid, times in logged.items():
        if times:
            by_model.setdefault((configs.get(rid) or {}).get("model"), []).extend(times)
            every.extend(times)
    if not every:
        return None
    overall = statistics.fmean(every)
    per_epoch = {m: statistics.fmean(t) for m, t in by_model.items()}
    if current is not None:
        model = (configs.get(current[0]) or {}).get("model")
        per_epoch[model] = max(per_epoch.get(model, overall), current[1])
    work = 0.0
    for rid, n in epochs.items():
        if st[rid][0] in ("queued", "running", "missing"):
            work += max(0, n - len(logged[rid])) * per_epoch.get((configs.get(rid) or {}).get("model"), overall)
    if current is not None and current[0] in epochs and len(logged[current[0]]) < epochs[current[0]]:
        work -= min(current[1], per_epoch[(configs.get(current[0]) or {}).get("model")])  # done of that epoch
    training = sum(1 for rid in epochs if st[rid][0] == "running" and logged[rid])
    return work / max(1, training)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _describe(cfg) -> str:
    """A running run in a few words: its task, model and seed."""
    cfg = cfg or {}
    return f"{cfg.get('task')} {cfg.get('model')} seed {cfg.get('seed')}"


def results_table(root: Path, manifest, st) -> list:
    """Lines of a table of the finished runs: one row per setting of the keys that vary (seeds pooled),
    the sweep's metric mean ± std (n), the median train time and samples/s; best first. Read from the
    run folders' summaries, so it is what the report will show."""
    import json
    import statistics

    from ..schema import BOOKKEEPING

    metric = (manifest.get("sweep") or {}).get("metric") or {}
    name, goal = metric.get("name"), metric.get("goal", "maximize")
    rows = {}
    configs = manifest.get("runs") or {}
    keys = [k for k in next(iter(configs.values()), {}) if k not in BOOKKEEPING and k != "seed"
            and len({json.dumps(c.get(k), sort_keys=True) for c in configs.values() if c}) > 1]
    percent = False
    for rid, (status, _) in st.items():
        if status not in R.COUNTED or not configs.get(rid):
            continue
        s = runs.summary(root / rid)
        if s is None:
            continue
        name = name or s.get("metric")
        v = s.get(name)
        if not isinstance(v, (int, float)):
            continue
        percent = percent or bool(((s.get("metrics") or {}).get(name.split("_", 1)[-1]) or {}).get("percent"))
        key = tuple(str(configs[rid].get(k)) for k in keys)
        rows.setdefault(key, []).append((float(v), s.get("train_time_total"), s.get("samples_per_s")))
    if not rows:
        return []
    scale, unit = (100.0, " %") if percent else (1.0, "")

    def cell(vals):
        m = statistics.fmean(vals) * scale
        sd = statistics.stdev(vals) * scale if len(vals) > 1 else None
        return f"{m:.4g}" + (f" ± {sd:.2g}" if sd is not None else "") + f"{unit} (n={len(vals)})"

    def med(xs):
        xs = [x for x in xs if isinstance(x, (int, float))]
        return statistics.median(xs) if xs else None

    table = []
    for key, vals in rows.items():
        t, sps = med([r[1] for r in vals]), med([r[2] for r in vals])
        table.append((statistics.fmean(r[0] for r in vals), [*key, cell([r[0] for r in vals]),
                                                             f"{t:.0f} s" if t is not None else "–",
                                                             f"{sps:,.0f}" if sps is not None else "–"]))
    table.sort(key=lambda x: -x[0] if goal == "maximize" else x[0])
    head = [*keys, f"{name} ({'higher' if goal == 'maximize' else 'lower'} is better)", "train time", "samples/s"]
    body = [r for _, r in table]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    fmt = lambda r: "  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [f"results ({len(body)} setting(s), seeds pooled; best first):", fmt(head)] + [fmt(r) for r in body]


def report_status(root: Path, st) -> int:
    """A table of runs by status, every diverged or failed run with its reason, then the results."""
    counts = {}
    for s, _ in st.values():
        counts[s] = counts.get(s, 0) + 1
    print(f"{root}: {len(st)} run(s)")
    print("status         runs")
    for s in R.STATUSES + R.LAUNCH_STATES:
        if counts.get(s):
            print(f"{s:<14} {counts[s]}")
    for rid, (s, reason) in sorted(st.items()):
        if s in (R.DIVERGED, R.FAILED):
            print(f"  {rid} {s}: {reason.splitlines()[0] if reason else ''}")
    stuck = {}  # queued runs that wait for something other than their turn: said once per reason
    for rid, (s, reason) in st.items():
        if s == R.QUEUED and ": waiting for" in reason:
            stuck.setdefault(reason.split(": ", 1)[1], []).append(rid)
    for why, rids in stuck.items():
        print(f"  {len(rids)} queued run(s) {why}")
    for line in results_table(root, load_manifest(root), st):
        print(line)
    return 1 if counts.get(R.FAILED) else 0

