"""Planning: the resources a run asks for, the executor that can run it (SLURM, this machine, or in
process), whether the cluster can satisfy a sweep at all, and submitit executors set up for each.
Imports only limits (LaunchError)."""
from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import submitit

from ..config import RunConfig
from ..sweep import SweepError
from .limits import LaunchError

CLUSTERS = ("auto", "slurm", "local", "debug")


@dataclass(frozen=True)
class Resources:
    """What one array asks for; runs that ask for the same share an array (one sbatch)."""

    gpus: int
    cpus: int

    def describe(self) -> str:
        return f"{self.gpus} GPU, {self.cpus} CPUs" if self.gpus else f"CPU only, {self.cpus} CPUs"


def resources(cfg: RunConfig, slurm: Dict[str, Any], gpus_offered: bool) -> Resources:
    """device cuda asks for GPUs; auto asks for them where the cluster offers any; cpu never."""
    wants = cfg.device == "cuda" or (cfg.device == "auto" and gpus_offered)
    return Resources(gpus=slurm["gpus_per_task"] if wants else 0, cpus=cfg.threads or slurm["cpus_per_task"])


def gpus_offered(cluster: str, slurm: Dict[str, Any]) -> bool:
    """Whether `device: auto` runs should ask for a GPU: on SLURM when the partition has GPU gres."""
    if cluster != "slurm" or not shutil.which("sinfo") or not controller_answers()[0]:
        return False  # no controller: check_satisfiable says so, without waiting for sinfo to give up
    gres = _sinfo("%G", slurm["partition"])
    return "gpu" in gres


PING_TIMEOUT_S = 5.0  # a controller that answers does so in milliseconds; one that is gone may hang


@functools.lru_cache(maxsize=1)  # asked by pick_cluster, plan and check_satisfiable within one command
def controller_answers(timeout: float = PING_TIMEOUT_S) -> Tuple[bool, str]:
    """Whether a SLURM controller answers `scontrol ping` (UP) within `timeout` seconds, and what it said."""
    if not shutil.which("scontrol"):
        return False, "scontrol is not on PATH"
    try:
        got = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"scontrol ping gave no answer within {timeout:g} s"
    text = " ".join((got.stdout + got.stderr).split()) or f"exit status {got.returncode}"
    up = got.returncode == 0 and " UP" in f" {got.stdout}"
    return up, text.split(" ***")[0]


def pick_cluster(cluster: str) -> Tuple[str, str]:
    """The executor to use, and a note for the user when `auto` chose something they may not expect:
    a login node's sbatch is not enough, its controller must answer (quickly)."""
    if cluster not in CLUSTERS:
        raise SweepError(f"--cluster: expected one of {', '.join(CLUSTERS)}, got {cluster!r}")
    if cluster == "auto":
        if not shutil.which("sbatch"):
            return "local", ""
        up, said = controller_answers()
        if up:
            return "slurm", ""
        return "local", (f"--cluster auto: sbatch is on PATH but no SLURM controller answered ({said}); running "
                         "on this machine instead (--cluster slurm insists on SLURM)")
    return cluster, ""


def check_memory(cluster: str, runs: List[RunConfig], slurm: Dict[str, Any]) -> None:
    """Each run's estimated memory against where it will run: the job's mem_gb on SLURM, this
    machine's memory otherwise. The first run that cannot fit is one error naming its key."""
    from .. import registries
    from ..env import memory_limit
    from ..errors import ConfigError

    if cluster == "slurm":
        limit = (float(slurm["mem_gb"]) * 2**30, "the job's slurm.mem_gb")
    else:
        limit = memory_limit()
    for cfg in runs:
        try:
            registries.check_memory(cfg, *limit)
        except ConfigError as e:
            raise LaunchError(f"run {cfg.run_id()}: {e}") from None


