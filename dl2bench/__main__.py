"""`python -m dl2bench COMMAND ...`: the `dl2bench` command (dl2bench.cli) without its script."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
