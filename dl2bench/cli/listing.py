"""`dl2bench list [KIND] [PATTERN]` (or `python -m dl2bench list ...`): every registry's names with a
one-line description; tasks also show their family, headline metric and losses, models their family."""
from __future__ import annotations

import sys


def _task_line(reg, name: str) -> str:
    t = reg[name]()
    head = t.metric(t.headline)
    arrow = "higher" if head.goal == "maximize" else "lower"
    what = f"losses: {', '.join(t.losses)}" if t.trains else f"no training: evaluates {t.run_keys[0]}'s weights"
    return f"{reg.doc(name)}\n{'':<19}[{t.family}; headline test_{t.headline}, {arrow} is better; {what}]"


def main(rest) -> int:
    """`rest`: what follows `list` on the command line."""
    from ..registries import ALL

    if rest[:1] in (["-h"], ["--help"]):
        print(f"usage: dl2bench list [KIND] [PATTERN]   (KIND: {', '.join(ALL)}; PATTERN: a glob, e.g. 'cifar*')")
        return 0
    kinds = list(ALL)
    if rest and rest[0] in ALL:
        kinds, rest = [rest[0]], rest[1:]
    if len(rest) > 1:
        print(f"error: list: unexpected argument {rest[1]!r}; usage: dl2bench list [KIND] [PATTERN]", file=sys.stderr)
        return 2
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
