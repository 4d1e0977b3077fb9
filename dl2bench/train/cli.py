"""The command line of one run:

    python -m dl2bench.train --task fashion_mnist --model mlp --optimizer adam --lr 1e-3 --epochs 3 --out runs/try
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

from .. import record as R
from ..config import KEY_DOCS, ConfigError, RunConfig
from .loop import RecordError, run


def parse_args(argv: Sequence[str]) -> tuple:
    """`--key value` and `--key=value` (what a W&B agent passes) over the config's keys, plus --out."""
    keys = RunConfig.keys()
    values: Dict[str, str] = {}
    out, rerun = None, False
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise ConfigError(f"unexpected argument {a!r}; expected --key value or --key=value")
        if "=" in a:
            key, value = a[2:].split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"--{a[2:]} needs a value")
            key, value = a[2:], args[i + 1]
            i += 1
        i += 1
        key = key.replace("-", "_")
        if key in ("out", "out_dir"):
            if not value.strip() or "\0" in value:  # '' would be the current folder, NUL no path at all
                raise ConfigError(f"out: expected a folder for the run's files, got {value!r}")
            out = value
        elif key == "rerun":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ConfigError(f"rerun: expected true or false, got {value!r}")
            rerun = value.lower() in ("true", "1", "yes")
        elif key not in keys:
            raise ConfigError(f"unknown key --{key}; valid keys: --out, --rerun, " + ", ".join(f"--{k}" for k in keys))
        elif key in values and values[key] != value:  # the last one silently winning hides a typo
            raise ConfigError(f"{key}: given twice (--{key} {values[key]} and --{key} {value}); give it once")
        else:
            values[key] = value
    return RunConfig.from_dict(values), out, rerun


def finished_here(out: Path, run_id: str) -> Optional[dict]:
    """The summary of run `run_id` in `out` if it ended there (finished or early stopped); ConfigError
    if `out` holds another run's results, which a new run would overwrite."""
    from ..runs import summary

    s = summary(out)
    if s is None:
        return None
    if s.get("run_id") != run_id:
        raise ConfigError(f"out: {out} holds the results of run {s.get('run_id')}, not {run_id}; use another --out "
                          "(or remove that folder)")
    return s if s.get("status") in R.COUNTED else None


def usage() -> str:
    lines = ["usage: python -m dl2bench.train [--key value | --key=value ...] [--out DIR]", "",
             "  --out DIR  where the run's files go (default runs/single/<run_id>)",
             "  --rerun true  train again a run that is already done there (else it says where its results are)",
             "", "keys (default): meaning"]
    for k, v in RunConfig().to_dict().items():
        lines.append(f"  --{k} ({'task default' if v is None else repr(v)}): {KEY_DOCS[k]}")
    lines.append("\nnames: python -m dl2bench list")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(usage())
        return 0
    try:
        cfg, out, rerun = parse_args(argv)
        cfg = cfg.resolve()
        if out is None:
            out = str(Path("runs") / "single" / cfg.run_id())
        done = finished_here(Path(out), cfg.run_id())
        if done is not None and not rerun:
            print(f"run {cfg.run_id()} is already done ({done['status']}; {R.test_key(done['headline'])} "
                  f"{done.get(R.test_key(done['headline']))}): results in {out}; --rerun true trains it again")
            return 0
        summary = run(cfg, out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RecordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: what is kept, and how to go on; no traceback
        print(f"\ninterrupted: every finished epoch is checkpointed in {out}; the same command resumes it",
              file=sys.stderr)
        return 130
    headline, monitor = summary.get("headline"), summary.get("monitor")
    best = (f"{R.best_val_key(monitor)} {summary.get(R.best_val_key(monitor))} (epoch {summary.get('best_epoch')}); "
            if summary.get("epochs_completed") else "")  # an evaluation-only task has no epochs
    print(f"status {summary['status']}; {R.test_key(headline)} {summary.get(R.test_key(headline))}; {best}"
          f"results in {out}")
    if summary["status"] == R.FAILED:
        print(f"error: {summary.get('error')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
