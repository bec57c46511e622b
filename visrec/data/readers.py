"""Readers: MovieLens-100K and any ratings table (CSV or Parquet) with configurable column names.

Each reader returns a :class:`~visrec.data.table.RatingsTable` with validated ratings, the item and
user catalogs, and the image path of every item that has one.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from visrec.data.errors import DataError, show
from visrec.data.table import RatingsTable, read_delimited, resolve_duplicates, validate_ratings

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
    are ``<images>/<item id>.jpg``.
    """

    def __init__(self, root: str, fold: str | int = 1, images: str | None = "posters", duplicates: str = "last"):
        self.root = Path(str(root)).expanduser()
        self.fold = str(fold)
        if self.fold not in ML100K_FOLDS:
            raise ValueError(f"data.fold must be one of {ML100K_FOLDS}, got {fold!r}")
        self.images = images
        self.duplicates = duplicates

    def _read_fold_file(self, name: str, items: np.ndarray, users: np.ndarray) -> pd.DataFrame:
        path = self.root / name
        raw = read_delimited(path, "\t", 4, ["user", "item", "rating", "timestamp"])
        frame = validate_ratings(raw, file=path, first_line=1, rating_range=(1, 5), id_dtype="int64")
        _check_known(frame, "item", items, path, "u.item")
        _check_known(frame, "user", users, path, "u.user")
        return resolve_duplicates(frame, self.duplicates, file=path)

    def load(self) -> RatingsTable:
        _require_dir(self.root, "MovieLens-100K")
        item_path = self.root / "u.item"
        items_raw = read_delimited(item_path, "|", 24, [f"f{i}" for i in range(24)], encoding="latin-1")
        items = pd.to_numeric(items_raw["f0"], errors="coerce")
        if items.isna().any():
            row = int(np.flatnonzero(items.isna())[0])
            raise DataError(item_path, "movie id is not an integer", line=row + 1, field="movie id")
        items = items.to_numpy(dtype=np.int64)
        users_raw = read_delimited(self.root / "u.user", "|", 5, ["user", "age", "gender", "occupation", "zip"])
        users = pd.to_numeric(users_raw["user"], errors="coerce").to_numpy(dtype=np.int64)

        train = self._read_fold_file(f"u{self.fold}.base", items, users).assign(is_test=False)
        test = self._read_fold_file(f"u{self.fold}.test", items, users).assign(is_test=True)
        ratings = pd.concat([train, test], ignore_index=True)

        image_paths = {}
        if self.images:
            folder = _require_dir(self.root / self.images, "poster images")
            image_paths = {int(i): folder / f"{int(i)}.jpg" for i in items}
        return RatingsTable(ratings, items=items, users=users, image_paths=image_paths, source=f"{self.root} (fold u{self.fold})", rating_range=(1.0, 5.0))


def _check_known(part: pd.DataFrame, col: str, catalog: np.ndarray, file: Path, catalog_name: str, first_line: int = 1) -> None:
    """Raise naming the first row of ``part`` (read from ``file``) whose ``col`` id is not in ``catalog``."""
    unknown = ~np.isin(part[col].to_numpy(), catalog)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(
            file,
            f"{col} id {show(part[col].iloc[row])} is not in the catalog {catalog_name} ({int(unknown.sum())} such row(s))",
            line=first_line + row,
            field=col,
        )


