"""Impossible or degenerate set-ups are refused when the datamodule is made or set up (before any
training), naming the option, or the files, lines, raw ids and counts."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from visrec.data import (
    DataError, MovieLens100K, PerUserSplit, PredefinedSplit, RandomSplit, RatingsDataModule, RatingsFile, TemporalSplit,
)


def table(tmp_path: Path, rows, name: str = "ratings.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(rows, columns=["user", "item", "rating", "ts"]).to_csv(path, index=False)
    return path


def dense(num_users: int = 10, num_items: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(f"u{u}", f"i{i}", int(rng.integers(1, 6)), 1000 + u * num_items + i) for u in range(num_users) for i in range(num_items)]


# ---- the same (user, item) pair in the ratings table and the test table --------------------------
def test_pair_in_ratings_and_test_tables_is_refused_at_load_naming_both_files_lines_and_raw_ids(tmp_path):
    ratings = dense()
    ratings_path = table(tmp_path, ratings)
    (tmp_path / "ratings.csv").write_text((tmp_path / "ratings.csv").read_text().replace("\n", "\n\n", 1))  # blank line 2
    test_rows = [("u1", "x1", 3, 5000), ("u2", "x2", 3, 5001), ("u0", "i1", 1, 5002)]  # u0,i1 is data row 2 -> line 4
    test_path = table(tmp_path, test_rows, "test.csv")
    source = RatingsFile(ratings_path, timestamp_col="ts", test_path=test_path)
    with pytest.raises(DataError) as err:
        source.load()
    message = str(err.value)
    assert err.value.file == str(test_path) and err.value.line == 4
    assert "ratings.csv, line 4" in message and "('u0', 'i1')" in message
    dm = RatingsDataModule(source, PredefinedSplit())
    with pytest.raises(DataError, match="test.csv, line 4"):
        dm.setup()  # set-up, not training, is where it stops


def test_movielens_fold_files_sharing_a_pair_are_refused(tmp_path):
    root = tmp_path / "ml"
    root.mkdir()
    (root / "u.item").write_bytes(b"".join(b"%d|Film|01-Jan-1995||url" % i + b"|0" * 19 + b"\n" for i in range(1, 4)))
    (root / "u.user").write_text("1|24|M|x|1\n2|53|F|y|2\n")
    (root / "u1.base").write_text("1\t1\t5\t10\n1\t2\t3\t11\n2\t1\t4\t12\n")
    (root / "u1.test").write_text("2\t3\t2\t13\n1\t2\t2\t13\n")
    with pytest.raises(DataError, match=r"u1\.test, line 2: \(user, item\) pair \(1, 2\) is also in the training table .*u1\.base, line 2"):
        MovieLens100K(root, fold=1, images=None).load()


# ---- datamodule options ---------------------------------------------------------------------------
@pytest.mark.parametrize("option, value, key", [
    ("batch_size", 0, "data.batch_size"), ("batch_size", -5, "data.batch_size"), ("batch_size", 2.5, "data.batch_size"),
    ("batch_size", "big", "data.batch_size"), ("eval_batch_size", 0, "data.eval_batch_size"),
    ("num_workers", -1, "data.num_workers"), ("min_user_ratings", -2, "data.min_user_ratings"),
    ("min_item_ratings", 1.5, "data.min_item_ratings"),
    ("val_ratio", 1.5, "data.val_ratio"), ("val_ratio", 1, "data.val_ratio"), ("val_ratio", -0.1, "data.val_ratio"),
    ("val_ratio", float("nan"), "data.val_ratio"), ("val_ratio", "x", "data.val_ratio"),
])
def test_invalid_datamodule_options_name_the_key(tmp_path, option, value, key):
    with pytest.raises(DataError, match=rf"{key.replace('.', '[.]')} must be"):
        RatingsDataModule(RatingsFile(tmp_path / "r.csv"), RandomSplit(0.2), **{option: value})


def test_valid_edge_options_are_accepted(tmp_path):
    dm = RatingsDataModule(RatingsFile(tmp_path / "r.csv"), RandomSplit(0.2), val_ratio=0, batch_size=1, num_workers=0)
    assert dm.val_ratio == 0 and dm.batch_size == 1


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.1, float("nan")])
def test_split_ratio_names_its_key(ratio):
    with pytest.raises(DataError, match=r"data\.split\.test_ratio must be"):
        RandomSplit(ratio)


def test_reader_options_are_checked_when_made(tmp_path):
    with pytest.raises(DataError, match=r"data\.source_args\.duplicates must be one of last, mean, error"):
        RatingsFile(tmp_path / "r.csv", duplicates="first")
    with pytest.raises(DataError, match=r"data\.duplicates must be one of"):
        MovieLens100K(tmp_path, duplicates="first")
    with pytest.raises(DataError, match=r"data\.fold must be one of"):
        MovieLens100K(tmp_path, fold=9)


# ---- validation parts that cannot validate ------------------------------------------------------
def test_empty_validation_part_is_refused_at_setup_with_counts_and_remedies(tmp_path):
    path = table(tmp_path, [("u", f"i{i}", 1 + i % 5, i) for i in range(12)])
    dm = RatingsDataModule(RatingsFile(path), RandomSplit(0.2), val_ratio=0.05)
    with pytest.raises(DataError) as err:
        dm.setup()
    message = str(err.value)
    assert "validation set is empty" in message and "data.val_ratio=0.05 of 10 training ratings rounds to 0" in message
    # All it takes to train without validation, with the key that only biased MF has marked as such.
    assert "data.val_ratio=0 callbacks=none (and model.scheduler=null with model=biased_mf" in message
    dm = RatingsDataModule(RatingsFile(path), RandomSplit(0.2), val_ratio=0)  # validation off: fine
    dm.setup()
    assert len(dm.tensors["val"]) == 0 and len(dm.tensors["train"]) == 10


def test_per_user_validation_that_takes_nothing_is_refused(tmp_path):
    rows = [(f"u{u}", f"i{i}", 3, u * 10 + i) for u in range(6) for i in range(6)]  # 6 ratings per user
    dm = RatingsDataModule(RatingsFile(table(tmp_path, rows)), PerUserSplit(0.2), val_ratio=0.1)  # floor(0.1 * 5) = 0
    with pytest.raises(DataError, match="validation set is empty"):
        dm.setup()


def test_validation_with_no_warm_rating_is_refused_at_setup(tmp_path):
    # 30 users who each rate in one session: the latest validation window holds only a user with no train ratings.
    rows, t = [], 0
    for u in range(30):
        for i in range(10):
            rows.append((f"u{u}", f"i{i}", 1 + (u + i) % 5, t))
            t += 1
    dm = RatingsDataModule(RatingsFile(table(tmp_path, rows), timestamp_col="ts"), TemporalSplit(0.2), val_ratio=0.04)
    with pytest.raises(DataError) as err:
        dm.setup()
    message = str(err.value)
    assert "no validation rating is warm: 0 of 10 validation ratings" in message
    assert "data.val_ratio" in message and "data/split" in message and "callbacks=none" in message


def test_val_ratio_that_leaves_no_training_rating_blames_val_ratio(tmp_path):
    path = table(tmp_path, [("u", f"i{i}", 3, i) for i in range(3)])
    dm = RatingsDataModule(RatingsFile(path), RandomSplit(0.34), val_ratio=0.9)  # 1 test, 2 train; round(1.8) = 2
    with pytest.raises(DataError, match=r"data\.val_ratio=0\.9 leaves no training ratings"):
        dm.setup()


def test_split_needs_are_named_with_the_key_of_the_source_in_use(tmp_path):
    path = table(tmp_path, dense())
    with pytest.raises(DataError, match=r"data/split=temporal needs a timestamp column.*set data\.source_args\.timestamp_col="):
        RatingsDataModule(RatingsFile(path), TemporalSplit(0.2)).setup()
    with pytest.raises(DataError, match=r"data/split=predefined needs a source with a predefined test set.*data\.source_args\.test_path="):
        RatingsDataModule(RatingsFile(path), PredefinedSplit()).setup()


def test_setup_logs_warm_counts_and_filter_drops(tmp_path, caplog):
    rows = dense(10, 8) + [("lonely", "i0", 3, 1), ("u0", "rare", 4, 2)]
    dm = RatingsDataModule(RatingsFile(table(tmp_path, rows)), RandomSplit(0.2), val_ratio=0.1, min_user_ratings=2, min_item_ratings=2)
    with caplog.at_level(logging.INFO, logger="visrec.data.datamodule"):
        dm.setup()
    text = caplog.text
    assert "data.min_user_ratings=2 dropped 1 rating(s) of 1 user(s)" in text
    assert "data.min_item_ratings=2 dropped 1 rating(s) of 1 item(s)" in text
    assert "80 of 82 ratings kept" in text
    val, test = len(dm.tensors["val"]), len(dm.tensors["test"])
    assert f"warm (user and item with training ratings): val {dm.warm_count('val')} of {val}, test {dm.warm_count('test')} of {test}" in text


def test_filters_that_empty_the_data_name_their_counts(tmp_path):
    dm = RatingsDataModule(RatingsFile(table(tmp_path, dense(3, 3))), RandomSplit(0.2), min_user_ratings=10)
    with pytest.raises(DataError, match=r"no ratings left after filtering \(data\.min_user_ratings=10 dropped 9 rating\(s\) of 3 user\(s\); 9 before\)"):
        dm.setup()


def test_the_remedy_for_no_validation_trains(tmp_path):
    """What the validation messages suggest, as written, trains and tests (the last epoch)."""
    from visrec.pipeline.training import train

    from conftest import compose_train

    path = table(tmp_path, [("u", f"i{i}", 1 + i % 5, i) for i in range(12)])
    metrics = train(compose_train(["data=ratings_table", f"data.path={path}", "data.val_ratio=0", "callbacks=none",
                                   "model.scheduler=null", "model.visual_mode=none", "trainer.max_epochs=2", "evaluate=false"], tmp_path))
    assert metrics["epochs"] == 2 and metrics["test/ratings_cold"] == 2


def test_no_warm_test_rating_warns_unless_the_split_is_cold_by_design(tmp_path, caplog):
    import logging

    from visrec.data.datamodule import RatingsDataModule
    from visrec.data.readers import RatingsFile
    from visrec.data.splits import ColdItemSplit, PredefinedSplit

    ratings, test = tmp_path / "ratings.csv", tmp_path / "test.csv"
    ratings.write_text("user,item,rating\n" + "".join(f"u{u},i{i},{1 + (u + i) % 5}\n" for u in range(8) for i in range(6)))
    test.write_text("user,item,rating\nnew,i0,4\nnew,i1,3\n")  # only a user with no training ratings
    with caplog.at_level(logging.WARNING, logger="visrec.data.datamodule"):
        RatingsDataModule(RatingsFile(ratings, test_path=test), PredefinedSplit(), val_ratio=0.2).setup()
    assert "no test rating is warm" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="visrec.data.datamodule"):
        RatingsDataModule(RatingsFile(ratings), ColdItemSplit(0.34, seed=0, warm_test_ratio=0), val_ratio=0.2).setup()
    assert "no test rating is warm" not in caplog.text
    caplog.clear()  # a warm part too small to take a rating (floor(0.1 * 4) = 0 per user): warned, naming the key
    with caplog.at_level(logging.WARNING, logger="visrec.data.datamodule"):
        RatingsDataModule(RatingsFile(ratings), ColdItemSplit(0.34, seed=0, warm_test_ratio=0.1), val_ratio=0.2).setup()
    assert "no test rating is warm" in caplog.text and "data.split.warm_test_ratio" in caplog.text
