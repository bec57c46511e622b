"""Readers: MovieLens-100K and any ratings table (CSV or Parquet) with configurable column names.

Each reader returns a :class:`~visrec.data.table.RatingsTable`: validated ratings in index space, the
sorted item and user catalogs (the only place raw ids are kept), and the image path of every item that
has one. Files are read into columns (:mod:`~visrec.data.csv_files`, pyarrow for Parquet), ids become
codes at once (:mod:`~visrec.data.columns`), and the checks run on codes (:mod:`~visrec.data.coded`).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from visrec.data.coded import Part, check_known, check_no_shared_pairs, check_same_spelling, convert, repeated_pairs, resolve_duplicates, unify, validate
from visrec.data.columns import Codes, RawTable, id_codes
from visrec.data.csv_files import RowLines, read_csv_columns
from visrec.data.errors import DataError, show
from visrec.data.table import DUPLICATE_POLICIES, INT64_MAX, MAX_ABS_RATING, RatingsTable, parse_int64, read_delimited

log = logging.getLogger(__name__)

ML100K_FOLDS = ("1", "2", "3", "4", "5", "a", "b")


class RatingsSource(Protocol):
    def load(self) -> RatingsTable: ...


def _require_dir(path: Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataError(path, f"{what} folder not found")
    return path


class MovieLens100K:
    """MovieLens-100K from its original files.

    Ratings come from the official fold ``u{fold}.base`` + ``u{fold}.test`` (tab-separated
    user, item, rating, timestamp), whose test rows are marked ``is_test``; together they are the
    whole of ``u.data`` for folds 1-5. The item catalog is ``u.item`` (latin-1, ``|``-separated,
    24 fields), the user catalog ``u.user``. Posters, when ``images`` names a folder inside ``root``,
    are ``<images>/<item id>.jpg``. Options are the flat keys ``data.root``, ``data.fold``, ...
    """

    def __init__(self, root: str, fold: str | int = 1, images: str | None = "posters", duplicates: str = "last"):
        self.root = Path(str(root)).expanduser()
        self.fold = str(fold)
        if self.fold not in ML100K_FOLDS:
            raise DataError(None, f"data.fold must be one of {', '.join(ML100K_FOLDS)}, got {fold!r}")
        self.images = images
        _check_policy(duplicates, self.option_key("duplicates"))
        self.duplicates = duplicates

    @staticmethod
    def option_key(name: str) -> str | None:
        """The config key of a reader option (None: this source has no such option)."""
        return f"data.{name}" if name in ("root", "fold", "images", "duplicates") else None

    def _read_fold_file(self, name: str, items: np.ndarray, users: np.ndarray) -> Part:
        path = self.root / name
        frame = read_delimited(path, "\t", 4, ["user", "item", "rating", "timestamp"])
        raw = text_columns(path, frame, RowLines(offset=1))
        with ThreadPoolExecutor(max_workers=2) as pool:
            part = validate(raw, convert(raw, pool, ids=_int_id_codes), rating_range=(1, 5))
        check_known(part, "item", items, "u.item")
        check_known(part, "user", users, "u.user")
        return resolve_duplicates(part, self.duplicates, key=self.option_key("duplicates"))

    def _read_ids(self, name: str, num_fields: int, field: str, encoding: str = "utf-8") -> np.ndarray:
        path = self.root / name
        raw = read_delimited(path, "|", num_fields, [f"f{i}" for i in range(num_fields)], encoding=encoding)
        ids, bad, over = parse_int64(raw["f0"])
        if (bad | over).any():
            row = int(np.flatnonzero(bad | over)[0])
            raise DataError(path, f"{field} is not a 64-bit integer (value {raw['f0'].iloc[row]!r})", line=row + 1, field=field)
        return ids

    def load(self) -> RatingsTable:
        _require_dir(self.root, "MovieLens-100K")
        items = self._read_ids("u.item", 24, "movie id", encoding="latin-1")
        users = self._read_ids("u.user", 5, "user id")

        train = self._read_fold_file(f"u{self.fold}.base", items, users)
        test = self._read_fold_file(f"u{self.fold}.test", items, users)
        train, test = _shared_index([train, test], catalog=items, users=users)
        check_no_shared_pairs(train, test)
        indexed = pd.concat([train.frame().assign(is_test=False), test.frame().assign(is_test=True)], ignore_index=True)

        image_paths = {}
        if self.images:
            folder = _require_dir(self.root / self.images, "poster images")
            image_paths = {int(i): folder / f"{int(i)}.jpg" for i in items}
        return RatingsTable(indexed, train.users, train.items, image_paths=image_paths, source=f"{self.root} (fold u{self.fold})",
                            rating_range=(1.0, 5.0))


def _check_policy(policy: str, key: str | None) -> None:
    if policy not in DUPLICATE_POLICIES:
        raise DataError(None, f"{key or 'duplicates'} must be one of {', '.join(DUPLICATE_POLICIES)}, got {policy!r}")


def _int_id_codes(raw: RawTable, col: str) -> Codes:
    """Codes of an id column of text that must hold 64-bit integers (MovieLens): raises DataError for a
    missing id, an id that is not an integer, or one beyond int64 (in that order)."""
    values = raw.pandas_column(col)

    def fail(mask: np.ndarray, problem: str):
        rows = np.flatnonzero(mask)
        row = int(rows[0])
        raise DataError(raw.file, f"{problem} (value {show(values.iloc[row])}; {len(rows)} such row(s))", line=raw.lines(row), field=col)

    missing = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy(dtype=bool, na_value=True)
    if missing.any():
        fail(missing, "missing id")
    ids, bad, over = parse_int64(values)
    if bad.any():
        fail(bad, "id is not an integer")
    if over.any():
        fail(over, f"id does not fit a 64-bit integer (|id| <= {INT64_MAX})")
    codes, distinct = pd.factorize(ids)
    return Codes(codes, pd.Index(distinct))


def text_columns(path: Path, frame: pd.DataFrame, lines: RowLines) -> RawTable:
    """A frame of strings (columns named as canonical fields) as the columns of a file."""
    columns = {col: pa.chunked_array([pa.array(frame[col], type=pa.string(), from_pandas=True)]) for col in frame.columns}
    return RawTable(path, columns, {col: col for col in frame.columns}, len(frame), lines, set(frame.columns), lambda col: frame[col])


def _shared_index(parts: list[Part], catalog=None, users=None) -> list[Part]:
    """The parts recoded into one index space: sorted user ids (of ``users`` when given, else of every
    part) and sorted item ids (of ``catalog`` when given, else of every part)."""
    user_ids, user_pos = unify([p.users for p in parts], catalog=users, order=parts[0].orders.get("users"))
    item_ids, item_pos = unify([p.items for p in parts], catalog=catalog, order=parts[0].orders.get("items"))
    return [p.recode(user_ids, up, item_ids, ip) for p, up, ip in zip(parts, user_pos, item_pos)]


# Separators as users type them on a command line, where a tab is hard to enter.
SEPARATOR_NAMES = {"\\t": "\t", "tab": "\t", "TAB": "\t", "space": " ", "comma": ",", "semicolon": ";", "pipe": "|"}


class RatingsFile:
    """Any ratings table in CSV (with a header) or Parquet.

    Columns are named by ``user_col``, ``item_col``, ``rating_col`` and optionally ``timestamp_col``.
    Ids are read as strings from CSV (so ``007`` stays ``007``) and keep their dtype from Parquet.
    Optional parts:
      test_path: a second table of the same format holding a predefined test set; a (user, item)
        pair may not be in both tables;
      items_path: a table with an ``item_col`` column listing the whole catalog (items with no
        ratings included); without it the catalog is the items that appear in the ratings;
      images_dir + image_pattern: the image of item ``x`` is ``images_dir / image_pattern.format(item=x)``;
      image_col: a column (of ``items_path`` if given, else of the ratings) holding image paths,
        relative to that table's folder.
    CSV files are read with ``encoding`` (UTF-8 by default) and separator ``sep`` (one character, or
    ``\t`` / ``tab``, ``space``, ``semicolon``, ``pipe``). ``config_prefix`` is where these options
    live in the Hydra config (``data.source_args.``), so that messages name keys a user can set;
    ``None`` when they cannot be set (the synthetic dataset).
    """

    def __init__(
        self,
        path: str,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str = "rating",
        timestamp_col: str | None = None,
        rating_min: float | None = None,
        rating_max: float | None = None,
        test_path: str | None = None,
        items_path: str | None = None,
        images_dir: str | None = None,
        image_pattern: str = "{item}.jpg",
        image_col: str | None = None,
        duplicates: str = "last",
        sep: str = ",",
        encoding: str = "utf-8",
        config_prefix: str | None = "data.source_args.",
    ):
        self.config_prefix = config_prefix
        self.path = Path(str(path)).expanduser()
        self.columns = {"user": user_col, "item": item_col, "rating": rating_col}
        if timestamp_col:
            self.columns["timestamp"] = timestamp_col
        named = [(key, col) for key, col in self.columns.items()]
        for i, (key, col) in enumerate(named):
            for other_key, other_col in named[:i]:
                if col == other_col:
                    raise DataError(None, f"{self._name(other_key + '_col')} and {self._name(key + '_col')} both name the column {col!r}; "
                                          "each field needs its own column")
        self.rating_range = self._check_range(rating_min, rating_max)
        self.test_path = Path(str(test_path)).expanduser() if test_path else None
        self.items_path = Path(str(items_path)).expanduser() if items_path else None
        self.images_dir = Path(str(images_dir)).expanduser() if images_dir else None
        self.image_pattern = image_pattern
        self.image_col = image_col
        _check_policy(duplicates, self.option_key("duplicates"))
        self.duplicates = duplicates
        sep = SEPARATOR_NAMES.get(str(sep), str(sep))
        if len(sep) != 1 or sep in ('"', "\n", "\r"):
            raise DataError(None, f"{self._name('sep')} must be one character (or \\t, tab, space, semicolon, pipe), got {sep!r}")
        self.sep = sep
        self.encoding = str(encoding)

    def option_key(self, name: str) -> str | None:
        """The config key of a reader option (None when the options are not in the config)."""
        return None if self.config_prefix is None else f"{self.config_prefix}{name}"

    def _name(self, name: str) -> str:
        return self.option_key(name) or name

    def _check_range(self, rating_min, rating_max) -> tuple[float, float] | None:
        lo_key, hi_key = self._name("rating_min"), self._name("rating_max")
        if (rating_min is None) != (rating_max is None):
            raise DataError(None, f"set both {lo_key} and {hi_key}, or neither")
        if rating_min is None:
            return None
        try:
            lo, hi = float(rating_min), float(rating_max)
        except (TypeError, ValueError):
            raise DataError(None, f"{lo_key} and {hi_key} must be numbers, got {rating_min!r} and {rating_max!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and abs(lo) <= MAX_ABS_RATING and abs(hi) <= MAX_ABS_RATING and lo < hi):
            raise DataError(None, f"{lo_key}={rating_min!r} and {hi_key}={rating_max!r}: need finite numbers with min < max and "
                                  f"|value| <= {MAX_ABS_RATING:g}")
        return lo, hi

    def _read_table(self, path: Path, wanted: dict[str, str]) -> RawTable:
        """The wanted columns of ``path`` (canonical name -> the file's column name), with each row's line
        (for Parquet, the 1-based row number). Raises DataError when the file is missing, unreadable, or
        lacks a column."""
        if not path.is_file():
            raise DataError(path, "file not found")
        if path.suffix.lower() in (".parquet", ".pq"):
            return read_parquet_columns(path, wanted)
        table = read_csv_columns(path, self.sep, list(dict.fromkeys(wanted.values())), self.encoding, self.option_key("encoding"),
                                 integers=_only_for(wanted, "timestamp"))
        missing = [src for src in wanted.values() if src not in table.header]
        if missing:
            raise DataError(path, f"missing column(s) {missing}; the file has {table.header}", field=missing[0])
        columns = {key: table.columns[src] for key, src in wanted.items()}
        return RawTable(path, columns, dict(wanted), table.num_rows, table.lines, set(wanted), _cached(lambda key: columns[key].to_pandas()))

    def _read_ratings(self, path: Path, catalog: pd.Index | None) -> Part:
        """One ratings file as a validated part in its own codes, repeated pairs resolved. Raises DataError,
        in this order: the file's reading and columns, an id's type (user column first), no ratings, a
        value (missing id, rating, timestamp), an id type other than the catalog's, an item not in the
        catalog, a repeated pair under policy ``error``."""
        wanted = dict(self.columns)
        if self.image_col and self.items_path is None:
            wanted["image"] = self.image_col
        raw = self._read_table(path, wanted)
        with ThreadPoolExecutor(max_workers=2) as pool:
            converted = convert(raw, pool)  # raises the ids' type errors (user column first)
            raw.release("user", "item")  # codes now: the strings' memory goes back before the next steps
            # Finding repeated pairs and sorting the distinct ids (for the id maps) need nothing else: they
            # run while the checks do (and are used only once those have passed).
            user, item = converted.user, converted.item
            repeated = pool.submit(repeated_pairs, user.codes, item.codes, len(user.ids), len(item.ids))
            orders = {"users": pool.submit(user.ids.argsort), "items": pool.submit(item.ids.argsort)}
            if raw.num_rows == 0:
                raise DataError(path, "no ratings in file")
            part = validate(raw, converted, self.rating_range)
            if catalog is not None:
                _check_same_id_type(self.items_path, catalog, path, part.items, "item")
                check_same_spelling(part, "item", catalog, self.items_path, self.columns["item"])
                check_known(part, "item", catalog, str(self.items_path))
            part = resolve_duplicates(part, self.duplicates, key=self.option_key("duplicates"), repeated=repeated.result())
            part.orders = {name: order.result() for name, order in orders.items()}  # ids unchanged by the checks
        return part

    def _read_catalog(self) -> tuple[pd.Index, dict]:
        """Items listed in ``items_path`` (in file order) and their image paths (from ``image_col``)."""
        wanted = {"item": self.columns["item"]}
        if self.image_col:
            wanted["image"] = self.image_col
        raw = self._read_table(self.items_path, wanted)
        items = id_codes(raw, "item")
        missing = items.codes < 0
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise DataError(self.items_path, "missing item id", line=raw.lines(row), field=self.columns["item"])
        row = items.first_repeat()
        if row is not None:
            raise DataError(self.items_path, f"item {show(items.value(row))} listed twice", line=raw.lines(row), field=self.columns["item"])
        image_paths = {}
        if self.image_col:
            image_paths = _paths_from_column(items.ids, raw.pandas_column("image").to_numpy(), self.items_path.parent)
        return items.ids, image_paths  # no repeats: codes are 0..n-1 in file order

    def load(self) -> RatingsTable:
        catalog, image_paths = (None, {}) if self.items_path is None else self._read_catalog()
        parts = [self._read_ratings(self.path, catalog)]
        if self.test_path is not None:
            parts.append(self._read_ratings(self.test_path, catalog))
            for col in ("users", "items"):
                _check_same_id_type(self.path, getattr(parts[0], col), self.test_path, getattr(parts[1], col), col[:-1])
                check_same_spelling(parts[1], col[:-1], getattr(parts[0], col), self.path, self.columns[col[:-1]])
        parts = _shared_index(parts, catalog=catalog)
        if len(parts) == 2:
            check_no_shared_pairs(parts[0], parts[1])
            indexed = pd.concat([parts[0].frame().assign(is_test=False), parts[1].frame().assign(is_test=True)], ignore_index=True)
        else:
            indexed = parts[0].frame()
        users, items = parts[0].users, parts[0].items
        if "image" in indexed.columns:
            item_codes = indexed["item"].to_numpy()
            first_rows = np.sort(np.unique(item_codes, return_index=True)[1])  # each item's first row, in file order
            image_paths = _paths_from_column(items[item_codes[first_rows]], indexed["image"].to_numpy()[first_rows], self.path.parent)
            indexed = indexed.drop(columns="image")
        if self.images_dir is not None:
            folder = _require_dir(self.images_dir, "images")
            image_paths = {i: folder / self.image_pattern.format(item=i) for i in items}
        return RatingsTable(indexed, users, items, image_paths=image_paths, source=str(self.path),
                            rating_range=self.rating_range)


def _only_for(wanted: dict[str, str], key: str) -> tuple[str, ...]:
    """(the file column of ``key``,) when no other field reads that column, else ()."""
    source = wanted.get(key)
    return (source,) if source is not None and list(wanted.values()).count(source) == 1 else ()


def _cached(function):
    """``function`` of one argument, computed once per argument."""
    results = {}

    def cached(key):
        if key not in results:
            results[key] = function(key)
        return results[key]

    return cached


def read_parquet_columns(path: Path, wanted: dict[str, str]) -> RawTable:
    """The wanted columns of a Parquet file, read by pyarrow (only those columns). A file pyarrow cannot
    read, one that lacks a column (or keeps it as the pandas index) is read by pandas as before, so its
    error is worded as before."""
    import pyarrow.parquet as pq

    sources = list(dict.fromkeys(wanted.values()))
    try:
        schema = pq.read_schema(path)
        meta = schema.pandas_metadata or {}
        table = None
        if not any(src not in schema.names or src in meta.get("index_columns", []) for src in sources):
            table = pq.read_table(path, columns=sources)
    except Exception:  # pyarrow raises several types for a corrupt file
        table = None
    if table is None:
        return _read_parquet_pandas(path, wanted)
    numpy_types = {c.get("field_name", c.get("name")): c.get("numpy_type") for c in meta.get("columns", [])}
    plain = {key for key, src in wanted.items() if _plain_parquet(table.schema.field(src).type, numpy_types.get(src))}
    columns = {key: table.column(src) for key, src in wanted.items()}

    def pandas_column(key: str) -> pd.Series:
        return columns[key].to_pandas() if key in plain else pd.read_parquet(path, columns=[wanted[key]])[wanted[key]]

    return RawTable(path, columns, dict(wanted), table.num_rows, RowLines(offset=1), plain, _cached(pandas_column))


def _plain_parquet(kind: pa.DataType, numpy_type: str | None) -> bool:
    """Whether pandas reads a Parquet column of this type (and recorded pandas dtype) as pyarrow's
    default conversion does: strings as str, integers and floats as their numpy dtype."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return numpy_type in (None, "object", "str")
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return numpy_type is None or numpy_type == np.dtype(kind.to_pandas_dtype()).name
    return False


def _read_parquet_pandas(path: Path, wanted: dict[str, str]) -> RawTable:
    """The earlier reader: the whole file by pandas; every column then goes through the pandas paths."""
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise DataError(path, f"cannot read Parquet: {err}") from None
    missing = [src for src in wanted.values() if src not in frame.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; the file has {list(frame.columns)}", field=missing[0])
    return RawTable(path, {}, dict(wanted), len(frame), RowLines(offset=1), set(), lambda key: frame[wanted[key]].reset_index(drop=True))


def _id_type(values) -> str:
    """'integer', 'string', 'float', ... : the kind of raw ids a column holds (for agreement across files;
    the type names of the first 1000 ids for a column of objects)."""
    head = np.asarray(values[:1000]) if len(values) else np.asarray(values)
    kind = head.dtype.kind
    if kind in "iu":
        return "integer"
    if kind == "f":
        return "float"
    if kind in "OUS" or str(getattr(values, "dtype", "")) in ("str", "string"):
        kinds = {type(v).__name__ for v in np.asarray(head, dtype=object)}
        return "string" if kinds <= {"str"} else "/".join(sorted(kinds))
    return str(head.dtype)


def _check_same_id_type(file_a: Path, ids_a, file_b: Path, ids_b, what: str) -> None:
    """Ids of one kind must have one type in every file (a CSV id "7" and a Parquet id 7 never match)."""
    type_a, type_b = _id_type(ids_a), _id_type(ids_b)
    if type_a != type_b:
        raise DataError(file_b, f"{what} ids are {type_b} here but {type_a} in {file_a}; use one format (CSV ids are "
                                f"strings, Parquet ids keep their column type)", field=what)


def _paths_from_column(items: np.ndarray, paths: np.ndarray, base: Path) -> dict:
    """item -> base / image path, for the items whose ``paths`` cell is not empty (one loop over items)."""
    return {item: base / path for item, path in zip(items, paths) if isinstance(path, str) and path}