class RatingsFile:
    """Any ratings table in CSV (with a header) or Parquet.

    Columns are named by ``user_col``, ``item_col``, ``rating_col`` and optionally ``timestamp_col``.
    Ids are read as strings from CSV (so ``007`` stays ``007``) and keep their dtype from Parquet.
    Optional parts:
      test_path: a second table of the same format holding a predefined test set;
      items_path: a table with an ``item_col`` column listing the whole catalog (items with no
        ratings included); without it the catalog is the items that appear in the ratings;
      images_dir + image_pattern: the image of item ``x`` is ``images_dir / image_pattern.format(item=x)``;
      image_col: a column (of ``items_path`` if given, else of the ratings) holding image paths,
        relative to that table's folder.
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
    ):
        self.path = Path(str(path)).expanduser()
        self.columns = {"user": user_col, "item": item_col, "rating": rating_col}
        if timestamp_col:
            self.columns["timestamp"] = timestamp_col
        if (rating_min is None) != (rating_max is None):
            raise ValueError("set both rating_min and rating_max, or neither")
        self.rating_range = None if rating_min is None else (float(rating_min), float(rating_max))
        self.test_path = Path(str(test_path)).expanduser() if test_path else None
        self.items_path = Path(str(items_path)).expanduser() if items_path else None
        self.images_dir = Path(str(images_dir)).expanduser() if images_dir else None
        self.image_pattern = image_pattern
        self.image_col = image_col
        self.duplicates = duplicates
        self.sep = sep

    def _read_table(self, path: Path, wanted: dict[str, str]) -> tuple[pd.DataFrame, int]:
        """Read ``path`` and return (frame renamed to canonical names, file line of first row)."""
        if not path.is_file():
            raise DataError(path, "file not found")
        if path.suffix.lower() in (".parquet", ".pq"):
            try:
                frame = pd.read_parquet(path)
            except Exception as err:  # pyarrow raises several types for a corrupt file
                raise DataError(path, f"cannot read Parquet: {err}") from None
            first_line = 1  # Parquet has rows, not lines: "line" is the 1-based row number
        else:
            _check_csv_field_counts(path, self.sep)
            frame = pd.read_csv(path, sep=self.sep, dtype=str, keep_default_na=False, na_values=[""], index_col=False)
            first_line = 2
        missing = [src for src in wanted.values() if src not in frame.columns]
        if missing:
            raise DataError(path, f"missing column(s) {missing}; the file has {list(frame.columns)}", field=missing[0])
        renamed = frame[list(wanted.values())].copy()
        renamed.columns = list(wanted.keys())
        return renamed, first_line

    def _read_ratings(self, path: Path, catalog: np.ndarray | None) -> pd.DataFrame:
        wanted = dict(self.columns)
        if self.image_col and self.items_path is None:
            wanted["image"] = self.image_col
        frame, first_line = self._read_table(path, wanted)
        if len(frame) == 0:
            raise DataError(path, "no ratings in file")
        frame = validate_ratings(frame, file=path, first_line=first_line, rating_range=self.rating_range)
        if catalog is not None:
            _check_known(frame, "item", catalog, path, str(self.items_path), first_line=first_line)
        return resolve_duplicates(frame, self.duplicates, file=path, first_line=first_line)

    def _read_catalog(self) -> tuple[np.ndarray, dict]:
        """Items listed in ``items_path`` and their image paths (from ``image_col``)."""
        wanted = {"item": self.columns["item"]}
        if self.image_col:
            wanted["image"] = self.image_col
        frame, first_line = self._read_table(self.items_path, wanted)
        dup = frame["item"].duplicated().to_numpy()
        if dup.any():
            row = int(np.flatnonzero(dup)[0])
            raise DataError(self.items_path, f"item {show(frame['item'].iloc[row])} listed twice", line=first_line + row, field=self.columns["item"])
        image_paths = {}
        if self.image_col:
            image_paths = _paths_from_column(frame, self.items_path.parent)
        return frame["item"].to_numpy(), image_paths

    def load(self) -> RatingsTable:
        catalog, image_paths = (None, {}) if self.items_path is None else self._read_catalog()
        ratings = self._read_ratings(self.path, catalog)
        if self.test_path is not None:
            test = self._read_ratings(self.test_path, catalog)
            ratings = pd.concat([ratings.assign(is_test=False), test.assign(is_test=True)], ignore_index=True)
        items = catalog if catalog is not None else pd.unique(ratings["item"].to_numpy())
        if "image" in ratings.columns:
            image_paths = _paths_from_column(ratings.drop_duplicates("item"), self.path.parent)
            ratings = ratings.drop(columns="image")
        if self.images_dir is not None:
            folder = _require_dir(self.images_dir, "images")
            image_paths = {i: folder / self.image_pattern.format(item=i) for i in items}
        users = pd.unique(ratings["user"].to_numpy())
        return RatingsTable(ratings, items=np.asarray(items), users=np.asarray(users), image_paths=image_paths, source=str(self.path), rating_range=self.rating_range)


def _paths_from_column(frame: pd.DataFrame, base: Path) -> dict:
    """item -> base / image path, for rows whose ``image`` cell is not empty."""
    return {item: base / path for item, path in zip(frame["item"], frame["image"]) if isinstance(path, str) and path}


def _check_csv_field_counts(path: Path, sep: str) -> None:
    """Raise naming the first CSV line whose field count differs from the header's (quoting honoured)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=sep)
        header = next(reader, None)
        if header is None:
            raise DataError(path, "file is empty")
        counts = np.fromiter((len(row) for row in reader), dtype=np.int64)
    bad = np.flatnonzero((counts != len(header)) & (counts != 0))
    if len(bad):
        row = int(bad[0])
        raise DataError(path, f"expected {len(header)} fields as in the header, found {counts[row]}", line=row + 2)