def check_satisfiable(cluster: str, groups: Dict[Resources, List[RunConfig]], slurm: Dict[str, Any]) -> None:
    """Everything the executor cannot do is reported before anything is submitted."""
    gpu_runs = sum(len(r) for res, r in groups.items() if res.gpus)
    if cluster in ("local", "debug") and gpu_runs:
        import importlib.util

        has_gpu = False
        if importlib.util.find_spec("torch") is not None and shutil.which("nvidia-smi"):
            has_gpu = subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
        if not has_gpu:
            raise LaunchError(f"{gpu_runs} run(s) need device=cuda, but --cluster {cluster} runs on this "
                              "machine, which has no CUDA GPU. Run them on a GPU cluster (--cluster slurm), "
                              "or add --set device=cpu to run everything on the CPU")
    if cluster == "slurm":
        if not shutil.which("sbatch"):
            raise LaunchError("--cluster slurm: sbatch is not on PATH (is this a SLURM login node?); "
                              "use --cluster local to run on this machine")
        up, said = controller_answers()
        if not up:
            raise LaunchError(f"--cluster slurm: no SLURM controller answered ({said}); nothing was submitted. "
                              "Start it (or ask your admins), or use --cluster local to run on this machine")
        part = slurm["partition"]
        if part:
            got = subprocess.run(["sinfo", "-h", "-p", part, "-o", "%P"], capture_output=True, text=True,
                                 timeout=PING_TIMEOUT_S)
            if got.returncode == 0 and not got.stdout.strip():
                raise LaunchError(f"slurm.partition: no partition {part!r} on this cluster "
                                  f"(sinfo lists: {_sinfo('%P')})")
        cpus = [int(c) for c in _sinfo("%c", part).split() if c.isdigit()]
        need = max((res.cpus for res in groups), default=0)
        if cpus and need > max(cpus):
            raise LaunchError(f"slurm.cpus_per_task: runs ask for {need} CPUs per task, but the largest node"
                              f"{' in ' + part if part else ''} has {max(cpus)}; pass --cpus-per-task "
                              f"{max(cpus)} (or less)")
        if gpu_runs:
            gres = _sinfo("%G", part)
            if gres and all(g in ("(null)", "") for g in gres.split()):
                raise LaunchError(f"{gpu_runs} run(s) need device=cuda, but the cluster's nodes"
                                  f"{' in ' + part if part else ''} offer no GPUs (sinfo %G: {gres}). "
                                  "Choose a GPU partition (--partition), or --set device=cpu")


def _sinfo(fmt: str, partition: str = "") -> str:
    cmd = ["sinfo", "-h", "-o", fmt] + (["-p", partition] if partition else [])
    try:
        got = subprocess.run(cmd, capture_output=True, text=True, timeout=PING_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # a controller that does not answer: check_satisfiable says so
        return ""
    return " ".join(sorted(set(got.stdout.split()))) if got.returncode == 0 else ""


# ---- the one patch of submitit's internals ------------------------------------------------------
# It relies on submitit.local.local (pinned by tests/test_launch_submitit_pin.py):
#   - LocalExecutor._submit_command calls the module global `start_controller(folder=..., ...)`, so
#     replacing the module attribute reaches it;
#   - start_controller starts the controller with `subprocess.Popen(...)` looked up on the subprocess
#     module at call time, passing none of stdin/stdout/stderr/start_new_session itself.
# Nothing else in the package touches submitit's internals.

@functools.lru_cache(maxsize=1)
def _detach_local_jobs() -> None:
    """Start submitit's local job controllers in a session of their own. Otherwise they share the
    terminal's process group, and Ctrl-C in `submit.py --wait` (SIGINT to that whole group) kills
    the runs instead of leaving them to finish, as a SLURM job outlives its login shell."""
    import submitit.local.local as L

    start = L.start_controller

    @functools.wraps(start)
    def detached(*args: Any, **kwargs: Any):
        # nor do they hold our stdout/stderr: `submit.py | tee log` (or a test's pipe) would
        # otherwise stay open until the last run ends; the jobs log to their own files anyway
        folder = Path(kwargs.get("folder") or args[0])
        folder.mkdir(parents=True, exist_ok=True)
        popen = subprocess.Popen
        with open(folder / "local-controller.err", "ab") as err:
            subprocess.Popen = functools.partial(popen, start_new_session=True, stdin=subprocess.DEVNULL,  # type: ignore[misc]
                                                 stdout=subprocess.DEVNULL, stderr=err)
            try:
                return start(*args, **kwargs)
            finally:
                subprocess.Popen = popen  # type: ignore[misc]

    L.start_controller = detached


def make_executor(cluster: str, folder: Path, slurm: Dict[str, Any], res: Resources, name: str):
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster, slurm_max_num_timeout=slurm["max_requeues"])
    if cluster == "slurm":
        extra = dict(slurm["sbatch"])
        if slurm["reservation"]:
            extra["reservation"] = slurm["reservation"]
        params: Dict[str, Any] = dict(
            timeout_min=slurm["time_min"], cpus_per_task=res.cpus, mem_gb=slurm["mem_gb"], name=name,
            slurm_array_parallelism=slurm["array_parallelism"], slurm_signal_delay_s=slurm["signal_delay_s"],
            slurm_additional_parameters=extra)
        for key in ("partition", "account", "qos", "constraint"):
            if slurm[key]:
                params[f"slurm_{key}"] = slurm[key]
        if slurm["setup"]:
            params["slurm_setup"] = list(slurm["setup"])
        if res.gpus:
            if slurm["gpu_style"] == "gres":
                params["slurm_gres"] = f"{slurm['gres_name']}:{res.gpus}"
            else:
                params["slurm_gpus_per_task"] = res.gpus
        ex.update_parameters(**params)
    elif cluster == "local":
        _detach_local_jobs()
        ex.update_parameters(timeout_min=slurm["time_min"], gpus_per_node=res.gpus, name=name)
    else:
        ex.update_parameters(timeout_min=slurm["time_min"], name=name)
    return ex


def chunk(items: List[Any], per_task: int) -> List[List[Any]]:
    return [items[i : i + per_task] for i in range(0, len(items), per_task)]
