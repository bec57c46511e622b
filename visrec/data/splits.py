"""Train/test splits. Each split returns a boolean test mask over the rows of a ratings frame.

All randomness comes from ``numpy.random.default_rng(seed)``, so a split is a pure function of the
ratings (in file order) and the seed. ``validation_mask`` carves the validation set out of the
training rows the same way the split carves the test set, except where noted.

What each split holds out and what it leaves cold (no training rating) by construction:

===================== ============================================== ===================================
split                 test part                                      cold by construction
===================== ============================================== ===================================
``predefined``        the source's own test set (MovieLens u1.test)  whatever the source's test holds
``random``            a uniform ``test_ratio`` of all ratings        none (rare users/items by chance)
``per_user``          ``floor(test_ratio * n_u)`` random per user    none (every user keeps >= 1)
``per_user_temporal`` each user's latest ``floor(test_ratio * n_u)`` none for users; items first rated
                      or ``min(leave_last_n, n_u - 1)`` ratings      late can be cold
``temporal``          the latest ``test_ratio`` of all (one cut)     users / items that appear after it
``cold_item``         all ratings of ``test_ratio`` of the items,    the held-out items (users keep
                      + per user ``warm_test_ratio`` of the rest     their other ratings)
``kfold``             fold ``fold`` of ``num_folds`` random folds      none (items by chance)
                      (``per_user``: each user's ratings dealt evenly)
===================== ============================================== ===================================
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from visrec.data.errors import DataError


def _check_ratio(ratio: float, name: str, allow_zero: bool = False) -> float:
    """A ratio in (0, 1), or [0, 1) with ``allow_zero``; ``name`` is its config key (``data.split.test_ratio``)."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        value = float("nan")
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if isinstance(ratio, bool) or not (low_ok and value < 1.0):
        raise DataError(None, f"{name} must be a number in {'[0' if allow_zero else '(0'}, 1), got {ratio!r}")
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

    def config_keys(self) -> list[str]:
        """The config keys that shape this split's parts (``data.split.test_ratio``, ...; not the seed)."""
        return [f"data.split.{name}" for name in vars(self) if name != "seed"]


class PredefinedSplit(Split):
    """The source's own test set (e.g. MovieLens ``u1.test``, or a table's ``test_path``).

    Cold by construction: whatever that test set holds (MovieLens folds: no user, a few items).
    Typical use: comparisons with published numbers (ML-100K u1-u5)."""

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
    """A uniformly random ``test_ratio`` of all ratings (``round(test_ratio * R)`` rows).

    Cold by construction: nothing (a rare user or item can lose all its ratings by chance).
    Typical use: rating prediction, quick checks."""

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
    user also has training ratings. Typical use: top-K per user when the data has no time order.
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
    early-stops on data older than what it trains on. Cold by construction: users and items that first
    appear after the cut (on real data, most test users). Typical use: "train on the past, test on the
    future" as deployed; for per-user recommendation without leakage use ``per_user_temporal``.
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


