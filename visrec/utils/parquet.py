"""Read a small Parquet file without starting any of pyarrow's worker threads.

``pandas.read_parquet`` / ``pyarrow.parquet.read_table`` go through pyarrow's dataset scanner, which
hands row groups to Arrow's thread pools even with ``use_threads=False``. A process that did so can
abort at interpreter exit with "terminate called without an active exception" (SIGABRT, exit -6)
when a pool worker is torn down while still joinable: apache/arrow#34314, #50482 (reading through a
Python file object makes it more likely; seen here as 1 abort in 40 runs). For the small files visrec
reads on every load (id maps, splits, bundle id maps) the synchronous single-file reader is just as
fast, so they all go through :func:`read_parquet_frame`. Large rating files keep pyarrow's threaded
reader (:mod:`visrec.data.readers`), where its speed matters.
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pandas as pd


def read_parquet_frame(source: str | Path | BinaryIO, columns: list[str] | None = None,
                       dictionary: list[str] | None = None) -> pd.DataFrame:
    """The Parquet file ``source`` (a path or an open binary file) as a DataFrame, read on the calling
    thread only (``ParquetFile.read(use_threads=False)``, no pre-buffering, ``to_pandas(use_threads=False)``).

    Dtypes are those of ``pandas.read_parquet`` for the same file (pandas metadata, including a stored
    index, is honoured), except the string columns named in ``dictionary``: pandas Categoricals (codes into
    the column's distinct values, −1 for null), so a caller maps each distinct value once, not every row
    (pyarrow's ``read_dictionary``; other columns named there are read as usual). Raises whatever pyarrow raises for an unreadable file (``ArrowInvalid``,
    ``OSError``, ...); callers turn that into their own error naming the file.
    """
    import pyarrow.parquet as pq

    source = str(source) if isinstance(source, Path) else source
    table = pq.ParquetFile(source, pre_buffer=False, read_dictionary=dictionary).read(columns=columns, use_threads=False)
    return table.to_pandas(use_threads=False)
