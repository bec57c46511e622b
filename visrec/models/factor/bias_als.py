"""The regularized baseline predictor's alternating least squares (torch only; used by ``model=bias_only`` and
by ``model=user_knn``'s ``baseline`` variant and ``pearson_baseline`` similarity).

Objective (Koren 2010, "Factor in the neighbors: scalable and accurate collaborative filtering", TKDD 4(1),
§2.1, eq. 1; Surprise's ``baseline_als``):
    min_b  Σ_(u,i)∈R (r_ui − μ − b_u − b_i)² + λ_u Σ_u b_u² + λ_i Σ_i b_i²
"""
from __future__ import annotations

import torch


def als_biases(users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor, num_users: int, num_items: int,
               global_mean: float, reg_user: float, reg_item: float, user_bias: torch.Tensor,
               n_epochs: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_epochs`` ALS epochs of the baseline predictor from ``user_bias`` (U,); returns (b_u (U,), b_i (N,)).

    users, items (R,) int64 indices, ratings (R,) float. An item (user) with no rating and no penalty
    (λ = 0) gets 0, not 0/0. Formula: Koren 2010 §2.1; Surprise ``baseline_als`` (items first)."""
    ratings = ratings.to(user_bias.dtype)
    n_u = torch.bincount(users, minlength=num_users).to(ratings.dtype)  # (U,)
    n_i = torch.bincount(items, minlength=num_items).to(ratings.dtype)  # (N,)
    den_u, den_i = reg_user + n_u, reg_item + n_i  # (U,), (N,)
    residual = ratings - global_mean  # (R,)
    b_u = user_bias.clone()
    b_i = torch.zeros(num_items, dtype=ratings.dtype, device=ratings.device)
    for _ in range(n_epochs):  # epochs, not users: each is two index_adds over all R ratings
        num_i = torch.zeros_like(b_i).index_add_(0, items, residual - b_u[users])  # (N,)
        b_i = torch.where(den_i > 0, num_i / den_i.clamp_min(1e-12), 0.0)
        num_u = torch.zeros_like(b_u).index_add_(0, users, residual - b_i[items])  # (U,)
        b_u = torch.where(den_u > 0, num_u / den_u.clamp_min(1e-12), 0.0)
    return b_u, b_i
