"""Submit a sweep: W&B sweep YAML -> runs -> submitit job arrays (SLURM, local or in-process).

    python jobs/submit.py sweeps/cifar_cnn.yaml                 # auto: SLURM if its controller answers, else local
    python jobs/submit.py sweeps/cifar_cnn.yaml --dry-run       # the expanded runs; submits nothing
    python jobs/submit.py sweeps/cifar_cnn.yaml --smoke --wait  # laptop size, wait for the results

(`dl2bench submit cifar_cnn ...` and `dl2bench status cifar_cnn` are the same command, installed.)
Exit status: 0 submitted (or all done), 1 some run failed (with --wait) or submission failed,
2 bad input (nothing submitted, nothing written).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from dl2bench import registries
from dl2bench.config import ConfigError
from dl2bench.launch import LaunchError, report_status, wait
from dl2bench.sweep import SLURM_KEYS, SweepError
from dl2bench.wandb_log import sync_command

# every scalar key of the sweep's slurm: block is also a flag (--time-min 30) that overrides it
SLURM_FLAGS = {k: t for k, t in SLURM_KEYS.items() if t in (str, int, float)}


@dataclass(frozen=True)
class Entry:
    """How this command was typed: what its help and hints name, and what a suite's expander job runs
    to come back here (on a compute node, with the same Python)."""

    prog: str  # argparse's name for it
    typed: str  # the command a hint tells you to type
    again: Tuple[str, ...]  # after sys.executable: the arguments that run this command again
    report: str  # the report command a hint names


CONSOLE = Entry("dl2bench submit", "dl2bench submit", ("-m", "dl2bench", "submit"), "dl2bench report")


class _Parser(argparse.ArgumentParser):
    """Bad input is one line, as every other refusal here is (the usage block buried it)."""

    typed = "dl2bench submit"

    def error(self, message):
        self.exit(2, f"error: {message} ({self.typed} --help)\n")


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


def parse(argv, entry: Entry = CONSOLE):
    args = parser(entry).parse_args(argv)
    args.entry = entry
    return args


def parser(entry: Entry = CONSOLE) -> argparse.ArgumentParser:
    p = _Parser(prog=entry.prog, description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.typed = entry.typed
    p.add_argument("sweep", help="a sweep YAML file (W&B sweep format + a slurm: block), or a suite of them "
                   "(sweeps/suites/*.yaml: each sweep after the sweeps it reads)")
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
    p.add_argument("--expand", default=None, help=argparse.SUPPRESS)  # a suite's expander job: this sweep only
    return p


def as_argv(args) -> list:
    """The flags that give `args` again (what a suite's expander job runs with), without the sweep."""
    out = []
    for a in parser()._actions:
        value = getattr(args, a.dest, None)
        if not a.option_strings or a.dest in ("help", "expand", "wait", "out", "cluster") or value == a.default:
            continue
        flag = a.option_strings[-1]
        if isinstance(value, bool):
            out.append(flag)
        else:
            out += [x for v in (value if isinstance(value, list) else [value]) for x in (flag, str(v))]
    return out


def pairs(items, flag):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SweepError(f"--{flag} {item!r}: expected KEY=VALUE")
        key = key.strip().replace("-", "_") if flag == "set" else key.strip()
        if key in out and out[key] != value:  # the last one silently winning hides a typo
            raise SweepError(f"--{flag} {key}: given twice ({out[key]!r} and {value!r}); give it once")
        out[key] = value
    return out


def main(argv=None, entry: Entry = CONSOLE) -> int:
    args = parse(sys.argv[1:] if argv is None else argv, entry)
    try:
        args.sweep = shipped_or_given(args.sweep)
        return submit(args)
    except (SweepError, ConfigError, LaunchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what was queued keeps running; run the same command to see it", file=sys.stderr)
        return 130


def shipped_or_given(sweep: str) -> str:
    """`sweep` as given, unless it is no file here and names a shipped one (`cifar_cnn`, `suites/course`)."""
    from dl2bench import shipped

    found = shipped.find(sweep)
    if found is None:
        return sweep
    print(f"{sweep}: the shipped {found}")  # stdout: stderr stays the one line of a refusal
    return str(found)


def submit(args) -> int:
    from dl2bench import launch
    from dl2bench import suite as SU
    from dl2bench import sweep as S

    t0 = time.perf_counter()
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise SweepError(f"--out: {args.out} is a file; expected the results folder (it holds a folder per sweep)")
    kind = SU.kind(args.sweep)
    if kind == "benchmark":
        return submit_benchmark(args)
    if kind == "suite":
        return submit_suite(args)
    overrides = run_overrides(args)
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
        with registries.memory_checked_by_launcher():  # checked below, against where the runs go
            sw = S.load(args.sweep, smoke=args.smoke, overrides=overrides, online=online, root=args.out)
    for line in sw.notes:
        print(f"note: {line}", file=sys.stderr)
    slurm_flags(args, sw.slurm)
    launch.check_memory(cluster, sw.runs, sw.slurm)
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
    print_sources(sw)
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
    print(f"results: {root}/<run_id>/    report: {args.entry.report} {root}")
    if mode == "offline":
        print(f"to W&B, once the runs end: {sync_command(root)}")
    if args.wait or cluster == "debug":
        return wait(root, cluster, args.poll)
    return 0


def slurm_flags(args, slurm: dict) -> None:
    """The command line's slurm flags over a sweep's slurm block (checked again as a whole)."""
    from dl2bench import sweep as S

    for flag in SLURM_FLAGS:
        value = getattr(args, f"slurm_{flag}")
        if value is not None:
            slurm[flag] = value
    if args.slurm_gpus_per_task is not None:
        slurm["gpus_per_task"] = args.slurm_gpus_per_task
    if args.gres:
        name, _, count = args.gres.rpartition(":")
        if not name or not count.isdigit():
            raise SweepError(f"--gres {args.gres!r}: expected NAME:COUNT, e.g. gpu:1 or gpu:a100:1")
        slurm.update(gpu_style="gres", gres_name=name, gpus_per_task=int(count))
    slurm["sbatch"] = {**slurm["sbatch"], **pairs(args.sbatch, "sbatch")}
    S.slurm_block(slurm, f"{args.sweep} (with command-line overrides)")


def run_overrides(args) -> dict:
    """The run-config keys the command line sets in every run: --set, and --wandb unless auto."""
    overrides = pairs(args.set, "set")
    if args.wandb != "auto":
        overrides.setdefault("wandb", args.wandb)
    return overrides


def submit_benchmark(args) -> int:
    """A benchmark file: its tune and final sweeps and their suite are written under
    OUT/.benchmarks/NAME/ (a dry run writes them to a temporary folder), then submitted as a suite."""
    import copy
    import tempfile

    from dl2bench import benchmark as BM

    with tempfile.TemporaryDirectory() as tmp:
        suite, plan = BM.generate(args.sweep, tmp if args.dry_run else args.out)
        for line in BM.describe(plan):
            print(line)
        root = Path(args.out)
        for line in BM.target_misses(plan, root):  # from an earlier submission's final runs
            print(line, file=sys.stderr)
        one = copy.copy(args)
        one.sweep = str(suite)
        code = submit_suite(one)
        if not args.dry_run and not args.status:
            for line in BM.target_misses(plan, root):  # a local suite has run its final stages by now
                print(line, file=sys.stderr)
        return code


def submit_suite(args) -> int:
    """Every sweep of a suite, each after the sweeps it reads. On SLURM, one submission: what needs
    nothing is queued now and each dependent sweep is an expander job SLURM holds until what it reads
    has ended (dl2bench.launch.chain). Elsewhere, submitted and waited for in order, in this process.
    A sweep whose dependency did not end well is not submitted, and says which. Before anything is
    submitted, the suite and every sweep that needs nothing are checked."""
    from dl2bench import launch
    from dl2bench import suite as SU

    su = SU.load_suite(args.sweep, root=args.out)
    if args.expand:
        return expand(args, su)
    for line in SU.describe(su):
        print(line)
    cluster, note = launch.pick_cluster(args.cluster)
    if note:
        print(note, file=sys.stderr)
    overrides = run_overrides(args)
    if not args.status:  # a dependent is expanded once what it reads exists; it is checked then
        for m in su.members:
            if not m.needs:
                check_member(args, m, cluster, overrides)
    if args.dry_run:
        print("dry run: nothing submitted; each dependent sweep is expanded when what it needs has finished")
        return 0
    if args.status:
        return suite_status(args, su, cluster, wait_first=args.wait)
    if cluster == "slurm":
        code = queue_suite(args, su)
        return suite_status(args, su, cluster, wait_first=True) if args.wait else code
    failed, outcome = set(), {}
    for m in su.members:
        print(f"\n== {m.name} ({m.path})", flush=True)
        blocked = SU.blocked_by(su, failed)
        if m.name in blocked:
            outcome[m.name] = f"not submitted: it needs {blocked[m.name]}, which did not finish"
            print(outcome[m.name])
            continue
        code = submit_member(args, m, wait=True)  # dependents expand from its results: one sweep at a time
        if code:
            failed.add(m.name)
        outcome[m.name] = "failed (see above)" if code else "finished"
    return suite_summary(su, outcome, failed)


def check_member(args, m, cluster: str, overrides: dict) -> None:
    """What submitting sweep m would refuse (a value, memory, what the cluster cannot run), before
    anything of the suite is queued; one error naming the sweep."""
    from dl2bench import launch
    from dl2bench import sweep as S

    try:
        with registries.memory_checked_by_launcher():
            sw = S.load(m.path, smoke=args.smoke, overrides=overrides, root=args.out)
        slurm_flags(args, sw.slurm)
        launch.check_memory(cluster, sw.runs, sw.slurm)
        p = launch.plan(sw, Path(args.out) / sw.name, cluster, force=args.force, parallel=args.parallel)
        launch.check_satisfiable(cluster, p.groups, sw.slurm)
    except LaunchError as e:
        raise LaunchError(f"sweep {m.name} ({m.path}): {e}; nothing of the suite was submitted") from None


def submit_member(args, m, wait: bool) -> int:
    import copy

    one = copy.copy(args)
    one.sweep, one.wait, one.expand = str(m.path), wait, None
    try:
        return submit(one)
    except (SweepError, ConfigError, LaunchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def suite_summary(su, outcome: dict, failed) -> int:
    print(f"\nsuite {su.name}:")
    for name, what in outcome.items():
        print(f"  {name:<32} {what}")
    return 1 if failed else 0


def queue_suite(args, su) -> int:
    """SLURM: queue the sweeps that need nothing, and an expander job for each dependent sweep that
    has something to wait for; one whose dependencies have all ended is expanded now, here."""
    from dl2bench import launch
    from dl2bench import sweep as S
    from dl2bench.launch import chain

    out, folder = Path(args.out), chain.suite_dir(args.out, su.name)
    failed, outcome = set(), {}
    with launch.sweep_lock(folder):
        state = chain.load_state(folder)
        state.update(suite=su.name, file=str(su.path.resolve()))
        for m in su.members:
            print(f"\n== {m.name} ({m.path})", flush=True)
            entry = state["members"].setdefault(m.name, {})
            live = chain.live_jobs()  # again for each sweep: the one before may have queued arrays
            after = chain.waits_on(out, list(m.needs), state, live)
            if entry.get("expander") in live:
                outcome[m.name] = f"already waiting: expander job {entry['expander']} (from an earlier submit)"
            elif not after:
                outcome[m.name] = expand_now(args, m, state)
            else:
                slurm = S.slurm_block(S.read_yaml(m.path).get(S.LAUNCH_BLOCK) or {}, str(m.path))
                slurm_flags(args, slurm)
                argv = [sys.executable, *args.entry.again, str(su.path.resolve()), *as_argv(args),
                        "--cluster", "slurm", "--out", str(out.resolve()), "--expand", m.name]
                jid = chain.queue_expander(out, su.name, m.name, after, argv, os.getcwd(), slurm)
                entry.clear()
                entry.update(expander=jid, after=after, queued=chain.now(), outcome="waiting")
                outcome[m.name] = f"expander job {jid} queued: runs when job(s) {', '.join(after)} end"
            print(outcome[m.name])
            if outcome[m.name].startswith(("not submitted", "failed")):
                failed.add(m.name)
            chain.write_state(folder, state)
    print(f"\nwatch: squeue --me    status: {args.entry.typed} {args.sweep} --out {args.out} --status")
    return suite_summary(su, outcome, failed)


def expand_now(args, m, state) -> str:
    """A sweep whose dependencies have ended: checked, then submitted (not waited for)."""
    from dl2bench.launch import chain

    out = Path(args.out)
    entry = state["members"].setdefault(m.name, {})
    for dep in m.needs:
        problem = chain.dependency_problem(out, dep, state)
        if problem:
            entry.update(outcome=f"not submitted: it needs {problem}", time=chain.now())
            return entry["outcome"]
    before = len(chain.sweep_arrays(out, m.name))
    code = submit_member(args, m, wait=False)
    queued = len(chain.sweep_arrays(out, m.name)) - before
    said = f"submitted ({queued} array(s))" if queued else "nothing to submit: every run is done or in flight"
    entry.update(outcome=said if code == 0 else f"failed to submit (exit {code})", time=chain.now())
    return entry["outcome"]


def expand(args, su) -> int:
    """The expander job of one dependent sweep: the jobs it waited for have ended. Check what they
    ran, queue the sweep, and point the expanders that wait on it at its arrays."""
    from dl2bench import launch
    from dl2bench.launch import chain

    if args.expand not in {m.name for m in su.members}:
        raise SweepError(f"--expand {args.expand!r}: not a sweep of suite {su.name}")
    folder = chain.suite_dir(args.out, su.name)
    with launch.sweep_lock(folder):
        state = chain.load_state(folder)
        said = expand_now(args, su.member(args.expand), state)
        print(f"{args.expand}: {said}")
        for line in chain.retarget(Path(args.out), su.members, state):
            print(line)
        chain.write_state(folder, state)
    return 0 if said.startswith(("submitted", "nothing")) else 1


def suite_status(args, su, cluster: str, wait_first: bool = False) -> int:
    """Each sweep's runs, or, for a dependent sweep not expanded yet, its expander or why it was not
    submitted. With wait_first, each sweep is waited for in order (its expander, then its runs)."""
    from dl2bench import launch
    from dl2bench.launch import chain

    folder = chain.suite_dir(args.out, su.name)
    outcome, failed = {}, set()
    for m in su.members:
        print(f"\n== {m.name} ({m.path})", flush=True)
        root = Path(args.out) / m.name
        while True:
            state = chain.load_state(folder)
            live = chain.live_jobs() if cluster == "slurm" else {}
            exp = (state["members"].get(m.name) or {}).get("expander")
            if not (wait_first and exp in live):
                break
            time.sleep(args.poll or 10.0)
        entry = state["members"].get(m.name) or {}
        said = entry.get("outcome") or ""
        if exp in live:
            outcome[m.name] = chain.describe(entry, live[exp])
        elif said.startswith(("not submitted", "failed")):
            outcome[m.name] = said
        elif launch.manifest_path(root).exists():
            code = (wait(root, cluster, args.poll) if wait_first
                    else report_status(root, launch.run_status(root, launch.load_manifest(root))))
            outcome[m.name] = "has failed runs" if code else "ok"
        elif said == "waiting":
            outcome[m.name] = f"expander job {exp} ended without expanding the sweep (its log: {folder / 'logs'}/)"
        else:
            outcome[m.name] = "not submitted yet"
        print(outcome[m.name])
        if outcome[m.name] != "ok":
            failed.add(m.name)
    return suite_summary(su, outcome, failed)


def print_sources(sw) -> None:
    """Where an evaluation sweep's trained runs come from (a relative `from:` is under --out)."""
    for src in sw.attack:
        print(f"  evaluates {len(src['victims'])} trained run(s) from {src['folder']}/")


def print_plan(sw, p, root: Path) -> None:
    import itertools

    from dl2bench import launch

    runs = sw.runs
    varying = [k for k in runs[0].to_dict() if len({r.to_dict()[k] for r in runs}) > 1 and k != "group"]
    shown = varying or ["task", "model"]
    print(f"sweep {sw.name} ({sw.method}, metric {sw.metric.get('name')} {sw.metric.get('goal', '')}): "
          f"{len(runs)} run(s); results would go to {root}/")
    print_sources(sw)
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
