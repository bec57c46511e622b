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


def read_delimited(path: Path, sep: str, num_fields: int, names: list[str], encoding: str = "utf-8") -> pd.DataFrame:
    """Read a header-less delimited text file (no quoting) into a frame of strings.

    Raises :class:`DataError` naming the first line whose field count differs from ``num_fields``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as err:
        raise DataError(path, f"cannot decode as {encoding}: {err}") from None
    lines = pd.Series(text.splitlines(), dtype=object)
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


def validate_ratings(
    frame: pd.DataFrame,
    *,
    file: Path | str,
    first_line: int,
    rating_range: tuple[float, float] | None,
    id_dtype: str | None = None,
) -> pd.DataFrame:
    """Convert a frame with columns user, item, rating[, timestamp] and check every value.

    ``first_line`` is the file line of the frame's first row (1 without a header, 2 with one).
    ``id_dtype`` converts ids (e.g. ``"int64"``); ``None`` keeps them as read.
    Raises :class:`DataError` for a missing id, a non-numeric or NaN rating, a rating outside
    ``rating_range`` (inclusive), or a non-integer timestamp.
    """
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)

    def fail(mask: np.ndarray, field_name: str, problem: str):
        rows = np.flatnonzero(mask)
        row = int(rows[0])
        value = frame[field_name].iloc[row]
        raise DataError(file, f"{problem} (value {show(value)}; {len(rows)} such row(s))", line=first_line + row, field=field_name)

    for col in ("user", "item"):
        values = frame[col]
        missing = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if missing.any():
            fail(missing, col, "missing id")
        if id_dtype is not None:
            converted = pd.to_numeric(values, errors="coerce") if id_dtype.startswith("int") else values.astype(id_dtype)
            if id_dtype.startswith("int"):
                bad = converted.isna().to_numpy() | (converted.to_numpy(dtype=float, na_value=np.nan) % 1 != 0)
                if bad.any():
                    fail(bad, col, "id is not an integer")
            values = converted.astype(id_dtype)
        out[col] = values.to_numpy()

    rating = pd.to_numeric(frame["rating"], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(rating).any():
        fail(np.isnan(rating), "rating", "rating is not a number")
    if rating_range is not None:
        lo, hi = rating_range
        outside = (rating < lo) | (rating > hi)
        if outside.any():
            fail(outside, "rating", f"rating outside the configured range [{lo}, {hi}]")
    out["rating"] = rating.astype(np.float32)

    if "timestamp" in frame.columns:
        ts = pd.to_numeric(frame["timestamp"], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(ts) | (ts % 1 != 0)
        if bad.any():
            fail(bad, "timestamp", "timestamp is not an integer")
        out["timestamp"] = ts.astype(np.int64)
    for extra in frame.columns.difference(["user", "item", "rating", "timestamp"]):
        out[extra] = frame[extra].to_numpy()
    return out


def resolve_duplicates(ratings: pd.DataFrame, policy: str, *, file: Path | str, first_line: int = 1) -> pd.DataFrame:
    """Handle repeated (user, item) pairs.

    ``last``: keep the last row of each pair (file order); ``mean``: average the ratings (and keep the
    latest timestamp); ``error``: raise naming the first repeated row. The number of repeated rows
    is logged whatever the policy.
    """
    if policy not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates policy must be one of {DUPLICATE_POLICIES}, got {policy!r}")
    dup = ratings.duplicated(["user", "item"], keep="first").to_numpy()
    if not dup.any():
        return ratings
    row = int(np.flatnonzero(dup)[0])
    if policy == "error":
        raise DataError(
            file,
            f"duplicate (user, item) pair ({show(ratings['user'].iloc[row])}, {show(ratings['item'].iloc[row])}); "
            f"{int(dup.sum())} repeated row(s). Set data.duplicates=last or mean to accept them",
            line=first_line + row,
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
