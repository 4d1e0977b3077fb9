"""Training: a run's set-up (prepare.py), the one loop (loop.py), benchmark mode over the same
prepared run (bench.py), the default optimisation step (step.py), the command line (cli.py)."""
from .cli import main, parse_args, usage
from .loop import Trainer, resolve_device, run

__all__ = ["Trainer", "main", "parse_args", "resolve_device", "run", "usage"]
