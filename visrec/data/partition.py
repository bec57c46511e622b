"""Each DDP process's own rows of a run's split, for the models whose sweeps solve row slices (ALS, iALS).

Under DDP process r of W owns a contiguous slice of the users and one of the items (:func:`row_slice`). Rank 0
reads the source and draws the split as a single process does; before Lightning starts the other processes
it writes, for each rank r ≥ 1, the rows that rank needs (:func:`write`):

- train: every training rating whose user **or** item is in r's slices (its user-major and item-major tables);
- val and test: the ratings of r's users (each process validates and tests only its own users; the sums are
  all-reduced, so every rating is counted once).

With the per-user and per-item training counts (the whole table's: "warm" means the same on every process) and
what a model is built from (sizes, global mean, rating range, picture paths, the split's counts), in
``<run>/partitions/``. Rank r ≥ 1 reads only its file (:func:`read`) — it never reads the source or holds
another process's rows — and rank 0 removes the folder when training ends. Rank 0 itself keeps the whole split:
it drew it, and after training it alone evaluates, exports and fits the closed-form steps.

Files: ``meta.json`` (written last, so a reader that sees it sees complete shards), ``rows_<r>_of_<W>.parquet``
(user, item: int64 indices; rating: float32; part: int8, 0 train / 1 val / 2 test, in that order, each part in
the split's row order) and ``train_counts_users.parquet`` / ``train_counts_items.parquet`` (one int64 column
``count``). Under SLURM or torchrun every process starts at once: a reader waits (polling once a second, up to
``wait_s``) for a ``meta.json`` carrying its own launch's token (:func:`launch_token`), so a folder left by an
earlier launch of the same run is never read; under Lightning's launcher, which starts them only after rank 0
wrote it, a missing partition is an error at once. Everything read is checked (schema, sizes, index ranges): a
:class:`~visrec.data.errors.DataError` naming the file otherwise.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from visrec.data.errors import DataError
from visrec.interactions import Interactions
from visrec.utils.atomic import atomic_path, write_json_atomic

FOLDER = "partitions"
FORMAT = 1
PARTS = ("train", "val", "test")
COLUMNS = {"user": "int64", "item": "int64", "rating": "float32", "part": "int8"}  # numpy dtypes of the shard


def row_slice(num_rows: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of the rows process ``rank`` of ``world`` owns (contiguous, sizes differing by ≤ 1)."""
    return num_rows * rank // world, num_rows * (rank + 1) // world


def launched_process(num_nodes: int = 1) -> tuple[int, int] | None:
    """(global rank, world size) of this process as its launcher set them in the environment before any
    process group exists: torchrun (``RANK``, ``WORLD_SIZE``), Lightning's launcher for the processes it starts
    (``LOCAL_RANK``, ``NODE_RANK``, ``WORLD_SIZE``; ``num_nodes`` = ``trainer.num_nodes``) or SLURM
    (``SLURM_PROCID``, ``SLURM_NTASKS``). None when nothing says so — the process Lightning's launcher starts
    from (rank 0) or a single-process run. The pipeline checks the answer against Lightning's own ranks."""
    env = os.environ
    try:
        if "RANK" in env and "WORLD_SIZE" in env:
            return int(env["RANK"]), int(env["WORLD_SIZE"])
        if "LOCAL_RANK" in env and "WORLD_SIZE" in env:
            world = int(env["WORLD_SIZE"])
            per_node = max(world // max(int(num_nodes), 1), 1)
            return int(env.get("NODE_RANK", 0)) * per_node + int(env["LOCAL_RANK"]), world
        if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
            return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
    except ValueError:
        return None
    return None


def launch_token() -> str | None:
    """What identifies this launch to all its processes (SLURM job id and restart count, torchrun's run id);
    None under Lightning's launcher, which starts the other processes only after rank 0 wrote the files."""
    env = os.environ
    if "SLURM_JOB_ID" in env:
        return f"slurm:{env['SLURM_JOB_ID']}.{env.get('SLURM_RESTART_COUNT', '0')}"
    if "TORCHELASTIC_RUN_ID" in env:
        return f"torchelastic:{env['TORCHELASTIC_RUN_ID']}"
    return None


def external_launch_name() -> str | None:
    """A run-folder name that every process of an externally launched multi-process run computes alike:
    ``torchrun-<TORCHELASTIC_RUN_ID>`` under torchrun with ``WORLD_SIZE`` > 1, ``slurm-<job id>.<step id>`` in an
    srun step of several tasks; None otherwise (one process, or Lightning's launcher, which hands its run folder
    to the processes it starts). Without it each process would stamp its own folder with its own start time, and
    the partitioned processes would wait for rank 0's files in the wrong one. Characters other than letters,
    digits, ``.``, ``_`` and ``-`` become ``_``."""
    env = os.environ
    try:
        if env.get("TORCHELASTIC_RUN_ID") and int(env.get("WORLD_SIZE", "1")) > 1:
            name = f"torchrun-{env['TORCHELASTIC_RUN_ID']}"
        elif env.get("SLURM_JOB_ID") and env.get("SLURM_STEP_ID") and int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or 1) > 1:
            name = f"slurm-{env['SLURM_JOB_ID']}.{env['SLURM_STEP_ID']}"
        else:
            return None
    except ValueError:
        return None
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def rows_of(data: Interactions, num_users: int, num_items: int, rank: int, world: int, by_item: bool) -> torch.Tensor:
    """(R,) bool: the ratings of ``data`` whose user is in ``rank``'s user slice (or, with ``by_item``, whose
    item is in its item slice)."""
    u0, u1 = row_slice(num_users, rank, world)
    mine = (data.users >= u0) & (data.users < u1)
    if by_item:
        i0, i1 = row_slice(num_items, rank, world)
        mine |= (data.items >= i0) & (data.items < i1)
    return mine


