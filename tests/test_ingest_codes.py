"""Ids become integer codes at once: the table a reader returns is in index space, raw ids live only in
its sorted catalogs, and every step on codes (cleaning, sorting, duplicates, conversions) gives what the
same step on raw values gives."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from visrec.data import DataError, RatingsFile
from visrec.data.coded import Part, compact, resolve_duplicates, unify
from visrec.data.columns import RawTable, id_codes, timestamps
from visrec.data.csv_files import RowLines
from visrec.data.table import RatingsTable, parse_int64


def raw_table(**columns) -> RawTable:
    arrays = {name: pa.chunked_array([pa.array(values)]) for name, values in columns.items()}
    n = len(next(iter(columns.values())))
    return RawTable("f.csv", arrays, {name: name for name in columns}, n, RowLines(offset=2), set(columns),
                    lambda name: arrays[name].to_pandas())


def test_the_table_is_in_index_space_and_raw_ids_are_only_in_the_sorted_catalogs(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\nzed,b,4\n ann,a,3\nzed ,c,5\nbob,a,1\n")
    table = RatingsFile(path).load()
    assert table.indexed["user"].dtype.kind == "i" and table.indexed["item"].dtype.kind == "i"
    assert list(table.users) == ["ann", "bob", "zed"] and list(table.items) == ["a", "b", "c"]  # sorted, cleaned
    assert table.indexed["user"].tolist() == [2, 0, 2, 1]
    assert table.ratings["user"].tolist() == ["zed", "ann", "zed", "bob"]  # raw ids, on demand, in file order


def test_from_raw_sorts_catalogs_as_idmap_does():
    ratings = pd.DataFrame({"user": [30, 10], "item": ["b", "a"], "rating": np.float32([1, 2])})
    table = RatingsTable.from_raw(ratings, items=np.array(["c", "b", "a"], dtype=object), users=np.array([20, 10, 30]))
    assert list(table.users) == [10, 20, 30] and list(table.items) == ["a", "b", "c"]
    assert table.indexed[["user", "item"]].values.tolist() == [[2, 1], [0, 0]]
    assert table.ratings["user"].tolist() == [30, 10]


@pytest.mark.parametrize("seed", range(3))
def test_unify_sorts_like_np_sort_and_maps_every_set(seed):
    rng = np.random.default_rng(seed)
    alphabet = list("aAzZ09 _-é日本😀\u00a0ß")
    words = {"".join(rng.choice(alphabet, rng.integers(0, 6))) for _ in range(300)}
    words = np.array(sorted(words, key=lambda w: rng.random()), dtype=object)
    sets = [pd.Index(words[:200]), pd.Index(words[150:])]
    ids, positions = unify(sets)
    assert list(ids) == list(np.sort(words))
    for ids_of_set, pos in zip(sets, positions):
        assert list(ids[pos]) == list(ids_of_set)
    numbers = [pd.Index(rng.permutation(50)[:30]), pd.Index(rng.permutation(50)[:30])]
    ids, positions = unify(numbers, catalog=pd.Index(rng.permutation(60)))
    assert list(ids) == list(range(60)) and all(list(ids[p]) == list(s) for s, p in zip(numbers, positions))


def test_id_codes_merge_ids_that_differ_only_by_surrounding_spaces_and_mark_missing_ones():
    codes = id_codes(raw_table(user=[" 7", "7", None, "8 ", "   ", "7"]), "user")
    assert list(codes.ids[codes.codes[[0, 1, 3, 5]]]) == ["7", "7", "8", "7"]
    assert codes.missing().tolist() == [False, False, True, False, True, False]
    assert codes.first_repeat() == 1


@pytest.mark.parametrize("text", ["17", "-5", "007", " 5", "5 ", "+5", "0x1F", "0X1f", "17.0", "1e3", "",
                                  "9223372036854775807", "-9223372036854775808", "9223372036854775808", "1-2", "-"])
def test_timestamps_from_text_are_what_parse_int64_makes_of_them(text):
    values = ["100", text, "200"]
    fast = timestamps(raw_table(timestamp=values))
    exact = parse_int64(pd.Series(values, dtype="str").replace("", np.nan))
    for got, want in zip(fast, exact):
        assert got.tolist() == want.tolist(), text


def test_compact_moves_the_kept_rows_to_the_front_in_place():
    rng = np.random.default_rng(0)
    columns = {"a": rng.integers(0, 9, 3_000_000), "b": rng.random(3_000_000).astype(np.float32)}
    keep = rng.random(3_000_000) < 0.7
    expected = {name: values[keep] for name, values in columns.items()}
    address = columns["a"].__array_interface__["data"][0]
    out = compact(columns, keep)
    assert all(np.array_equal(out[name], expected[name]) for name in columns)
    assert out["a"].__array_interface__["data"][0] == address  # no new array


def reference_duplicates(frame: pd.DataFrame, policy: str) -> pd.DataFrame:
    """The earlier implementation, on raw values (pandas, two passes)."""
    if policy == "last":
        return frame.drop_duplicates(["user", "item"], keep="last").reset_index(drop=True)
    agg = {"rating": "mean", "timestamp": "max", "image": "last"}
    merged = frame.groupby(["user", "item"], sort=False, as_index=False).agg(agg)
    merged["rating"] = merged["rating"].astype(np.float32)
    return merged[frame.columns]


@pytest.mark.parametrize("policy", ["last", "mean"])
def test_duplicates_resolve_as_before(policy, caplog):
    rng = np.random.default_rng(1)
    n = 5000
    frame = pd.DataFrame({"user": rng.integers(0, 40, n), "item": rng.integers(0, 60, n), "rating": rng.integers(1, 6, n).astype(np.float32),
                          "timestamp": rng.integers(0, 10**6, n), "image": pd.array(rng.choice(["a.jpg", "b.jpg", None], n), dtype="str")})
    part = Part({name: frame[name].to_numpy() if name != "image" else frame[name].array.copy() for name in frame.columns},
                pd.Index(range(40)), pd.Index(range(60)), "f.csv", RowLines(offset=2))
    part.columns["user"] = part.columns["user"].copy()
    with caplog.at_level(logging.WARNING):
        out = resolve_duplicates(part, policy, key="data.source_args.duplicates")
    expected = reference_duplicates(frame, policy)
    got = part.frame() if out is part else out.frame()
    for name in frame.columns:
        assert got[name].tolist() == expected[name].tolist() or (name == "image" and
                                                                   got[name].fillna("-").tolist() == expected[name].fillna("-").tolist()), name
    assert f"{n - len(expected)} repeated (user, item) row(s)" in caplog.text


def test_duplicate_error_names_both_lines_after_earlier_drops_and_merges(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + "".join(f"u{k},i{k},3\n" for k in range(5)) + "u2,i2,4\n")
    with pytest.raises(DataError, match=r"r\.csv, line 7: duplicate \(user, item\) pair \('u2', 'i2'\), first on line 4; 1 repeated"):
        RatingsFile(path, duplicates="error").load()


def test_the_user_column_error_comes_first_though_columns_convert_in_parallel(tmp_path):
    path = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1.5, 2.0], "item": [0.5, 1.0], "rating": [3.0, 4.0]}).to_parquet(path)
    with pytest.raises(DataError, match=r"field 'user': id 1\.5 is not an integer"):
        RatingsFile(path).load()


@pytest.mark.parametrize("make, shown", [
    (lambda: pd.DataFrame({"user": pd.array([1, None], dtype="Int64"), "item": [1, 2], "rating": [3.0, 4.0]}), "<NA>"),
    (lambda: pd.DataFrame({"user": [1, 2], "item": pd.Series([None, None], dtype=object), "rating": [3.0, 4.0]}), "None"),
    (lambda: pd.DataFrame({"user": ["a", None], "item": [1, 2], "rating": [3.0, 4.0]}), "nan"),
])
def test_parquet_missing_ids_show_what_pandas_holds(tmp_path, make, shown):
    """Columns pandas reads with its own dtype (nullable integers, all-null objects) take pandas' path."""
    path = tmp_path / "r.parquet"
    make().to_parquet(path)
    with pytest.raises(DataError, match=rf"missing id \(value {shown}; \d such row"):
        RatingsFile(path).load()


