"""The table a reader returns (:class:`RatingsTable`), the limits every rating source obeys, and the
text helpers readers share: header-less delimited files, exact integer parsing, decoding errors.

Readers turn their files into columns, then :mod:`visrec.data.columns` and :mod:`visrec.data.coded`
convert and check them, so all sources give the same errors: each names the file, the line as an
editor shows it, and the field.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from visrec.data.errors import DataError

log = logging.getLogger(__name__)

DUPLICATE_POLICIES = ("last", "mean", "error")


@dataclass
class RatingsTable:
    """What a reader returns: the ratings in index space, and the raw id of every index.

    indexed: columns user, item (integer indices, int32 or int64: user ``u`` is ``users[u]``, item ``i``
        is ``items[i]``), rating (float32), timestamp (int64) when the source has one, and ``is_test``
        (bool) marking the rows of a predefined test set when the source has one.
    users: (U,) the user catalog as a pandas Index of raw ids (str or integer dtype) in sorted order (an
        :class:`~visrec.data.idmap.IdMap`'s order), a superset of the users in ``indexed``.
    items: (N,) the item catalog likewise (items with no ratings included).
    image_paths: raw item id -> image path, for items that have a path (the file may still be
        missing or unreadable; feature extraction counts those).
    source: a human-readable description (paths) for logs and reports.
    rating_range: the valid (min, max) ratings when the source defines them.

    ``ratings`` is the same table with raw ids, built when first asked for (the datamodule never does).
    """

    indexed: pd.DataFrame
    users: pd.Index
    items: pd.Index
    image_paths: dict = field(default_factory=dict)
    source: str = ""
    rating_range: tuple[float, float] | None = None

    @classmethod
    def from_raw(cls, ratings: pd.DataFrame, items, users, **kwargs) -> "RatingsTable":
        """From a frame of raw ids (a source that has no codes): the catalogs are ``items`` and ``users``
        (plus the users in ``ratings``), sorted as :meth:`IdMap.from_values` sorts them. Raises DataError
        when ids mix types, KeyError when a rated item is not in ``items``."""
        from visrec.data.idmap import IdMap

        user_map = IdMap.from_values(np.concatenate([np.asarray(users), ratings["user"].to_numpy()]), name="user")
        item_map = IdMap.from_values(np.asarray(items), name="item")
        indexed = ratings.assign(user=user_map.to_index(ratings["user"].to_numpy()), item=item_map.to_index(ratings["item"].to_numpy()))
        return cls(indexed.reset_index(drop=True), pd.Index(user_map.raw_ids), pd.Index(item_map.raw_ids), **kwargs)

    @cached_property
    def ratings(self) -> pd.DataFrame:
        """The rows of ``indexed`` with raw ids (one Python object per row for string ids: for inspection)."""
        return self.indexed.assign(user=np.asarray(self.users.take(self.indexed["user"].to_numpy())),
                                   item=np.asarray(self.items.take(self.indexed["item"].to_numpy())))

    @property
    def has_predefined_test(self) -> bool:
        return "is_test" in self.indexed.columns


def take_rows(frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """The rows of ``frame`` at (R',) positions ``rows``, or where a (R,) bool mask is true, index reset.
    Column by column in numpy (pandas' own row selection is several times slower on wide frames); the
    new frame's columns are not copied again (no block consolidation)."""
    columns = {}  # a bool mask indexes each column directly: no (R',) int64 positions to allocate
    for name in frame.columns:
        column = frame[name]
        values = column.to_numpy() if isinstance(column.dtype, np.dtype) else column.array  # str columns stay pyarrow
        columns[name] = values[rows]
    return pd.DataFrame(columns, copy=False)


# Ratings must be finite and at most this large in magnitude: squared errors are summed in float32
# (max 3.4e38), so |rating| <= 1e6 keeps a sum of 1e8 squared errors finite. Larger values are a unit
# or parsing mistake, not a rating.
MAX_ABS_RATING = 1e6
# Integers (ids, timestamps) must fit int64; parsed from a float they must also be exact (|x| < 2**53).
INT64_MAX = np.iinfo(np.int64).max
FLOAT_EXACT_INT = 2.0 ** 53


def decode_error(path: Path, encoding: str, data: bytes | None = None, hint: str = "") -> DataError:
    """A DataError naming the first byte of ``path`` that ``encoding`` cannot decode: its offset and line."""
    path = Path(path)
    offset, line, bad = None, None, b""
    with open(path, "rb") as handle:  # line by line: a multi-byte character never contains b"\n"
        position = 0
        for number, raw in enumerate(handle, start=1):
            chunk = raw[3:] if number == 1 and encoding.replace("_", "-").lower() in ("utf-8", "utf8", "utf-8-sig") and raw.startswith(b"\xef\xbb\xbf") else raw
            try:
                chunk.decode(encoding)
            except UnicodeDecodeError as err:
                offset = position + (len(raw) - len(chunk)) + err.start
                line, bad = number, chunk[err.start:err.end]
                break
            position += len(raw)
    if offset is None:
        return DataError(path, f"cannot decode as {encoding}{hint}")
    return DataError(path, f"cannot decode as {encoding} at byte {offset} ({' '.join(f'0x{b:02x}' for b in bad)}){hint}", line=line)


def read_delimited(path: Path, sep: str, num_fields: int, names: list[str], encoding: str = "utf-8") -> pd.DataFrame:
    """Read a header-less delimited text file (no quoting) into a frame of strings.

    Lines are split at ``\n`` only (``\r\n`` is accepted), as an editor counts them. Raises
    :class:`DataError` naming the first line whose field count differs from ``num_fields``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise decode_error(path, encoding) from None
    lines = pd.Series(text.split("\n"), dtype=object).str.removesuffix("\r")
    while len(lines) and not lines.iloc[-1].strip():  # trailing blank lines are harmless
        lines = lines.iloc[:-1]
    if len(lines) == 0:
        raise DataError(path, "file is empty")
    counts = lines.str.count(re.escape(sep)).to_numpy() + 1
    bad = np.flatnonzero(counts != num_fields)
    if len(bad):
        first = int(bad[0])
        raise DataError(
            path,
            f"expected {num_fields} fields separated by {sep!r}, found {counts[first]} "
            f"({len(bad)} such line(s)): {lines.iloc[first][:80]!r}",
            line=first + 1,
        )
    parts = lines.str.split(sep, regex=False, expand=True)
    parts.columns = names
    return parts


def datetime_micros(values: pd.Series) -> np.ndarray:
    """(R,) int64 microseconds of a datetime column (no NaT): since 1970-01-01 UTC -- a time-zone-aware
    column is converted to UTC first, so it reads as the same instants as the naive UTC column -- or of
    a duration column."""
    if getattr(values.dtype, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.dt.as_unit("us").to_numpy().astype(np.int64)


def parse_int64(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integers from a column of strings or numbers, exactly: (int64 values, not-an-integer mask,
    out-of-range mask). Integer text is parsed without going through float; other text and floats are
    accepted when integral and surely exact (|x| < 2**53). Nothing wraps around: a value beyond int64 is
    flagged ``out of range``. Datetimes (naive = UTC, or time-zone aware) become microseconds since
    1970-01-01 UTC (:func:`datetime_micros`)."""
    n = len(values)
    out = np.zeros(n, dtype=np.int64)
    kind = values.dtype.kind
    if kind in "iu":
        raw = values.to_numpy()
        over = raw > INT64_MAX if kind == "u" else np.zeros(n, dtype=bool)
        out[~over] = raw[~over].astype(np.int64)
        return out, np.zeros(n, dtype=bool), over
    if kind == "b":
        return out, np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    if kind in "mM":  # Parquet datetimes / durations: microseconds (instants since 1970 UTC); NaT is not an integer
        missing = values.isna().to_numpy()
        out[~missing] = datetime_micros(values[~missing])
        return out, missing, np.zeros(n, dtype=bool)
    if kind == "f":
        text = None
        floats = values.to_numpy(dtype=np.float64, na_value=np.nan)
        is_int = np.zeros(n, dtype=bool)
    else:
        text = values.astype(str).str.strip()
        is_int = text.str.fullmatch(r"[+-]?\d+").to_numpy(dtype=bool, na_value=False)
        floats = np.full(n, np.nan)
        if (~is_int).any():
            floats[~is_int] = pd.to_numeric(text[~is_int], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    over = np.zeros(n, dtype=bool)
    if is_int.any():
        digits = text[is_int].str.lstrip("+-").str.lstrip("0")
        length = digits.str.len().to_numpy()
        big = (length > 19) | ((length == 19) & (digits > str(INT64_MAX)).to_numpy(dtype=bool))
        over[np.flatnonzero(is_int)[big]] = True
        fits = is_int & ~over
        out[fits] = text[fits].astype(np.int64).to_numpy()
    with np.errstate(invalid="ignore"):
        integral = ~is_int & np.isfinite(floats) & (floats % 1 == 0)
    float_over = integral & (np.abs(floats) >= FLOAT_EXACT_INT)
    ok_float = integral & ~float_over
    out[ok_float] = floats[ok_float].astype(np.int64)
    over |= float_over
    bad = ~is_int & ~integral
    return out, bad, over
