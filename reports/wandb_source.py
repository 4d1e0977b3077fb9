"""W&B as a source: runs fetched through the public API (`wandb.Api()`) turned into the same run
records as the local results store, so the report cannot tell the difference.

Our Tracker mirrors the run's own config keys to `run.config`, every metrics.jsonl row to the history
(with `epoch` as the step metric) and summary.json to `run.summary`, under sectioned names
(dl2bench.wandb_view: val_acc is val/acc); W&B adds its own `_`-keys, which
are dropped here. A run W&B lists without our summary is mapped from its W&B state."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Optional

from dl2bench import record as R
from dl2bench import wandb_view as V

from .load import ReportError, Sweep, assemble

# W&B run states -> ours, for runs that never wrote our summary (killed, crashed, still running)
STATE = {"running": R.INCOMPLETE, "pending": R.INCOMPLETE, "preempted": R.INCOMPLETE,
         "crashed": R.FAILED, "failed": R.FAILED, "killed": R.FAILED, "finished": R.FINISHED}
HISTORY_SAMPLES = 100_000  # more than any run's epochs: history() samples down to this many rows


def plain(d: Any) -> Dict[str, Any]:
    """A W&B config/summary mapping -> a plain dict without W&B's own keys; {'value': x} -> x."""
    items = d.items() if hasattr(d, "items") else dict(d).items()
    out = {}
    for k, v in items:
        if str(k).startswith("_"):
            continue
        if isinstance(v, Mapping) and set(v) == {"value"}:  # older API shape: {"lr": {"value": 0.01}}
            v = v["value"]
        out[str(k)] = v
    return out


def run_record(run: Any, sweep: str, path: str) -> Dict[str, Any]:
    """One W&B run -> a record {sweep, run, path, config, summary|None, metrics, notes}."""
    config = plain(run.config)
    # W&B holds sectioned names (val/acc) and no metric declarations (dl2bench.wandb_view): back to
    # the local record's names, the declarations from the task (a run written before keeps its own)
    summary: Optional[Dict[str, Any]] = {V.local_key(k): v for k, v in plain(run.summary).items()
                                         if not k.startswith(V.MEDIA)}
    if "metrics" not in summary and "status" in summary:
        declared = _declarations(config.get("task"))
        if declared:
            summary["metrics"] = declared
    history = run.history(samples=HISTORY_SAMPLES, pandas=False)
    if hasattr(history, "to_dict"):  # a DataFrame (pandas=True on some versions)
        history = history.to_dict("records")
    metrics = []
    for row in history or []:
        row = {V.local_key(str(k)): v for k, v in dict(row).items() if not str(k).startswith(("_", V.MEDIA))}
        if row.get("epoch") is not None and len(row) > 1:  # a row of only pictures is no epoch's metrics
            metrics.append(row)
    metrics.sort(key=lambda r: r["epoch"])
    state = str(getattr(run, "state", "") or "").lower()
    if "status" not in summary:  # our Tracker never finished this run: W&B's state says why
        status = STATE.get(state, R.INCOMPLETE)
        if status == R.INCOMPLETE:
            summary = None
        else:
            summary = {**summary, "status": status,
                       "reason": f"W&B state '{state}' without a dl2bench summary (the process died)"
                       if status == R.FAILED else None}
    return {"sweep": sweep, "run": str(run.id), "path": f"wandb:{path}/{run.id}", "config": config, "config_source": "run",
            "summary": summary, "metrics": metrics, "notes": []}


def _declarations(task: Any) -> Optional[Dict[str, Any]]:
    """The task's declared metrics as summary.json holds them; None for a task this install lacks."""
    from dl2bench.families import TASKS

    if task not in TASKS:
        return None
    return {m.name: m.to_dict() for m in TASKS[task]().metrics}


def load_wandb(path: str, sweep: Optional[str] = None, group: Optional[str] = None, api: Any = None) -> Sweep:
    """Runs of ENTITY/PROJECT (optionally one sweep or one group) -> a Sweep. `api` defaults to
    wandb.Api(); tests pass a recorded stand-in with the same attributes."""
    if path.count("/") != 1 or not all(path.split("/")):
        raise ReportError(f"--wandb {path!r}: expected ENTITY/PROJECT")
    if sweep and group:
        raise ReportError("give --sweep or --group, not both")
    if api is None:
        try:
            import wandb

            api = wandb.Api(timeout=60)
        except Exception as e:  # noqa: BLE001 - no key, no network: one clear line
            raise ReportError(f"wandb:{path}: cannot open the W&B API ({type(e).__name__}: {e})") from None
    metric = None
    try:
        if sweep:
            s = api.sweep(f"{path}/{sweep}")
            runs: Iterable[Any] = s.runs
            name = str(getattr(s, "name", None) or sweep)
            m = (getattr(s, "config", None) or {}).get("metric") or {}
            if m.get("name"):
                metric = (str(m["name"]), str(m["goal"]) if m.get("goal") else None)
        else:
            runs = api.runs(path, filters={"group": group} if group else None)
            name = group or path.split("/")[1]
        records = [run_record(r, name, path) for r in runs]
    except ReportError:
        raise
    except Exception as e:  # noqa: BLE001 - network, auth, missing project: one clear line
        where = f"wandb:{path}" + (f" sweep {sweep}" if sweep else f" group {group}" if group else "")
        raise ReportError(f"{where}: {type(e).__name__}: {e}") from None
    if not records:
        where = f"wandb:{path}" + (f" sweep {sweep}" if sweep else f" group {group}" if group else "")
        raise ReportError(f"{where}: no runs")
    src = f"wandb:{path}" + (f"/sweeps/{sweep}" if sweep else f" (group {group})" if group else "")
    return assemble(name, metric, records, [src])

