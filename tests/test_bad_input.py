"""Every kind of bad input gets a DataError naming the file, the line and the field."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from visrec.data import DataError, MovieLens100K, PredefinedSplit, RatingsDataModule, RatingsFile, RandomSplit

GOOD = "user,item,rating,ts\nu1,i1,4,100\nu1,i2,3,101\nu2,i1,5,102\nu2,i3,1,103\n"


def write(tmp_path: Path, text: str, name: str = "r.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path, **kw):
    args = {"timestamp_col": "ts", "rating_min": 1, "rating_max": 5} | kw
    return RatingsFile(path, **args).load()


def test_good_file_loads(tmp_path):
    table = load(write(tmp_path, GOOD))
    assert len(table.ratings) == 4
    assert list(table.ratings.columns) == ["user", "item", "rating", "timestamp"]
    assert table.ratings["user"].iloc[0] == "u1"


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load(tmp_path / "nope.csv")


def test_missing_folder():
    with pytest.raises(DataError, match="MovieLens-100K folder not found"):
        MovieLens100K("/definitely/not/here").load()


def test_misnamed_column(tmp_path):
    path = write(tmp_path, GOOD.replace("rating", "score"))
    with pytest.raises(DataError, match=r"r\.csv, field 'rating': missing column\(s\) \['rating'\]"):
        load(path)


def test_configurable_column_names(tmp_path):
    path = write(tmp_path, GOOD.replace("rating", "score"))
    assert len(load(path, rating_col="score").ratings) == 4


@pytest.mark.parametrize("line, expect", [("u3,i1,4,104,extra", "found 5"), ("u3,i1,4", "found 3")])
def test_wrong_number_of_fields(tmp_path, line, expect):
    path = write(tmp_path, GOOD + line + "\n")
    with pytest.raises(DataError, match=rf"r\.csv, line 6: expected 4 fields as in the header, {expect}"):
        load(path)


@pytest.mark.parametrize("value", ["abc", "NaN", ""])
def test_non_numeric_or_nan_rating(tmp_path, value):
    path = write(tmp_path, GOOD.replace("u1,i2,3,", f"u1,i2,{value},"))
    with pytest.raises(DataError, match=r"r\.csv, line 3, field 'rating': rating is not a number"):
        load(path)


@pytest.mark.parametrize("old, new, expect", [
    ("u2,i3,1,", "u2,i3,7,", r"line 5, field 'rating': rating outside the configured range \[1.0, 5.0\]"),
    ("u2,i3,", ",i3,", r"line 5, field 'user': missing id"),
    (",103", ",yesterday", r"line 5, field 'ts': timestamp is not an integer or an ISO 8601 date-time"),  # the file's column
])
def test_bad_value_names_line_and_field(tmp_path, old, new, expect):
    with pytest.raises(DataError, match=r"r\.csv, " + expect):
        load(write(tmp_path, GOOD.replace(old, new)))


def test_duplicates_policies(tmp_path):
    path = write(tmp_path, GOOD + "u1,i1,2,200\n")
    with pytest.raises(DataError, match=r"line 6: duplicate \(user, item\) pair \('u1', 'i1'\)"):
        load(path, duplicates="error")
    last = load(path, duplicates="last").ratings
    assert len(last) == 4 and last.query("user == 'u1' and item == 'i1'")["rating"].item() == 2
    mean = load(path, duplicates="mean").ratings
    row = mean.query("user == 'u1' and item == 'i1'")
    assert row["rating"].item() == 3 and row["timestamp"].item() == 200


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match="no ratings in file"):
        load(write(tmp_path, "user,item,rating,ts\n"))


def test_empty_after_filtering(tmp_path):
    dm = RatingsDataModule(RatingsFile(write(tmp_path, GOOD)), RandomSplit(0.5), min_user_ratings=10)
    with pytest.raises(DataError, match="no ratings left after filtering"):
        dm.setup()


def test_predefined_split_without_test_set(tmp_path):
    dm = RatingsDataModule(RatingsFile(write(tmp_path, GOOD)), PredefinedSplit())
    with pytest.raises(DataError, match="split=predefined needs a source with a predefined test set"):
        dm.setup()


def test_test_file_with_item_absent_from_catalog(tmp_path):
    items = write(tmp_path, "item\ni1\ni2\ni3\n", "items.csv")
    test = write(tmp_path, "user,item,rating,ts\nu1,i3,4,1\nu2,i9,4,2\n", "test.csv")
    with pytest.raises(DataError, match=r"test\.csv, line 3, field 'item': item id 'i9' is not in the catalog"):
        load(write(tmp_path, GOOD), items_path=items, test_path=test)


def test_parquet_reads_and_keeps_dtypes(tmp_path):
    frame = pd.DataFrame({"user": [1, 1, 2], "item": [10, 20, 10], "rating": [4.0, 3.5, 2.0]})
    frame.to_parquet(tmp_path / "r.parquet")
    table = RatingsFile(tmp_path / "r.parquet").load()
    assert table.ratings["user"].dtype.kind == "i"
    frame.assign(rating=[4.0, None, 2.0]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad\.parquet, line 2, field 'rating'"):
        RatingsFile(tmp_path / "bad.parquet").load()


# ---- MovieLens-shaped files ---------------------------------------------------------------------
@pytest.fixture
def fake_ml(tmp_path) -> Path:
    """A five-line MovieLens-100K lookalike with every file the reader needs."""
    root = tmp_path / "ml"
    root.mkdir()
    (root / "u.item").write_bytes("\n".join(f"{i}|Caf\xe9 {i}|01-Jan-1995||url" + "|0" * 19 for i in range(1, 4)).encode("latin-1") + b"\n")
    (root / "u.user").write_text("1|24|M|x|1\n2|53|F|y|2\n")
    (root / "u1.base").write_text("1\t1\t5\t10\n1\t2\t3\t11\n2\t1\t4\t12\n")
    (root / "u1.test").write_text("2\t3\t2\t13\n")
    (root / "posters").mkdir()
    return root


def test_fake_movielens_loads(fake_ml):
    table = MovieLens100K(fake_ml, fold=1).load()
    assert len(table.ratings) == 4 and table.ratings["is_test"].sum() == 1
    assert list(table.items) == [1, 2, 3]
    assert table.image_paths[3] == fake_ml / "posters" / "3.jpg"


def test_fold_file_with_unknown_item(fake_ml):
    (fake_ml / "u1.test").write_text("2\t3\t2\t13\n2\t99\t2\t14\n")
    with pytest.raises(DataError, match=r"u1\.test, line 2, field 'item': item id 99 is not in the catalog u\.item"):
        MovieLens100K(fake_ml, fold=1).load()


def test_fold_file_with_wrong_field_count(fake_ml):
    (fake_ml / "u1.base").write_text("1\t1\t5\t10\n1\t2\t3\n")
    with pytest.raises(DataError, match=r"u1\.base, line 2: expected 4 fields"):
        MovieLens100K(fake_ml, fold=1).load()


def test_missing_fold_file(fake_ml):
    (fake_ml / "u1.test").unlink()
    with pytest.raises(DataError, match=r"u1\.test: file not found"):
        MovieLens100K(fake_ml, fold=1).load()


def test_unknown_fold():
    with pytest.raises(ValueError, match="data.fold must be one of"):
        MovieLens100K("x", fold=9)
