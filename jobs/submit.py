#!/usr/bin/env python
"""Submit a sweep: W&B sweep YAML -> runs -> submitit job arrays (SLURM, local or in-process).

    python jobs/submit.py sweeps/cifar_cnn.yaml                 # auto: SLURM if its controller answers, else local
    python jobs/submit.py sweeps/cifar_cnn.yaml --dry-run       # the expanded runs; submits nothing
    python jobs/submit.py sweeps/cifar_cnn.yaml --smoke --wait  # laptop size, wait for the results

Exit status: 0 submitted (or all done), 1 some run failed (with --wait) or submission failed,
2 bad input (nothing submitted, nothing written).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from dl2bench import record as R  # noqa: E402
from dl2bench.config import ConfigError  # noqa: E402
from dl2bench.launch import LaunchError  # noqa: E402
from dl2bench.sweep import SLURM_KEYS, SweepError  # noqa: E402

# every scalar key of the sweep's slurm: block is also a flag (--time-min 30) that overrides it
SLURM_FLAGS = {k: t for k, t in SLURM_KEYS.items() if t in (str, int, float)}


class _Parser(argparse.ArgumentParser):
    """Bad input is one line, as every other refusal here is (the usage block buried it)."""

    def error(self, message):
        self.exit(2, f"error: {message} (python jobs/submit.py --help)\n")


def _number(typ, low, what):
    """An argparse type: a finite number >= low (argparse names the flag when this raises)."""
    def parse(text):
        import math

        value = typ(text)
        if not (math.isfinite(value) and value >= low):
            raise ValueError
        return value
    parse.__name__ = what  # argparse's message: "invalid <what> value: 'x'"
    return parse


def parse(argv):
    p = _Parser(prog="jobs/submit.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", help="a sweep YAML file (W&B sweep format + a slurm: block)")
    p.add_argument("--cluster", default="auto", help="auto | slurm | local | debug (default auto)")
    p.add_argument("--dry-run", action="store_true", help="print the runs and resource groups; submit nothing")
    p.add_argument("--wandb", default="auto", choices=["auto", "online", "offline", "disabled"],
                   help="online: a real W&B sweep with agents; offline (default without an API key): "
                        "expanded here, runs mirrored to W&B offline files; disabled: no W&B")
    p.add_argument("--out", default="runs", help="results root; the sweep's runs go to OUT/<sweep name>/")
    p.add_argument("--wait", action="store_true", help="block with a progress bar until every run ends")
    p.add_argument("--force", action="store_true", help="relaunch every run, done or not")
    p.add_argument("--status", action="store_true", help="print the status of the sweep's runs; submit nothing")
    p.add_argument("--smoke", action="store_true", help="apply the sweep's slurm.smoke overrides (laptop size)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run config key in every run (repeatable), e.g. --set device=cpu")
    p.add_argument("--parallel", type=_number(int, 1, "count (>= 1)"), default=1,
                   help="local executor: runs at a time (default 1: timings stay honest)")
    p.add_argument("--poll", type=_number(float, 0.01, "seconds (>= 0.01)"), default=None, help="--wait: seconds between status checks")
    p.add_argument("--sbatch", action="append", default=[], metavar="FLAG=VALUE",
                   help="extra sbatch flag (repeatable), e.g. --sbatch mail-type=END")
    for flag, typ in SLURM_FLAGS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=f"slurm_{flag}", type=typ, default=None,
                       help=f"overrides slurm.{flag}")
    p.add_argument("--gpus", dest="slurm_gpus_per_task", type=int, help="GPUs per cuda run, as --gpus-per-task")
    p.add_argument("--gres", default=None, help="GPUs per cuda run as a gres, e.g. gpu:a100:1 (sets gpu_style gres)")
    return p.parse_args(argv)


def pairs(items, flag):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SweepError(f"--{flag} {item!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_") if flag == "set" else key.strip()] = value
    return out


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        return submit(args)
    except (SweepError, ConfigError, LaunchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what was queued keeps running; run the same command to see it", file=sys.stderr)
        return 130


def submit(args) -> int:
    from dl2bench import launch
    from dl2bench import sweep as S

    t0 = time.perf_counter()
    overrides = pairs(args.set, "set")
    if args.wandb != "auto":
        overrides.setdefault("wandb", args.wandb)
    cluster, note = launch.pick_cluster(args.cluster)
    if note:
        print(note, file=sys.stderr)
    mode = args.wandb
    if mode == "auto":
        from dl2bench.track import wandb_mode

        mode = wandb_mode("auto")
    online = mode == "online"
    if online:  # the mode is the command's; other overrides are refused online (W&B picks values)
        overrides.pop("wandb", None)
    sw = None
    if args.status and not online:
        # --status needs the sweep's name and folder, not its runs (the manifest has them): unexpanded,
        # a 50,000-run grid is read in a second instead of a minute. Files that cannot be read so
        # (an evaluation sweep's block) are read in full below, which reports any real error.
        try:
            sw = S.load(args.sweep, online=True, root=args.out)
        except SweepError:
            sw = None
    if sw is None:
        sw = S.load(args.sweep, smoke=args.smoke, overrides=overrides, online=online, root=args.out)
    for flag in SLURM_FLAGS:
        value = getattr(args, f"slurm_{flag}")
        if value is not None:
            sw.slurm[flag] = value
    if args.slurm_gpus_per_task is not None:
        sw.slurm["gpus_per_task"] = args.slurm_gpus_per_task
    if args.gres:
        name, _, count = args.gres.rpartition(":")
        if not name or not count.isdigit():
            raise SweepError(f"--gres {args.gres!r}: expected NAME:COUNT, e.g. gpu:1 or gpu:a100:1")
        sw.slurm.update(gpu_style="gres", gres_name=name, gpus_per_task=int(count))
    sw.slurm["sbatch"] = {**sw.slurm["sbatch"], **pairs(args.sbatch, "sbatch")}
    S.slurm_block(sw.slurm, f"{args.sweep} (with command-line overrides)")
    root = Path(args.out) / sw.name
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])

    if online:
        if args.dry_run:
            print(f"online sweep {sw.name!r}: W&B would receive this configuration (slurm block removed):")
            import yaml

            print(yaml.safe_dump(sw.wandb_config, sort_keys=False))
            return 0
        sub = launch.submit_online(sw, root, cluster, command)
        print(f"W&B sweep {sub['wandb_sweep_id']}: {sub['agents']} agent(s) x {sub['runs_per_agent']} run(s), "
              f"array job {sub['job_id']} ({cluster}); results in {root}/")
        return 0

    if args.status:
        if not launch.manifest_path(root).exists():
            raise SweepError(f"{root}: nothing was submitted for sweep {sw.name!r} here (no manifest.json)")
        return report_status(root, launch.run_status(root, launch.load_manifest(root)))
    if args.dry_run:
        p = launch.plan(sw, root, cluster, force=args.force, parallel=args.parallel)
        print_plan(sw, p, root)
        launch.check_satisfiable(cluster, p.groups, sw.slurm)
        return 0
    waited = []
    say = lambda line: (waited.append(line), print(line, file=sys.stderr, flush=True))  # noqa: E731
    # planned and submitted under the sweep's lock: a second submit of it meanwhile plans against what this one queued
    with launch.sweep_lock(root, say=say):
        p = launch.plan(sw, root, cluster, force=args.force, parallel=args.parallel)
        launch.check_satisfiable(cluster, p.groups, sw.slurm)
        todo = sum(len(v) for v in p.groups.values())
        if todo:
            try:
                sub = launch.submit(sw, root, p, command)
            except launch.LaunchError as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
    if todo:
        took = time.perf_counter() - t0
        for line in p.notes:
            print(line)
        for arr in sub["arrays"][:10]:
            print(f"queued {arr['runs']:,} run(s) as {arr['tasks']:,} task(s) of job {arr['job_id']} "
                  f"({arr['resources']}, {cluster})")
        if len(sub["arrays"]) > 10:
            print(f"  ... and {len(sub['arrays']) - 10} more array(s): job "
                  + ", ".join(a["job_id"] for a in sub["arrays"][10:]))
        print(f"{todo:,} run(s) submitted in {took:.2f} s; {len(p.skipped):,} already done or in flight")
    else:
        print(f"nothing to submit: all {len(p.skipped):,} run(s) of {sw.name} are done or in flight "
              "(--force relaunches them)")
        if waited:  # the other submit queued them: say what it queued
            last = launch.load_manifest(root).get("submissions") or [{}]
            arrays = last[-1].get("arrays") or []
            print(f"the other submit ({last[-1].get('time', '?')}) queued {len(last[-1].get('jobs') or {}):,} "
                  f"run(s) in {len(arrays)} array(s): job " + ", ".join(str(a.get("job_id")) for a in arrays))
    if cluster == "slurm" and todo:
        print(f"watch: squeue --me    logs: {root / 'logs'}/")
    elif cluster == "local" and todo:
        print(f"logs: {root / 'logs'}/   (the runs go on if you close this terminal)")
    print(f"results: {root}/<run_id>/    report: python reports/build.py {root}")
    if args.wait or cluster == "debug":
        return wait(root, cluster, args.poll)
    return 0


def print_plan(sw, p, root: Path) -> None:
    import itertools

    from dl2bench import launch

    runs = sw.runs
    varying = [k for k in runs[0].to_dict() if len({r.to_dict()[k] for r in runs}) > 1 and k != "group"]
    shown = varying or ["task", "model"]
    print(f"sweep {sw.name} ({sw.method}, metric {sw.metric.get('name')} {sw.metric.get('goal', '')}): "
          f"{len(runs)} run(s); results would go to {root}/")
    widths = [max(len(k), *(len(str(getattr(r, k))) for r in runs)) for k in shown]
    print("  " + "run_id        " + "  ".join(k.ljust(w) for k, w in zip(shown, widths)) + "  status")
    todo = {launch.rid_of(c) for c in itertools.chain.from_iterable(p.groups.values())}
    for r in runs:
        rid = launch.rid_of(r)
        st = "launch" if rid in todo else f"skip ({p.skipped[rid][0]})"
        print("  " + rid.ljust(14) + "  ".join(str(getattr(r, k)).ljust(w) for k, w in zip(shown, widths)) + "  " + st)
    print(f"resource groups ({p.cluster}; one job array each, more where the cluster caps array size):")
    for res, cfgs in p.groups.items():
        arrays = p.arrays.get(res) or []
        split = f" in {len(arrays)} arrays" if len(arrays) > 1 else ""
        print(f"  {res.describe()}: {len(cfgs)} run(s) in {p.tasks_per_group[res]} task(s){split}")
    for line in p.notes:
        print(f"  {line}")
    if not p.groups:
        print("  none: every run is done or in flight")
    print("dry run: nothing submitted, nothing written")


def wait(root: Path, cluster: str, poll) -> int:
    from tqdm import tqdm

    from dl2bench import launch

    poll = poll or (10.0 if cluster == "slurm" else 1.0)  # sacct is shared: do not hammer it
    manifest = launch.load_manifest(root)
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
    every = float(os.environ.get("DL2BENCH_PROGRESS_EVERY", "60"))  # seconds between lines when not a terminal
    while True:
        st = launch.run_status(root, manifest)
        ended = sum(1 for s, _ in st.values() if s not in ("queued", "running", "missing"))
        logged = {rid: _epoch_times(root / rid) for rid in epochs}
        done = sum(epochs[rid] if st[rid][0] not in ("queued", "running", "missing") else len(logged[rid])
                   for rid in epochs) if total_epochs else ended
        now = time.monotonic()
        # the run training now: running, with epochs logged and no summary yet (a task runs its runs in turn)
        running = sorted((rid for rid, (s_, _) in st.items() if s_ == "running"),
                         key=lambda rid: (not (root / rid / "metrics.jsonl").exists(), rid))
        left = _seconds_left(manifest["runs"], epochs, logged, st, _in_progress(root, running))
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
    from dl2bench.schema import KEY_SPECS

    c = config or {}
    if c.get("mode") == "benchmark":
        return int(c.get("bench_repeats") or KEY_SPECS["bench_repeats"].default)
    return int(c.get("epochs") or 0)


def _in_progress(root: Path, running: list):
    """(run id, seconds since its last epoch ended, or since it started) of the run training now."""
    for rid in running:
        for name in ("metrics.jsonl", "config.json"):
            try:
                return rid, max(0.0, time.time() - (root / rid / name).stat().st_mtime)
            except OSError:
                continue
    return None


def _epoch_times(run_dir: Path) -> list:
    """Seconds of each logged epoch of a run (training and evaluation)."""
    import json

    try:
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
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

    from dl2bench.schema import BOOKKEEPING

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
        try:
            s = json.loads((root / rid / "summary.json").read_text())
        except (OSError, ValueError):
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
    from dl2bench import launch

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
    for line in results_table(root, launch.load_manifest(root), st):
        print(line)
    return 1 if counts.get(R.FAILED) else 0


if __name__ == "__main__":
    sys.exit(main())
