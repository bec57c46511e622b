"""Ratings in integer codes: one file's validated part, the checks across its rows (values, duplicates,
a catalog) and across files (a pair in both the ratings and the test table), and the shared index space.

Every check is vectorized over codes; raw ids are looked at only for the distinct ids, and to word a
message. Every error is a :class:`~visrec.data.errors.DataError` naming the file, the line as an editor
shows it and the field.
"""
from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from visrec.data.columns import Codes, RawTable, id_codes, ratings, timestamps
from visrec.data.csv_files import RowLines
from visrec.data.errors import DataError, show
from visrec.data.table import DUPLICATE_POLICIES, INT64_MAX, MAX_ABS_RATING

log = logging.getLogger(__name__)


CHUNK = 1 << 20  # rows per step of an in-place recode


@dataclass
class Part:
    """The validated ratings of one file, in codes.

    columns: user, item ((R,) integer codes into ``users`` / ``items``), rating ((R,) float32), and when
        the file has them timestamp ((R,) int64) and image ((R,) str, NaN when empty); numpy arrays this
        part owns (the image column: pandas' pyarrow-backed strings).
    users, items: the raw ids of the codes, distinct (see :class:`~visrec.data.columns.Codes`).
    rows: the row in the file (0-based) of each row, which ``lines`` turns into the line an error names:
        None while they are the same (no row dropped or merged), a (R_file,) bool mask of the file rows
        kept, or (R,) int64 positions.
    orders: ``users`` / ``items`` -> the permutation that sorts those ids, when worked out already.
    """

    columns: dict[str, np.ndarray]
    users: pd.Index
    items: pd.Index
    file: Path
    lines: RowLines
    rows: np.ndarray | None = None
    orders: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.columns["rating"])

    def line(self, i: int) -> int:
        """The line of row ``i``."""
        if self.rows is None:
            return self.lines(i)
        rows = np.flatnonzero(self.rows) if self.rows.dtype == bool else self.rows  # (R,) only to name a line
        return self.lines(int(rows[i]))

    def file_rows(self) -> np.ndarray:
        """(R,) int64: the row in the file of each row."""
        if self.rows is None:
            return np.arange(len(self))
        return np.flatnonzero(self.rows) if self.rows.dtype == bool else self.rows

    def frame(self) -> pd.DataFrame:
        """The columns as a frame (no copy)."""
        return pd.DataFrame(self.columns, copy=False)

    def recode(self, users: pd.Index, user_pos: np.ndarray, items: pd.Index, item_pos: np.ndarray) -> "Part":
        """The same rows with codes into ``users`` / ``items`` (``user_pos[c]`` is the new code of code
        ``c``), rewritten in place a slice at a time: no second copy of the code columns."""
        for col, pos in (("user", user_pos), ("item", item_pos)):
            codes = self.columns[col]
            if codes.dtype != pos.dtype or not codes.flags.writeable:
                self.columns[col] = pos[codes]
                continue
            for start in range(0, len(codes), CHUNK):
                codes[start:start + CHUNK] = pos[codes[start:start + CHUNK]]
        return replace(self, users=users, items=items, orders={})


