"""Parsing and validating rating tables.

Every reader turns its files into a frame of strings, then :func:`validate_ratings` converts and checks
it, so all sources give the same errors: each names the file, the line as an editor shows it, and the
field. The canonical rating frame has columns ``user``, ``item``, ``rating`` (float32) and, when the
source has one, ``timestamp`` (int64), with raw ids in their original dtype.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from visrec.data.errors import DataError, show

log = logging.getLogger(__name__)

DUPLICATE_POLICIES = ("last", "mean", "error")


@dataclass
class RatingsTable:
    """What a reader returns.

    ratings: columns user, item, rating[, timestamp]; raw ids. When the source has a predefined
        test set, a bool column ``is_test`` marks its rows.
    items: the item catalog (raw ids), a superset of the items in ``ratings``.
    users: the user catalog (raw ids), a superset of the users in ``ratings``.
    image_paths: raw item id -> image path, for items that have a path (the file may still be
        missing or unreadable; feature extraction counts those).
    source: a human-readable description (paths) for logs and reports.
    rating_range: the valid (min, max) ratings when the source defines them.
    """

    ratings: pd.DataFrame
    items: np.ndarray
    users: np.ndarray
    image_paths: dict = field(default_factory=dict)
    source: str = ""
    rating_range: tuple[float, float] | None = None

    @property
    def has_predefined_test(self) -> bool:
        return "is_test" in self.ratings.columns


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


def parse_int64(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integers from a column of strings or numbers, exactly: (int64 values, not-an-integer mask,
    out-of-range mask). Integer text is parsed without going through float; other text and floats are
    accepted when integral and surely exact (|x| < 2**53). Nothing wraps around: a value beyond int64 is
    flagged ``out of range``."""
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
    if kind in "mM":  # Parquet datetimes / durations: their int64 ticks keep the order; NaT is not an integer
        missing = values.isna().to_numpy()
        out[~missing] = values[~missing].to_numpy().astype(np.int64)
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


