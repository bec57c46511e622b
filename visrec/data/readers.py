"""Readers: MovieLens-100K and any ratings table (CSV or Parquet) with configurable column names.

Each reader returns a :class:`~visrec.data.table.RatingsTable` with validated ratings, the item and
user catalogs, and the image path of every item that has one.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from visrec.data.errors import DataError, show
from visrec.data.table import (
    DUPLICATE_POLICIES, FLOAT_EXACT_INT, INT64_MAX, MAX_ABS_RATING, RatingsTable, check_no_shared_pairs, decode_error, parse_int64, read_delimited, resolve_duplicates, validate_ratings,
)

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

    def _read_fold_file(self, name: str, items: np.ndarray, users: np.ndarray) -> pd.DataFrame:
        path = self.root / name
        raw = read_delimited(path, "\t", 4, ["user", "item", "rating", "timestamp"])
        frame = validate_ratings(raw, file=path, first_line=1, rating_range=(1, 5), id_dtype="int64")
        _check_known(frame, "item", items, path, "u.item")
        _check_known(frame, "user", users, path, "u.user")
        return resolve_duplicates(frame, self.duplicates, file=path, key=self.option_key("duplicates"))

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
        check_no_shared_pairs(train, self.root / f"u{self.fold}.base", test, self.root / f"u{self.fold}.test")
        ratings = pd.concat([train.assign(is_test=False), test.assign(is_test=True)], ignore_index=True).drop(columns="line")

        image_paths = {}
        if self.images:
            folder = _require_dir(self.root / self.images, "poster images")
            image_paths = {int(i): folder / f"{int(i)}.jpg" for i in items}
        return RatingsTable(ratings, items=items, users=users, image_paths=image_paths, source=f"{self.root} (fold u{self.fold})", rating_range=(1.0, 5.0))


def _check_policy(policy: str, key: str | None) -> None:
    if policy not in DUPLICATE_POLICIES:
        raise DataError(None, f"{key or 'duplicates'} must be one of {', '.join(DUPLICATE_POLICIES)}, got {policy!r}")


def _check_known(part: pd.DataFrame, col: str, catalog: np.ndarray, file: Path, catalog_name: str) -> None:
    """Raise naming the first row of ``part`` (read from ``file``) whose ``col`` id is not in ``catalog``."""
    unknown = ~part[col].isin(catalog).to_numpy()  # hash-based (np.isin sorts object arrays: minutes at 1M rows)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(
            file,
            f"{col} id {show(part[col].iloc[row])} is not in the catalog {catalog_name} ({int(unknown.sum())} such row(s))",
            line=int(part["line"].iloc[row]) if "line" in part.columns else row + 1,
            field=col,
        )


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

    def _read_table(self, path: Path, wanted: dict[str, str]) -> pd.DataFrame:
        """Read ``path``; return the wanted columns renamed to canonical names, plus ``line`` (each
        row's line as an editor shows it; for Parquet, the 1-based row number)."""
        if not path.is_file():
            raise DataError(path, "file not found")
        if path.suffix.lower() in (".parquet", ".pq"):
            try:
                frame = pd.read_parquet(path)
            except Exception as err:  # pyarrow raises several types for a corrupt file
                raise DataError(path, f"cannot read Parquet: {err}") from None
            lines = np.arange(1, len(frame) + 1)  # Parquet has rows, not lines: "line" is the 1-based row number
        else:
            frame, lines = read_csv_table(path, self.sep, self.encoding, self.option_key("encoding"))
        missing = [src for src in wanted.values() if src not in frame.columns]
        if missing:
            raise DataError(path, f"missing column(s) {missing}; the file has {list(frame.columns)}", field=missing[0])
        renamed = frame[list(wanted.values())].copy()
        renamed.columns = list(wanted.keys())
        renamed["line"] = lines
        renamed = renamed.reset_index(drop=True)
        for col in ("user", "item"):
            if col in renamed.columns:
                renamed[col] = _clean_ids(renamed[col], path, renamed["line"].to_numpy(), wanted[col])
        return renamed



    def _read_ratings(self, path: Path, catalog: np.ndarray | None) -> pd.DataFrame:
        wanted = dict(self.columns)
        if self.image_col and self.items_path is None:
            wanted["image"] = self.image_col
        frame = self._read_table(path, wanted)
        if len(frame) == 0:
            raise DataError(path, "no ratings in file")
        frame = validate_ratings(frame, file=path, rating_range=self.rating_range)
        if catalog is not None:
            _check_same_id_type(self.items_path, catalog, path, frame["item"], "item")
            _check_known(frame, "item", catalog, path, str(self.items_path))
        return resolve_duplicates(frame, self.duplicates, file=path, key=self.option_key("duplicates"))

    def _read_catalog(self) -> tuple[np.ndarray, dict]:
        """Items listed in ``items_path`` and their image paths (from ``image_col``)."""
        wanted = {"item": self.columns["item"]}
        if self.image_col:
            wanted["image"] = self.image_col
        frame = self._read_table(self.items_path, wanted)
        missing = frame["item"].isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise DataError(self.items_path, "missing item id", line=int(frame["line"].iloc[row]), field=self.columns["item"])
        dup = frame["item"].duplicated().to_numpy()
        if dup.any():
            row = int(np.flatnonzero(dup)[0])
            raise DataError(self.items_path, f"item {show(frame['item'].iloc[row])} listed twice", line=int(frame["line"].iloc[row]), field=self.columns["item"])
        image_paths = {}
        if self.image_col:
            image_paths = _paths_from_column(frame, self.items_path.parent)
        return frame["item"].to_numpy(), image_paths

    def load(self) -> RatingsTable:
        catalog, image_paths = (None, {}) if self.items_path is None else self._read_catalog()
        ratings = self._read_ratings(self.path, catalog)
        if self.test_path is not None:
            test = self._read_ratings(self.test_path, catalog)
            for col in ("user", "item"):
                _check_same_id_type(self.path, ratings[col], self.test_path, test[col], col)
            check_no_shared_pairs(ratings, self.path, test, self.test_path)
            ratings = pd.concat([ratings.assign(is_test=False), test.assign(is_test=True)], ignore_index=True)
        ratings = ratings.drop(columns="line")
        items = catalog if catalog is not None else pd.unique(ratings["item"].to_numpy())
        if "image" in ratings.columns:
            image_paths = _paths_from_column(ratings.drop_duplicates("item"), self.path.parent)
            ratings = ratings.drop(columns="image")
        if self.images_dir is not None:
            folder = _require_dir(self.images_dir, "images")
            image_paths = {i: folder / self.image_pattern.format(item=i) for i in items}
        users = pd.unique(ratings["user"].to_numpy())
        return RatingsTable(ratings, items=np.asarray(items), users=np.asarray(users), image_paths=image_paths, source=str(self.path), rating_range=self.rating_range)


def _clean_ids(ids: pd.Series, path: Path, lines: np.ndarray, field: str) -> pd.Series:
    """Raw ids as visrec keeps them: strings (surrounding whitespace removed, so ``1, 2`` reads as ids
    "1" and "2") or integers that fit int64. Integral floats (a Parquet integer column that pandas
    widened to float) become int64. Raises DataError (file, line, field) for anything else: fractional,
    non-finite or out-of-range numbers, booleans, dates, mixed types."""
    kind = ids.dtype.kind
    if kind == "i":
        return ids
    if kind == "u":
        over = (ids.to_numpy() > INT64_MAX)
        if over.any():
            row = int(np.flatnonzero(over)[0])
            raise DataError(path, f"id {show(ids.iloc[row])} does not fit a 64-bit integer", line=int(lines[row]), field=field)
        return ids.astype(np.int64)
    if kind == "f":
        values = ids.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) >= FLOAT_EXACT_INT)
        bad &= ~np.isnan(values)  # missing ids are reported by validate_ratings
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(path, f"id {show(ids.iloc[row])} is not an integer (ids are integers or strings)", line=int(lines[row]), field=field)
        return ids if np.isnan(values).any() else ids.astype(np.int64)
    if kind in "OUS" or str(ids.dtype) in ("str", "string"):
        if pd.api.types.infer_dtype(ids, skipna=True) not in ("string", "empty"):  # one C pass; the row only on error
            is_text = ids.map(lambda v: isinstance(v, str) or v is None or (isinstance(v, float) and np.isnan(v))).to_numpy(dtype=bool)
            row = int(np.flatnonzero(~is_text)[0]) if (~is_text).any() else 0
            raise DataError(path, f"id {show(ids.iloc[row])} of type {type(ids.iloc[row]).__name__} in a column of strings "
                                  "(ids are integers or strings, one type per column)", line=int(lines[row]), field=field)
        return ids.str.strip()
    raise DataError(path, f"ids of type {ids.dtype} are not supported (ids are integers or strings)", line=int(lines[0]) if len(lines) else None, field=field)


