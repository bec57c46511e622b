"""Biased matrix factorization as a plain ``nn.Module`` (torch only).

Prediction: r̂_ui = μ + b_u + b_i + p_u · q_i, with μ the global training mean (a fixed buffer).
Users or items with no training ratings keep their initial parameters, which carry no information;
``predict`` therefore scores them with the fallback r̂ = μ + b_u (unknown item), μ + b_i (unknown
user) or μ (both), never with untrained noise.
"""
from __future__ import annotations

import torch
from torch import nn


class BiasedMF(nn.Module):
    """U users, N items, K factors. Factors start at N(0, init_std²), biases at 0."""

    def __init__(self, num_users: int, num_items: int, k: int, init_std: float = 0.1, global_mean: float = 0.0):
        super().__init__()
        self.user_factors = nn.Embedding(num_users, k)  # P: (U, K)
        self.item_factors = nn.Embedding(num_items, k)  # Q: (N, K)
        self.user_bias = nn.Embedding(num_users, 1)  # (U, 1)
        self.item_bias = nn.Embedding(num_items, 1)  # (N, 1)
        nn.init.normal_(self.user_factors.weight, std=init_std)
        nn.init.normal_(self.item_factors.weight, std=init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))
        # Which users / items had training ratings; set by the trainer, saved in checkpoints.
        self.register_buffer("known_users", torch.ones(num_users, dtype=torch.bool))
        self.register_buffer("known_items", torch.ones(num_items, dtype=torch.bool))

    @property
    def num_users(self) -> int:
        return self.user_factors.num_embeddings

    @property
    def num_items(self) -> int:
        return self.item_factors.num_embeddings

    def set_known(self, user_train_counts: torch.Tensor, item_train_counts: torch.Tensor) -> None:
        self.known_users.copy_(user_train_counts > 0)
        self.known_items.copy_(item_train_counts > 0)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Raw model output for (B,) user and item indices -> (B,) scores (no fallback)."""
        dot = (self.user_factors(users) * self.item_factors(items)).sum(-1)  # (B,)
        return self.global_mean + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1) + dot

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) predictions with the fallback for users / items that had no training ratings."""
        user_ok = self.known_users[users]  # (B,)
        item_ok = self.known_items[items]  # (B,)
        dot = (self.user_factors(users) * self.item_factors(items)).sum(-1) * (user_ok & item_ok)  # (B,)
        b_u = self.user_bias(users).squeeze(-1) * user_ok  # (B,)
        b_i = self.item_bias(items).squeeze(-1) * item_ok  # (B,)
        return self.global_mean + b_u + b_i + dot

    def l2_terms(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-rating squared norms for a batch: (factors ‖p_u‖²+‖q_i‖², biases b_u²+b_i²), each (B,).

        Summed over the ratings of an epoch, these penalize each user and item in proportion to its
        number of ratings (the frequency-aware L2 of SGD matrix factorization).
        """
        factors = self.user_factors(users).pow(2).sum(-1) + self.item_factors(items).pow(2).sum(-1)  # (B,)
        biases = self.user_bias(users).squeeze(-1).pow(2) + self.item_bias(items).squeeze(-1).pow(2)  # (B,)
        return factors, biases
