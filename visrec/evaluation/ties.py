"""Ranking metrics in expectation over a uniformly random order of tied items.

A model that gives several items the same score has not ranked them; the index order of ``top_k`` (a
defined, machine-independent order) would credit it with whatever the item ids happen to say — on
MovieLens low ids are early, popular titles, so a model that scores every cold item 0 looks better than
every real cold-item model. Following McSherry & Najork ("Computing Information Retrieval Performance
Measures Efficiently in the Presence of Tied Scores", ECIR 2008), each metric is instead its expected value
when every group of tied items is put in a uniformly random order (independently per group and user).

Notation (one user): the ranking is cut into *tie groups*, maximal runs of equal scores. A group g starts at
0-based rank a_g, holds t_g candidates, r_g of them relevant. Every rank j of g holds a relevant item with
probability p_j = r_g / t_g, and two distinct ranks i ≠ j of g both do with probability
q_g = r_g (r_g − 1) / (t_g (t_g − 1)); ranks in different groups are independent, and every group that ends
above the cut-off K is whole inside the top K, so only the group at the cut-off is sampled. Then, with the
definitions of :mod:`visrec.evaluation.metrics`:

    E[hits@K]       = Σ_{j<K} p_j                  -> Precision, Recall, F1 = 2·hits / (K + R_u), NDCG are
                                                      linear in rel_j: the formulas with p_j in place of rel_j
    E[HitRate@K]    = 1 if a group above the cut-off holds a relevant item, else
                      1 − C(t − r, m) / C(t, m)      (the cut-off group: m of its t items in the top K;
                                                      hypergeometric)
    E[AP@K]         = Σ_{j<K} E[rel_j · Σ_{i<=j} rel_i] / (j + 1) / min(K, R_u), with
                      E[rel_j · Σ_{i<=j} rel_i] = p_j (1 + H_j) + (j − a_g) q_g,
                      H_j = the relevant items in the groups above j's group (exact: those groups are whole).

With no ties every p_j is 0 or 1 and these are the ordinary metrics. Coverage@K stays that of the index-
ordered lists (which items a random order recommends is itself random).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from visrec.evaluation.metrics import pad_hits, ranking_metrics

TIE_RULES = ("expected", "index")  # expected: McSherry & Najork 2008 (default); index: lower item index first


@dataclass
class TieGroups:
    """The tie groups of each user's top L ranks (B users), one value per rank (B, L).

    expected_rel: p_j, the probability that rank j holds a relevant item (0 past the user's candidates);
    start: a_g, the 0-based rank where j's group starts; size: t_g; relevant: r_g (both over all the
    user's candidates, including the group's ranks past L); hits_above: H_j, relevant items in the groups
    above j's group."""

    expected_rel: torch.Tensor
    start: torch.Tensor
    size: torch.Tensor
    relevant: torch.Tensor
    hits_above: torch.Tensor


def tie_groups(values: torch.Tensor, hits: torch.Tensor, valid: torch.Tensor, scores: torch.Tensor,
               relevant: torch.Tensor, num_candidates: torch.Tensor, num_relevant: torch.Tensor,
               next_values: torch.Tensor | None = None) -> TieGroups:
    """Tie groups of ranked lists.

    values: (B, L) the scores of each user's top L candidates, best first (no NaN: the caller maps them);
    hits: (B, L) bool, whether each of those items is relevant; valid: (B, L) bool, whether the rank holds a
    candidate; scores: (B, N) all scores, non-candidates −inf; relevant: (B, N) bool; num_candidates,
    num_relevant: (B,); next_values: (B,) the score at the first rank past the list, or None when the list
    holds every item. A row whose last group goes on past rank L (its next value equals its last) has that
    group's size and relevant items counted on ``scores`` (items scoring >= its score, minus the ranks above
    it): one pass over those rows' N scores, none for the others."""
    batch, length = values.shape
    ranks = torch.arange(length, device=values.device)  # (L,)
    starts_group = torch.ones_like(values, dtype=torch.bool)  # (B, L)
    starts_group[:, 1:] = values[:, 1:] != values[:, :-1]
    start = torch.cummax(torch.where(starts_group, ranks, 0), dim=1).values  # (B, L) a_g of each rank
    group = starts_group.long().cumsum(1) - 1  # (B, L) 0-based group number within the row
    hits_f = (hits & valid).to(torch.float64)  # (B, L)
    size = torch.zeros(batch, length, dtype=torch.float64).scatter_add_(1, group, valid.to(torch.float64)).gather(1, group)
    rel = torch.zeros(batch, length, dtype=torch.float64).scatter_add_(1, group, hits_f).gather(1, group)
    above = torch.cat([torch.zeros(batch, 1, dtype=torch.float64), hits_f.cumsum(1)], dim=1)  # (B, L+1) hits before rank j
    hits_above = above.gather(1, start)  # (B, L)
    if length:
        # The last group may continue past rank L: then it is counted over all the user's candidates.
        last = values[:, -1]  # (B,)
        last_start = start[:, -1:]  # (B, 1)
        finite = last > float("-inf")
        count = last_start[:, 0].to(torch.float64) + size[:, -1]  # (B,) ranks down to the group's end in the list
        count_rel = hits_above[:, -1] + rel[:, -1]
        minus_inf = ~finite  # the list ran past the candidates: the rest of them all tie at −inf
        count = torch.where(minus_inf, num_candidates.to(torch.float64), count)
        count_rel = torch.where(minus_inf, num_relevant.to(torch.float64), count_rel)
        if next_values is not None:
            rows = ((next_values == last) & finite).nonzero().squeeze(1)  # (M,)
            if len(rows):
                at_least = scores[rows] >= last[rows, None]  # (M, N)
                count[rows] = at_least.sum(1).to(torch.float64)
                count_rel[rows] = (at_least & relevant[rows]).sum(1).to(torch.float64)
        in_last = start == last_start  # (B, L)
        size = torch.where(in_last, count[:, None] - last_start, size)
        rel = torch.where(in_last, count_rel[:, None] - hits_above[:, -1:], rel)
    expected_rel = torch.where(valid & (size > 0), rel / size.clamp(min=1), torch.zeros_like(size))
    return TieGroups(expected_rel, start, size, rel, hits_above)