def _ranks_from_end(users: np.ndarray, keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its rank within its user counting from the largest key (1 = largest), and the user's row count.

    ``keys`` are sort keys, most significant first (ties of all of them: the later row ranks as larger).
    One ``np.lexsort`` over (user, *keys, row), no per-user loop. Shapes: (R,) in, (R,), (R,) out."""
    num = len(users)
    order = np.lexsort((np.arange(num), *reversed(keys), users))  # (R,) rows sorted by user, then keys, then row
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]]) if num else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, num])  # (G,) rows per user
    size = np.repeat(sizes, sizes)  # (R,) in sorted order
    position = np.arange(num) - np.repeat(starts, sizes)  # 0 = smallest key of the user
    rank, count = np.empty(num, dtype=np.int64), np.empty(num, dtype=np.int64)
    rank[order] = size - position
    count[order] = size
    return rank, count


def _check_count(value, key: str) -> int:
    """An integer >= 1 (``leave_last_n``); a DataError naming ``key`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not (isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer())):
        raise DataError(None, f"{key} must be an integer >= 1, got {value!r}")
    if int(value) < 1:
        raise DataError(None, f"{key} must be an integer >= 1, got {value!r}")
    return int(value)


class PerUserTemporalSplit(Split):
    """Each user's latest ratings by timestamp are the test part (per-user temporal hold-out).

    Exactly one of:
      - ``test_ratio``: each user's latest ``floor(test_ratio * n_u)`` ratings (as ``per_user``, by time);
      - ``leave_last_n``: each user's latest ``min(leave_last_n, n_u - 1)`` ratings (leave-last-n-out;
        ``leave_last_n=1`` is the leave-one-out protocol of e.g. He et al., "Neural Collaborative
        Filtering", WWW 2017, and Kang & McAuley, "SASRec", ICDM 2018).
    Every user keeps at least one training rating (a user with one rating keeps it in training; with
    ``test_ratio``, users with ``n_u < 1 / test_ratio`` keep all), so no user is cold by construction;
    items rated only late can be cold, as in any temporal split. Ties in time are broken by row order
    (the later row of the file is the later rating).

    Validation is carved the same way from what remains: each user's latest ``floor(data.val_ratio * m_u)``
    ratings with ``test_ratio``; with ``leave_last_n``, the latest ``min(val_last_n, m_u - 1)``
    (``val_last_n`` defaults to ``leave_last_n``; ``data.val_ratio`` > 0 only turns validation on, its
    value is not used, and 0 turns it off). Needs a timestamp column (``data.source_args.timestamp_col``
    for ``data=ratings_table``). Raises :class:`DataError` naming ``data.split.test_ratio`` /
    ``data.split.leave_last_n`` when both or neither are set, or a value is out of range.
    """

    name = "per_user_temporal"
    needs_column = "timestamp"

    def __init__(self, test_ratio: float | None = None, leave_last_n: int | None = None, val_last_n: int | None = None):
        if (test_ratio is None) == (leave_last_n is None):
            state = "both are set" if test_ratio is not None else "neither is set"
            raise DataError(None, f"data/split=per_user_temporal takes exactly one of data.split.test_ratio (each user's latest "
                                  f"share) and data.split.leave_last_n (each user's latest n ratings), but {state} "
                                  f"(test_ratio={test_ratio!r}, leave_last_n={leave_last_n!r}); set the other to null")
        self.test_ratio = None if test_ratio is None else _check_ratio(test_ratio, "data.split.test_ratio")
        self.leave_last_n = None if leave_last_n is None else _check_count(leave_last_n, "data.split.leave_last_n")
        if val_last_n is not None and leave_last_n is None:
            raise DataError(None, f"data.split.val_last_n={val_last_n!r} goes with data.split.leave_last_n; with "
                                  f"data.split.test_ratio the validation share is data.val_ratio: set data.split.val_last_n=null")
        self.val_last_n = None if val_last_n is None else _check_count(val_last_n, "data.split.val_last_n")

    @staticmethod
    def _latest(ratings: pd.DataFrame, ratio: float | None, last_n: int | None) -> np.ndarray:
        """(R,) bool: each user's latest ``floor(ratio * n_u)`` or ``min(last_n, n_u - 1)`` rows."""
        if "timestamp" not in ratings.columns:
            raise DataError(None, "data/split=per_user_temporal needs a timestamp column (data.source_args.timestamp_col "
                                  "for data=ratings_table); choose another split, e.g. data/split=per_user", field="timestamp")
        rank, count = _ranks_from_end(ratings["user"].to_numpy(), [ratings["timestamp"].to_numpy()])
        take = np.floor(ratio * count) if ratio is not None else np.minimum(last_n, count - 1)
        return rank <= take

    def test_mask(self, ratings: pd.DataFrame) -> np.ndarray:
        return self._latest(ratings, self.test_ratio, self.leave_last_n)

    def validation_mask(self, train: pd.DataFrame, ratio: float, seed: int) -> np.ndarray:
        if self.leave_last_n is None:
            return self._latest(train, ratio, None)
        return self._latest(train, None, self.val_last_n or self.leave_last_n)


class ColdItemSplit(Split):
    """A random ``test_ratio`` of the rated items is held out with all of its ratings (cold items),
    plus a warm part: ``floor(warm_test_ratio * m_u)`` random ratings of each user's ``m_u`` ratings of
    the other items, so one run reports warm (``test/rmse``, segment ``warm``) and cold metrics
    (``test/rmse_cold``, segment ``cold_items``).

    The warm part never makes an item cold: when it would take every remaining rating of an item, the
    one with the smallest random key goes back to training. Users keep at least one rating of the
    remaining items (as in ``per_user``), so the warm part makes no user cold either. The held-out items
    are the same whatever ``warm_test_ratio`` is (their own random stream); ``warm_test_ratio=0`` is
    the old behaviour (only cold test ratings). Validation is random training rows.
    """

    name = "cold_item"

    def __init__(self, test_ratio: float = 0.2, seed: int = 0, warm_test_ratio: float = 0.1):
        self.test_ratio = _check_ratio(test_ratio, "data.split.test_ratio")
        self.warm_test_ratio = _check_ratio(warm_test_ratio, "data.split.warm_test_ratio", allow_zero=True)
        self.seed = int(seed)

    @property
    def cold_test(self) -> bool:  # no warm test rating is expected only without a warm part
        return self.warm_test_ratio == 0

    def held_out_items(self, ratings: pd.DataFrame) -> np.ndarray:
        """Sorted item indices held out with all their ratings (the same for every ``warm_test_ratio``)."""
        items = np.sort(pd.unique(ratings["item"].to_numpy()))
        return items[random_rows(len(items), self.test_ratio, self.seed)]

    def test_mask(self, ratings: pd.DataFrame) -> np.ndarray:
        item = ratings["item"].to_numpy()
        cold = np.isin(item, self.held_out_items(ratings))  # (R,)
        if self.warm_test_ratio == 0:
            return cold
        rest = np.flatnonzero(~cold)  # (M,) rows of the other items
        key = np.random.default_rng([self.seed, 1]).random(len(rest))  # (M,) a stream of its own
        warm = _per_user_last(ratings["user"].to_numpy()[rest], key, self.warm_test_ratio)  # (M,)
        # An item whose remaining ratings all went to the warm part gets its smallest-key one back.
        rest_items = item[rest]
        left = np.bincount(rest_items[~warm], minlength=int(item.max()) + 1)  # training ratings per item
        emptied = warm & (left[rest_items] == 0)
        if emptied.any():
            rows = np.flatnonzero(emptied)
            first = pd.Series(key[rows]).groupby(rest_items[rows]).idxmin().to_numpy()  # positions in rows
            warm[rows[first]] = False
        mask = cold.copy()
        mask[rest[warm]] = True
        return mask


class KFoldSplit(Split):
    """k-fold cross-validation: every rating is dealt into one of ``num_folds`` folds, and fold ``fold``
    (0-based) is the test part. The same ``seed`` deals the same folds for every ``fold``, so the k runs
    ``python train.py -m data/split=kfold 'data.split.fold=range(5)'`` test on disjoint parts that
    together cover every rating once (Kohavi 1995; Surprise's ``model_selection.KFold`` deals ratings
    the same way with ``per_user=False``).

    ``per_user=False``: the ratings are shuffled and dealt in turn, so folds differ in size by at most
    one. ``per_user=True``: each user's ratings are shuffled and dealt in turn from a random starting
    fold, so every user with n_u ≥ k ratings has ⌊n_u/k⌋ or ⌈n_u/k⌉ of them in each fold (no user is
    cold by construction then; users with fewer than k ratings are absent from some test folds and
    keep all their ratings in those runs' training). Cold by chance: items whose ratings all land in
    the test fold. Validation: a random ``data.val_ratio`` of the other folds (the base class).
    """

    name = "kfold"

    def __init__(self, num_folds: int = 5, fold: int = 0, per_user: bool = False, seed: int = 0):
        self.num_folds = _check_count(num_folds, "data.split.num_folds")
        if self.num_folds < 2:
            raise DataError(None, f"data.split.num_folds must be >= 2, got {num_folds!r}")
        if isinstance(fold, (bool, np.bool_)) or not isinstance(fold, (int, np.integer)) or not 0 <= int(fold) < self.num_folds:
            raise DataError(None, f"data.split.fold must be an integer in 0..{self.num_folds - 1} "
                                  f"(data.split.num_folds = {self.num_folds}), got {fold!r}")
        self.fold = int(fold)
        if not isinstance(per_user, (bool, np.bool_)):
            raise DataError(None, f"data.split.per_user must be true or false, got {per_user!r}")
        self.per_user = bool(per_user)
        self.seed = int(seed)

    def fold_of_rows(self, ratings: pd.DataFrame) -> np.ndarray:
        """(R,) int64: the fold of each rating, in 0..num_folds-1 (independent of ``fold``)."""
        num, k = len(ratings), self.num_folds
        rng = np.random.default_rng(self.seed)
        folds = np.empty(num, dtype=np.int64)
        if not self.per_user:
            folds[rng.permutation(num)] = np.arange(num) % k
            return folds
        users = ratings["user"].to_numpy()
        codes, uniques = pd.factorize(users)  # (R,) user codes, 0..U-1
        order = np.lexsort((rng.random(num), codes))  # (R,) rows grouped by user, shuffled within each
        sorted_codes = codes[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]  # (U,) first position of each user
        position = np.arange(num) - np.repeat(starts, np.diff(np.r_[starts, num]))  # (R,) rank within the user
        offset = rng.integers(0, k, size=len(uniques))  # (U,) each user's starting fold
        folds[order] = (position + offset[sorted_codes]) % k
        return folds

    def test_mask(self, ratings: pd.DataFrame) -> np.ndarray:
        return self.fold_of_rows(ratings) == self.fold