def test_parquet_column_kept_as_the_pandas_index_is_missing_as_before(tmp_path):
    path = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [3.0, 4.0]}).set_index("user").to_parquet(path)
    with pytest.raises(DataError, match=r"missing column\(s\) \['user'\]; the file has \['item', 'rating'\]"):
        RatingsFile(path).load()


@pytest.mark.parametrize("policy, train_line", [("last", 5), ("mean", 5)])
def test_lines_after_duplicates_are_dropped_or_merged_are_still_the_files(tmp_path, policy, train_line):
    """The training table loses (or merges) a repeated pair before the test table is compared with it:
    the shared pair is still named at its lines in both files (for a merged pair, its last row)."""
    ratings, test = tmp_path / "r.csv", tmp_path / "t.csv"
    ratings.write_text("user,item,rating\nu1,i1,4\nu2,i2,3\nu1,i1,5\nu3,i3,2\n")
    test.write_text("user,item,rating\nu9,i9,1\nu3,i3,4\n")
    with pytest.raises(DataError, match=rf"t\.csv, line 3: \(user, item\) pair \('u3', 'i3'\) is also in the training table .*r\.csv, "
                                        rf"line {train_line} \(1 test pair"):
        RatingsFile(ratings, test_path=test, duplicates=policy).load()
    ratings.write_text("user,item,rating\nu1,i1,4\nu3,i3,2\nu1,i1,5\n")
    with pytest.raises(DataError, match=r"r\.csv, line 3 \(1 test pair"):
        RatingsFile(ratings, test_path=test, duplicates=policy).load()
