#!/usr/bin/env python
"""Submit a sweep: W&B sweep YAML -> runs -> submitit job arrays (SLURM, local or in-process).

    python jobs/submit.py sweeps/cifar_cnn.yaml                 # auto: SLURM if its controller answers, else local
    python jobs/submit.py sweeps/cifar_cnn.yaml --dry-run       # the expanded runs; submits nothing
    python jobs/submit.py sweeps/cifar_cnn.yaml --smoke --wait  # laptop size, wait for the results

The command lives in dl2bench.cli.submit, so that an installed dl2bench has it too (`dl2bench submit`);
this file runs it from a checkout, installed or not.
Exit status: 0 submitted (or all done), 1 some run failed (with --wait) or submission failed,
2 bad input (nothing submitted, nothing written).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from dl2bench.cli import submit as _submit  # noqa: E402

# a suite's expander job runs this file again, so a checkout that was never installed works on SLURM too
SCRIPT = _submit.Entry("jobs/submit.py", "python jobs/submit.py", (str(Path(__file__).resolve()),),
                       "python reports/build.py")


def main(argv=None) -> int:
    return _submit.main(argv, SCRIPT)


if __name__ == "__main__":
    sys.exit(main())