def validate_ratings(
    frame: pd.DataFrame,
    *,
    file: Path | str,
    first_line: int = 1,
    rating_range: tuple[float, float] | None,
    id_dtype: str | None = None,
) -> pd.DataFrame:
    """Convert a frame with columns user, item, rating[, timestamp] and check every value.

    A ``line`` column, when present, holds each row's line in the file (as an editor shows it) and is
    kept; otherwise row ``i`` is on line ``first_line + i`` (1 without a header, 2 with one).
    ``id_dtype`` converts ids (``"int64"``); ``None`` keeps them as read.
    Raises :class:`DataError` for a missing id, an id or timestamp that is not an integer or does not
    fit int64, a non-numeric, NaN, infinite or too large rating (``|rating| > MAX_ABS_RATING``), a
    rating outside ``rating_range`` (inclusive), or a non-integer timestamp.
    """
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    if "line" in frame.columns:
        lines = frame["line"].to_numpy(dtype=np.int64)
    else:
        lines = first_line + np.arange(len(frame), dtype=np.int64)

    def fail(mask: np.ndarray, field_name: str, problem: str):
        rows = np.flatnonzero(mask)
        row = int(rows[0])
        value = frame[field_name].iloc[row]
        raise DataError(file, f"{problem} (value {show(value)}; {len(rows)} such row(s))", line=int(lines[row]), field=field_name)

    for col in ("user", "item"):
        values = frame[col]
        missing = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy(dtype=bool, na_value=True)
        if missing.any():
            fail(missing, col, "missing id")
        if id_dtype is not None:
            if not id_dtype.startswith("int"):
                raise ValueError(f"id_dtype {id_dtype!r}: only integer ids are converted")
            ids, bad, over = parse_int64(values)
            if bad.any():
                fail(bad, col, "id is not an integer")
            if over.any():
                fail(over, col, f"id does not fit a 64-bit integer (|id| <= {INT64_MAX})")
            values = pd.Series(ids.astype(id_dtype))
        out[col] = values.to_numpy()

    rating = pd.to_numeric(frame["rating"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(rating).any():
        fail(np.isnan(rating), "rating", "rating is not a number")
    if not np.isfinite(rating).all():
        fail(~np.isfinite(rating), "rating", "rating is infinite (or too large for a float)")
    if (np.abs(rating) > MAX_ABS_RATING).any():
        fail(np.abs(rating) > MAX_ABS_RATING, "rating",
             f"rating is larger in magnitude than {MAX_ABS_RATING:g}, visrec's limit (squared errors must stay finite in float32)")
    if rating_range is not None:
        lo, hi = rating_range
        outside = (rating < lo) | (rating > hi)
        if outside.any():
            fail(outside, "rating", f"rating outside the configured range [{lo}, {hi}]")
    out["rating"] = rating.astype(np.float32)

    if "timestamp" in frame.columns:
        ts, bad, over = parse_int64(frame["timestamp"])
        if bad.any():
            fail(bad, "timestamp", "timestamp is not an integer")
        if over.any():
            fail(over, "timestamp", f"timestamp does not fit a 64-bit integer exactly (|t| <= {INT64_MAX}, or < 2**53 if written as a float)")
        out["timestamp"] = ts
    for extra in frame.columns.difference(["user", "item", "rating", "timestamp"]):
        out[extra] = frame[extra].to_numpy()
    if "line" not in frame.columns:
        out["line"] = lines
    return out


def resolve_duplicates(ratings: pd.DataFrame, policy: str, *, file: Path | str, first_line: int = 1, key: str | None = None) -> pd.DataFrame:
    """Handle repeated (user, item) pairs.

    ``last``: keep the last row of each pair (file order); ``mean``: average the ratings (and keep the
    latest timestamp); ``error``: raise naming the first repeated row. The number of repeated rows
    is logged whatever the policy. ``key`` is the config key of the policy, named in messages
    (``data.source_args.duplicates`` for a ratings table, ``data.duplicates`` for MovieLens).
    """
    if policy not in DUPLICATE_POLICIES:
        raise DataError(None, f"{key or 'duplicates'} must be one of {', '.join(DUPLICATE_POLICIES)}, got {policy!r}")
    dup = ratings.duplicated(["user", "item"], keep="first").to_numpy()
    if not dup.any():
        return ratings
    row = int(np.flatnonzero(dup)[0])
    if policy == "error":
        user, item = ratings["user"].iloc[row], ratings["item"].iloc[row]
        lines = ratings["line"].to_numpy() if "line" in ratings.columns else first_line + np.arange(len(ratings))
        same = (ratings["user"] == user).to_numpy() & (ratings["item"] == item).to_numpy()
        earlier = int(lines[np.flatnonzero(same)[0]])
        remedy = f"set {key}=last or {key}=mean to accept them" if key else "remove the repeated rows"
        raise DataError(
            file,
            f"duplicate (user, item) pair ({show(user)}, {show(item)}), first on line {earlier}; "
            f"{int(dup.sum())} repeated row(s). The duplicates policy is 'error': {remedy}",
            line=int(lines[row]),
        )
    log.warning("%s: %d repeated (user, item) row(s), resolved with policy %r", file, int(dup.sum()), policy)
    if policy == "last":
        return ratings.drop_duplicates(["user", "item"], keep="last").reset_index(drop=True)
    agg = {"rating": "mean"}
    for col in ratings.columns.difference(["user", "item", "rating"]):
        agg[col] = "max" if col == "timestamp" else "last"
    merged = ratings.groupby(["user", "item"], sort=False, as_index=False).agg(agg)
    merged["rating"] = merged["rating"].astype(np.float32)
    return merged[ratings.columns]


def check_no_shared_pairs(train: pd.DataFrame, train_file: Path | str, test: pd.DataFrame, test_file: Path | str) -> None:
    """Raise when a (user, item) pair of the test table is also in the training table: the model would
    be tested on a rating it was trained on. Names both files, both lines and the raw pair."""
    keys = ["user", "item"]
    both = test[keys].reset_index().merge(train[keys].reset_index(), on=keys, suffixes=("_test", "_train"))
    if len(both) == 0:
        return
    first = both.sort_values("index_test", kind="stable").iloc[0]
    test_row, train_row = int(first["index_test"]), int(first["index_train"])

    def line(frame: pd.DataFrame, row: int) -> int:
        return int(frame["line"].iloc[row]) if "line" in frame.columns else row + 1

    raise DataError(
        test_file,
        f"(user, item) pair ({show(first['user'])}, {show(first['item'])}) is also in the training table {train_file}, "
        f"line {line(train, train_row)} ({both['index_test'].nunique()} test pair(s) repeat a training pair). A test rating "
        f"must not be trained on: remove these pairs from one of the two files",
        line=line(test, test_row),
    )
