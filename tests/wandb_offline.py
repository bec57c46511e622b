"""Test helper: read what an offline W&B run recorded (wandb's private log format; tests only).

Recent wandb versions keep an offline run's config, history and summary only in the run's binary
``run-<id>.wandb`` log (``files/`` holds media and output). That file is a LevelDB-style log: a
7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of records, each a 7-byte
header (CRC32 4, length 2, type 1: full / first / middle / last) and a chunk of a protobuf
``wandb.proto.wandb_internal_pb2.Record``.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

HEADER = b":W&B"
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _records(path: Path):
    data = path.read_bytes()
    if not data.startswith(HEADER):
        raise ValueError(f"{path}: not a W&B run log")
    offset, chunks = 7, []
    while offset + 7 <= len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < 7:  # block trailer: padding
            offset += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        chunk = data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind == 0 and length == 0:
            offset += BLOCK - offset % BLOCK if offset % BLOCK else 0
            continue
        if kind in (FULL, FIRST):
            chunks = [chunk]
        else:
            chunks.append(chunk)
        if kind in (FULL, LAST):
            yield b"".join(chunks)


def _value(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


@dataclass
class OfflineRun:
    run_id: str = ""
    group: str = ""
    job_type: str = ""
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    exit_code: int | None = None  # set when the run was finished
    files_dir: Path | None = None


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """``run_dir``: a ``wandb/offline-run-...`` directory."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    (log_file,) = run_dir.glob("run-*.wandb")
    out = OfflineRun(files_dir=run_dir / "files")
    for data in _records(log_file):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.run_id, out.group, out.job_type = record.run.run_id, record.run.run_group, record.run.job_type
            out.config.update({item.key: _value(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            out.config.update({item.key: _value(item.value_json) for item in record.config.update})
        elif kind == "history":
            out.history.append({item.key or "/".join(item.nested_key): _value(item.value_json) for item in record.history.item})
        elif kind == "summary":
            out.summary.update({item.key or "/".join(item.nested_key): _value(item.value_json) for item in record.summary.update})
        elif kind == "artifact":
            out.artifacts.append(record.artifact.name)
        elif kind == "exit":
            out.exit_code = record.exit.exit_code
    return out
