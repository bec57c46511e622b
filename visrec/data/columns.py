"""Raw columns (pyarrow arrays read from CSV or Parquet) to what visrec keeps: id codes, ratings, timestamps.

Ids become integer codes at once: pyarrow's ``dictionary_encode`` (or ``pandas.factorize``) numbers
the distinct raw ids in order of first appearance, and only those distinct ids are cleaned, checked
and later sorted -- never one Python object per row. Ratings given as text are parsed once per
distinct value. Each conversion has a fast path for the common column types and keeps the earlier
pandas code (the column as ``pandas.read_csv`` / ``pandas.read_parquet`` gives it) for the rest, so
every value is judged, and every error worded, as before.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from visrec.data.csv_files import RowLines
from visrec.data.errors import DataError, show
from visrec.data.table import FLOAT_EXACT_INT, INT64_MAX, datetime_micros, parse_int64


@dataclass
class RawTable:
    """The columns of one file, before any check.

    columns: canonical name (``user``, ``item``, ``rating``, ``timestamp``, ``image``) -> (R,) column.
    fields: canonical name -> the file's column name (what messages call the field when it is the file's).
    plain: canonical names whose pyarrow type is what pandas would give too (no pandas-specific dtype
        recorded in a Parquet file's metadata): only those take the fast paths.
    pandas_column: canonical name -> the column exactly as pandas reads the file (for the rest, and to
        show a value in a message).
    """

    file: Path
    columns: dict[str, pa.ChunkedArray]
    fields: dict[str, str]
    num_rows: int
    lines: RowLines
    plain: set[str]
    pandas_column: Callable[[str], pd.Series]

    def release(self, *names: str) -> None:
        """Let go of the ``names`` columns (converted already; nothing reads them again)."""
        for name in names:
            self.columns.pop(name, None)


@dataclass
class Codes:
    """A column of raw ids as integer codes.

    codes: (R,) int32 or int64, the index in ``ids`` of each row's id, -1 where the cell is empty;
        distinct ids are numbered in order of first appearance.
    ids: (K,) the distinct raw ids, cleaned (surrounding whitespace removed), as a pandas Index: of
        str (pyarrow-backed, no Python object per id) or of integers (int64, or a Parquet column's type).
    cleaned: the cleaned column as pandas holds it, when the ids came that way (messages show its
        values: ``None``, ``pd.NA``, ...); None on the fast paths, where an empty cell shows as NaN.
    """

    codes: np.ndarray
    ids: pd.Index
    cleaned: pd.Series | None = None

    def missing(self) -> np.ndarray:
        """(R,) bool: rows with no id -- an empty cell, or an id that is only whitespace."""
        missing = self.codes < 0
        if self.ids.dtype.kind in "iu":
            return missing
        blank = (pd.Series(self.ids).astype(str).str.strip() == "").to_numpy(dtype=bool, na_value=True)  # (K,)
        if blank.any():
            missing |= np.append(blank, False)[self.codes]  # code -1 reads the appended False
        return missing

    def value(self, row: int):
        """The id of ``row`` as pandas shows it (NaN for an empty cell)."""
        code = int(self.codes[row])
        if self.cleaned is not None:
            return self.cleaned.iloc[row]
        return np.nan if code < 0 else self.ids[code]

    def first_repeat(self) -> int | None:
        """The first row whose id appeared on an earlier row, or None."""
        valid = self.codes >= 0
        before = np.concatenate([[-1], np.maximum.accumulate(self.codes)[:-1]])  # (R,) largest code on earlier rows
        repeats = np.flatnonzero(valid & (self.codes <= before))  # codes count up at each new id
        return int(repeats[0]) if len(repeats) else None


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _dictionary(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """((R,) int32 index into the distinct values, -1 for null; (K,) distinct values in order of first
    appearance): pyarrow's hash table, one pass in C++."""
    encoded = pc.dictionary_encode(column)  # every chunk gets the one dictionary of the whole column
    chunks = encoded.chunks
    if not chunks:
        return np.zeros(0, dtype=np.int32), pa.array([], type=pa.string())
    dictionary = chunks[-1].dictionary
    if any(len(chunk.dictionary) != len(dictionary) for chunk in chunks):  # not expected; combine to be sure
        chunks = [pa.chunked_array(chunks).combine_chunks()]
        dictionary = chunks[0].dictionary
    index = np.empty(len(column), dtype=np.int32)  # (R,) filled a chunk at a time
    start = 0
    for chunk in chunks:
        values = pc.fill_null(chunk.indices, -1) if chunk.null_count else chunk.indices
        index[start:start + len(chunk)] = values.to_numpy(zero_copy_only=False)
        start += len(chunk)
    return index, dictionary


def _factorize(values) -> Codes:
    codes, uniques = pd.factorize(values)
    return Codes(codes, pd.Index(uniques))


def id_codes(raw: RawTable, name: str) -> Codes:
    """Codes of the ``name`` column (``user`` or ``item``). Raw ids are strings (surrounding whitespace
    removed, so ``1, 2`` reads as ids "1" and "2") or integers that fit int64; integral floats (a
    Parquet integer column that pandas widened to float) become int64. Raises DataError (file, line,
    field) for anything else: fractional, non-finite or out-of-range numbers, booleans, dates, mixed
    types. Missing ids are left for :func:`visrec.data.coded.validate` (code -1 or a blank id)."""
    field = raw.fields[name]
    if name not in raw.plain:
        return _pandas_codes(clean_ids(raw.pandas_column(name), raw.file, raw.lines, field))
    column = raw.columns[name]
    kind = column.type
    if _is_string(kind):
        index, distinct = _dictionary(column)
        distinct = pd.Index(distinct.to_pandas())
        cleaned = distinct.str.strip()  # per distinct id (pandas' str dtype, as before)
        if cleaned.equals(distinct):
            return Codes(index, distinct)
        merged = _factorize(cleaned)  # " 7" and "7" are one id
        return Codes(np.append(merged.codes, -1)[index], merged.ids)  # an empty cell (-1) reads the appended -1
    if pa.types.is_integer(kind) and column.null_count == 0:
        values = column.to_numpy()  # (R,)
        if kind.id == pa.uint64().id:
            over = values > INT64_MAX
            if over.any():
                row = int(np.flatnonzero(over)[0])
                raise DataError(raw.file, f"id {show(values[row])} does not fit a 64-bit integer", line=raw.lines(row), field=field)
        return _factorize(values if pa.types.is_signed_integer(kind) else values.astype(np.int64))
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        values = column.to_numpy().astype(np.float64)  # (R,) nulls are NaN, as pandas reads them
        nan = np.isnan(values)
        bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) >= FLOAT_EXACT_INT)
        bad &= ~nan  # missing ids are reported by validate
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            shown = raw.pandas_column(name).iloc[row]
            raise DataError(raw.file, f"id {show(shown)} is not an integer (ids are integers or strings)", line=raw.lines(row), field=field)
        found = _factorize(values[~nan].astype(np.int64))
        codes = np.full(len(values), -1, dtype=found.codes.dtype)
        codes[~nan] = found.codes
        return Codes(codes, found.ids)
    return _pandas_codes(clean_ids(raw.pandas_column(name), raw.file, raw.lines, field))


