"""Research split protocols with known answers: per-user temporal (ratio and leave-last-n-out), the cold-item
split's warm test part, and the split counts that set-up prints, logs and refuses on."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from visrec.data import ColdItemSplit, DataError, KFoldSplit, PerUserTemporalSplit, RatingsDataModule, RatingsFile

from conftest import compose_train


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


# ---- per_user_temporal: known answers --------------------------------------------------------------
# user 0: five ratings (times 5, 1, 5, 3, 2: rows 0 and 2 tie at 5); user 1: one rating; user 2: two tied ratings.
HAND = frame([(0, 0, 5), (0, 1, 1), (0, 2, 5), (0, 3, 3), (1, 0, 9), (0, 4, 2), (2, 1, 7), (2, 2, 7)])


def test_ratio_takes_each_users_latest_floor_share_with_ties_by_row_order():
    mask = PerUserTemporalSplit(test_ratio=0.5).test_mask(HAND)
    # user 0: floor(2.5) = 2 latest = the tied rows 0 and 2; user 1 (1 rating) keeps it; user 2: floor(1) = 1, the later row 7.
    assert mask.tolist() == [True, False, True, False, False, False, False, True]
    mask = PerUserTemporalSplit(test_ratio=0.25).test_mask(HAND)  # user 0: floor(1.25) = 1: of the tie at 5, the later row
    assert np.flatnonzero(mask).tolist() == [2]


def test_leave_last_n_keeps_one_training_rating_per_user():
    assert np.flatnonzero(PerUserTemporalSplit(leave_last_n=1).test_mask(HAND)).tolist() == [2, 7]
    # n = 3: user 0 gives its 3 latest (rows 2, 0, then time 3: row 3); user 2 only min(3, 2 - 1) = 1; user 1 none.
    assert np.flatnonzero(PerUserTemporalSplit(leave_last_n=3).test_mask(HAND)).tolist() == [0, 2, 3, 7]


def test_row_order_of_users_does_not_matter_beyond_ties():
    shuffled = HAND.iloc[[6, 4, 0, 5, 1, 7, 3, 2]].reset_index(drop=True)  # keeps row 6 before 7 and 0 before 2
    mask = PerUserTemporalSplit(test_ratio=0.5).test_mask(shuffled)
    held = set(map(tuple, shuffled[mask][["user", "item"]].to_numpy().tolist()))
    assert held == {(0, 0), (0, 2), (2, 2)}


def test_validation_is_each_users_latest_of_what_remains():
    split = PerUserTemporalSplit(leave_last_n=1)
    train = HAND[~split.test_mask(HAND)].reset_index(drop=True)  # user 0: times 5 (row 0), 1, 3, 2; user 1; user 2: row 6
    assert train["item"][split.validation_mask(train, 0.05, seed=0)].tolist() == [0]  # user 0's latest; 1-rating users keep theirs
    wide = PerUserTemporalSplit(leave_last_n=1, val_last_n=2)
    assert sorted(train["item"][wide.validation_mask(train, 0.05, seed=0)].tolist()) == [0, 3]
    by_ratio = PerUserTemporalSplit(test_ratio=0.2)  # validation share = data.val_ratio, per user, latest
    assert train["item"][by_ratio.validation_mask(train, 0.5, seed=0)].tolist() == [0, 3]


def test_random_frame_every_users_test_is_later_than_their_training():
    rng = np.random.default_rng(1)
    ratings = frame(np.c_[rng.integers(0, 40, 3000), rng.integers(0, 200, 3000), rng.integers(0, 50, 3000)])
    mask = PerUserTemporalSplit(test_ratio=0.3).test_mask(ratings)
    parts = ratings.assign(test=mask).groupby("user")
    agg = parts["test"].agg(["sum", "size"])
    assert (agg["sum"] == np.floor(0.3 * agg["size"])).all() and (agg["sum"] < agg["size"]).all()
    test_min = ratings[mask].groupby("user")["timestamp"].min()
    train_max = ratings[~mask].groupby("user")["timestamp"].max()
    assert (test_min >= train_max.reindex(test_min.index)).all()


@pytest.mark.parametrize("kwargs, keys", [
    ({"test_ratio": 0.2, "leave_last_n": 1}, ["data.split.test_ratio", "data.split.leave_last_n"]),
    ({}, ["data.split.test_ratio", "data.split.leave_last_n"]),
    ({"leave_last_n": 0}, ["data.split.leave_last_n"]), ({"leave_last_n": 1.5}, ["data.split.leave_last_n"]),
    ({"leave_last_n": True}, ["data.split.leave_last_n"]), ({"test_ratio": 1.0}, ["data.split.test_ratio"]),
    ({"test_ratio": 0.2, "val_last_n": 1}, ["data.split.val_last_n"]), ({"leave_last_n": 1, "val_last_n": 0}, ["data.split.val_last_n"]),
])
def test_bad_options_name_their_keys(kwargs, keys):
    with pytest.raises(DataError) as err:
        PerUserTemporalSplit(**kwargs)
    assert all(key in str(err.value) for key in keys), str(err.value)


def test_missing_timestamps_are_refused_naming_the_key(tmp_path):
    with pytest.raises(DataError, match="per_user_temporal needs a timestamp column"):
        PerUserTemporalSplit(test_ratio=0.2).test_mask(HAND.drop(columns="timestamp"))
    path = tmp_path / "r.csv"
    pd.DataFrame([(f"u{u}", f"i{i}", 3) for u in range(5) for i in range(5)], columns=["user", "item", "rating"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"data/split=per_user_temporal needs a timestamp column.*data\.source_args\.timestamp_col="):
        RatingsDataModule(RatingsFile(path), PerUserTemporalSplit(test_ratio=0.2)).setup()


# ---- cold_item: the warm test part ----------------------------------------------------------------
@pytest.fixture
def ratings() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 4000
    return pd.DataFrame({"user": rng.integers(0, 80, n), "item": rng.zipf(1.6, n) % 150}).drop_duplicates(["user", "item"]).reset_index(drop=True)


def test_cold_item_warm_part_never_mixes_with_the_held_out_items(ratings):
    split = ColdItemSplit(0.2, seed=0, warm_test_ratio=0.1)
    mask = split.test_mask(ratings)
    held = split.held_out_items(ratings)
    train_items = set(ratings["item"][~mask])
    test_items = set(ratings["item"][mask])
    assert len(held) == round(0.2 * ratings["item"].nunique())
    assert not set(held) & train_items  # held-out items: every rating in test
    assert np.isin(ratings["item"], held)[~mask].sum() == 0
    warm_items = test_items - set(held)
    assert warm_items and warm_items <= train_items  # every other test item keeps training ratings
    assert set(ratings["user"][mask & ~np.isin(ratings["item"], held)]) <= set(ratings["user"][~mask])  # and every user


def test_cold_item_ratios_and_the_held_out_items_do_not_depend_on_the_warm_part(ratings):
    cold_only = ColdItemSplit(0.2, seed=0, warm_test_ratio=0).test_mask(ratings)
    split = ColdItemSplit(0.2, seed=0, warm_test_ratio=0.25)
    mask = split.test_mask(ratings)
    assert np.array_equal(np.isin(ratings["item"], split.held_out_items(ratings)), cold_only)
    assert (mask & cold_only).sum() == cold_only.sum()
    rest = ratings[~cold_only]
    per_user = rest.assign(warm=mask[~cold_only]).groupby("user")["warm"].agg(["sum", "size"])
    # floor(0.25 * m_u) per user, less the few given back to items that would be left with no training rating
    assert (per_user["sum"] <= np.floor(0.25 * per_user["size"])).all()
    assert per_user["sum"].sum() >= 0.9 * np.floor(0.25 * per_user["size"]).sum()


def test_warm_part_gives_back_ratings_that_would_leave_an_item_cold():
    # 10 users x 2 items each, every item rated once: each user's warm pick would empty its item, so all go back.
    rows = pd.DataFrame({"user": np.repeat(np.arange(10), 2), "item": np.arange(20)})
    rows = pd.concat([rows, pd.DataFrame({"user": np.arange(10), "item": 99})], ignore_index=True)  # one shared item
    split = ColdItemSplit(0.05, seed=0, warm_test_ratio=0.5)  # round(0.05 * 21) = 1 held-out item
    mask = split.test_mask(rows)
    held = split.held_out_items(rows)
    warm_test = mask & ~np.isin(rows["item"], held)
    train_items = set(rows["item"][~mask])
    assert set(rows["item"][warm_test]) <= train_items
    if 99 not in held:  # item 99 has 10 ratings: only it can lose some to the warm part
        assert set(rows["item"][warm_test]) <= {99} and warm_test.sum() <= 9


@pytest.mark.parametrize("value", [-0.1, 1, 1.5, True, "x"])
def test_warm_test_ratio_bounds_name_the_key(value):
    with pytest.raises(DataError, match=r"data\.split\.warm_test_ratio must be a number in \[0, 1\)"):
        ColdItemSplit(0.2, warm_test_ratio=value)


# ---- counts at set-up, and the refusal, through train(cfg) ------------------------------------------
def write_table(path: Path, rows) -> Path:
    pd.DataFrame(rows, columns=["user", "item", "rating", "ts"]).to_csv(path, index=False)
    return path


def rotating_rows():
    """12 users rate i0..i5 in rotated orders (user u's j-th rating is item (u + j) % 6 at time j); u0 also
    rates an item nobody else rates, last; user `one` has 1 rating, user `two` 2 (76 ratings)."""
    rows = [(f"u{u}", f"i{(u + j) % 6}", 1 + (u + j) % 5, j) for u in range(12) for j in range(6)]
    return rows + [("u0", "late", 4, 6), ("one", "i0", 3, 0), ("two", "i0", 2, 0), ("two", "i1", 5, 1)]


LEAVE_ONE = ["data=ratings_table", "data.source_args.timestamp_col=ts", "data/split=per_user_temporal",
             "data.split.test_ratio=null", "data.split.leave_last_n=1", "model.visual_mode=none", "trainer.max_epochs=1",
             "logger=none", "evaluate=false"]


def test_setup_prints_and_records_the_counts_of_a_leave_one_out_split(tmp_path, capsys):
    from visrec.pipeline.training import train

    path = write_table(tmp_path / "r.csv", rotating_rows())
    metrics = train(compose_train([*LEAVE_ONE, f"data.path={path}"], tmp_path))
    # test: each user's latest (u0: `late`, a cold item; `two`: i1; `one` keeps its only rating); validation: the
    # latest of the rest (none from `two`, whose one remaining rating stays in training): 76 - 13 - 12 = 51 train.
    line = ("ratings: train 51; val 12 = 12 warm + 0 cold (0 cold-user, 0 cold-item); "
            "test 13 = 12 warm + 1 cold (0 cold-user, 1 cold-item)")
    assert line in capsys.readouterr().out
    assert {k: metrics[f"split/{k}"] for k in ("train", "val", "val_warm", "test", "test_warm", "test_cold_users", "test_cold_items")} == \
        {"train": 51, "val": 12, "val_warm": 12, "test": 13, "test_warm": 12, "test_cold_users": 0, "test_cold_items": 1}
    assert metrics["test/ratings"] == 12 and metrics["test/ratings_cold"] == 1 and math.isfinite(metrics["test/rmse"])


def test_all_cold_validation_is_refused_before_training_with_counts_and_keys(tmp_path):
    from visrec.pipeline.training import train

    # Every user rates i0..i5 in the same order: the last (i5) is test and the one before (i4) validation for
    # everyone, so no validation item has a training rating.
    path = write_table(tmp_path / "r.csv", [(f"u{u}", f"i{j}", 1 + (u + j) % 5, j) for u in range(10) for j in range(6)])
    with pytest.raises(ValueError) as err:
        train(compose_train([*LEAVE_ONE, f"data.path={path}"], tmp_path))
    message = str(err.value)
    assert "no validation rating is warm: 0 of 10 validation ratings" in message
    assert "val 10 = 0 warm + 10 cold (0 cold-user, 10 cold-item); test 10 = 0 warm + 10 cold" in message
    assert all(key in message for key in ("data.val_ratio", "data.split.leave_last_n", "data.split.val_last_n", "data/split"))
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_cold_item_run_reports_warm_and_cold_test_metrics(tmp_path):
    from visrec.pipeline.training import train

    base = ["data/split=cold_item", "model.visual_mode=none", "trainer.max_epochs=1", "logger=none"]
    metrics = train(compose_train(base, tmp_path))
    assert metrics["split/test_warm"] > 0 and metrics["split/test_cold_items"] > 0
    assert metrics["test/ratings"] == metrics["split/test_warm"]
    assert metrics["test/ratings_cold"] == metrics["split/test_cold_items"] + metrics["split/test_cold_users"]
    assert math.isfinite(metrics["test/rmse"]) and math.isfinite(metrics["test/rmse_cold"])
    assert "eval/model/warm/ndcg@10" in metrics and "eval/model/cold_items/ndcg@10" in metrics
    old = train(compose_train([*base, "data.split.warm_test_ratio=0", "evaluate=false"], tmp_path / "old"))
    assert "test/rmse" not in old and old["split/test_warm"] == 0
    assert old["split/test"] == old["split/test_cold_items"] + old["split/test_cold_users"] < metrics["split/test"]


# ---- k-fold ----------------------------------------------------------------------------------------------
def kfold_frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(12), rng.integers(1, 14, size=12))  # 12 users with 1..13 ratings
    return pd.DataFrame({"user": users, "item": rng.integers(0, 30, size=len(users))})


@pytest.mark.parametrize("per_user", [False, True])
def test_kfold_test_parts_are_disjoint_and_cover_every_rating_once(per_user):
    ratings = kfold_frame()
    masks = np.stack([KFoldSplit(num_folds=5, fold=f, per_user=per_user, seed=3).test_mask(ratings) for f in range(5)])
    assert (masks.sum(0) == 1).all()
    if not per_user:
        sizes = masks.sum(1)
        assert sizes.max() - sizes.min() <= 1


def test_kfold_per_user_deals_each_users_ratings_evenly_across_folds():
    ratings = kfold_frame()
    folds = KFoldSplit(num_folds=4, per_user=True, seed=1).fold_of_rows(ratings)
    counts = pd.crosstab(ratings["user"], folds).reindex(columns=range(4), fill_value=0).to_numpy()  # (U, 4)
    n_u = counts.sum(1)
    assert (counts.min(1) == n_u // 4).all() and (counts.max(1) == -(-n_u // 4)).all()


def test_kfold_the_seed_fixes_the_folds_for_every_fold_index():
    ratings = kfold_frame()
    a = KFoldSplit(num_folds=5, fold=0, seed=7).fold_of_rows(ratings)
    assert (KFoldSplit(num_folds=5, fold=4, seed=7).fold_of_rows(ratings) == a).all()
    assert not (KFoldSplit(num_folds=5, fold=0, seed=8).fold_of_rows(ratings) == a).all()


@pytest.mark.parametrize("options, key", [({"num_folds": 1}, "data.split.num_folds"), ({"fold": 5}, "data.split.fold"),
                                          ({"fold": -1}, "data.split.fold"), ({"per_user": "yes"}, "data.split.per_user")])
def test_kfold_bad_options_name_their_key(options, key):
    with pytest.raises(DataError, match=key):
        KFoldSplit(**{"num_folds": 5, **options})


def test_a_kfold_run_trains_on_the_other_folds(tmp_path):
    from visrec.pipeline.training import train

    metrics = train(compose_train(["data/split=kfold", "data.split.fold=2", "trainer.max_epochs=2", "logger=none",
                                   "model.visual_mode=none", "evaluate=false"], tmp_path))
    split = pd.read_parquet(tmp_path / "run" / "split.parquet")
    total = len(split)
    assert abs((split["part"] == "test").sum() - total / 5) <= 1 and np.isfinite(metrics["test/rmse"])
