"""User-based kNN collaborative filtering (torch only): similarities, neighbour selection and the scoring
half of ``model=user_knn`` (:class:`UserKNNScoring`; trained by :class:`~visrec.models.user_knn_module.UserKNN`).

Prediction: Surprise's ``KNNWithMeans`` (user_based=True; Hug 2020, "Surprise: a Python library for
recommender systems", JOSS 5(52); Desrosiers & Karypis 2011, "A comprehensive survey of neighborhood-based
recommendation methods", eq. 4.9 with mean-centring):
    r̂_ui = μ_u + Σ_{v ∈ N_i^k(u)} s_uv (r_vi − μ_v) / Σ_{v ∈ N_i^k(u)} s_uv
μ_u = mean training rating of u; N_i^k(u) = the (at most) k users with the largest similarity to u among
those who rated i and have s_uv > 0 (Surprise takes the k largest and then drops s_uv <= 0, which is the
same set); when fewer than ``min_k`` such neighbours exist the deviation term is 0 (r̂ = μ_u). Ties in
similarity are broken by lower user index. Fallbacks: a user without training ratings gets μ (the global
training mean) for every item; an item nobody rated gets μ_u (Surprise: μ for an unknown item). Predictions
are clipped to the rating range, as Surprise's ``predict`` does.

Similarities between users u, v over their co-rated items I_uv (n_uv = |I_uv|), as Surprise's ``similarities``:
    cosine   Σ r_ui r_vi / sqrt(Σ r_ui² · Σ r_vi²)                       (sums over I_uv)
    pearson  (n Σ r_ui r_vi − Σ r_ui Σ r_vi) / sqrt((n Σ r_ui² − (Σ r_ui)²)(n Σ r_vi² − (Σ r_vi)²))
             (Pearson correlation, i.e. mean-centred on each user's co-rated means; 0 when a variance is 0)
s_uv = 0 when n_uv < ``min_support``. ``shrinkage`` λ > 0 shrinks toward 0: s_uv · n_uv / (n_uv + λ)
(Koren 2010, "Factor in the neighbors", eq. 2; λ = 100 there). A user is never its own neighbour.
Every sum over I_uv is a product of sparse (U, N) matrices with a dense (B, N) block of the batch's rows
(``torch.sparse.mm``): ratings R, indicators M, squares R².

Vectorized neighbour selection: for a batch of B users and a chunk of C items, users are sorted by
similarity once per batch user ((B, U) argsort); a cumulative count over the sorted users of who rated each
item ((B, U, C)) keeps the first k eligible raters of every item. Blocks are sized to hold at most
``max_block_elements`` (B·U·C) cells; cost O(U² N) for scoring every user (fine at ML-100K/1M scale).

Not exportable: serving reads factor tables (:mod:`visrec.export.bundle`); a kNN model needs a bundle
format of its own (not built), so ``exportable`` is False and ``export=true`` is refused at set-up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from visrec.models.scoring_base import ScoringModel

SIMILARITIES = ("cosine", "pearson")


def rows_dense(users: torch.Tensor, items: torch.Tensor, values: torch.Tensor, batch: torch.Tensor, num_users: int,
               num_items: int) -> torch.Tensor:
    """(B, N) dense rows of the sparse (U, N) matrix given as COO (users, items, values), for ``batch`` (B,) users."""
    position = torch.full((num_users,), -1, dtype=torch.long, device=users.device)
    position[batch] = torch.arange(len(batch), device=users.device)
    row = position[users]  # (nnz,)
    kept = row >= 0
    out = torch.zeros(len(batch), num_items, dtype=values.dtype, device=values.device)
    out[row[kept], items[kept]] = values[kept]
    return out


def columns_dense(users: torch.Tensor, items: torch.Tensor, values: torch.Tensor, start: int, stop: int,
                  num_users: int) -> torch.Tensor:
    """(U, stop − start) dense columns [start, stop) of the sparse (U, N) matrix given as COO."""
    kept = (items >= start) & (items < stop)
    out = torch.zeros(num_users, stop - start, dtype=values.dtype, device=values.device)
    out[users[kept], items[kept] - start] = values[kept]
    return out


def user_similarities(block: torch.Tensor, ratings: torch.Tensor, similarity: str = "cosine", min_support: int = 1,
                      shrinkage: float = 0.0) -> torch.Tensor:
    """(B, U) similarities of a batch's users to every user (formulas: module docstring).

    block: (B, N) dense ratings of the batch users (0 = not rated); ratings: (U, N) sparse COO (or dense)
    training ratings. Raises ValueError for an unknown ``similarity`` (``model.similarity``)."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"model.similarity must be one of {SIMILARITIES}, got {similarity!r}")
    mask_b = (block != 0).to(block.dtype)  # (B, N)
    rated = torch.sparse_coo_tensor(ratings.indices(), torch.ones_like(ratings.values()), ratings.shape) if ratings.is_sparse \
        else (ratings != 0).to(ratings.dtype)  # (U, N)
    squares = torch.sparse_coo_tensor(ratings.indices(), ratings.values().pow(2), ratings.shape) if ratings.is_sparse \
        else ratings.pow(2)  # (U, N)

    def times(dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:  # (B, N) x (U, N)ᵀ -> (B, U)
        return torch.sparse.mm(sparse, dense.T).T if sparse.is_sparse else dense @ sparse.T

    count = times(mask_b, rated)  # (B, U) n_uv
    prods = times(block, ratings)  # (B, U) Σ r_ui r_vi
    sq_b, sq_v = times(block.pow(2), rated), times(mask_b, squares)  # (B, U) Σ r_ui², Σ r_vi² over I_uv
    if similarity == "cosine":
        num, den = prods, (sq_b * sq_v).sqrt()
    else:
        sum_b, sum_v = times(block, rated), times(mask_b, ratings)  # (B, U) Σ r_ui, Σ r_vi over I_uv
        num = count * prods - sum_b * sum_v
        den = ((count * sq_b - sum_b.pow(2)).clamp_min(0) * (count * sq_v - sum_v.pow(2)).clamp_min(0)).sqrt()
    sim = torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))  # (B, U)
    sim = sim.masked_fill(count < max(min_support, 1), 0.0)
    if shrinkage > 0:
        sim = sim * count / (count + shrinkage)
    return sim


