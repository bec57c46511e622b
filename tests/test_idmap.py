import numpy as np
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


def test_duplicate_raw_ids_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        IdMap([1, 1])


def test_load_rejects_foreign_file(tmp_path):
    import pandas as pd

    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="not an IdMap"):
        IdMap.load(tmp_path / "x.parquet")
