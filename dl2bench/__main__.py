"""`python -m dl2bench list [PATTERN]`: every registry's names with a one-line description."""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("list",):
        print("usage: python -m dl2bench list [PATTERN]\n       python -m dl2bench.train --help", file=sys.stderr)
        return 2
    from .registries import ALL

    pattern = argv[1] if len(argv) > 1 else "*"
    for kind, reg in ALL.items():
        names = reg.names(pattern)
        if names:
            print(f"{kind}:")
            for n in names:
                print(f"  {n:<16} {reg.doc(n)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