@dataclass
class Partition:
    """What rank r ≥ 1 reads: ``meta`` (meta.json), ``parts`` (train / val / test: its rows), the whole
    table's training counts per user (U,) and per item (N,)."""

    meta: dict
    parts: dict[str, Interactions]
    user_train_counts: torch.Tensor
    item_train_counts: torch.Tensor


def _write_parquet(path: Path, columns: dict[str, np.ndarray]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: pa.array(values) for name, values in columns.items()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True)  # CRC per page: a damaged byte is an error, not data


def write(run_dir: str | Path, world: int, parts: dict[str, Interactions], user_train_counts: torch.Tensor,
          item_train_counts: torch.Tensor, meta: dict) -> Path:
    """Write ``<run_dir>/partitions/`` for ranks 1..world−1 (module docstring) from rank 0's whole ``parts``;
    ``meta`` (JSON-able: sizes, global mean, ...) goes into meta.json with the shards' sizes. Returns the folder."""
    remove(run_dir)  # an earlier launch's files
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True)
    num_users, num_items = len(user_train_counts), len(item_train_counts)
    _write_parquet(folder / "train_counts_users.parquet", {"count": user_train_counts.numpy().astype(np.int64)})
    _write_parquet(folder / "train_counts_items.parquet", {"count": item_train_counts.numpy().astype(np.int64)})
    shards = {}
    for rank in range(1, world):
        mine = {part: data.subset(rows_of(data, num_users, num_items, rank, world, by_item=part == "train"))
                for part, data in parts.items()}
        sizes = [len(mine[part]) for part in PARTS]
        name = f"rows_{rank}_of_{world}.parquet"
        _write_parquet(folder / name, {
            "user": torch.cat([mine[p].users for p in PARTS]).numpy().astype(np.int64),
            "item": torch.cat([mine[p].items for p in PARTS]).numpy().astype(np.int64),
            "rating": torch.cat([mine[p].ratings for p in PARTS]).numpy().astype(np.float32),
            "part": np.repeat(np.arange(len(PARTS), dtype=np.int8), sizes)})
        shards[str(rank)] = {"file": name, "rows": dict(zip(PARTS, sizes))}
    write_json_atomic(folder / "meta.json", {**meta, "format": FORMAT, "world": world, "launch": launch_token(),
                                             "num_users": num_users, "num_items": num_items, "shards": shards})
    return folder


def _meta_for(path: Path, world: int, token: str | None) -> dict | None:
    """meta.json when it is this launch's (its token and world size), else None (not written yet)."""
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise DataError(path, f"unreadable partition metadata ({error})") from None
    if not isinstance(meta, dict):
        raise DataError(path, "not a partition metadata file (expected a JSON object)")
    if meta.get("launch") != token or meta.get("world") != world:
        return None
    return meta