def _pandas_codes(cleaned: pd.Series) -> Codes:
    codes = _factorize(cleaned)
    codes.cleaned = cleaned.reset_index(drop=True)
    return codes


def clean_ids(ids: pd.Series, path: Path, lines: RowLines, field: str) -> pd.Series:
    """Raw ids of any column type, as pandas reads them, cleaned as :func:`id_codes` describes (the
    general path, for column types that have no fast one). Raises the same DataErrors."""
    kind = ids.dtype.kind
    if kind == "i":
        return ids
    if kind == "u":
        over = (ids.to_numpy() > INT64_MAX)
        if over.any():
            row = int(np.flatnonzero(over)[0])
            raise DataError(path, f"id {show(ids.iloc[row])} does not fit a 64-bit integer", line=lines(row), field=field)
        return ids.astype(np.int64)
    if kind == "f":
        values = ids.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) >= FLOAT_EXACT_INT)
        bad &= ~np.isnan(values)  # missing ids are reported by validate
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(path, f"id {show(ids.iloc[row])} is not an integer (ids are integers or strings)", line=lines(row), field=field)
        return ids if np.isnan(values).any() else ids.astype(np.int64)
    if kind in "OUS" or str(ids.dtype) in ("str", "string"):
        if pd.api.types.infer_dtype(ids, skipna=True) not in ("string", "empty"):  # one C pass; the row only on error
            is_text = ids.map(lambda v: isinstance(v, str) or v is None or (isinstance(v, float) and np.isnan(v))).to_numpy(dtype=bool)
            row = int(np.flatnonzero(~is_text)[0]) if (~is_text).any() else 0
            raise DataError(path, f"id {show(ids.iloc[row])} of type {type(ids.iloc[row]).__name__} in a column of strings "
                                  "(ids are integers or strings, one type per column)", line=lines(row), field=field)
        return ids.str.strip()
    raise DataError(path, f"ids of type {ids.dtype} are not supported (ids are integers or strings)",
                    line=lines(0) if len(ids) else None, field=field)


def ratings(raw: RawTable) -> tuple[np.ndarray, np.ndarray | None]:
    """Ratings as ``pandas.to_numeric(errors="coerce")`` reads them (NaN where not a number), as
    (values, index): a column of text is parsed once per distinct value, row ``r`` holding
    ``values[index[r]]`` (index -1: an empty cell); other columns give (R,) values and index None."""
    column = raw.columns.get("rating") if "rating" in raw.plain else None
    kind = None if column is None else column.type
    if column is not None and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return column.to_numpy().astype(np.float64), None  # nulls are NaN
    if column is not None and _is_string(kind):
        index, distinct = _dictionary(column)
        return pd.to_numeric(distinct.to_pandas(), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan), index  # (K,), (R,)
    return pd.to_numeric(raw.pandas_column("rating"), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan), None


