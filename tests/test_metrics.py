"""Metric definitions: hand-computed cases, and the batched evaluator against a slow reference."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visrec.evaluation import Interactions, PopularityScorer, evaluate
from visrec.evaluation.metrics import ranking_metrics, rating_metrics
from visrec.evaluation.topk import top_k

LOG2 = math.log2


class MatrixScorer:
    """Scores from a fixed (U, N) matrix; optional rating predictions from the same matrix."""

    def __init__(self, scores: torch.Tensor, name: str = "matrix", predicts: bool = False):
        self.scores, self.name, self.predicts = scores, name, predicts

    def score_users(self, users):
        return self.scores[users]

    def predict(self, users, items):
        return self.scores[users, items] if self.predicts else None


def inter(rows) -> Interactions:
    """[(user, item, rating), ...] -> Interactions."""
    if not rows:
        return Interactions.empty()
    u, i, r = zip(*rows)
    return Interactions(torch.tensor(u), torch.tensor(i), torch.tensor(r, dtype=torch.float32))


def approx(values: dict, **expected):
    for name, value in expected.items():
        got = float(values[name]) if not torch.is_tensor(values[name]) else float(values[name][0])
        assert got == pytest.approx(value, abs=1e-9), name


# ---- per-user metric functions ---------------------------------------------------------------------
def test_ranking_metrics_hand_computed():
    # Ranks 1 and 3 relevant, 3 relevant items in total, K = 5.
    m = ranking_metrics(torch.tensor([[1, 0, 1, 0, 0]]), torch.tensor([3]), 5)
    p, r = 2 / 5, 2 / 3
    approx(m, precision=p, recall=r, f1=2 * p * r / (p + r), hitrate=1.0,
           ndcg=(1 + 1 / LOG2(4)) / (1 + 1 / LOG2(3) + 1 / LOG2(4)),
           map=(1 / 1 + 2 / 3) / 3)


def test_ranking_metrics_fewer_ranked_items_than_k():
    # One candidate only, and it is relevant: precision still divides by K.
    m = ranking_metrics(torch.tensor([[1]]), torch.tensor([1]), 5)
    approx(m, precision=1 / 5, recall=1.0, f1=2 * 0.2 / 1.2, ndcg=1.0, map=1.0, hitrate=1.0)


def test_ranking_metrics_no_hit_is_zero_not_nan():
    m = ranking_metrics(torch.tensor([[0, 0, 0]]), torch.tensor([2]), 3)
    approx(m, precision=0.0, recall=0.0, f1=0.0, ndcg=0.0, map=0.0, hitrate=0.0)


def test_ranking_metrics_more_relevant_than_k():
    # 4 relevant, K = 2, both hits: IDCG and AP use min(K, R) = 2.
    m = ranking_metrics(torch.tensor([[1, 1]]), torch.tensor([4]), 2)
    approx(m, precision=1.0, recall=0.5, ndcg=1.0, map=1.0)


def test_rating_metrics_hand_computed():
    out = rating_metrics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 5.0]))
    assert out["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert out["mae"] == pytest.approx(1.0)
    assert out["ratings"] == 3
    empty = rating_metrics(torch.empty(0), torch.empty(0))
    assert empty["ratings"] == 0 and math.isnan(empty["rmse"])


# ---- top-K order -------------------------------------------------------------------------------------
def test_top_k_breaks_ties_by_lower_index_and_puts_nan_last():
    scores = torch.tensor([[1.0, 3.0, 3.0, float("-inf"), float("nan"), -2.0, -0.5, 3.0]])
    assert top_k(scores, 8).tolist() == [[1, 2, 7, 0, 6, 5, 3, 4]]
    assert top_k(scores, 2).tolist() == [[1, 2]]  # tie across the cut-off: lowest indices win
    assert top_k(torch.zeros(2, 5), 3).tolist() == [[0, 1, 2], [0, 1, 2]]
    assert top_k(torch.zeros(1, 3), 10).shape == (1, 3)  # K larger than the catalog


# ---- the evaluator on a hand-made split ---------------------------------------------------------------
def test_evaluator_hand_computed_split():
    # 2 users, 5 items. Item 4 has no training data (cold).
    train = inter([(0, 0, 5.0), (0, 1, 2.0), (1, 2, 4.0), (1, 3, 1.0)])
    test = inter([(0, 2, 5.0), (0, 3, 3.0), (1, 0, 2.0), (0, 4, 4.0)])
    scores = torch.tensor([[9.0, 8.0, 1.0, 7.0, 6.0],
                           [1.0, 1.0, 1.0, 1.0, 1.0]])
    report = evaluate([MatrixScorer(scores)], train, test, num_users=2, num_items=5, ks=[1, 2, 10], threshold=4.0)
    warm = report.results["matrix"]["warm"]
    # User 0: candidates {2, 3} (0, 1 are training items; 4 is unknown); ranking 3, 2; relevant {2}.
    # User 1: no relevant test item -> skipped. Test rating on item 4 is not warm.
    assert warm["users_evaluated"] == 1 and warm["users_skipped"] == 1 and warm["test_ratings_not_warm"] == 1
    assert warm["precision@1"] == 0.0 and warm["precision@2"] == 0.5 and warm["precision@10"] == pytest.approx(0.1)
    assert warm["recall@2"] == 1.0 and warm["ndcg@2"] == pytest.approx(1 / LOG2(3))
    assert warm["map@2"] == pytest.approx(0.5) and warm["hitrate@1"] == 0.0
    assert warm["coverage@1"] == pytest.approx(1 / 4)  # item 3 of the 4 known items
    cold = report.results["matrix"]["cold_items"]
    # Cold candidates = {4}; user 0's relevant cold item is 4 -> hit at rank 1.
    assert cold["users_evaluated"] == 1 and cold["precision@1"] == 1.0 and cold["ndcg@10"] == 1.0

    # Cornac's protocol: only training positives leave the candidates, so item 1 (rated 2) is ranked
    # again, at the top: user 0's ranking becomes 1, 3, 2.
    positives = evaluate([MatrixScorer(scores)], train, test, 2, 5, ks=[2, 3], exclude_train="positives")
    warm = positives.results["matrix"]["warm"]
    assert warm["precision@2"] == 0.0 and warm["precision@3"] == pytest.approx(1 / 3)
    assert warm["ndcg@3"] == pytest.approx(1 / LOG2(4))


def test_evaluator_ties_cold_users_and_popularity():
    # Popularity: item 0 seen twice, items 1, 2 once each (tie -> item 1 first), item 3 never.
    train = inter([(0, 0, 5.0), (1, 0, 5.0), (1, 1, 3.0), (0, 2, 4.0)])
    test = inter([(2, 2, 5.0), (2, 3, 1.0), (0, 1, 4.0)])  # user 2 has no training data (cold user)
    report = evaluate([PopularityScorer.from_interactions(train.items, 4)], train, test, 3, 4, ks=[1, 2], ties="index")
    pop = report.results["popularity"]
    # Warm: user 0, candidates {1} (0, 2 trained, 3 unknown) -> 1 relevant at rank 1.
    assert pop["warm"]["precision@1"] == 1.0 and pop["warm"]["precision@2"] == 0.5
    # Cold user 2 ranks all known items 0, 1, 2 (1 before 2 by index); relevant {2} -> rank 3.
    assert pop["cold_users"]["users_evaluated"] == 1
    assert pop["cold_users"]["hitrate@2"] == 0.0
    assert "rmse" not in pop["warm"]  # popularity predicts no ratings
    # The default rule: items 1 and 2 tie (one training rating each), so item 2 is at rank 2 with probability 1/2.
    expected = evaluate([PopularityScorer.from_interactions(train.items, 4)], train, test, 3, 4, ks=[1, 2]).results["popularity"]
    assert expected["cold_users"]["hitrate@2"] == pytest.approx(0.5) and expected["cold_users"]["precision@2"] == pytest.approx(0.25)
    assert expected["warm"]["precision@1"] == 1.0


def test_evaluator_rejects_pairs_shared_by_train_and_test():
    with pytest.raises(ValueError, match="repeat a \\(user, item\\) pair"):
        evaluate([MatrixScorer(torch.zeros(1, 2))], inter([(0, 0, 5.0)]), inter([(0, 0, 4.0)]), 1, 2)


# ---- property test against a slow, obviously-correct reference ---------------------------------------
def reference(scores, train, test, ks, threshold, exclude):
    """Plain-Python evaluation of the warm segment: dict of macro means, users evaluated, coverage."""
    known_items = {i for _, i, _ in train}
    known_users = {u for u, _, _ in train}
    per_user, recommended = {}, {k: set() for k in ks}
    for u in sorted({u for u, _, _ in test}):
        if u not in known_users:
            continue
        removed = {i for uu, i, r in train if uu == u and (exclude == "all" or r >= threshold)}
        relevant = {i for uu, i, r in test if uu == u and r >= threshold and i in known_items}
        if not relevant:
            continue
        candidates = [i for i in sorted(known_items) if i not in removed]
        ranking = sorted(candidates, key=lambda i: (-scores[u][i], i))
        for k in ks:
            top = ranking[:k]
            recommended[k].update(top)
            rel = [1 if i in relevant else 0 for i in top]
            hits = sum(rel)
            p, r = hits / k, hits / len(relevant)
            dcg = sum(g / math.log2(j + 2) for j, g in enumerate(rel))
            idcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(relevant))))
            ap = sum(sum(rel[: j + 1]) / (j + 1) for j, g in enumerate(rel) if g) / min(k, len(relevant))
            values = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
                      "ndcg": dcg / idcg, "map": ap, "hitrate": float(hits > 0)}
            for name, v in values.items():
                per_user.setdefault(f"{name}@{k}", []).append(v)
    means = {name: sum(v) / len(v) for name, v in per_user.items()}
    users = len(per_user.get(f"precision@{ks[0]}", []))
    means.update({f"coverage@{k}": len(recommended[k]) / len(known_items) for k in ks})
    return means, users


@st.composite
def random_split(draw):
    num_users = draw(st.integers(1, 6))
    num_items = draw(st.integers(1, 9))
    cells = [(u, i) for u in range(num_users) for i in range(num_items)]
    parts = draw(st.lists(st.sampled_from(["train", "test", None]), min_size=len(cells), max_size=len(cells)))
    ratings = draw(st.lists(st.integers(1, 5), min_size=len(cells), max_size=len(cells)))
    train = [(u, i, float(r)) for (u, i), part, r in zip(cells, parts, ratings) if part == "train"]
    test = [(u, i, float(r)) for (u, i), part, r in zip(cells, parts, ratings) if part == "test"]
    # Few distinct score values, so ties are common.
    scores = draw(st.lists(st.integers(0, 3), min_size=len(cells), max_size=len(cells)))
    matrix = [[float(scores[u * num_items + i]) for i in range(num_items)] for u in range(num_users)]
    return num_users, num_items, train, test, matrix


@settings(max_examples=150, deadline=None)
@given(split=random_split(), ks=st.lists(st.integers(1, 12), min_size=1, max_size=3),
       exclude=st.sampled_from(["all", "positives"]), batch=st.integers(1, 40))
def test_evaluator_matches_slow_reference(split, ks, exclude, batch):
    num_users, num_items, train, test, matrix = split
    if not train or not test:
        return
    report = evaluate([MatrixScorer(torch.tensor(matrix))], inter(train), inter(test), num_users, num_items,
                      ks=ks, exclude_train=exclude, max_batch_elements=batch, ties="index")
    expected, users = reference(matrix, train, test, sorted(set(ks)), 4.0, exclude)
    warm = report.results["matrix"].get("warm", {})
    assert warm.get("users_evaluated", 0) == users
    if users == 0:
        return
    for name, value in expected.items():
        assert warm[name] == pytest.approx(value, abs=1e-9), name
