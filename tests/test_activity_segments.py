"""Long-tail segments of the evaluator (issue 28, part 1): warm items split by their training interactions
(eval.activity_edges), each ranking its users against the segment's own items (as cold_items does), and
coverage@K over the segment's items."""
from __future__ import annotations

import pytest
import torch

from visrec.evaluation import evaluate
from visrec.evaluation.scorers import FactorScorer
from visrec.evaluation.segments import activity_buckets, build_segments
from visrec.interactions import Interactions
from visrec.pipeline.training import check_options

from conftest import compose_train


def _split():
    """6 users, 6 items; item i was rated by users 0..i in training (i + 1 interactions)."""
    users, items = [], []
    for item in range(6):
        for user in range(item + 1):
            users.append(user), items.append(item)
    train = Interactions(torch.tensor(users), torch.tensor(items), torch.full((len(users),), 5.0))
    test = Interactions(torch.tensor([5, 5, 4, 2, 1]), torch.tensor([0, 1, 2, 1, 0]), torch.tensor([5.0, 5.0, 4.0, 5.0, 2.0]))
    return train, test


def test_buckets_follow_the_edges():
    assert activity_buckets([5, 20]) == [(1, 5), (6, 20), (21, None)]
    assert activity_buckets([]) == [(1, None)]
    for bad in ([20, 5], [0, 5], [5, 5], [2.5]):
        with pytest.raises(ValueError):
            activity_buckets(bad)


def test_each_segment_holds_the_warm_test_ratings_of_its_items_and_ranks_them_among_themselves():
    train, test = _split()
    segments = build_segments(train, test, 6, 6, activity_edges=[2, 4])
    assert set(segments) == {"warm", "warm_items_1-2", "warm_items_3-4"}  # no test rating of items 4, 5: no 5+ segment
    assert sorted(segments["warm_items_1-2"].ratings.items.tolist()) == [0, 0, 1, 1]  # items with 1-2 interactions
    assert segments["warm_items_3-4"].ratings.items.tolist() == [2]
    assert segments["warm_items_1-2"].notes == {"items": 2}
    task = segments["warm_items_1-2"].task
    assert task.candidates.tolist() == [True, True, False, False, False, False]  # the segment's items only
    assert task.users.tolist() == [2, 5] and segments["warm_items_1-2"].users_skipped == 1  # user 1's 2.0 is not relevant

    # Every user ranks items by index, highest first; within the segment both users see 1, 0 (ranked in the
    # full list, user 5 would see 4, 3, 2 first and find nothing in a top 1).
    scorer = FactorScorer(torch.ones(6, 1), torch.zeros(6), torch.arange(6.0)[:, None], torch.zeros(6), 0.0, name="model",
                          predicts_ratings=False)
    report = evaluate([scorer], train, test, 6, 6, ks=[1, 6], activity_edges=[2, 4])
    tail = report.results["model"]["warm_items_1-2"]
    assert tail["users_evaluated"] == 2
    assert tail["recall@1"] == 0.75 and tail["recall@6"] == 1.0  # user 2 finds its item 1 first; user 5 one of its two
    assert tail["coverage@1"] == 0.5 and tail["coverage@6"] == 1.0  # of the segment's 2 items, not the catalog's 6
    assert report.protocol["activity_edges"] == [2, 4]


def test_bad_edges_are_refused_at_set_up_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match="eval.activity_edges"):
        check_options(compose_train(["model=ials", "eval.activity_edges=[20,5]"], tmp_path))