NOT_A_TIMESTAMP = "timestamp is not an integer or an ISO 8601 date-time"
# An ISO 8601 date-time: a date (YYYY-MM-DD), then perhaps a time, then perhaps a UTC offset (Z, +09:00, -0500).
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_OFFSET = r"[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"


def timestamps(raw: RawTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(int64 values, bad mask, out-of-range mask, what is wrong with the bad rows), each mask (R,).

    Integers as :func:`parse_int64` gives them: integer columns and text that is only ``-?[0-9]+`` are
    converted in C; anything else (spaces, ``+``, ``17.0``, empty cells, values beyond int64) by
    :func:`parse_int64`. Date-times are instants in microseconds since 1970-01-01 UTC: Parquet datetime
    columns (naive = UTC, or time-zone aware) and text in ISO 8601 (see :func:`iso_instants`)."""
    column = raw.columns.get("timestamp") if "timestamp" in raw.plain else None
    kind = None if column is None else column.type
    clean = np.zeros(raw.num_rows, dtype=bool)
    if column is not None and pa.types.is_signed_integer(kind) and column.null_count == 0:
        values = column.to_numpy()  # (R,) a copy when the column has several chunks: then no second one
        return (values if values.dtype == np.int64 and values.flags.owndata else values.astype(np.int64)), clean, clean, NOT_A_TIMESTAMP
    if column is not None and _is_string(kind) and column.null_count == 0 and _only_digits_and_minus(column):
        values = np.empty(raw.num_rows, dtype=np.int64)  # (R,) filled a chunk at a time
        start = 0
        try:
            for chunk in column.chunks:
                values[start:start + len(chunk)] = pc.cast(chunk, pa.int64()).to_numpy()  # strict: "-" only leading, within int64
                start += len(chunk)
        except (pa.ArrowInvalid, OverflowError):
            values = None  # a misplaced "-", or beyond int64: parse_int64 says which
        if values is not None and not (values == np.iinfo(np.int64).min).any():  # parse_int64 refuses -2**63
            return values, clean, clean, NOT_A_TIMESTAMP
    column = raw.pandas_column("timestamp")
    instants = iso_instants(column)
    return instants if instants is not None else (*parse_int64(column), NOT_A_TIMESTAMP)


def iso_instants(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, str] | None:
    """A text column of ISO 8601 date-times (its first non-empty value starts with YYYY-MM-DD) as
    (int64 microseconds since 1970-01-01 UTC, bad mask, out-of-range mask, problem); None for any other
    column. Values with a UTC offset (``2021-03-01T09:00:00+09:00``, ``...Z``) are instants, so their
    order is the true order whatever the offsets; values without one are read as UTC, like a naive Parquet
    datetime. A column mixing the two is refused (a local time of unknown zone has no instant), as are
    empty cells and text that is not an ISO 8601 date-time."""
    if values.dtype.kind in "biufcmM":
        return None
    text = values.astype("string").str.strip()  # (R,) missing cells stay <NA>
    present = (text.notna() & (text != "")).to_numpy(dtype=bool, na_value=False)
    first = np.flatnonzero(present)
    if not len(first) or not _ISO_DATE.match(text.iloc[first[0]]):
        return None
    dated = text.str.match(_ISO_DATE.pattern).to_numpy(dtype=bool, na_value=False)
    zoned = text.str.contains(_ISO_OFFSET, regex=True).to_numpy(dtype=bool, na_value=False)
    micros = np.zeros(len(text), dtype=np.int64)
    fine = np.zeros(len(text), dtype=bool)
    if zoned.any() and (dated & ~zoned).any():
        return micros, dated & ~zoned, fine, "timestamp has no UTC offset while other rows have one (a local time of unknown zone)"
    stamps = pd.to_datetime(text.where(present), utc=True, format="ISO8601", errors="coerce")
    bad = stamps.isna().to_numpy()
    micros[~bad] = datetime_micros(stamps[~bad])
    return micros, bad, fine, NOT_A_TIMESTAMP


def _only_digits_and_minus(column: pa.ChunkedArray) -> bool:
    """Whether every byte of every value lies in ``-./0123456789`` (two reductions over the values'
    bytes). That rules out what pyarrow's integer cast accepts and parse_int64 does not (``0x1F``,
    surrounding spaces); a ``.`` or ``/`` makes the cast fail, and parse_int64 decides."""
    for chunk in column.chunks:
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[chunk.offset: chunk.offset + len(chunk) + 1]
        if len(chunk) == 0 or offsets[-1] == offsets[0]:
            continue
        values = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
        if values.min() < ord("-") or values.max() > ord("9"):
            return False
    return True
