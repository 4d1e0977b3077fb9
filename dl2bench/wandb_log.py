"""What W&B holds of an offline run: `run-<id>.wandb` is a leveldb-style log (a 7-byte file
header, then 32 KiB blocks of records, each a 7-byte header -- CRC, length, type -- and a chunk
of a protobuf `Record`). wandb >= 0.30 ships no reader for it (design.md); this one uses
wandb's own protobuf schema. A resumed run reads it to send W&B exactly the epochs an earlier,
killed attempt never got there (wandb's service buffers records and loses them with the job).
How they reach the server later is here too: the `wandb sync` of a sweep's, and which are not synced."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Dict, Iterator, List

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """Every complete protobuf Record in the file, in order; a torn tail (a killed writer) ends it."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's trailer: zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += left
            continue
        if len(chunk) < length:
            return
        pos += HEADER + length
        if kind == FULL:
            pending = b""
            body = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            body, pending = pending + chunk, b""
        else:
            return
        rec = pb.Record()
        rec.ParseFromString(body)
        yield rec


def history(path: Path) -> List[Dict[str, Any]]:
    """The rows the run logged with wandb.log, as {key: value}."""
    rows = []
    for rec in records(path):
        if rec.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in rec.history.item})
    return rows


def logged_epochs(run_dir: Path, wandb_id: str = "*") -> List[int]:
    """The epochs W&B got for a run under one W&B id, over every offline run folder its attempts
    wrote (a resumed run writes a second one; `wandb sync` uploads them all under that id), in order."""
    out = []
    for f in sorted(Path(run_dir).glob(f"wandb/offline-run-*/run-{wandb_id}.wandb")):
        out += [int(r["epoch"]) for r in history(f) if "epoch" in r and not _media_only(r)]
    return out


def _media_only(row: Dict[str, Any]) -> bool:
    """A row of pictures logged at the end (dl2bench.media), not an epoch's metrics."""
    from .wandb_view import MEDIA

    return all(k == "epoch" or k.startswith(("_", MEDIA)) for k in row)


def _items(items) -> Dict[str, Any]:
    return {(it.key or "/".join(it.nested_key)): json.loads(it.value_json) for it in items}


def read_run(path: Path) -> Dict[str, Any]:
    """What an offline run file tells W&B, as plain data: id, name, job_type, group, the config
    (W&B's own `_wandb` entry left out), the final summary, the history rows, the metric
    definitions, the artifacts it logged and those it used (by name), and the exit code once the run
    has ended (None before). What `wandb sync` uploads."""
    out: Dict[str, Any] = {"id": None, "project": None, "name": None, "job_type": None, "group": None, "config": {},
                           "summary": {}, "history": [], "metrics": {}, "artifacts": [], "used": [], "exit_code": None}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(id=r.run_id, project=r.project or None, name=r.display_name, job_type=r.job_type,
                       group=r.run_group)
            out["config"].update(_items(r.config.update))
        elif kind == "config":
            out["config"].update(_items(rec.config.update))
            for it in rec.config.remove:
                out["config"].pop(it.key, None)
        elif kind == "summary":
            out["summary"].update(_items(rec.summary.update))
        elif kind == "history":
            out["history"].append(_items(rec.history.item))
        elif kind == "metric":
            m = rec.metric
            if m.name:
                out["metrics"][m.name] = {"step_metric": m.step_metric,
                                          "goal": m.DESCRIPTOR.fields_by_name["goal"].enum_type.values_by_number[m.goal].name,
                                          "summary": [f.name for f, v in m.summary.ListFields() if v is True]}
        elif kind == "artifact":
            a = rec.artifact
            out["artifacts"].append({"name": a.name, "type": a.type, "metadata": json.loads(a.metadata or "{}"),
                                     "files": [e.path for e in a.manifest.contents]})
        elif kind == "exit":  # the run's end (wandb's service may write it after finish() returned)
            out["exit_code"] = rec.exit.exit_code
        elif kind == "use_artifact":
            out["used"].append({"name": rec.use_artifact.name, "type": rec.use_artifact.type})
    out["config"].pop("_wandb", None)
    return out


def sync_command(root: Path) -> str:
    """The upload of a sweep's offline W&B runs: one folder per attempt, two levels down, so plain
    `wandb sync` (which looks in ./wandb) finds none; find, not a shell glob, for 50,000 runs. Then
    the lineage offline runs could not declare (dl2bench.wandb_lineage)."""
    import shlex

    q = shlex.quote(str(root))
    return (f"find {q} -mindepth 3 -maxdepth 3 -path '*/wandb/offline-run-*' -type d "
            f"-print0 | xargs -0 wandb sync && python -m dl2bench.wandb_lineage {q}")


def unsynced(run_dir: Path) -> List[Path]:
    """A run's offline W&B records that `wandb sync` has not uploaded (it leaves `<file>.synced` beside
    each one it has)."""
    return [f for f in sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
            if not f.with_name(f.name + ".synced").exists()]


def main(argv=None) -> int:
    """python -m dl2bench.wandb_log RUN_FOLDER_OR_FILE...: what W&B holds of offline runs, as JSON,
    without a server (name, job type, config, summary, metric definitions, artifacts; history rows
    counted, not printed)."""
    import sys

    paths = list(argv if argv is not None else sys.argv[1:])
    if not paths:
        print("usage: python -m dl2bench.wandb_log RUN_FOLDER|run-ID.wandb ...", file=sys.stderr)
        return 2
    for p in map(Path, paths):
        files = [p] if p.is_file() else sorted(p.glob("**/offline-run-*/run-*.wandb"))
        if not files:
            print(f"error: {p}: no offline W&B run (run-<id>.wandb) there", file=sys.stderr)
            return 2
        for f in files:
            try:
                rec = read_run(f)
            except (OSError, ValueError) as e:
                print(f"error: {f}: {e}", file=sys.stderr)
                return 2
            rec["history"] = f"{len(rec['history'])} row(s)"
            print(json.dumps({"file": str(f), **rec}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
