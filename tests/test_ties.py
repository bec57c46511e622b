"""Expected metrics under random tie order (visrec.evaluation.ties) against brute force: every order of the
items, each ranked by the index rule, averaged."""
import itertools

import pytest
import torch

from visrec.evaluation.ranking import RankingTask, evaluate_ranking
from visrec.evaluation.user_items import UserItems


def _task(relevant: torch.Tensor, excluded: torch.Tensor, candidates: torch.Tensor) -> RankingTask:
    """(E, N) bool relevant / excluded (disjoint), (N,) bool candidates -> the task over users 0..E-1."""
    def rows(mask):
        users, items = mask.nonzero(as_tuple=True)
        return UserItems.from_pairs(users, items, mask.shape[0])
    return RankingTask(torch.arange(relevant.shape[0]), candidates, rows(excluded), rows(relevant))


def _brute_force(scores, relevant, excluded, candidates, ks):
    """Per-user metrics averaged over all N! item orders, each ranked by the index rule."""
    n = scores.shape[1]
    totals, count = None, 0
    for order in itertools.permutations(range(n)):
        order = torch.tensor(order)
        task = _task(relevant[:, order], excluded[:, order], candidates[order])
        result = evaluate_ranking(lambda u: scores[u][:, order], task, ks, ties="index").per_user
        totals = result if totals is None else {name: totals[name] + v for name, v in result.items()}
        count += 1
    return {name: v / count for name, v in totals.items()}


@pytest.mark.parametrize("seed", range(6))
def test_expected_metrics_equal_the_average_over_every_tie_order(seed):
    generator = torch.Generator().manual_seed(seed)
    users, n = 5, 6
    scores = torch.randint(0, 3, (users, n), generator=generator).float()  # three levels: many ties
    scores[0] = 1.0  # one user whose scores are all tied
    scores[1, 2] = float("nan")  # NaN ranks as -inf
    excluded = torch.rand(users, n, generator=generator) < 0.25
    candidates = torch.ones(n, dtype=torch.bool)
    candidates[5] = seed % 2 == 0  # a non-candidate item in some cases
    relevant = (torch.rand(users, n, generator=generator) < 0.4) & ~excluded & candidates
    excluded[:, 0], relevant[:, 0] = False, True  # every user has >= 1 relevant candidate
    ks = [1, 2, 3, 7]  # 7 > N: fewer candidates than K
    expected = evaluate_ranking(lambda u: scores[u], _task(relevant, excluded, candidates), ks, ties="expected").per_user
    truth = _brute_force(scores, relevant, excluded, candidates, ks)
    for name in truth:
        torch.testing.assert_close(expected[name], truth[name], rtol=1e-9, atol=1e-12, msg=name)


def test_without_ties_expected_and_index_rules_agree():
    generator = torch.Generator().manual_seed(3)
    users, n = 40, 50
    scores = torch.randn(users, n, generator=generator)
    excluded = torch.rand(users, n, generator=generator) < 0.2
    relevant = (torch.rand(users, n, generator=generator) < 0.1) & ~excluded
    relevant[:, 7] = ~excluded[:, 7] | relevant[:, 7]
    excluded[:, 7] = False
    task = _task(relevant, excluded, torch.ones(n, dtype=torch.bool))
    a = evaluate_ranking(lambda u: scores[u], task, [5, 10], ties="expected").per_user
    b = evaluate_ranking(lambda u: scores[u], task, [5, 10], ties="index").per_user
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-12, atol=1e-12, msg=name)


def test_a_constant_scorer_gets_the_random_floor_whatever_the_item_ids():
    # One user, 100 candidates, the 10 relevant ones at the lowest ids: the index rule gives a constant scorer
    # a perfect list; in expectation it is the random floor: precision@10 = 10 / 100.
    relevant = torch.zeros(1, 100, dtype=torch.bool)
    relevant[0, :10] = True
    task = _task(relevant, torch.zeros(1, 100, dtype=torch.bool), torch.ones(100, dtype=torch.bool))
    constant = lambda u: torch.zeros(len(u), 100)  # noqa: E731
    assert float(evaluate_ranking(constant, task, [10], ties="index").per_user["precision@10"][0]) == 1.0
    result = evaluate_ranking(constant, task, [10], ties="expected").per_user
    assert float(result["precision@10"][0]) == pytest.approx(0.1)
    assert float(result["recall@10"][0]) == pytest.approx(0.1)


def test_a_constant_scorer_gets_the_closed_form_random_floor():
    # E[NDCG@K] of a uniformly random order of n candidates with r relevant: (r / n) Σ_{j<=min(K, n)} 1/log2(j + 1)
    # divided by the ideal DCG of min(K, r) hits; E[Recall@K] = min(K, n) / n.
    import math
    generator = torch.Generator().manual_seed(0)
    users, n, k = 30, 40, 10
    excluded = torch.rand(users, n, generator=generator) < 0.5
    relevant = (torch.rand(users, n, generator=generator) < 0.2) & ~excluded
    excluded[:, 0], relevant[:, 0] = False, True
    result = evaluate_ranking(lambda u: torch.zeros(len(u), n), _task(relevant, excluded, torch.ones(n, dtype=torch.bool)),
                              [k]).per_user
    for u in range(users):
        cand, r = int((~excluded[u]).sum()), int(relevant[u].sum())
        dcg = lambda m: sum(1 / math.log2(j + 1) for j in range(1, m + 1))  # noqa: E731
        assert float(result["ndcg@10"][u]) == pytest.approx(r / cand * dcg(min(k, cand)) / dcg(min(k, r)), rel=1e-12)
        assert float(result["recall@10"][u]) == pytest.approx(min(k, cand) / cand, rel=1e-12)


def test_an_unknown_tie_rule_is_refused():
    task = _task(torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, 2, dtype=torch.bool), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="ties must be one of"):
        evaluate_ranking(lambda u: torch.zeros(len(u), 2), task, [1], ties="random")


@pytest.mark.parametrize("ties", ["expected", "index"])
@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
def test_a_candidate_scored_nan_or_minus_inf_still_counts_when_every_candidate_fits(ties, bad):
    # Items 0, 1 excluded (the user's training items), item 2 relevant but scored NaN/-inf, item 3 scored 1:
    # with K >= the 2 candidates, both are in the list, so recall@3 is 1 (a non-candidate used to take the slot).
    excluded = torch.tensor([[True, True, False, False]])
    relevant = torch.tensor([[False, False, True, False]])
    scores = torch.tensor([[0.0, 0.0, bad, 1.0]])
    result = evaluate_ranking(lambda u: scores[u].clone(), _task(relevant, excluded, torch.ones(4, dtype=torch.bool)), [3],
                              ties=ties).per_user
    assert float(result["recall@3"][0]) == 1.0
