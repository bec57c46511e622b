"""Raw ids as users type them: padded with spaces, of unsupported types in Parquet, in a file whose
encoding cannot be decoded, under a header that repeats a name, or one column named for two fields."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from visrec.data import DataError
from visrec.data.readers import RatingsFile


def _csv(tmp_path, text: str, name: str = "ratings.csv", encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_ids_padded_with_spaces_are_the_same_ids(tmp_path):
    path = _csv(tmp_path, "user,item,rating\n1,2,3.0\n1, 3, 4.0\n 1,2 ,5\n")
    table = RatingsFile(path, duplicates="mean").load()
    assert sorted(table.users) == ["1"] and sorted(table.items) == ["2", "3"]


def test_utf16_without_byte_order_mark_is_a_data_error(tmp_path):
    path = _csv(tmp_path, "user,item,rating\n1,2,3\n", encoding="utf-16-le")
    with pytest.raises(DataError, match=r"ratings\.csv: cannot decode as utf-16.*data\.source_args\.encoding"):
        RatingsFile(path, encoding="utf-16").load()


def test_a_header_that_repeats_a_column_name_is_refused(tmp_path):
    path = _csv(tmp_path, "user,item,rating,rating\n1,2,3,4\n")
    with pytest.raises(DataError, match=r"ratings\.csv, line 1, field 'rating': the header names column\(s\) \['rating'\] more than once"):
        RatingsFile(path).load()


def test_one_column_named_for_two_fields_is_refused(tmp_path):
    path = _csv(tmp_path, "user,item,rating\n1,2,3\n")
    with pytest.raises(DataError, match=r"data\.source_args\.user_col and data\.source_args\.item_col both name the column 'user'"):
        RatingsFile(path, item_col="user").load()


@pytest.mark.parametrize("ids, problem", [
    (np.array([0.5, 1.0]), "is not an integer"),
    (np.array([np.inf, 1.0]), "is not an integer"),
    (np.array([2**64 - 20, 1], dtype=np.uint64), "does not fit a 64-bit integer"),
    (pd.to_datetime(["2020-01-01", "2020-01-02"]), "not supported"),
    (np.array([True, False]), "not supported"),
])
def test_parquet_ids_must_be_integers_or_strings(tmp_path, ids, problem):
    path = tmp_path / "ratings.parquet"
    pd.DataFrame({"user": ids, "item": ["x", "y"], "rating": [3.0, 4.0]}).to_parquet(path)
    with pytest.raises(DataError, match=rf"ratings\.parquet, line \d, field 'user': .*{problem}"):
        RatingsFile(path).load()


def test_integral_float_ids_from_parquet_become_integers(tmp_path):
    path = tmp_path / "ratings.parquet"
    pd.DataFrame({"user": [1.0, 2.0], "item": [7, 8], "rating": [3.0, 4.0]}).to_parquet(path)
    table = RatingsFile(path).load()
    assert table.ratings["user"].dtype == np.int64 and sorted(table.users.tolist()) == [1, 2]
