"""The environment a figure was measured in, recorded with every run."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional

if TYPE_CHECKING:  # imported where used: the submitting process never needs torch
    import torch


def memory_limit() -> tuple:
    """(bytes, what they are) a run may hold here: the SLURM job's memory where there is one, else
    the machine's physical memory."""
    for var in ("SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU"):
        mb = os.environ.get(var, "")
        if mb.isdigit() and int(mb) > 0:
            per_cpu = var.endswith("CPU")
            cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "1") or 1) if per_cpu else 1
            return int(mb) * 2**20 * cpus, "this SLURM job's memory"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"
    except (ValueError, OSError, AttributeError):
        return float("inf"), "this machine's memory"


def default_threads() -> int:
    """$SLURM_CPUS_PER_TASK, else the cores this process may use."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_sha() -> Optional[str]:
    """The checkout's commit (with '-dirty' when it has uncommitted changes), if it is one."""
    here = Path(__file__).resolve().parent
    try:
        got = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        sha = got.stdout.strip()
        if got.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def describe(device: torch.device, threads: int) -> Dict[str, object]:
    """Flat facts for the summary: device, CPU, threads, versions, host, SLURM job, git sha."""
    import torch

    cuda = device.type == "cuda"
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_model(),
        "cpu_model": cpu_model(),
        "threads": threads,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda if cuda else None,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "python_version": platform.python_version(),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "git_sha": git_sha(),
    }
