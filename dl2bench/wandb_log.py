"""What W&B holds of an offline run: `run-<id>.wandb` is a leveldb-style log (a 7-byte file
header, then 32 KiB blocks of records, each a 7-byte header -- CRC, length, type -- and a chunk
of a protobuf `Record`). wandb >= 0.30 ships no reader for it (design.md); this one uses
wandb's own protobuf schema. A resumed run reads it to send W&B exactly the epochs an earlier,
killed attempt never got there (wandb's service buffers records and loses them with the job)."""
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


def logged_epochs(run_dir: Path) -> List[int]:
    """The epochs W&B got for a run, over every offline run folder its attempts wrote (a resumed
    run writes a second one; `wandb sync` uploads them all under the run id), in order."""
    out = []
    for f in sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")):
        out += [int(r["epoch"]) for r in history(f) if "epoch" in r]
    return out
