"""`dl2bench COMMAND ...`: the checkout's scripts as one installed command, so that a pip install
(a wheel or `pip install -e .`) works from any folder:

    dl2bench train --task fashion_mnist --model mlp      # python -m dl2bench.train ...
    dl2bench submit cifar_cnn --smoke --wait             # python jobs/submit.py sweeps/cifar_cnn.yaml ...
    dl2bench status cifar_cnn                            # python jobs/submit.py ... --status
    dl2bench report runs/cifar_cnn                       # python reports/build.py runs/cifar_cnn
    dl2bench list [KIND] [PATTERN]                       # python -m dl2bench list ...
    dl2bench dashboard runs/cifar_cnn [--save]           # a W&B workspace and report for the sweep

Each command takes the flags of the script it stands for (`dl2bench submit --help`). A shipped sweep
is given by name (`cifar_cnn`, `suites/course`). Bad input is one line, exit status 2.
"""
from __future__ import annotations

import sys
from typing import Callable, Dict, List, Optional, Sequence

from .extras import missing_for


def _train(argv: List[str]) -> int:
    from ..train.cli import main

    return main(argv)


def _submit(argv: List[str]) -> int:
    from . import submit

    return submit.main(argv, submit.CONSOLE)


def _status(argv: List[str]) -> int:
    from . import submit

    entry = submit.Entry("dl2bench status", "dl2bench status", submit.CONSOLE.again, submit.CONSOLE.report)
    return submit.main([*argv, "--status"], entry)


def _report(argv: List[str]) -> int:
    missing = missing_for("report")
    if missing:
        return _refuse(f"report: needs {', '.join(missing)}, not installed here: pip install 'dl2bench[report]'")
    from reports import build

    return build.main(argv, prog="dl2bench report")


def _list(argv: List[str]) -> int:
    from .listing import main

    return main(argv)


def _dashboard(argv: List[str]) -> int:
    missing = missing_for("dashboard")
    if missing:
        return _refuse(f"dashboard: needs {', '.join(missing)}, not installed here: pip install 'dl2bench[dashboard]'")
    from ..dashboard import main

    return main(argv)


COMMANDS: Dict[str, Callable[[List[str]], int]] = {
    "train": _train, "submit": _submit, "status": _status, "report": _report, "list": _list,
    "dashboard": _dashboard,
}


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if not argv:
        return _refuse(f"give a command: {', '.join(COMMANDS)} (dl2bench --help)")
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        hint = difflib.get_close_matches(name, COMMANDS, n=1)
        return _refuse(f"{name!r}: not a dl2bench command" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                       + f"; the commands: {', '.join(COMMANDS)}")
    return COMMANDS[name](rest)