def knn_with_means(sim: torch.Tensor, centred: torch.Tensor, rated: torch.Tensor, user_means: torch.Tensor, k: int,
                   min_k: int) -> torch.Tensor:
    """(B, C) KNNWithMeans deviations-plus-means for B users and C items (formula: module docstring).

    sim: (B, U) similarities (self already 0); centred: (U, C) r_vi − μ_v (0 where unrated); rated: (U, C) bool;
    user_means: (B,) μ_u of the batch users."""
    positive = sim.clamp_min(0)  # (B, U): s_uv <= 0 never counts
    order = torch.sort(positive, dim=1, descending=True, stable=True).indices  # (B, U), ties: lower index first
    sorted_sim = positive.gather(1, order)  # (B, U)
    width = int((sorted_sim > 0).sum(1).max()) if sorted_sim.numel() else 0  # users past this never count
    order, sorted_sim = order[:, :width], sorted_sim[:, :width]  # (B, W)
    eligible = rated[order] & (sorted_sim > 0)[:, :, None]  # (B, W, C)
    keep = eligible & (eligible.cumsum(1, dtype=torch.int32) <= k)  # (B, W, C): the first k eligible raters of each item
    weights = sorted_sim[:, :, None] * keep  # (B, U, C)
    sum_sim = weights.sum(1)  # (B, C)
    deviation = (weights * centred[order]).sum(1)  # (B, C)
    enough = (keep.sum(1) >= min_k) & (sum_sim > 0)  # (B, C)
    return user_means[:, None] + torch.where(enough, deviation / sum_sim.clamp_min(1e-30), torch.zeros_like(deviation))


@dataclass
class UserKNNScorer:
    """The evaluator's scorer of a fitted :class:`UserKNNScoring` (``score_users`` (B,) -> (B, N),
    ``predict`` (R,), (R,) -> (R,) clipped ratings)."""

    model: "UserKNNScoring"
    name: str = "model"

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.model.score_users(users)

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(R,) predictions: each distinct user's row is scored once and the pairs gathered from it."""
        unique, inverse = torch.unique(users, return_inverse=True)
        rows = self.model.score_users(unique)  # (B', N)
        pred = rows[inverse, items]  # (R,)
        return pred if self.model.rating_range is None else pred.clamp(*self.model.rating_range)


