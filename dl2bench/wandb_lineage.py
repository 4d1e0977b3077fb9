"""W&B lineage for runs recorded offline. wandb cannot use an artifact in offline mode ("Cannot use
artifact when in offline mode", wandb 0.31), so an evaluating run (an attack, GAN sampling, a GAN
scored in a classifier's feature space) records the model artifacts it loads in its W&B config
(`uses`: config key -> model-<run id>) and nothing else. Once `wandb sync` has uploaded the runs,

    python -m dl2bench.wandb_lineage RESULTS_FOLDER [--entity E] [--project P]

declares each use on the server (W&B's public API: Run.use_artifact), which draws the graph
victim -> attack, generator -> samples, classifier -> GAN. Online runs declare theirs as they start."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from . import wandb_view as V
from .wandb_log import read_run

Use = Tuple[str, str, str, str]  # (project, W&B run id, config key, artifact name)


def recorded_uses(root: Path) -> Iterator[Use]:
    """Every model artifact an offline run under `root` says it used, the last file of each W&B
    run id winning (a resumed attempt repeats its config)."""
    files = sorted(Path(root).glob("**/wandb/offline-run-*/run-*.wandb"))
    seen: Dict[str, Tuple[Path, Dict[str, Any]]] = {}
    for f in files:
        rec = read_run(f)
        if rec["id"]:
            seen[rec["id"]] = (f, rec)
    for wid, (_, rec) in seen.items():
        for key, name in sorted((rec["config"].get(V.USES) or {}).items()):
            yield rec.get("project") or "", wid, str(key), str(name)


def declare(api: Any, uses: List[Use], entity: str, project: Optional[str]) -> List[str]:
    """Each use as W&B's Run.use_artifact; returns one line per use that failed (an artifact its
    training run never synced, a run not uploaded yet), so the rest still land."""
    problems = []
    for proj, wid, key, name in uses:
        where = f"{entity}/{project or proj}"
        try:
            run = api.run(f"{where}/{wid}")
            run.use_artifact(api.artifact(f"{where}/{name}:latest", type="model"))
        except Exception as e:  # noqa: BLE001 - the server says why: keep going, report at the end
            problems.append(f"{where}/{wid} ({key}) -> {name}: {type(e).__name__}: {e}")
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dl2bench.wandb_lineage", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="a results folder (a sweep's, or the root of several)")
    ap.add_argument("--entity", help="W&B entity the runs were synced to (default: your API key's)")
    ap.add_argument("--project", help="W&B project (default: each run's own)")
    ap.add_argument("--dry-run", action="store_true", help="list the uses; declare nothing")
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root}: not a folder", file=sys.stderr)
        return 2
    try:
        uses = list(recorded_uses(args.root))
    except (OSError, ValueError) as e:
        print(f"error: cannot read the offline W&B records under {args.root}: {e}", file=sys.stderr)
        return 2
    if not uses:
        print(f"no offline run under {args.root} uses another run's model: nothing to declare")
        return 0
    for _, wid, key, name in uses:
        print(f"{wid} ({key}) uses {name}")
    if args.dry_run:
        return 0
    import wandb

    api = wandb.Api()
    entity = args.entity or api.default_entity
    if not entity:
        print("error: --entity: no W&B entity given and your API key has no default one", file=sys.stderr)
        return 2
    problems = declare(api, uses, entity, args.project)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    print(f"declared {len(uses) - len(problems)} of {len(uses)} use(s) in W&B")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
