"""The report as a W&B artifact: `--log-artifact offline|online` logs the files a build wrote
(report.html, report.pdf, runs.csv, ...) as artifact `report-<name>` of type report, from a run of
job type report in the runs' own project, so the report sits in W&B beside the runs it describes.
Offline, the run waits in `<out>/wandb/` for the same `wandb sync` as the runs."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Optional


def artifact_name(name: str) -> str:
    """W&B artifact names take letters, digits, '-', '_' and '.'."""
    return "report-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "report")[:100]


def log_report(paths: Dict[str, Path], name: str, mode: str, out: Path, project: Optional[str],
               entity: Optional[str] = None, metadata: Optional[Dict] = None) -> str:
    """Log `paths` as one report artifact; returns its name. Raises on a W&B failure (the caller
    has already written the report: the files stand without it)."""
    import wandb

    os.environ["WANDB_MODE"] = mode  # design.md: in the environment too, or wandb looks up the network at exit
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_DISABLE_GIT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    run = wandb.init(project=project or "dl2bench", entity=entity or None, job_type="report", name=f"report {name}",
                     mode=mode, dir=str(out), config={"report": name, **(metadata or {})}, reinit="finish_previous")
    try:
        art = wandb.Artifact(artifact_name(name), type="report", metadata=metadata or {})
        for p in paths.values():
            art.add_file(str(p), name=Path(p).name)
        run.log_artifact(art)
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()
    return art.name
