"""Launch: run configs -> submitit job arrays (one sbatch per resource group), a manifest of
what was submitted, and the status of every run (from its summary.json, else its job's state).

A run's folder is runs/<sweep>/<run_id>/ and its run_id is a hash of its config, so submitting a
sweep again launches only what is missing or failed, and a requeued job finds its checkpoint.

Modules, lowest first (each imports only those before it): jobs (what runs on the node), limits (the
cluster's limits and the sweep lock), executors (resources, cluster checks, submitit executors),
status (manifest and run status), submission (plan and submit), progress (waiting and the summary).
Names are re-exported here; patch a name in the module that defines it, not here.
"""
from .executors import (
    CLUSTERS,
    PING_TIMEOUT_S,
    Resources,
    check_memory,
    check_satisfiable,
    chunk,
    controller_answers,
    gpus_offered,
    make_executor,
    pick_cluster,
    resources,
)
from .jobs import DONE, AgentJob, RunJob, agent_train, read_summary
from .limits import LIMIT_KEYS, LIMITS_ENV, LOCK_NAME, ClusterLimits, LaunchError, cluster_limits, layout, sweep_lock
from .progress import report_status, results_table, wait
from .status import (
    INDENTED_UP_TO,
    MAYBE_REQUEUED,
    NODE_REASONS,
    SLURM_ACTIVE,
    UNKNOWN_GRACE_S,
    job_states,
    load_manifest,
    manifest_path,
    manifest_problem,
    pending_reasons,
    rid_of,
    run_status,
    write_manifest,
)
from .submission import SET_ASIDE, Plan, plan, submit, submit_online

__all__ = [
    # jobs
    "DONE", "AgentJob", "RunJob", "agent_train", "read_summary",
    # limits
    "LIMIT_KEYS", "LIMITS_ENV", "LOCK_NAME", "ClusterLimits", "LaunchError", "cluster_limits", "layout", "sweep_lock",
    # executors
    "CLUSTERS", "PING_TIMEOUT_S", "Resources", "check_memory", "check_satisfiable", "chunk", "controller_answers", "gpus_offered",
    "make_executor", "pick_cluster", "resources",
    # status
    "INDENTED_UP_TO", "MAYBE_REQUEUED", "NODE_REASONS", "SLURM_ACTIVE", "UNKNOWN_GRACE_S", "job_states",
    "load_manifest", "manifest_path", "manifest_problem", "pending_reasons", "rid_of", "run_status", "write_manifest",
    # submission
    "SET_ASIDE", "Plan", "plan", "submit", "submit_online",
    # progress
    "report_status", "results_table", "wait",
]