def take(columns: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Every column at (R',) positions ``rows`` (or where a (R,) bool mask is true)."""
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    return {name: values[rows] for name, values in columns.items()}


def compact(columns: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The rows where (R,) bool ``keep`` is true, moved to the front of each column in place, a slice at a
    time (the kept rows of a slice are copied out before they are written back, never after the write
    position has passed them): no new arrays. Columns this part cannot write (a view of pyarrow memory,
    pandas strings) are copied."""
    out = {}
    for name, values in columns.items():
        if not (isinstance(values, np.ndarray) and values.flags.writeable and values.flags.owndata):
            out[name] = values[keep]
            continue
        written = 0
        for start in range(0, len(keep), CHUNK):
            kept = values[start:start + CHUNK][keep[start:start + CHUNK]]  # a copy (<= CHUNK rows)
            values[written:written + len(kept)] = kept
            written += len(kept)
        out[name] = values[:written]
    return out


@dataclass
class Converted:
    """One file's columns converted, not yet checked: user / item codes, ratings as (values, index) (see
    :func:`~visrec.data.columns.ratings`), timestamps as (values, bad, out-of-range, the bad rows' problem)
    or None (see :func:`~visrec.data.columns.timestamps`)."""

    user: Codes
    item: Codes
    rating: tuple[np.ndarray, np.ndarray | None]
    timestamp: tuple[np.ndarray, np.ndarray, np.ndarray, str] | None


def convert(raw: RawTable, pool: Executor, ids: Callable[[RawTable, str], Codes] = id_codes) -> Converted:
    """Convert the columns of ``raw`` on ``pool`` (two threads: pyarrow's hashing and casting let go of
    the GIL, so the user ids are encoded while the item ids, ratings and timestamps are). ``ids`` makes
    the codes of an id column; its DataError is raised, the user column's before the item column's, as if
    in turn."""
    user = pool.submit(ids, raw, "user")
    item = pool.submit(ids, raw, "item")
    rating = pool.submit(ratings, raw)
    stamps = pool.submit(timestamps, raw) if "timestamp" in raw.fields else None
    return Converted(user.result(), item.result(), rating.result(), None if stamps is None else stamps.result())


def validate(raw: RawTable, converted: Converted, rating_range: tuple[float, float] | None) -> Part:
    """Check every value of one file and return its part.

    Raises :class:`DataError` for a missing id, a non-numeric, NaN, infinite or too large rating
    (``|rating| > MAX_ABS_RATING``), a rating outside ``rating_range`` (inclusive), or a timestamp that is
    neither an integer nor a date-time, or does not fit int64 -- each naming the first such row, how many
    there are, and the field by the file's own column name (``data.source_args.timestamp_col=ts``: 'ts').
    """

    def fail(mask: np.ndarray, name: str, problem: str, value_of):
        """Raise for the first row of ``mask``, naming the file's own column of field ``name``."""
        rows = np.flatnonzero(mask)
        row = int(rows[0])
        raise DataError(raw.file, f"{problem} (value {show(value_of(row))}; {len(rows)} such row(s))", line=raw.lines(row),
                        field=raw.fields.get(name, name))

    user, item = converted.user, converted.item
    for col, codes in (("user", user), ("item", item)):
        missing = codes.missing()
        if missing.any():
            fail(missing, col, "missing id", codes.value)

    def raw_value(name):
        return lambda row: raw.pandas_column(name).iloc[row]

    values, index = converted.rating  # (K,) float64 per distinct value, and (R,) each row's (or None: one per row)
    if index is not None and len(index) and index.min() < 0:
        values = np.append(values, np.nan)  # index -1, an empty cell, reads NaN

    def check(bad: np.ndarray, problem: str):
        """``bad``: per value; the rows are found only when one is bad."""
        if bad.any():
            fail(bad if index is None else bad[index], "rating", problem, raw_value("rating"))

    check(np.isnan(values), "rating is not a number")
    check(~np.isfinite(values), "rating is infinite (or too large for a float)")
    check(np.abs(values) > MAX_ABS_RATING,
          f"rating is larger in magnitude than {MAX_ABS_RATING:g}, visrec's limit (squared errors must stay finite in float32)")
    if rating_range is not None:
        lo, hi = rating_range
        check((values < lo) | (values > hi), f"rating outside the configured range [{lo}, {hi}]")
    rating = values.astype(np.float32) if index is None else values.astype(np.float32)[index]  # (R,)
    columns = {"user": user.codes, "item": item.codes, "rating": rating}
    if converted.timestamp is not None:
        ts, bad, over, problem = converted.timestamp
        if bad.any():
            fail(bad, "timestamp", problem, raw_value("timestamp"))
        if over.any():
            fail(over, "timestamp", f"timestamp does not fit a 64-bit integer exactly (|t| <= {INT64_MAX}, or < 2**53 if written as a float)",
                 raw_value("timestamp"))
        columns["timestamp"] = ts
    if "image" in raw.fields:
        columns["image"] = raw.pandas_column("image").array
    return Part(columns, user.ids, item.ids, raw.file, raw.lines)


# Text that is an integer, perhaps with leading zeros, a sign or a zero fraction: "007", "+7", "7.0" are 7.
_INTEGER_TEXT = r"[+-]?\d+(?:\.0*)?"


def _numbers(ids: pd.Index) -> pd.Series:
    """The string ids in ``ids`` that are integers written as text, indexed by the integer's plain
    spelling ("007" -> "7"); the first id of each number."""
    text = pd.Series(np.asarray(ids, dtype=object), dtype="string")
    numeric = text[text.str.fullmatch(_INTEGER_TEXT).to_numpy(dtype=bool, na_value=False)]
    plain = numeric.str.split(".").str[0].str.lstrip("+").str.replace(r"^(-?)0+(?=\d)", r"\1", regex=True).str.replace(r"^-0$", "0", regex=True)
    return pd.Series(numeric.to_numpy(dtype=object), index=plain.to_numpy(dtype=object)).groupby(level=0).first()


def check_same_spelling(part: Part, col: str, reference: pd.Index, reference_file, field_name: str) -> None:
    """Refuse an id of ``part`` (column ``col``: user or item) that ``reference`` (the ids of another file)
    lacks as written but holds written another way -- ``'7'`` here and ``'07'`` or ``'7.0'`` there. Ids
    are text and matched as written ("007" may be a real code), so two spellings of one number are
    neither silently two ids nor silently one: raise DataError naming the first such row of ``part``
    (file, line, ``field_name``) and ``reference_file``. Integer ids have one spelling: nothing to check."""
    ids = part.users if col == "user" else part.items
    if ids.dtype.kind in "iuf" or pd.Index(reference).dtype.kind in "iuf":
        return
    absent = ids[pd.Index(reference).get_indexer(ids) < 0]  # distinct ids this file has and the other lacks
    ours = _numbers(absent)
    if not len(ours):
        return
    theirs = _numbers(pd.Index(reference))
    common = ours.index.intersection(theirs.index)
    if not len(common):
        return
    clash = pd.Index(ids).get_indexer(ours[common].to_numpy())  # (C,) codes of this file's ids that clash
    rows = np.flatnonzero(np.isin(part.columns[col], clash))
    row = int(rows[0])
    mine = ids[part.columns[col][row]]
    other = theirs[_numbers(pd.Index([mine])).index[0]]
    raise DataError(part.file, f"{col} id {show(mine)} is not in {reference_file}, which has {show(other)}: the same number "
                               f"written another way ({len(rows)} such row(s)). Ids are text and matched as written; write "
                               "each id the same way in every file", line=part.line(row), field=field_name)


def check_known(part: Part, col: str, catalog: np.ndarray, catalog_name: str) -> None:
    """Raise naming the first row of ``part`` whose ``col`` id (``user`` or ``item``) is not in ``catalog``,
    and how many such rows there are."""
    ids = part.users if col == "user" else part.items
    known = pd.Index(catalog).get_indexer(ids) >= 0  # (K,) per distinct id: hash lookups, not one per row
    if known.all():
        return
    codes = part.columns[col]
    unknown = ~known[codes]  # (R,)
    row = int(np.flatnonzero(unknown)[0])
    raise DataError(
        part.file,
        f"{col} id {show(ids[codes[row]])} is not in the catalog {catalog_name} ({int(unknown.sum())} such row(s))",
        line=part.line(row),
        field=col,
    )


def _keys(user: np.ndarray, item: np.ndarray, num_users: int, num_items: int) -> np.ndarray:
    """(R,) int64 key ``user * N + item`` of each (user code, item code) pair: equal keys, equal pairs.
    Codes are below the number of distinct ids, so this fits int64 up to ~3e9 distinct users and items."""
    num_items = max(num_items, 1)
    if num_users * num_items >= 2**63:
        raise OverflowError(f"{num_users} users x {num_items} items: more (user, item) pairs than int64 numbers")
    keys = user.astype(np.int64)
    keys *= num_items
    keys += item
    return keys


def pair_keys(part: Part, rows: np.ndarray | None = None) -> np.ndarray:
    """(R,) int64 key of each row's (user, item) pair (see :func:`_keys`), or of ``rows`` only."""
    user, item = part.columns["user"], part.columns["item"]
    if rows is not None:
        user, item = user[rows], item[rows]
    return _keys(user, item, len(part.users), len(part.items))


def repeated_pairs(user: np.ndarray, item: np.ndarray, num_users: int, num_items: int) -> np.ndarray:
    """(D,) sorted int64 keys of the (user, item) pairs on more than one row: one in-place sort of the
    keys. Needs only the codes, so it may run beside :func:`validate` (see :func:`resolve_duplicates`)."""
    keys = _keys(user, item, num_users, num_items)  # (R,)
    keys.sort()  # in place: one array of keys, not two
    return np.unique(keys[1:][keys[1:] == keys[:-1]])


def resolve_duplicates(part: Part, policy: str, key: str | None = None, repeated: np.ndarray | None = None) -> Part:
    """Handle repeated (user, item) pairs, found once (one sort of the int64 pair keys; ``repeated``, the
    :func:`repeated_pairs` of this part's codes, when worked out already). Consumes ``part`` (its
    columns are compacted in place).

    ``last``: keep the last row of each pair (file order); ``mean``: average the ratings (and keep the
    latest timestamp; other columns from the last row), in the place of the pair's first row;
    ``error``: raise naming the first repeated row and the line of the pair's first row. The number
    of repeated rows is logged whatever the policy. ``key`` is the config key of the policy, named in
    messages (``data.source_args.duplicates`` for a ratings table, ``data.duplicates`` for MovieLens).
    """
    if policy not in DUPLICATE_POLICIES:
        raise DataError(None, f"{key or 'duplicates'} must be one of {', '.join(DUPLICATE_POLICIES)}, got {policy!r}")
    columns = part.columns
    if repeated is None:
        repeated = repeated_pairs(columns["user"], columns["item"], len(part.users), len(part.items))
    repeated_keys = repeated
    if len(repeated_keys) == 0:
        return part
    suspects = np.zeros(len(part.users), dtype=bool)  # users with a repeated pair: a cheap filter before hashing
    suspects[repeated_keys // max(len(part.items), 1)] = True
    candidates = np.flatnonzero(suspects[columns["user"]])  # (C,) rows of those users
    keys = pair_keys(part, candidates)  # (C,)
    found = pd.Index(repeated_keys).get_indexer(keys) >= 0
    involved, keys = candidates[found], keys[found]  # (D,) rows of repeated pairs, and their keys
    group, _ = pd.factorize(keys)  # (D,) pair number, in order of first appearance
    previous_max = np.concatenate([[-1], np.maximum.accumulate(group)[:-1]])
    repeat = group <= previous_max  # (D,) not the pair's first row
    count = int(repeat.sum())
    if policy == "error":
        i = int(np.flatnonzero(repeat)[0])
        first = int(np.flatnonzero(group == group[i])[0])
        row, earlier = int(involved[i]), int(involved[first])
        remedy = f"set {key}=last or {key}=mean to accept them" if key else "remove the repeated rows"
        user, item = part.users[columns["user"][row]], part.items[columns["item"][row]]
        raise DataError(
            part.file,
            f"duplicate (user, item) pair ({show(user)}, {show(item)}), first on line {part.line(earlier)}; "
            f"{count} repeated row(s). The duplicates policy is 'error': {remedy}",
            line=part.line(row),
        )
    log.warning("%s: %d repeated (user, item) row(s), resolved with policy %r", part.file, count, policy)
    keep = np.ones(len(part), dtype=bool)
    if policy == "last":
        keep[involved[pd.Series(group).duplicated(keep="last").to_numpy()]] = False
        return replace(part, columns=compact(columns, keep), rows=keep if part.rows is None else part.file_rows()[keep])
    agg = {"rating": "mean"}
    for col in sorted(set(columns) - {"user", "item", "rating"}):
        agg[col] = "max" if col == "timestamp" else "last"
    involved_rows = pd.DataFrame(take(columns, involved), copy=False)
    merged = involved_rows.groupby(group, sort=True).agg(agg)  # (G,) one row per repeated pair
    merged["rating"] = merged["rating"].astype(np.float32)
    firsts = involved[~repeat]  # (G,) each pair's first row, in pair order: it takes the merged values
    keep[involved[repeat]] = False
    out = take(columns, keep)
    at = np.cumsum(keep)[firsts] - 1  # where those rows are among the kept ones
    for col in agg:
        out[col][at] = merged[col].to_numpy()  # out's columns are new arrays
    rows = part.file_rows().copy()
    rows[firsts] = pd.Series(rows[involved]).groupby(group, sort=True).last().to_numpy()  # errors name the last row's line
    return replace(part, columns=out, rows=rows[keep])


def check_no_shared_pairs(train: Part, test: Part) -> None:
    """Raise when a (user, item) pair of the test table is also in the training table (both parts in
    one code space, each without repeated pairs): the model would be tested on a rating it was trained
    on. Names both files, both lines and the raw pair."""
    train_keys, test_keys = pair_keys(train), pair_keys(test)
    match = pd.Index(train_keys).get_indexer(test_keys)  # (T,) training row of each test pair, -1 if none
    shared = np.flatnonzero(match >= 0)
    if len(shared) == 0:
        return
    test_row = int(shared[0])
    train_row = int(match[test_row])
    user, item = test.users[test.columns["user"][test_row]], test.items[test.columns["item"][test_row]]
    raise DataError(
        test.file,
        f"(user, item) pair ({show(user)}, {show(item)}) is also in the training table {train.file}, "
        f"line {train.line(train_row)} ({len(shared)} test pair(s) repeat a training pair). A test rating "
        f"must not be trained on: remove these pairs from one of the two files",
        line=test.line(test_row),
    )


def unify(id_sets: list[pd.Index], catalog: pd.Index | None = None, order: np.ndarray | None = None) -> tuple[pd.Index, list[np.ndarray]]:
    """One sorted index space for several files' distinct ids.

    Returns the sorted distinct ids -- of ``catalog`` when given (which must hold every id), else of
    all the sets -- and, per set, (K_f,) integers: the position of each of its ids in them. Strings sort by
    code point as ``np.sort`` sorts them (pyarrow's sort for pyarrow-backed strings), integers by value.
    ``order``, the sorting permutation of a single set's ids, may be given when worked out already.
    """
    if catalog is not None:
        distinct, index_of = pd.Index(pd.unique(catalog)), None
    elif len(id_sets) == 1:
        distinct, index_of = pd.Index(id_sets[0]), [np.arange(len(id_sets[0]), dtype=np.int64)]
    else:
        codes, distinct = pd.factorize(id_sets[0].append(list(id_sets[1:])))
        bounds = np.cumsum([0] + [len(s) for s in id_sets])
        index_of = [codes[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    if order is None or catalog is not None or len(id_sets) != 1:
        order = distinct.argsort()  # (K,)
    sorted_ids = distinct.take(order)
    if index_of is None:
        return sorted_ids, [sorted_ids.get_indexer(s) for s in id_sets]
    rank = np.empty(len(order), dtype=np.int32 if len(order) < 2**31 else np.int64)  # codes stay 4 bytes
    rank[order] = np.arange(len(order), dtype=rank.dtype)
    return sorted_ids, [rank[i] for i in index_of]