def _read_rows(path: Path, sizes: list[int], num_users: int, num_items: int) -> Interactions:
    """The shard's rows, streamed in batches into tensors allocated once (no second copy of the file in memory),
    each batch checked: page checksums (CRC32, written by :func:`write`), schema, no nulls, the part column as
    ``sizes`` (rows per part) says, indices in range, finite ratings."""
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path, pre_buffer=False, page_checksum_verification=True)
        found = {field.name: field.type.to_pandas_dtype().__name__ for field in handle.schema_arrow}
        total = handle.metadata.num_rows
    except Exception as error:  # pyarrow's errors have no common base
        raise DataError(path, f"unreadable ({type(error).__name__}: {error})") from None
    if found != COLUMNS:
        raise DataError(path, f"expected columns {COLUMNS}, found {found}")
    if total != sum(sizes):
        raise DataError(path, f"holds {total} rows; meta.json records {dict(zip(PARTS, sizes))}")
    users, items = torch.empty(total, dtype=torch.int64), torch.empty(total, dtype=torch.int64)  # (R,)
    ratings = torch.empty(total, dtype=torch.float32)  # (R,)
    part_ends = np.cumsum(sizes)  # (3,) row where each part ends
    at = 0
    try:
        batches = handle.iter_batches(batch_size=1 << 20, use_threads=False)
        for batch in batches:
            n = batch.num_rows
            if at + n > total or any(column.null_count for column in batch.columns):
                raise DataError(path, "more rows than its metadata, or missing values")
            column = {name: batch.column(name).to_numpy() for name in COLUMNS}
            expected_part = np.searchsorted(part_ends, np.arange(at, at + n), side="right")  # (n,)
            if not np.array_equal(column["part"], expected_part):
                raise DataError(path, f"its part column does not hold the {dict(zip(PARTS, sizes))} rows meta.json records",
                                field="part")
            if n and not (0 <= column["user"].min() and column["user"].max() < num_users
                          and 0 <= column["item"].min() and column["item"].max() < num_items):
                raise DataError(path, f"user / item indices outside [0, {num_users}) / [0, {num_items})", field="user/item")
            if not np.isfinite(column["rating"]).all():
                raise DataError(path, "non-finite ratings", field="rating")
            for tensor, name in ((users, "user"), (items, "item"), (ratings, "rating")):
                np.copyto(tensor[at:at + n].numpy(), column[name])
            at += n
    except DataError:
        raise
    except Exception as error:  # pyarrow's errors have no common base
        raise DataError(path, f"unreadable ({type(error).__name__}: {error})") from None
    if at != total:
        raise DataError(path, f"holds {at} readable rows; its metadata says {total}")
    return Interactions(users, items, ratings)


def _tensor(values: np.ndarray) -> torch.Tensor:
    """The array as a tensor sharing its memory (copied only when the array is read-only)."""
    return torch.from_numpy(np.require(values, requirements="W"))


def _read_counts(path: Path, size: int) -> torch.Tensor:
    from visrec.utils.parquet import read_parquet_frame

    try:
        frame = read_parquet_frame(path)
    except Exception as error:  # pyarrow's errors have no common base
        raise DataError(path, f"unreadable ({type(error).__name__}: {error})") from None
    if list(frame.columns) != ["count"] or len(frame) != size or frame["count"].dtype != np.int64 or bool((frame["count"] < 0).any()):
        raise DataError(path, f"expected one int64 column 'count' of {size} values >= 0")
    return _tensor(frame["count"].to_numpy())


def read(run_dir: str | Path, rank: int, world: int, wait_s: float = 1800.0) -> Partition:
    """Rank ``rank``'s rows of ``<run_dir>/partitions/`` (written by rank 0 of the same launch), waiting up to
    ``wait_s`` seconds for its meta.json. Raises :class:`DataError` naming the file when it does not come or
    fails a check."""
    folder = Path(run_dir) / FOLDER
    token = launch_token()
    deadline = time.monotonic() + (wait_s if token is not None else 0.0)  # Lightning's launcher: written before we started
    while (meta := _meta_for(folder / "meta.json", world, token)) is None:
        if time.monotonic() >= deadline:
            if token is None:
                raise DataError(folder / "meta.json", f"process {rank} of {world} found no partition for {world} processes: "
                                                      "rank 0 writes it before Lightning starts the other processes (was the "
                                                      "run folder changed or removed meanwhile?)")
            raise DataError(folder / "meta.json", f"process {rank} of {world} waited {wait_s:g} s for rank 0 to write this "
                                                  f"launch's partition (launch {token}); did rank 0 fail at set-up?")
        time.sleep(1.0)
    num_users, num_items = meta.get("num_users"), meta.get("num_items")
    shard = (meta.get("shards") or {}).get(str(rank))
    if not (isinstance(num_users, int) and isinstance(num_items, int) and isinstance(shard, dict)
            and isinstance(shard.get("file"), str) and isinstance(shard.get("rows"), dict)):
        raise DataError(folder / "meta.json", f"no valid entry for process {rank} (num_users, num_items, shards.{rank})")
    path = folder / shard["file"]
    if path.name != shard["file"] or path.is_symlink():
        raise DataError(folder / "meta.json", f"shard file {shard['file']!r} is not a plain file name in {folder}")
    sizes = [shard["rows"].get(part) for part in PARTS]
    if not all(isinstance(size, int) and size >= 0 for size in sizes):
        raise DataError(folder / "meta.json", f"shards.{rank}.rows must give a row count >= 0 for each of {PARTS}")
    data = _read_rows(path, sizes, num_users, num_items)
    bounds = np.cumsum([0, *sizes])
    parts = {name: data.subset(slice(int(lo), int(hi))) for name, lo, hi in zip(PARTS, bounds[:-1], bounds[1:])}
    return Partition(meta, parts, _read_counts(folder / "train_counts_users.parquet", num_users),
                     _read_counts(folder / "train_counts_items.parquet", num_items))


def remove(run_dir: str | Path) -> None:
    """Delete ``<run_dir>/partitions/`` (rank 0: before writing one, and after the fit, once every process has
    read its rows); meta.json first, so nothing reads a mix."""
    folder = Path(run_dir) / FOLDER
    if folder.exists():
        (folder / "meta.json").unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
