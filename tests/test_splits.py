import numpy as np
import pandas as pd
import pytest

from visrec.data import ColdItemSplit, DataError, PerUserSplit, PredefinedSplit, RandomSplit, TemporalSplit


@pytest.fixture
def ratings() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 2000
    return pd.DataFrame({
        "user": rng.integers(0, 50, n), "item": rng.integers(0, 80, n),
        "rating": rng.integers(1, 6, n).astype(np.float32), "timestamp": rng.permutation(n),
    }).drop_duplicates(["user", "item"]).reset_index(drop=True)


def test_random_split_size_and_seed(ratings):
    mask = RandomSplit(0.2, seed=1).test_mask(ratings)
    assert mask.sum() == round(0.2 * len(ratings))
    assert np.array_equal(mask, RandomSplit(0.2, seed=1).test_mask(ratings))
    assert not np.array_equal(mask, RandomSplit(0.2, seed=2).test_mask(ratings))


def test_per_user_split_takes_a_fraction_of_every_user(ratings):
    mask = PerUserSplit(0.25, seed=0).test_mask(ratings)
    per_user = pd.DataFrame({"user": ratings["user"], "test": mask}).groupby("user")["test"].agg(["sum", "size"])
    assert (per_user["sum"] == np.floor(0.25 * per_user["size"])).all()


def test_temporal_split_tests_on_the_latest(ratings):
    mask = TemporalSplit(0.1).test_mask(ratings)
    assert mask.sum() == round(0.1 * len(ratings))
    assert ratings["timestamp"][mask].min() > ratings["timestamp"][~mask].max()


def test_temporal_split_needs_timestamps(ratings):
    with pytest.raises(DataError, match="timestamp"):
        TemporalSplit(0.1).test_mask(ratings.drop(columns="timestamp"))


def test_cold_item_split_holds_out_whole_items(ratings):
    mask = ColdItemSplit(0.2, seed=0, warm_test_ratio=0).test_mask(ratings)  # cold part only
    test_items, train_items = set(ratings["item"][mask]), set(ratings["item"][~mask])
    assert not test_items & train_items
    assert len(test_items) == round(0.2 * ratings["item"].nunique())


def test_predefined_uses_is_test(ratings):
    flagged = ratings.assign(is_test=ratings.index % 5 == 0)
    assert np.array_equal(PredefinedSplit().test_mask(flagged), flagged["is_test"].to_numpy())


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5])
def test_ratio_bounds(ratio):
    with pytest.raises(ValueError, match="test_ratio"):
        RandomSplit(ratio)
