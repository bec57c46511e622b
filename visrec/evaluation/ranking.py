"""Batched top-K ranking evaluation: users in batches, one score matrix per batch, masking, ``top_k``.

Memory is bounded by the batch: about ``max_batch_elements`` scores (B · N) are alive at once,
whatever the number of users; the batch size B is derived from the catalog size N.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from visrec.evaluation.metrics import RANKING_METRICS, ranking_metrics
from visrec.evaluation.ties import TIE_RULES, expected_ranking_metrics, tie_groups
from visrec.evaluation.topk import top_k
from visrec.evaluation.user_items import UserItems

ScoreUsers = Callable[[torch.Tensor], torch.Tensor]  # (B,) user indices -> (B, N) scores

LOWEST_SCORE = torch.finfo(torch.float32).min
DEFAULT_BATCH_ELEMENTS = 2**24  # 16.7M scores per batch: ~64 MB of float32


@dataclass
class RankingTask:
    """Who is ranked against what.

    users:      (E,) user indices to evaluate (each with >= 1 relevant item);
    candidates: (N,) bool, the item universe of this task;
    excluded:   E rows of items removed from that user's candidates (subset of the candidates);
    relevant:   E rows of relevant test items (subset of the candidates, disjoint from excluded);
    coverage_items: (N,) bool or None, the items coverage@K counts (default: the candidates).
    """

    users: torch.Tensor
    candidates: torch.Tensor
    excluded: UserItems
    relevant: UserItems
    coverage_items: torch.Tensor | None = None

    @property
    def num_candidates(self) -> torch.Tensor:
        """(E,) candidates per user after exclusions."""
        return int(self.candidates.sum()) - self.excluded.counts()


@dataclass
class RankingResult:
    per_user: dict[str, torch.Tensor]  # "precision@10" -> (E,) float64
    coverage: dict[int, float]  # K -> distinct recommended items / candidates (or of the task's coverage_items)
    num_users: int

    def means(self) -> dict[str, float]:
        """Macro averages over users, plus coverage@K."""
        out = {name: float(values.mean()) if len(values) else float("nan") for name, values in self.per_user.items()}
        out.update({f"coverage@{k}": c for k, c in self.coverage.items()})
        return out


def ranked_batches(score_users: ScoreUsers, task: RankingTask, k: int, max_batch_elements: int = DEFAULT_BATCH_ELEMENTS):
    """Yield (start, stop, scores (B, N), top (B, L), valid (B, L)) for consecutive batches of the task's users:
    their scores (non-candidates −inf; a candidate's NaN or −inf as the lowest float32), the top L = min(k, N)
    candidates of each, best first (ties by lower index), and whether each rank holds a candidate."""
    num_items = len(task.candidates)
    batch = max(1, int(max_batch_elements) // max(num_items, 1))
    num_candidates = task.num_candidates  # (E,)
    all_candidates = bool(task.candidates.all())
    for start in range(0, len(task.users), batch):
        stop = min(start + batch, len(task.users))
        scores = score_users(task.users[start:stop]).to(torch.float32)  # (B, N)
        # A candidate scored NaN or −inf ranks last among the candidates (tied), but above every non-candidate.
        scores = torch.nan_to_num(scores, nan=LOWEST_SCORE, posinf=float("inf"), neginf=LOWEST_SCORE)  # ours to modify
        if not all_candidates:
            scores.masked_fill_(~task.candidates, float("-inf"))
        rows, items = task.excluded.block(start, stop)
        scores[rows, items] = float("-inf")
        top = top_k(scores, k)  # (B, L)
        valid = torch.arange(top.shape[1]) < num_candidates[start:stop, None]  # (B, L)
        yield start, stop, scores, top, valid


def top_k_lists(score_users: ScoreUsers, task: RankingTask, k: int, max_batch_elements: int = DEFAULT_BATCH_ELEMENTS) -> torch.Tensor:
    """(E, min(k, N)) item indices each evaluated user is recommended, best first; -1 where a user has fewer candidates."""
    parts = [top.masked_fill(~valid, -1) for _, _, _, top, valid in ranked_batches(score_users, task, k, max_batch_elements)]
    return torch.cat(parts) if parts else torch.empty(0, min(k, len(task.candidates)), dtype=torch.int64)


def evaluate_ranking(score_users: ScoreUsers, task: RankingTask, ks: Sequence[int],
                     max_batch_elements: int = DEFAULT_BATCH_ELEMENTS, ties: str = "expected") -> RankingResult:
    """Per-user ranking metrics (see :mod:`visrec.evaluation.metrics`) for every K in ``ks``.

    ``ties``: ``expected`` (default) — each metric's expected value over a random order of tied items
    (:mod:`visrec.evaluation.ties`, McSherry & Najork 2008), so a model that does not separate items gets no
    credit from their ids; ``index`` — the ranked lists as ``top_k`` orders them (lower index first).
    Coverage@K counts the index-ordered lists either way. Raises ValueError for K < 1 or another rule."""
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"cut-offs K must be positive integers, got {ks}")
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")
    num_items = len(task.candidates)
    num_users = len(task.users)
    num_relevant = task.relevant.counts()  # (E,)
    per_user = {f"{name}@{k}": torch.empty(num_users, dtype=torch.float64) for k in ks for name in RANKING_METRICS}
    recommended = {k: torch.zeros(num_items, dtype=torch.bool) for k in ks}
    num_candidates = task.num_candidates  # (E,)
    length = min(ks[-1], num_items)  # L, the ranks the metrics read
    # Expected rule: one rank more, to see whether each list's last tie group goes on past rank L.
    ranked = ranked_batches(score_users, task, ks[-1] + (ties == "expected"), max_batch_elements)
    for start, stop, scores, top, valid in ranked:
        next_values = scores.gather(1, top[:, length:length + 1])[:, 0] if top.shape[1] > length else None  # (B,) or None
        top, valid = top[:, :length], valid[:, :length]  # (B, L)
        relevant = task.relevant.dense_block(start, stop, num_items)  # (B, N) bool
        hits = relevant.gather(1, top) & valid  # (B, L)
        if ties == "expected":
            groups = tie_groups(scores.gather(1, top), hits, valid, scores, relevant, num_candidates[start:stop],
                                num_relevant[start:stop], next_values)
        for k in ks:
            if ties == "expected":
                metrics = expected_ranking_metrics(groups, num_relevant[start:stop], num_candidates[start:stop], k)
            else:
                metrics = ranking_metrics(hits, num_relevant[start:stop], k)
            for name, values in metrics.items():
                per_user[f"{name}@{k}"][start:stop] = values
            recommended[k][top[:, :k][valid[:, :k]]] = True
    counted = task.candidates if task.coverage_items is None else task.coverage_items  # (N,)
    catalog = max(int(counted.sum()), 1)
    coverage = {k: float((recommended[k] & counted).sum()) / catalog for k in ks}
    return RankingResult(per_user, coverage, num_users)