def _id_type(values) -> str:
    """'integer', 'string', 'float', ... : the kind of raw ids a column holds (for agreement across files)."""
    kind = np.asarray(values).dtype.kind
    if kind in "iu":
        return "integer"
    if kind == "f":
        return "float"
    if kind in "OUS" or str(getattr(values, "dtype", "")) in ("str", "string"):
        kinds = {type(v).__name__ for v in np.asarray(values, dtype=object)[:1000]}
        return "string" if kinds <= {"str"} else "/".join(sorted(kinds))
    return str(np.asarray(values).dtype)


def _check_same_id_type(file_a: Path, ids_a, file_b: Path, ids_b, what: str) -> None:
    """Ids of one kind must have one type in every file (a CSV id "7" and a Parquet id 7 never match)."""
    type_a, type_b = _id_type(ids_a), _id_type(ids_b)
    if type_a != type_b:
        raise DataError(file_b, f"{what} ids are {type_b} here but {type_a} in {file_a}; use one format (CSV ids are "
                                f"strings, Parquet ids keep their column type)", field=what)


def _paths_from_column(frame: pd.DataFrame, base: Path) -> dict:
    """item -> base / image path, for rows whose ``image`` cell is not empty."""
    return {item: base / path for item, path in zip(frame["item"], frame["image"]) if isinstance(path, str) and path}


