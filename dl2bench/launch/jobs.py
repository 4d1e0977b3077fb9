"""What runs on the node: the submitit jobs an array task calls (training runs one after the other,
or a W&B agent), and the one function an agent calls. The lowest module of the package: it imports
no sibling."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import submitit

from .. import record as R
from .. import runs
from ..config import RunConfig

DONE = R.DONE


def read_summary(out_dir: Path) -> Optional[Dict[str, Any]]:
    return runs.summary(out_dir)


class RunJob(submitit.helpers.Checkpointable):
    """One array task: trains its runs one after the other, skipping those already done. On
    timeout or preemption submitit calls `checkpoint` (inherited: resubmit the same call), the
    job is requeued, and each run resumes from its own per-epoch checkpoint."""

    def __call__(self, items: Sequence[Tuple[Dict[str, Any], str]]) -> List[str]:
        from ..train import run

        statuses = []
        for config, out_dir in items:
            done = read_summary(Path(out_dir))
            if done and done.get("status") in DONE:
                statuses.append(done["status"])
                continue
            statuses.append(run(config, out_dir)["status"])
        return statuses


class AgentJob(submitit.helpers.Checkpointable):
    """Online: one array task runs a W&B agent for `count` runs of sweep `sweep_id`; agents of
    one array start `stagger_s` apart (agents started together can get the same parameters)."""

    def __init__(self, sweep_id: str, project: str, entity: str, out_root: str, group: str,
                 count: int, stagger_s: float, parallel: int = 1):
        self.sweep_id, self.project, self.entity = sweep_id, project, entity
        self.out_root, self.group, self.count, self.stagger_s = out_root, group, count, stagger_s
        self.parallel = max(1, parallel)

    def __call__(self, index: int) -> None:
        import functools

        import wandb

        # only tasks that can start together need spreading out: at most `parallel` run at once
        time.sleep(self.stagger_s * (index % self.parallel))
        wandb.agent(self.sweep_id, function=functools.partial(agent_train, self.out_root, self.group),
                    count=self.count, project=self.project or None, entity=self.entity or None)

    def checkpoint(self, *args: Any, **kwargs: Any):
        # tell the sweep this run was preempted, so W&B hands it (same run id) to the next agent
        wb = sys.modules.get("wandb")
        if wb is not None and wb.run is not None:
            try:
                wb.run.mark_preempting()
            except Exception:  # noqa: BLE001 - requeueing matters more than the W&B flag
                pass
        return super().checkpoint(*args, **kwargs)


class CommandJob:
    """A command run as a SLURM job (a suite's expander: `jobs/submit.py SUITE --expand NAME`), without
    the job's own SLURM_* variables, which the sbatch it calls would read as settings."""

    def __init__(self, argv: List[str], cwd: str):
        self.argv, self.cwd = argv, cwd

    def __call__(self) -> int:
        import os
        import subprocess

        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SUBMITIT_"))}
        code = subprocess.run(self.argv, cwd=self.cwd, env=env).returncode
        if code:  # the job ends FAILED, and its log holds the command's own words
            raise RuntimeError(f"{' '.join(self.argv)} exited with status {code}")
        return code


def agent_train(out_root: str, group: str) -> None:
    """The function a W&B agent calls: parameters from wandb.config, then the one training loop."""
    import wandb

    # the agent's run (the agent sets its sweep parameters); Tracker mirrors into it
    wb_run = wandb.run or wandb.init()
    params = {k: v for k, v in dict(wb_run.config).items() if k in RunConfig.keys()}
    cfg = RunConfig.from_dict({**params, "group": group, "wandb": "online"}).resolve()
    from ..train import run

    run(cfg, Path(out_root) / cfg.run_id())
