"""Numbers that would poison training or wrap around silently: non-finite or huge ratings, ids and
timestamps beyond int64. Each is a DataError naming the file, the line and the field."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from visrec.data import DataError, MovieLens100K, RatingsFile

HEADER = "user,item,rating,ts\n"
BODY = "".join(f"u{i % 5},i{i},{1 + i % 5},{1000 + i}\n" for i in range(12))


def write(tmp_path: Path, text: str, name: str = "r.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e400", "-1e400", "1e38", "3.5e6", "nan", "NaN"])
@pytest.mark.parametrize("rating_range", [None, (1, 5)])
def test_non_finite_or_overflowing_ratings_are_refused_with_or_without_a_range(tmp_path, value, rating_range):
    lines = (HEADER + BODY).splitlines(keepends=True)
    lines.insert(5, "\n")  # a blank line before it: the line is still the editor's
    lines.insert(9, f"u1,i99,{value},7\n")  # line 10
    path = write(tmp_path, "".join(lines))
    kw = {} if rating_range is None else {"rating_min": rating_range[0], "rating_max": rating_range[1]}
    with pytest.raises(DataError) as err:
        RatingsFile(path, timestamp_col="ts", **kw).load()
    assert (err.value.line, err.value.field) == (10, "rating"), str(err.value)
    assert str(err.value).startswith(f"{path}, line 10, field 'rating': rating ")


def test_the_rating_bound_is_documented_and_reasonable(tmp_path):
    from visrec.data.table import MAX_ABS_RATING

    assert MAX_ABS_RATING == 1e6
    path = write(tmp_path, HEADER + BODY + f"u1,i99,{-MAX_ABS_RATING},7\nu1,i98,1e-30,7\n")
    ratings = RatingsFile(path).load().ratings["rating"]
    assert ratings.min() == -MAX_ABS_RATING and np.isfinite(ratings.to_numpy() ** 2).all()


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan, 1e38])
def test_parquet_non_finite_rating(tmp_path, value):
    frame = pd.DataFrame({"user": [1, 1, 2], "item": [10, 20, 10], "rating": [4.0, value, 2.0]})
    frame.to_parquet(tmp_path / "r.parquet")
    with pytest.raises(DataError, match=r"r\.parquet, line 2, field 'rating'"):
        RatingsFile(tmp_path / "r.parquet").load()


@pytest.mark.parametrize("lo, hi", [(1, float("inf")), (float("-inf"), 5), (5, 1), (3, 3), (0, 1e7), ("a", 5)])
def test_rating_range_must_be_finite_and_ordered(tmp_path, lo, hi):
    with pytest.raises(DataError, match=r"data\.source_args\.rating_min"):
        RatingsFile(tmp_path / "r.csv", rating_min=lo, rating_max=hi)


@pytest.mark.parametrize("stamp", [str(2 ** 70), str(-(2 ** 64)), "9223372036854775808", "1e30", "9007199254740993.0"])
def test_timestamps_beyond_int64_never_wrap(tmp_path, stamp):
    path = write(tmp_path, HEADER + BODY[:40] + f"u1,i99,3,{stamp}\n")
    line = 2 + BODY[:40].count("\n")
    with pytest.raises(DataError) as err:
        RatingsFile(path, timestamp_col="ts").load()
    assert (err.value.line, err.value.field) == (line, "ts") and "64-bit" in str(err.value)  # the file's column


def test_large_timestamps_that_fit_are_exact(tmp_path):
    big = 2 ** 62 + 1  # not representable as a float64: must not go through one
    path = write(tmp_path, HEADER + f"u1,i1,3,{big}\nu1,i2,3,-{big}\nu2,i1,4,17.0\n")
    stamps = RatingsFile(path, timestamp_col="ts").load().ratings["timestamp"]
    assert stamps.tolist() == [big, -big, 17] and stamps.dtype == np.int64


def test_csv_ids_beyond_int64_are_kept_as_strings(tmp_path):
    huge = str(2 ** 70)
    path = write(tmp_path, HEADER + f"{huge},i1,3,1\n{huge}1,i1,4,2\n")
    users = RatingsFile(path).load().ratings["user"]
    assert users.tolist() == [huge, huge + "1"]  # distinct, unchanged


@pytest.fixture
def fake_ml(tmp_path) -> Path:
    root = tmp_path / "ml"
    root.mkdir()
    (root / "u.item").write_bytes("\n".join(f"{i}|Film {i}|01-Jan-1995||url" + "|0" * 19 for i in range(1, 4)).encode("latin-1") + b"\n")
    (root / "u.user").write_text("1|24|M|x|1\n2|53|F|y|2\n")
    (root / "u1.base").write_text("1\t1\t5\t10\n1\t2\t3\t11\n2\t1\t4\t12\n")
    (root / "u1.test").write_text("2\t3\t2\t13\n")
    return root


@pytest.mark.parametrize("user", [str(2 ** 70), str(2 ** 64 + 1), "18446744073709551617"])
def test_movielens_integer_ids_beyond_int64_never_wrap(fake_ml, user):
    (fake_ml / "u1.base").write_text(f"1\t1\t5\t10\n{user}\t2\t3\t11\n")
    with pytest.raises(DataError, match=r"u1\.base, line 2, field 'user': id does not fit a 64-bit integer"):
        MovieLens100K(fake_ml, fold=1, images=None).load()


def test_movielens_catalog_id_beyond_int64(fake_ml):
    (fake_ml / "u.user").write_text(f"1|24|M|x|1\n{2 ** 70}|53|F|y|2\n")
    with pytest.raises(DataError, match=r"u\.user, line 2, field 'user id': user id is not a 64-bit integer"):
        MovieLens100K(fake_ml, fold=1, images=None).load()


def test_movielens_latin1_fold_file_names_byte_and_line(fake_ml):
    (fake_ml / "u1.test").write_bytes(b"2\t3\t2\t13\n2\t\xe9\t2\t13\n")
    with pytest.raises(DataError, match=r"u1\.test, line 2: cannot decode as utf-8 at byte 11 \(0xe9\)"):
        MovieLens100K(fake_ml, fold=1, images=None).load()
