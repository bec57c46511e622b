import numpy as np
import pandas as pd
import pytest

from visrec.data.idmap import IdMap


@pytest.mark.parametrize("raw", [np.array([30, 10, 20, 10]), np.array(["007", "b", "a", "007"], dtype=object)])
def test_round_trip_keeps_ids_and_dtype(tmp_path, raw):
    ids = IdMap.from_values(raw, name="item")
    assert len(ids) == 3
    assert list(ids.to_raw(ids.to_index(raw))) == list(raw)
    ids.save(tmp_path / "m.parquet")
    loaded = IdMap.load(tmp_path / "m.parquet")
    assert loaded == ids
    assert loaded.raw_ids.dtype == ids.raw_ids.dtype
    assert list(loaded.raw_ids) == sorted(set(raw))


def test_unknown_ids_are_named():
    ids = IdMap.from_values([1, 2, 3], name="user")
    with pytest.raises(KeyError, match=r"unknown user.*\[9\]"):
        ids.to_index([1, 9])
    assert list(ids.lookup([1, 9])) == [0, -1]


@pytest.mark.parametrize("raw", [[1, 1], [1, 2, 2, 3], [3, 1, 3], ["a", "a", "b"], ["b", "a", "b"], pd.Index(["a", "b", "b"], dtype="str")])
def test_duplicate_raw_ids_rejected(raw):
    with pytest.raises(ValueError, match="duplicate"):
        IdMap(raw)


def test_sorted_ids_are_accepted_without_hashing_and_keep_their_order():
    ids = pd.Index(["a", "b", "\u00e9", "\U0001f600"], dtype="str")
    assert list(IdMap(ids).raw_ids) == list(ids) and list(IdMap(np.array([1, 5, 9])).raw_ids) == [1, 5, 9]


def test_load_rejects_foreign_file(tmp_path):
    import pandas as pd

    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="not an IdMap"):
        IdMap.load(tmp_path / "x.parquet")


def test_ids_of_mixed_types_are_a_data_error_naming_both_types():
    from visrec.data import DataError

    with pytest.raises(DataError, match=r"user ids mix types: int \(e\.g\. 7\), str \(e\.g\. '7'\)"):
        IdMap.from_values(np.array([7, "7", 8], dtype=object), name="user")


def test_test_table_with_ids_of_another_type_names_both_files(tmp_path):
    import pandas as pd

    from visrec.data import DataError, RatingsFile

    pd.DataFrame({"user": [1, 2], "item": [10, 20], "rating": [4.0, 3.0]}).to_parquet(tmp_path / "r.parquet")
    (tmp_path / "test.csv").write_text("user,item,rating\n1,20,5\n")
    with pytest.raises(DataError, match=r"test\.csv, field 'user': user ids are string here but integer in .*r\.parquet"):
        RatingsFile(tmp_path / "r.parquet", test_path=tmp_path / "test.csv").load()
