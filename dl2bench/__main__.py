"""`python -m dl2bench list [KIND] [PATTERN]`: every registry's names with a one-line description;
tasks also show their family, headline metric and losses, models their family."""
from __future__ import annotations

import sys

USAGE = ("usage: python -m dl2bench list [KIND] [PATTERN]   (KIND: tasks, models, optimizers, schedules, "
         "inits, regularizers)\n       python -m dl2bench.train --help")


def _task_line(reg, name: str) -> str:
    t = reg[name]()
    head = t.metric(t.headline)
    arrow = "higher" if head.goal == "maximize" else "lower"
    what = f"losses: {', '.join(t.losses)}" if t.trains else f"no training: evaluates {t.run_keys[0]}'s weights"
    return f"{reg.doc(name)}\n{'':<19}[{t.family}; headline test_{t.headline}, {arrow} is better; {what}]"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("list",):
        print(USAGE, file=sys.stderr)
        return 2
    from .registries import ALL

    rest = argv[1:]
    kinds = list(ALL)
    if rest and rest[0] in ALL:
        kinds, rest = [rest[0]], rest[1:]
    pattern = rest[0] if rest else "*"
    shown = 0
    for kind in kinds:
        reg = ALL[kind]
        names = reg.names(pattern)
        if names:
            print(f"{kind}:")
            for n in names:
                if kind == "tasks":
                    line = _task_line(reg, n)
                elif kind == "models":
                    line = f"{reg.doc(n)} [{reg.meta(n).get('family', '')}]"
                else:
                    line = reg.doc(n)
                print(f"  {n:<16} {line}")
                shown += 1
    if not shown:
        print(f"nothing matches {pattern!r}" + (f" among {kinds[0]}" if len(kinds) == 1 else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
