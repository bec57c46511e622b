"""Biased matrix factorization as a plain ``nn.Module`` (torch only).

Prediction: r̂_ui = μ + b_u + b_i + p_u · q_i, with μ the global training mean (a fixed buffer).
Users or items with no training ratings keep their initial parameters, which carry no information;
``predict`` therefore scores them with the fallback r̂ = μ + b_u (unknown item), μ + b_i (unknown
user) or μ (both), never with untrained noise.

With ``sparse=True`` the four tables are ``nn.Embedding(sparse=True)``: a step's gradient holds only the
rows of the users and items in the batch, so backward and an optimizer that takes sparse gradients
(``torch.optim.SparseAdam``, ``SGD``, ``Adagrad``) cost O(B·K) per step instead of O((U + N)·K).
"""
from __future__ import annotations

import torch
from torch import nn


class BiasedMF(nn.Module):
    """U users, N items, K factors. Factors start at N(0, init_std²), biases at 0. ``sparse``: the tables
    produce sparse (row) gradients."""

    def __init__(self, num_users: int, num_items: int, k: int, init_std: float = 0.1, global_mean: float = 0.0,
                 sparse: bool = False):
        super().__init__()
        self.user_factors = nn.Embedding(num_users, k, sparse=sparse)  # P: (U, K)
        self.item_factors = nn.Embedding(num_items, k, sparse=sparse)  # Q: (N, K)
        self.user_bias = nn.Embedding(num_users, 1, sparse=sparse)  # (U, 1)
        self.item_bias = nn.Embedding(num_items, 1, sparse=sparse)  # (N, 1)
        nn.init.normal_(self.user_factors.weight, std=init_std)
        nn.init.normal_(self.item_factors.weight, std=init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))
        # Training ratings per user / item (set from the data, saved in checkpoints). Zero = cold.
        self.register_buffer("user_counts", torch.ones(num_users))
        self.register_buffer("item_counts", torch.ones(num_items))

    @property
    def num_users(self) -> int:
        return self.user_factors.num_embeddings

    @property
    def num_items(self) -> int:
        return self.item_factors.num_embeddings

    def set_train_counts(self, user_counts: torch.Tensor, item_counts: torch.Tensor) -> None:
        """Record how many training ratings each user (U,) and item (N,) has."""
        self.user_counts.copy_(user_counts)
        self.item_counts.copy_(item_counts)

    @property
    def known_users(self) -> torch.Tensor:
        return self.user_counts > 0  # (U,)

    @property
    def known_items(self) -> torch.Tensor:
        return self.item_counts > 0  # (N,)

    def rows(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The parameters of a batch, looked up once: p_u (B, K), q_i (B, K), b_u (B,), b_i (B,)."""
        return (self.user_factors(users), self.item_factors(items),
                self.user_bias(users).squeeze(-1), self.item_bias(items).squeeze(-1))

    def score_rows(self, p: torch.Tensor, q: torch.Tensor, b_u: torch.Tensor, b_i: torch.Tensor) -> torch.Tensor:
        """μ + b_u + b_i + p_u·q_i from the rows of :meth:`rows` -> (B,)."""
        return self.global_mean + b_u + b_i + (p * q).sum(-1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Raw model output for (B,) user and item indices -> (B,) scores (no fallback)."""
        return self.score_rows(*self.rows(users, items))

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) predictions with the fallback for users / items that had no training ratings."""
        user_ok = self.known_users[users]  # (B,)
        item_ok = self.known_items[items]  # (B,)
        dot = (self.user_factors(users) * self.item_factors(items)).sum(-1) * (user_ok & item_ok)  # (B,)
        b_u = self.user_bias(users).squeeze(-1) * user_ok  # (B,)
        b_i = self.item_bias(items).squeeze(-1) * item_ok  # (B,)
        return self.global_mean + b_u + b_i + dot

    @staticmethod
    def l2_terms(p: torch.Tensor, q: torch.Tensor, b_u: torch.Tensor, b_i: torch.Tensor,
                 w_u: torch.Tensor | float = 1.0, w_i: torch.Tensor | float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-rating weighted squared norms of a batch's rows (from :meth:`rows`), each (B,):
        factors w_u‖p_u‖² + w_i‖q_i‖², biases w_u b_u² + w_i b_i² (weights (B,) or scalars)."""
        factors = w_u * p.pow(2).sum(-1) + w_i * q.pow(2).sum(-1)  # (B,)
        biases = w_u * b_u.pow(2) + w_i * b_i.pow(2)  # (B,)
        return factors, biases