def expected_ranking_metrics(groups: TieGroups, num_relevant: torch.Tensor, num_candidates: torch.Tensor,
                             k: int) -> dict[str, torch.Tensor]:
    """The per-user metrics of :func:`visrec.evaluation.metrics.ranking_metrics` at cut-off ``k``, each in
    expectation over a random order of tied items (formulas in the module docstring). Returns {name: (B,) float64}.

    Precision, Recall, F1 and NDCG are the ordinary formulas on p_j (F1 = 2·hits / (K + R_u) is linear in the
    hits too); MAP and HitRate are not linear in rel_j and are computed here."""
    metrics = ranking_metrics(groups.expected_rel, num_relevant, k)  # p_j in place of rel_j
    rel = pad_hits(groups.expected_rel, k)  # (B, k) p_j
    ranks = torch.arange(1, k + 1, dtype=torch.float64)  # (k,) 1-based
    ideal_len = num_relevant.clamp(max=k).long()  # (B,) min(K, R_u)
    # AP: E[rel_j · hits up to j] = p_j (1 + H_j) + (j − a_g) q_g.
    width = groups.expected_rel.shape[1]
    size, group_rel = pad_hits(groups.size, k), pad_hits(groups.relevant, k)  # (B, k)
    pairs = torch.where(size >= 2, group_rel * (group_rel - 1) / (size * (size - 1)).clamp(min=1), torch.zeros_like(size))
    before_in_group = (torch.arange(k)[None, :] - pad_hits(groups.start, k)).clamp(min=0).to(torch.float64)  # (B, k)
    joint = rel * (1 + pad_hits(groups.hits_above, k)) + before_in_group * pairs  # (B, k)
    average_precision = (joint / ranks).sum(1) / ideal_len.to(torch.float64)
    # HitRate: the cut-off group's rank is the last rank that holds a candidate within the top k.
    last = (torch.minimum(num_candidates.clamp(min=1), torch.tensor(k)) - 1).clamp(max=max(width - 1, 0))  # (B,)
    at = last[:, None]
    if width == 0:
        hitrate = torch.zeros(len(rel), dtype=torch.float64)
    else:
        t = groups.size.gather(1, at)[:, 0]
        r = groups.relevant.gather(1, at)[:, 0]
        a = groups.start.gather(1, at)[:, 0].to(torch.float64)
        drawn = last.to(torch.float64) + 1 - a  # (B,) m: the group's ranks inside the top k
        miss = torch.where(r <= 0, torch.ones_like(t), torch.where(t - r < drawn, torch.zeros_like(t), torch.exp(
            _log_choose(t - r, drawn) - _log_choose(t, drawn))))  # C(t − r, m) / C(t, m)
        hitrate = torch.where(groups.hits_above.gather(1, at)[:, 0] > 0, torch.ones_like(t), 1 - miss)
    return {**metrics, "map": average_precision, "hitrate": hitrate}


def _log_choose(n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """log C(n, m) for n >= m >= 0 (float64, elementwise; other entries are masked by the caller)."""
    n, m = n.clamp(min=0), m.clamp(min=0)
    return torch.lgamma(n + 1) - torch.lgamma(m + 1) - torch.lgamma((n - m).clamp(min=0) + 1)
