"""From a split to evaluation segments: which test ratings and which ranking task each segment has.

Known user / known item = one that has a trained vector: by default, one with at least one rating in
``train``; callers that evaluate a model pass the model's own masks (``known_users``, ``known_items``),
so "warm" here is exactly the set the model scores with its factors rather than its fallback (for a
validated run: the train part; for a refit run: train + validation). ``train`` (everything the model
could see, train and validation parts) is still what is excluded from a user's candidates.

Segments (present when the split has test ratings in them):
    warm        known user, known item. Ranking: candidates = all known items minus the user's
                training items (protocol ``all``: every training and validation item; protocol
                ``positives``: only those rated >= threshold, Cornac's protocol).
    cold_items  known user, item with no training ratings. Ranking: candidates = all catalog items
                without training ratings (nothing to exclude).
    cold_users  user with no training ratings. Rating metrics over all their test ratings; ranking
                against all known items (nothing to exclude).
    warm_items_<lo>-<hi>, warm_items_<lo>+   (``activity_edges``, e.g. (5, 20): 1-5, 6-20, 21+) the warm
                test ratings whose item has that many interactions in ``train`` (long-tail segments).
                Ranking: candidates = the segment's items minus the user's training items (as
                ``cold_items`` ranks the cold items among themselves), relevant = the segment's test items
                rated >= threshold: how well a model orders the tail, which a full list cannot show (on
                ML-100K no model puts an item with <= 5 interactions in a top 10: NDCG@10 0 for all);
                coverage@K = the segment's items recommended to anyone / the segment's items.
A user is ranked in a segment when they have at least one relevant test item (rating >= threshold)
in it; users with test ratings there but none relevant are counted as skipped. Test ratings whose
user or item is unknown are left out of the warm segment and counted (``test_ratings_not_warm``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from visrec.evaluation.ranking import RankingTask
from visrec.evaluation.user_items import UserItems
from visrec.interactions import Interactions

PROTOCOLS = ("all", "positives")


@dataclass
class Segment:
    name: str
    ratings: Interactions  # the test ratings of the segment (rating metrics)
    task: RankingTask | None  # None when no user has a relevant item
    users_skipped: int  # users with test ratings in the ranking part of the segment, but none relevant
    notes: dict[str, int]


def _rank_task(test: Interactions, candidates: torch.Tensor, excluded: Interactions | None, num_users: int,
               threshold: float) -> tuple[RankingTask | None, int]:
    """Task over the users of ``test`` (already restricted to candidate items) that have a relevant item."""
    relevant = test.subset(test.ratings >= threshold)
    users = torch.unique(relevant.users)  # (E,) sorted
    skipped = len(torch.unique(test.users)) - len(users)
    if len(users) == 0:
        return None, skipped
    row_of = torch.full((num_users,), -1, dtype=torch.int64)  # user index -> task row
    row_of[users] = torch.arange(len(users))
    relevant_rows = UserItems.from_pairs(row_of[relevant.users], relevant.items, len(users))
    if excluded is None:
        excluded = Interactions.empty()
    excluded = excluded.subset((row_of[excluded.users] >= 0) & candidates[excluded.items])
    excluded_rows = UserItems.from_pairs(row_of[excluded.users], excluded.items, len(users))
    return RankingTask(users, candidates, excluded_rows, relevant_rows), skipped


def activity_buckets(edges: Sequence[int]) -> list[tuple[int, int | None]]:
    """(low, high) interaction counts of each activity segment, high None = no upper end: edges (5, 20) ->
    [(1, 5), (6, 20), (21, None)]. Raises ValueError unless the edges are increasing positive integers."""
    edges = list(edges)
    if any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in edges) or edges != sorted(set(edges)):
        raise ValueError(f"activity edges must be increasing positive integers, got {edges}")
    lows = [1] + [e + 1 for e in edges]
    return list(zip(lows, [*edges, None]))


def activity_name(low: int, high: int | None) -> str:
    return f"warm_items_{low}+" if high is None else f"warm_items_{low}-{high}"


def build_segments(train: Interactions, test: Interactions, num_users: int, num_items: int,
                   threshold: float = 4.0, exclude_train: str = "all", known_users: torch.Tensor | None = None,
                   known_items: torch.Tensor | None = None, activity_edges: Sequence[int] = ()) -> dict[str, Segment]:
    """Segments of ``test`` given the training data ``train`` (train + validation parts of the run).

    ``known_users`` (U,) / ``known_items`` (N,) bool: who is warm (default: has a rating in ``train``);
    ``activity_edges``: the warm items' activity segments by interactions in ``train`` (module docstring)."""
    if exclude_train not in PROTOCOLS:
        raise ValueError(f"exclude_train must be one of {PROTOCOLS}, got {exclude_train!r}")
    overlap = torch.isin(test.users * num_items + test.items, train.users * num_items + train.items)  # (R,)
    if overlap.any():
        raise ValueError(
            f"{int(overlap.sum())} test rating(s) repeat a (user, item) pair of the training data "
            f"(e.g. user index {int(test.users[overlap][0])}, item index {int(test.items[overlap][0])}); "
            "a split must not share pairs between its parts"
        )
    known_user = torch.bincount(train.users, minlength=num_users) > 0 if known_users is None else known_users.cpu().bool()  # (U,)
    known_item = torch.bincount(train.items, minlength=num_items) > 0 if known_items is None else known_items.cpu().bool()  # (N,)
    if known_user.shape != (num_users,) or known_item.shape != (num_items,):
        raise ValueError(f"known_users / known_items must have shapes ({num_users},) / ({num_items},), "
                         f"got {tuple(known_user.shape)} / {tuple(known_item.shape)}")
    test_known_user = known_user[test.users]  # (R,)
    test_known_item = known_item[test.items]  # (R,)

    excluded = train if exclude_train == "all" else train.subset(train.ratings >= threshold)
    segments: dict[str, Segment] = {}

    warm = test.subset(test_known_user & test_known_item)
    if len(warm):
        task, skipped = _rank_task(warm, known_item, excluded, num_users, threshold)
        segments["warm"] = Segment("warm", warm, task, skipped, {"test_ratings_not_warm": len(test) - len(warm)})
        activity = torch.bincount(train.items, minlength=num_items)  # (N,) interactions per item in train
        for low, high in activity_buckets(activity_edges):
            in_bucket = known_item & (activity >= low) & (activity <= (high if high is not None else activity.max()))  # (N,)
            part = warm.subset(in_bucket[warm.items])
            if len(part) == 0:
                continue
            task, skipped = _rank_task(part, in_bucket, excluded, num_users, threshold)
            if task is not None:
                task.coverage_items = in_bucket
            name = activity_name(low, high)
            segments[name] = Segment(name, part, task, skipped, {"items": int(in_bucket.sum())})

    cold_items = test.subset(test_known_user & ~test_known_item)
    if len(cold_items):
        task, skipped = _rank_task(cold_items, ~known_item, None, num_users, threshold)
        segments["cold_items"] = Segment("cold_items", cold_items, task, skipped, {})

    cold_users = test.subset(~test_known_user)
    if len(cold_users):
        rankable = cold_users.subset(known_item[cold_users.items])
        task, skipped = _rank_task(rankable, known_item, None, num_users, threshold) if len(rankable) else (None, 0)
        segments["cold_users"] = Segment("cold_users", cold_users, task, skipped, {})
    return segments
