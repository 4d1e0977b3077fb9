"""Build a sweep's report: report.html (self-contained), report.pdf, runs.csv and curves.csv.

    python reports/build.py runs/cifar_cnn                      # -> runs/cifar_cnn/report.html, ...
    python reports/build.py runs/a runs/b --out reports/ab      # several sweeps in one report
    python reports/build.py --wandb ENTITY/PROJECT --sweep ID --out DIR   # from W&B instead
    python reports/build.py OUT/.benchmarks/NAME                # a benchmark: profiles, ranks, verdicts

Bad input (a missing or empty folder, no runs, unreadable JSON) is one line on stderr naming the
path, exit status 2, and no output file touched: everything is written to temporary files first
and renamed into place only when all of them are complete.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

if __package__ in (None, ""):  # run as a script: make `reports` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from dl2bench.runs import publish  # noqa: E402
from reports.analysis import analyse_tasks  # noqa: E402
from reports.load import ReportError, Sweep, load_folders  # noqa: E402

OUTPUTS = ("report.html", "report.pdf", "runs.csv", "curves.csv")


def tables_for_csv(sw: Sweep) -> Dict[str, "object"]:
    """runs.csv: one row per run (ids, summary schema, status, config, then summary); curves.csv: one
    row per run x epoch."""
    runs = sw.runs
    runs = runs.assign(schema=pd.to_numeric(runs["schema"], errors="coerce").astype("Int64")
                       if "schema" in runs.columns else pd.NA)  # empty for a run without a summary
    first = ["sweep", "run", "schema", "status", "reason", "configuration"]
    config = [c for c in sw.config_keys if c in runs.columns and c not in first]
    helper = [c for c in runs.columns if c.startswith("factor:")]  # report-internal labels
    rest = [c for c in runs.columns if c not in first + config + helper]
    runs = runs[[c for c in first if c in runs.columns] + config + rest]
    keys = ["sweep", "run", "seed", "configuration"]
    curves = sw.curves.merge(sw.runs[[k for k in keys if k in sw.runs.columns]], on=["sweep", "run"], how="left")
    lead = [k for k in keys if k in curves.columns] + ["epoch"]
    curves = curves[lead + [c for c in curves.columns if c not in lead]].sort_values(["sweep", "run", "epoch"])
    return {"runs.csv": runs, "curves.csv": curves}


def build_report(sw: Sweep, out: Path) -> Dict[str, Path]:
    """Write the four outputs into `out` (all or none); returns their paths."""
    from reports.render import document, style, to_html, to_pdf

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out}: exists and is not a folder (--out needs a folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    parts = analyse_tasks(sw)  # one per task: runs of different tasks are never compared
    tmp = {name: out / f".{name}.tmp{os.getpid()}" for name in OUTPUTS}
    frames = tables_for_csv(sw)
    writer = None
    try:
        if sum(len(df) for df in frames.values()) >= CSV_IN_CHILD_ROWS:
            writer = CsvWriter(frames, tmp)  # the CSVs are written on the other core meanwhile
        with style():
            doc = document(parts)
            tmp["report.html"].write_text(to_html(doc), encoding="utf-8")
            to_pdf(doc, tmp["report.pdf"], sw.name)
        if writer is None:
            write_csvs(frames, tmp)
        else:
            writer.wait()
        for name in OUTPUTS:  # all complete: now replace the old ones
            publish(tmp[name], out / name)  # fsynced: a crash leaves the old report or the new one
    except OSError as e:
        raise ReportError(f"{out}: cannot write the report ({e.strerror or e})") from None
    finally:
        if writer is not None:
            writer.stop()  # before the temporary files go: it may still be writing them
        for p in tmp.values():
            if p.exists():
                p.unlink()
    return {name: out / name for name in OUTPUTS}


# Past this many CSV rows (50,000 runs: ~1 million), writing runs.csv and curves.csv takes ~24 s of
# a ~90 s report; a forked process writes them while the figures are drawn on the other core.
CSV_IN_CHILD_ROWS = 200_000


def write_csvs(frames: Dict[str, Any], tmp: Dict[str, Path]) -> None:
    for name, df in frames.items():
        df.to_csv(tmp[name], index=False)


class CsvWriter:
    """write_csvs in a forked child (the frames are shared copy-on-write, nothing is pickled); an
    OSError there comes back as one here. Where fork is not available, it writes in `wait`."""

    def __init__(self, frames: Dict[str, Any], tmp: Dict[str, Path]):
        import multiprocessing as mp

        self.frames, self.tmp, self.proc = frames, tmp, None
        if "fork" not in mp.get_all_start_methods():
            return
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=self._child, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def _child(self, conn) -> None:
        try:
            write_csvs(self.frames, self.tmp)
            conn.send(None)
        except OSError as e:
            conn.send((e.errno, e.strerror or str(e)))
        except Exception as e:  # noqa: BLE001 - said in the parent, where the report fails
            conn.send((None, f"{type(e).__name__}: {e}"))

    def wait(self) -> None:
        if self.proc is None:
            write_csvs(self.frames, self.tmp)
            return
        try:
            err = self.conn.recv()
        except EOFError:
            err = (None, f"the CSV writer process ended with exit code {self.proc.exitcode}")
        self.proc.join()
        if err is not None:
            raise OSError(err[0], err[1])

    def stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.join()


class _Parser(argparse.ArgumentParser):
    """Bad input is one line, as every other refusal here is (the usage block buried it)."""

    def error(self, message):
        typed = f"python {self.prog}" if self.prog.endswith(".py") else self.prog
        self.exit(2, f"error: {message} ({typed} --help)\n")


def parse_args(argv: Optional[Sequence[str]], prog: str = "reports/build.py") -> argparse.Namespace:
    ap = _Parser(prog=prog, description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("folders", nargs="*", type=Path, help="sweep folders runs/<sweep>/ (or single run folders)")
    ap.add_argument("--out", type=Path, help="output folder (default: the first sweep folder)")
    ap.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead of folders")
    ap.add_argument("--sweep", metavar="ID", help="with --wandb: only this W&B sweep's runs")
    ap.add_argument("--group", metavar="NAME", help="with --wandb: only this group's runs (dl2bench: the sweep name)")
    ap.add_argument("--log-artifact", choices=("offline", "online"),
                    help="also log the report's files to W&B as a report artifact (a run of job type report)")
    a = ap.parse_args(argv)
    if a.wandb and a.folders:
        ap.error("give sweep folders or --wandb, not both")
    if (a.sweep or a.group) and not a.wandb:
        ap.error("--sweep and --group need --wandb ENTITY/PROJECT")
    if a.wandb and not a.out:
        ap.error("--wandb needs --out DIR (there is no sweep folder to write into)")
    if not a.wandb and not a.folders:
        ap.error("give one or more sweep folders (runs/<sweep>/), or --wandb ENTITY/PROJECT")
    return a


def main(argv: Optional[Sequence[str]] = None, prog: str = "reports/build.py") -> int:
    """Command line: 0 on success, 2 on bad input (one 'error: ...' line on stderr). `prog`: how it was
    typed (`dl2bench report` installed)."""
    a = parse_args(argv, prog)
    import matplotlib

    matplotlib.use("Agg")  # clusters have no display; set before seaborn pulls in pyplot
    t0 = time.perf_counter()
    from reports import benchmark as BR

    if not a.wandb and len(a.folders) == 1 and BR.is_benchmark(a.folders[0]):
        try:
            paths = BR.build(a.folders[0], a.out)
        except ReportError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"benchmark {a.folders[0]} -> " + ", ".join(str(p) for p in paths.values())
              + f" ({time.perf_counter() - t0:.1f} s)")
        if a.log_artifact:
            return _log_artifact(a, f"benchmark-{Path(a.folders[0]).resolve().name}", paths, None,
                                 {"benchmark": str(a.folders[0])})
        return 0
    try:
        if a.wandb:
            from reports.wandb_source import load_wandb

            sw = load_wandb(a.wandb, sweep=a.sweep, group=a.group)
        else:
            sw = load_folders(a.folders)
        paths = build_report(sw, a.out or a.folders[0])
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for d in sw.damaged:  # the report says it too; here so that a script's log shows it
        print(f"warning: {d}", file=sys.stderr)
    n = len(sw.runs)
    print(f"{sw.name}: {n} run{'s' if n != 1 else ''} -> " + ", ".join(str(p) for p in paths.values())
          + f" ({time.perf_counter() - t0:.1f} s)")
    if a.log_artifact:
        projects = sorted({str(p) for p in sw.runs.get("project", []) if isinstance(p, str) and p})
        return _log_artifact(a, sw.name, paths, projects[0] if projects else None,
                             {"runs": len(sw.runs), "sources": [str(x) for x in sw.sources]})
    return 0


def _log_artifact(a: argparse.Namespace, name: str, paths: Dict[str, Path], project: Optional[str],
                  metadata: Dict[str, Any]) -> int:
    """The written report as a W&B artifact; a W&B failure is exit 1 with the report left in place."""
    from reports.wandb_artifact import log_report

    entity = None
    if a.wandb:
        entity, _, named = a.wandb.partition("/")
        project = named or project
    out = next(iter(paths.values())).parent
    try:
        name = log_report(paths, name, a.log_artifact, out, project, entity, metadata=metadata)
    except Exception as e:  # noqa: BLE001 - the report is written; W&B is the extra
        print(f"error: --log-artifact: W&B did not take the report ({type(e).__name__}: {e}); "
              f"the report itself is in {out}", file=sys.stderr)
        return 1
    where = f" (offline: {out / 'wandb'}/, for wandb sync)" if a.log_artifact == "offline" else ""
    print(f"logged to W&B as artifact {name}{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