def read_csv_table(path: Path, sep: str, encoding: str = "utf-8", encoding_key: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV file with a header as a frame of strings (empty cells are NaN), and the line of each row.

    Lines are what an editor shows (1-based, the header is line 1): blank lines are skipped but
    counted, and a row whose quoted field spans lines is on the line where it starts. One pass of
    ``csv.reader`` (C code; it yields no per-row Python objects that are kept) takes the field count
    and ``line_num`` of every record; pandas' C parser then reads the values. A UTF-8 byte-order
    mark is ignored. Every failure is a :class:`DataError` naming the file and the line: an encoding
    error (with its byte offset), a wrong number of fields, a field over csv's size limit, an
    unclosed quote, anything pandas' parser rejects.
    """
    hint = f"; save it as UTF-8, or set {encoding_key} to its encoding (e.g. latin-1)" if encoding_key else ""
    codec = "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding
    last_end = [0]  # line_num at the end of the last complete record (for errors inside a record)

    def records(reader):
        for row in reader:
            # A record that is blank or only spaces is skipped (pandas skips it too): field count 0.
            yield 0 if not row or (len(row) == 1 and not row[0].strip()) else len(row)
            yield reader.line_num
            last_end[0] = reader.line_num

    try:
        with open(path, newline="", encoding=codec) as handle:
            reader = csv.reader(handle, delimiter=sep, strict=True)
            try:
                header = next(reader, None)
                if header is None:
                    raise DataError(path, "file is empty")
                header_end = last_end[0] = reader.line_num
                flat = np.fromiter(records(reader), dtype=np.int64)
            except csv.Error as err:
                start = last_end[0] + 1
                problem = str(err)
                if "field limit" in problem:
                    problem = (f"a field is longer than csv's limit of {csv.field_size_limit()} characters "
                               f"(reading stopped on line {reader.line_num}; an unclosed quote?)")
                elif "unexpected end of data" in problem:
                    problem = "a quoted field is not closed before the end of the file"
                else:
                    problem = f"cannot parse as CSV: {problem} (reading stopped on line {reader.line_num})"
                raise DataError(path, problem, line=start) from None
    except UnicodeDecodeError:
        raise decode_error(path, encoding, hint=hint) from None
    except UnicodeError as err:  # e.g. "UTF-16 stream does not start with BOM"
        raise DataError(path, f"cannot decode as {encoding}: {err}{hint}") from None
    except LookupError:
        raise DataError(path, f"unknown encoding {encoding!r}" + (f" (set {encoding_key})" if encoding_key else "")) from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(path, f"the header names column(s) {repeated} more than once; each column needs its own name",
                        line=1, field=repeated[0])
    counts, ends = flat[0::2], flat[1::2]
    starts = np.concatenate([[header_end], ends[:-1]]) + 1
    bad = np.flatnonzero((counts != len(header)) & (counts != 0))
    if len(bad):
        row = int(bad[0])
        raise DataError(path, f"expected {len(header)} fields as in the header, found {counts[row]} ({len(bad)} such line(s))",
                        line=int(starts[row]))
    lines = starts[counts != 0]
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], index_col=False,
                            encoding=codec, skip_blank_lines=True, engine="c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeError, csv.Error) as err:
        raise DataError(path, f"cannot parse as CSV: {err}") from None
    if len(frame) != len(lines) or list(frame.columns) != _unique_names(header):
        # The two parsers disagree on what a row is (rare quoting): csv.reader's rows are the ones whose
        # lines are known, so build the frame from them (a second, slower pass).
        log.debug("%s: pandas and csv.reader disagree (%d vs %d rows); using csv.reader's rows", path, len(frame), len(lines))
        with open(path, newline="", encoding=codec) as handle:
            rows = [row for row in csv.reader(handle, delimiter=sep, strict=True) if row and not (len(row) == 1 and not row[0].strip())]
        frame = pd.DataFrame(rows[1:], columns=_unique_names(rows[0]), dtype=str).replace("", np.nan)
    return frame, lines


def _unique_names(header: list[str]) -> list[str]:
    """Column names as pandas makes them unique (``a``, ``a.1``, ...)."""
    seen: dict[str, int] = {}
    names = []
    for name in header:
        count = seen.get(name, 0)
        names.append(name if count == 0 else f"{name}.{count}")
        seen[name] = count + 1
    return names

