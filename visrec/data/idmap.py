"""Raw id <-> contiguous index maps.

An :class:`IdMap` is a bijection between the ids a dataset uses (ints or strings, in their original
dtype) and the indices ``0..n-1`` that embedding tables use. It is saved as a one-column Parquet file
so the original ids and their dtype survive a round trip (no pickle).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from visrec.data.errors import DataError
from visrec.utils.atomic import atomic_path
from visrec.utils.parquet import read_parquet_frame


class IdMap:
    """Bijection raw id <-> index. ``raw_ids[i]`` is the raw id of index ``i``."""

    def __init__(self, raw_ids, name: str = "id"):
        index = pd.Index(raw_ids)
        if not _strictly_increasing(index) and index.has_duplicates:  # sorted ids (the usual case) need no hash table
            dup = index[index.duplicated()][:5].tolist()
            raise ValueError(f"{name} map: duplicate raw ids {dup}")
        self._index = index
        self.name = name

    @classmethod
    def from_values(cls, values, name: str = "id") -> "IdMap":
        """Map built from the distinct values, in sorted order (deterministic). Ids of mixed types
        (``7`` and ``"7"``) cannot be ordered, and would never match each other: a DataError."""
        distinct = pd.unique(np.asarray(values))
        try:
            return cls(np.sort(distinct), name=name)
        except TypeError:
            examples = {}
            for value in distinct:
                examples.setdefault(type(value).__name__, value)
            shown = ", ".join(f"{kind} (e.g. {value!r})" for kind, value in sorted(examples.items()))
            raise DataError(None, f"{name} ids mix types: {shown}; every file must give the ids of one type "
                                  f"(CSV ids are strings, Parquet ids keep their column type)") from None

    def __len__(self) -> int:
        return len(self._index)

    @property
    def raw_ids(self) -> np.ndarray:
        return self._index.to_numpy()

    def to_index(self, raw) -> np.ndarray:
        """Indices (int64) of raw ids; raises ``KeyError`` naming the first unknown ids."""
        idx = self._index.get_indexer(pd.Index(np.asarray(raw)))
        if (idx < 0).any():
            unknown = pd.unique(np.asarray(raw)[idx < 0])
            raise KeyError(f"{len(unknown)} unknown {self.name}(s), e.g. {unknown[:5].tolist()}")
        return idx.astype(np.int64)

    def lookup(self, raw) -> np.ndarray:
        """Indices of raw ids, with -1 for unknown ids."""
        return self._index.get_indexer(pd.Index(np.asarray(raw))).astype(np.int64)

    def to_raw(self, index) -> np.ndarray:
        return self._index.to_numpy()[np.asarray(index)]

    def __eq__(self, other) -> bool:
        return isinstance(other, IdMap) and self._index.equals(other._index) and self._index.dtype == other._index.dtype

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            pd.DataFrame({"raw_id": self._index.to_numpy(), "index": np.arange(len(self), dtype=np.int64)}).to_parquet(
                tmp, index=False
            )

    @classmethod
    def load(cls, path: str | Path, name: str = "id") -> "IdMap":
        frame = read_parquet_frame(path)
        if list(frame.columns) != ["raw_id", "index"] or not np.array_equal(frame["index"], np.arange(len(frame))):
            raise ValueError(f"{path}: not an IdMap file (expected columns raw_id, index = 0..n-1)")
        return cls(frame["raw_id"].to_numpy(), name=name)


def _strictly_increasing(index: pd.Index) -> bool:
    """Whether the ids are sorted with no repeats, by comparing neighbours (numbers, or pyarrow-backed
    strings by code point); False when that cannot be told so cheaply (the caller then hashes them)."""
    if len(index) < 2:
        return True
    if index.dtype.kind in "iu":
        values = index.to_numpy()
        return bool(np.all(values[1:] > values[:-1]))
    if isinstance(index.dtype, pd.StringDtype) and index.dtype.storage == "pyarrow":
        values = pa.array(index.array)
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        return values.null_count == 0 and pc.all(pc.less(values[:-1], values[1:])).as_py() is True
    return False

