"""Train/test splits. Each split returns a boolean test mask over the rows of a ratings frame.

All randomness comes from ``numpy.random.default_rng(seed)``, so a split is a pure function of the
ratings (in file order) and the seed. ``validation_mask`` carves the validation set out of the
training rows the same way the split carves the test set, except where noted.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from visrec.data.errors import DataError


def _check_ratio(ratio: float, name: str) -> float:
    """A ratio in (0, 1); ``name`` is its config key (``data.split.test_ratio``)."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(ratio, bool) or not 0.0 < value < 1.0:
        raise DataError(None, f"{name} must be a number in (0, 1), got {ratio!r}")
    return value


def random_rows(num_rows: int, ratio: float, seed: int) -> np.ndarray:
    """Mask with exactly ``round(ratio * num_rows)`` rows chosen uniformly at random."""
    mask = np.zeros(num_rows, dtype=bool)
    chosen = np.random.default_rng(seed).permutation(num_rows)[: int(round(ratio * num_rows))]
    mask[chosen] = True
    return mask


class Split:
    """Base: subclasses implement ``test_mask``; validation defaults to random rows."""

    name = "split"
    # A column the ratings must have for this split (checked by the datamodule, which names the option).
    needs_column: str | None = None
    # True when the test part is cold by design (no warm test rating is then expected, not a warning).
    cold_test = False

    def test_mask(self, ratings: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def validation_mask(self, train: pd.DataFrame, ratio: float, seed: int) -> np.ndarray:
        return random_rows(len(train), ratio, seed + 1)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{self.name}({args})"


class PredefinedSplit(Split):
    """The source's own test set (e.g. MovieLens ``u1.test``, or a table's ``test_path``)."""

    name = "predefined"
    needs_column = "is_test"

    def test_mask(self, ratings: pd.DataFrame) -> np.ndarray:
        if "is_test" not in ratings.columns:
            raise DataError(
                None,
                "data/split=predefined needs a source with a predefined test set "
                "(MovieLens fold files, or data.source_args.test_path for data=ratings_table); "
                "choose another split, e.g. data/split=random",
            )
        return ratings["is_test"].to_numpy(dtype=bool)


class RandomSplit(Split):
    """A uniformly random ``test_ratio`` of all ratings."""

    name = "random"

    def __init__(self, test_ratio: float = 0.2, seed: int = 0):
        self.test_ratio = _check_ratio(test_ratio, "data.split.test_ratio")
        self.seed = int(seed)

    def test_mask(self, ratings: pd.DataFrame) -> np.ndarray:
        return random_rows(len(ratings), self.test_ratio, self.seed)


def _per_user_last(users: np.ndarray, order_key: np.ndarray, ratio: float) -> np.ndarray:
    """For each user, mark the ``floor(ratio * n_u)`` rows with the largest ``order_key`` (n_u >= 2)."""
    frame = pd.DataFrame({"user": users, "key": order_key})
    rank = frame.groupby("user", sort=False)["key"].rank(method="first", ascending=False).to_numpy()  # 1 = largest
    count = frame.groupby("user", sort=False)["key"].transform("size").to_numpy()
    take = np.floor(ratio * count)
    return rank <= take


class PerUserSplit(Split):
    """For every user, ``floor(test_ratio * n_u)`` of their ratings chosen at random.

    Users with too few ratings for that to be >= 1 keep all of them in training, so every test
    user also has training ratings.
    """

    name = "per_user"

    def __init__(self, test_ratio: float = 0.2, seed: int = 0):
        self.test_ratio = _check_ratio(test_ratio, "data.split.test_ratio")
        self.seed = int(seed)

    def test_mask(self, ratings: pd.DataFrame) -> np.ndarray:
        key = np.random.default_rng(self.seed).random(len(ratings))
        return _per_user_last(ratings["user"].to_numpy(), key, self.test_ratio)

    def validation_mask(self, train: pd.DataFrame, ratio: float, seed: int) -> np.ndarray:
        key = np.random.default_rng(seed + 1).random(len(train))
        return _per_user_last(train["user"].to_numpy(), key, ratio)


class TemporalSplit(Split):
    """The latest ``test_ratio`` of all ratings by timestamp (a global cut; ties broken by file order).

    Validation is the latest ``val_ratio`` of the remaining training ratings, so the model never
    early-stops on data older than what it trains on.
    """

    name = "temporal"
    needs_column = "timestamp"

    def __init__(self, test_ratio: float = 0.2):
        self.test_ratio = _check_ratio(test_ratio, "data.split.test_ratio")

    @staticmethod
    def _latest(ratings: pd.DataFrame, ratio: float) -> np.ndarray:
        if "timestamp" not in ratings.columns:
            raise DataError(None, "data/split=temporal needs a timestamp column (data.source_args.timestamp_col for "
                                  "data=ratings_table); choose another split, e.g. data/split=random", field="timestamp")
        order = np.argsort(ratings["timestamp"].to_numpy(), kind="stable")
        mask = np.zeros(len(ratings), dtype=bool)
        mask[order[len(ratings) - int(round(ratio * len(ratings))):]] = True
        return mask

    def test_mask(self, ratings: pd.DataFrame) -> np.ndarray:
        return self._latest(ratings, self.test_ratio)

    def validation_mask(self, train: pd.DataFrame, ratio: float, seed: int) -> np.ndarray:
        return self._latest(train, ratio)


class ColdItemSplit(Split):
    """A random ``test_ratio`` of the rated items is held out with all of its ratings.

    Those items have no training ratings at all (cold start); validation is random training rows.
    """

    name = "cold_item"
    cold_test = True

    def __init__(self, test_ratio: float = 0.2, seed: int = 0):
        self.test_ratio = _check_ratio(test_ratio, "data.split.test_ratio")
        self.seed = int(seed)

    def test_mask(self, ratings: pd.DataFrame) -> np.ndarray:
        items = np.sort(pd.unique(ratings["item"].to_numpy()))
        held = items[random_rows(len(items), self.test_ratio, self.seed)]
        return np.isin(ratings["item"].to_numpy(), held)