class UserKNNScoring(ScoringModel):
    """User-based kNN (KNNWithMeans) as the scoring half of the model contract (see the module docstring)."""

    predicts_ratings = True
    exportable = False  # serving reads factor tables; a kNN bundle format is not built
    model_kind = "UserKNN"

    def __init__(self, num_users: int, num_items: int, global_mean: float = 0.0, rating_min: float | None = None,
                 rating_max: float | None = None, k: int = 40, min_k: int = 1, similarity: str = "cosine",
                 min_support: int = 1, shrinkage: float = 0.0, max_block_elements: int = 2 ** 23):
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.k, self.min_k, self.similarity = k, min_k, similarity
        self.min_support, self.shrinkage, self.max_block_elements = min_support, float(shrinkage), max_block_elements
        self.rating_range = None if rating_min is None or rating_max is None else (float(rating_min), float(rating_max))
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))
        self.register_buffer("user_counts", torch.zeros(num_users))
        self.register_buffer("item_counts", torch.zeros(num_items))
        # The fitted "parameters": each user's mean rating (a Parameter only so that the closed-form step
        # has one to hold; never trained by gradients) and the training ratings (COO, sorted by user, item).
        self.user_means = nn.Parameter(torch.zeros(num_users), requires_grad=False)  # (U,)
        self.register_buffer("train_users", torch.zeros(0, dtype=torch.long))  # (nnz,)
        self.register_buffer("train_items", torch.zeros(0, dtype=torch.long))  # (nnz,)
        self.register_buffer("train_ratings", torch.zeros(0))  # (nnz,)

    # ---- contract: built for the data, known users / items ----------------------------------------
    def attach_features(self, features: torch.Tensor, has_image: torch.Tensor, fit: bool = True) -> None:
        """No image features (collaborative filtering only)."""

    @property
    def has_image_prior(self) -> bool:
        return False

    def set_train_counts(self, user_counts: torch.Tensor, item_counts: torch.Tensor) -> None:
        self.user_counts.copy_(user_counts)
        self.item_counts.copy_(item_counts)

    @property
    def known_users(self) -> torch.Tensor:
        return self.user_counts > 0  # (U,)

    @property
    def known_items(self) -> torch.Tensor:
        return self.item_counts > 0  # (N,)

    @property
    def item_train_counts(self) -> torch.Tensor:
        return self.item_counts  # (N,)

    def item_vectors(self) -> None:
        return None

    def bundle_arrays(self):
        raise NotImplementedError("model=user_knn cannot be exported: serving bundles hold factor tables and a kNN "
                                  "model has none (a kNN bundle format is not built); train with export=false")

    # ---- fit: store the ratings and the user means ------------------------------------------------------
    @torch.no_grad()
    def fit(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> None:
        """Keep the (R,) training ratings (sorted by user, then item) and μ_u (the fit of a memory-based model)."""
        order = torch.argsort(users * self.num_items + items)
        self.train_users, self.train_items = users[order].long(), items[order].long()
        self.train_ratings = ratings[order].float()
        counts = torch.bincount(self.train_users, minlength=self.num_users).float()  # (U,)
        sums = torch.zeros(self.num_users, device=counts.device).index_add_(0, self.train_users, self.train_ratings)
        self.user_means.copy_(torch.where(counts > 0, sums / counts.clamp_min(1), self.global_mean))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("train_users", "train_items", "train_ratings"):  # variable size (nnz): take the checkpoint's
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- scores ---------------------------------------------------------------------------------------
    def scorer(self, name: str = "model") -> UserKNNScorer:
        return UserKNNScorer(self, name)

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """(B, N) KNNWithMeans predictions (not clipped) for (B,) users; unknown users get μ everywhere."""
        U, N = self.num_users, self.num_items
        tu, ti, tr = self.train_users, self.train_items, self.train_ratings
        ratings = torch.sparse_coo_tensor(torch.stack([tu, ti]), tr, (U, N)).coalesce()  # (U, N)
        centred = tr - self.user_means[tu]  # (nnz,)
        out = torch.empty(len(users), N, device=tr.device)
        step = max(1, min(len(users), self.max_block_elements // max(U * N, 1)))
        for start in range(0, len(users), step):  # blocks of users, not single users
            batch = users[start:start + step]  # (b,)
            block = rows_dense(tu, ti, tr, batch, U, N)  # (b, N)
            sim = user_similarities(block, ratings, self.similarity, self.min_support, self.shrinkage)  # (b, U)
            sim[torch.arange(len(batch)), batch] = 0.0  # never one's own neighbour
            width = max(1, self.max_block_elements // (len(batch) * U))
            for lo in range(0, N, width):  # chunks of items
                hi = min(N, lo + width)
                cols = columns_dense(tu, ti, centred, lo, hi, U)  # (U, C)
                rated = columns_dense(tu, ti, torch.ones_like(tr), lo, hi, U) > 0  # (U, C)
                out[start:start + step, lo:hi] = knn_with_means(sim, cols, rated, self.user_means[batch], self.k, self.min_k)
        known = self.known_users[users]  # (B,)
        return torch.where(known[:, None], out, self.global_mean.to(out.dtype))
