"""Metric definitions on tensors. One user per row; every function returns one value per user (B,).

Notation for one user u and a cut-off K:
    rel_j  = 1 if the item at rank j (1-based) of u's ranking is relevant, else 0
             (ranks past the user's number of candidates hold no item and count as 0);
    R_u    = the number of u's relevant test items among the candidates (the evaluator only scores
             users with R_u >= 1);
    hits   = Σ_{j<=K} rel_j.

    Precision@K = hits / K                       (K even when u has fewer than K candidates)
    Recall@K    = hits / R_u
    F1@K        = 2 P R / (P + R) per user, 0 when P + R = 0
    HitRate@K   = 1 if hits >= 1 else 0
    NDCG@K      = DCG / IDCG, DCG = Σ_{j<=K} rel_j / log2(j + 1), IDCG = Σ_{j<=min(K, R_u)} 1 / log2(j + 1)
    MAP@K       = AP@K averaged over users, AP@K = Σ_{j<=K} rel_j · Precision@j / min(K, R_u)

The evaluator reports the macro average of each over the users it scores. These are the definitions
of ../shared/design.md; Cornac uses the same ones for Precision, Recall, F1 and NDCG, but its MAP is
not truncated at K.
"""
from __future__ import annotations

import torch

RANKING_METRICS = ("precision", "recall", "f1", "ndcg", "map", "hitrate")


def pad_hits(hits: torch.Tensor, k: int) -> torch.Tensor:
    """(B, L) relevance of the top L ranks -> (B, k): cut, or padded with zeros when L < k."""
    if hits.shape[1] >= k:
        return hits[:, :k]
    return torch.cat([hits, hits.new_zeros(hits.shape[0], k - hits.shape[1])], dim=1)


def ranking_metrics(hits: torch.Tensor, num_relevant: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """All per-user ranking metrics at cut-off ``k``.

    hits: (B, L) bool or 0/1, relevance of each user's top-L ranked items (L may differ from k), or each rank's
    probability of holding a relevant item (visrec.evaluation.ties: P, R, F1 and NDCG are linear in it);
    num_relevant: (B,) R_u >= 1. Returns {name: (B,) float64}.
    """
    rel = pad_hits(hits, k).to(torch.float64)  # (B, k)
    num_relevant = num_relevant.to(torch.float64)  # (B,)
    ranks = torch.arange(1, k + 1, dtype=torch.float64)  # (k,) 1-based
    discount = 1.0 / torch.log2(ranks + 1.0)  # (k,)

    num_hits = rel.sum(1)  # (B,)
    precision = num_hits / k
    recall = num_hits / num_relevant
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(denom))
    ideal_len = num_relevant.clamp(max=k).long()  # (B,) min(K, R_u)
    ideal_prefix = torch.cat([torch.zeros(1, dtype=torch.float64), discount.cumsum(0)])  # (k+1,)
    ndcg = (rel * discount).sum(1) / ideal_prefix[ideal_len]
    precision_at_j = rel.cumsum(1) / ranks  # (B, k)
    average_precision = (rel * precision_at_j).sum(1) / ideal_len.to(torch.float64)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "ndcg": ndcg,
        "map": average_precision,
        "hitrate": (num_hits > 0).to(torch.float64),
    }


def rating_metrics(predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """RMSE = sqrt(Σ (r̂ - r)² / R) and MAE = Σ |r̂ - r| / R over R (prediction, rating) pairs (both (R,)).

    Predictions are used as given (the caller clips them to the rating range). R = 0 gives NaN
    metrics and ``ratings`` 0, never an error."""
    err = predictions.to(torch.float64) - targets.to(torch.float64)  # (R,)
    count = len(err)
    if count == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "ratings": 0}
    return {"rmse": float(err.pow(2).mean().sqrt()), "mae": float(err.abs().mean()), "ratings": count}
