"""User-based kNN collaborative filtering (torch only): similarities, neighbour selection and the scoring
half of ``model=user_knn`` (:class:`UserKNNScoring`; trained by :class:`~visrec.models.knn.user_module.UserKNN`).

Predictions, as Surprise's three user-based kNN algorithms (Hug 2020, "Surprise: a Python library for
recommender systems", JOSS 5(52); Desrosiers & Karypis 2011, "A comprehensive survey of neighborhood-based
recommendation methods", eq. 4.9; Koren 2010, "Factor in the neighbors", TKDD 4(1), eq. 3), chosen by
``variant``:
    basic       (KNNBasic)      r̂_ui = Σ_v s_uv r_vi / Σ_v s_uv
    with_means  (KNNWithMeans)  r̂_ui = μ_u + Σ_v s_uv (r_vi − μ_v) / Σ_v s_uv
    baseline    (KNNBaseline)   r̂_ui = b_ui + Σ_v s_uv (r_vi − b_vi) / Σ_v s_uv,   b_ui = μ + b_u + b_i
the sums over v ∈ N_i^k(u), the (at most) k users with the largest similarity to u among those who rated i
and have s_uv > 0 (Surprise takes the k largest and then drops s_uv <= 0, which is the same set); ties in
similarity are broken by lower user index. μ = global training mean, μ_u = mean training rating of u, b_u,
b_i = the regularized baselines of :func:`~visrec.models.factor.bias_als.als_biases` (Surprise's ALS
``bsl_options``: ``bsl_reg_user`` 15, ``bsl_reg_item`` 10, ``bsl_n_epochs`` 10).
Fewer than ``min_k`` neighbours: with_means gives μ_u, baseline b_ui, basic μ (Surprise's default
prediction). A user without training ratings gets μ for every item (baseline: μ + b_i); an item nobody rated
gets μ_u (with_means; Surprise: μ), μ (basic) or μ + b_u (baseline). Predictions are clipped to the rating
range, as Surprise's ``predict`` does.

Similarities between users u, v over their co-rated items I_uv (n_uv = |I_uv|), as Surprise's ``similarities``:
    cosine            Σ r_ui r_vi / sqrt(Σ r_ui² · Σ r_vi²)                       (sums over I_uv)
    msd               1 / (Σ (r_ui − r_vi)² / n_uv + 1)                           (mean squared difference)
    pearson           (n Σ r_ui r_vi − Σ r_ui Σ r_vi) / sqrt((n Σ r_ui² − (Σ r_ui)²)(n Σ r_vi² − (Σ r_vi)²))
                      (Pearson correlation, i.e. mean-centred on each user's co-rated means; 0 when a variance is 0)
    pearson_baseline  cosine of the baseline residuals r_ui − b_ui over I_uv, times (n_uv − 1) / (n_uv − 1 + λ)
                      (Koren 2010 eq. 2 as Surprise computes it; λ = ``shrinkage``, Surprise's default 100)
s_uv = 0 when n_uv < ``min_support``. For cosine, msd and pearson, ``shrinkage`` λ > 0 shrinks toward 0:
s_uv · n_uv / (n_uv + λ) (Koren 2010, eq. 2). A user is never its own neighbour.
Every sum over I_uv is a product of sparse (U, N) matrices with a dense (B, N) block of the batch's rows
(``torch.sparse.mm``): ratings R, indicators M, squares R².

Vectorized neighbour selection (:func:`neighbourhood_scores`): for a batch of B users, every training rating
(v, i) gets the rank of v in the batch user's similarity order; one sort of the (B, R) key item · U + rank
puts each item's raters in similarity order, and the first k with s_uv > 0 are summed with ``scatter_add``.
Blocks hold at most ``max_block_elements`` (B·R) cells; scoring every user costs O(U · R log R) time
(ML-100K: U = 943, R = 80k) and no (B, U, N) tensor is ever built.

Not exportable: serving reads factor tables (:mod:`visrec.export.bundle`); a kNN model needs a bundle
format of its own (not built), so ``exportable`` is False and ``export=true`` is refused at set-up.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from visrec.models.factor.bias_als import als_biases
from visrec.models.scoring import ScoringModel

SIMILARITIES = ("cosine", "msd", "pearson", "pearson_baseline")
VARIANTS = ("basic", "with_means", "baseline")  # Surprise's KNNBasic, KNNWithMeans, KNNBaseline


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


def user_similarities(block: torch.Tensor, ratings: torch.Tensor, similarity: str = "cosine", min_support: int = 1,
                      shrinkage: float = 0.0, block_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, U) similarities of a batch's users to every user (formulas: module docstring).

    block: (B, N) dense values of the batch users; ratings: (U, N) sparse COO (or dense) values of every user.
    Which cells are rated: ``block_mask`` (B, N) (default ``block != 0``) and the sparse tensor's indices
    (dense: ``!= 0``). For ``pearson_baseline`` the values are the baseline residuals r − b_ui. Raises
    ValueError for an unknown ``similarity`` (``model.similarity``)."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"model.similarity must be one of {SIMILARITIES}, got {similarity!r}")
    mask_b = (block != 0).to(block.dtype) if block_mask is None else block_mask.to(block.dtype)  # (B, N)
    block = block * mask_b
    rated = torch.sparse_coo_tensor(ratings.indices(), torch.ones_like(ratings.values()), ratings.shape) if ratings.is_sparse \
        else (ratings != 0).to(ratings.dtype)  # (U, N)
    squares = torch.sparse_coo_tensor(ratings.indices(), ratings.values().pow(2), ratings.shape) if ratings.is_sparse \
        else ratings.pow(2)  # (U, N)

    def times(dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:  # (B, N) x (U, N)ᵀ -> (B, U)
        return torch.sparse.mm(sparse, dense.T).T if sparse.is_sparse else dense @ sparse.T

    count = times(mask_b, rated)  # (B, U) n_uv
    prods = times(block, ratings)  # (B, U) Σ r_ui r_vi
    sq_b, sq_v = times(block.pow(2), rated), times(mask_b, squares)  # (B, U) Σ r_ui², Σ r_vi² over I_uv
    if similarity in ("cosine", "pearson_baseline"):
        num, den = prods, (sq_b * sq_v).sqrt()
    elif similarity == "msd":
        num, den = torch.ones_like(count), (sq_b + sq_v - 2 * prods).clamp_min(0) / count.clamp_min(1) + 1  # 1 / (msd + 1)
        den = torch.where(count > 0, den, torch.zeros_like(den))
    else:
        sum_b, sum_v = times(block, rated), times(mask_b, ratings)  # (B, U) Σ r_ui, Σ r_vi over I_uv
        num = count * prods - sum_b * sum_v
        den = ((count * sq_b - sum_b.pow(2)).clamp_min(0) * (count * sq_v - sum_v.pow(2)).clamp_min(0)).sqrt()
    sim = torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))  # (B, U)
    sim = sim.masked_fill(count < max(min_support, 1), 0.0)
    if similarity == "pearson_baseline":
        sim = sim * (count - 1) / (count - 1 + shrinkage).clamp_min(1e-30)  # Surprise's shrinkage: (n − 1) / (n − 1 + λ)
    elif shrinkage > 0:
        sim = sim * count / (count + shrinkage)
    return sim


def neighbourhood_scores(sim: torch.Tensor, rater: torch.Tensor, item: torch.Tensor, deviation: torch.Tensor,
                         num_items: int, base: torch.Tensor, fallback: torch.Tensor, k: int, min_k: int) -> torch.Tensor:
    """(B, N) kNN predictions ``base + Σ s_uv d_vi / Σ s_uv`` for B users over every item, ``fallback`` where
    fewer than ``min_k`` neighbours rated the item (formulas: module docstring).

    sim: (B, U) similarities (self already 0); rater, item, deviation: (R,) the training ratings as (v, i, d_vi)
    **sorted by item** (d_vi = r_vi, r_vi − μ_v or r_vi − b_vi); base, fallback: broadcastable to (B, N).
    Each user's raters of an item are ranked by similarity (ties: lower user index) with one sort of a
    (B, R) key ``item · U + rank``; the first k with s_uv > 0 are kept. Cost O(B · R log R), memory ~5 (B, R)."""
    B, U = sim.shape
    positive = sim.clamp_min(0)  # (B, U): s_uv <= 0 never counts
    order = torch.sort(positive, dim=1, descending=True, stable=True).indices  # (B, U), ties: lower index first
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(U, device=sim.device).expand(B, U))  # (B, U)
    key = item[None, :] * U + rank[:, rater]  # (B, R): item-major, then the rater's rank for this user
    perm = torch.sort(key, dim=1).indices  # (B, R); item segments stay where they were (ratings sorted by item)
    starts = torch.searchsorted(item, torch.arange(num_items, device=item.device))  # (N,) first rating of each item
    place = torch.arange(len(item), device=item.device) - starts[item]  # (R,) place within the item's segment
    weight = positive.gather(1, rater[perm])  # (B, R) s_uv of the rater now at each place
    weight = weight * ((place[None, :] < k) & (weight > 0))  # the first k raters with s_uv > 0
    index = item[None, :].expand(B, -1)  # (B, R)
    zeros = torch.zeros(B, num_items, dtype=sim.dtype, device=sim.device)
    sum_sim = zeros.scatter_add(1, index, weight)  # (B, N)
    count = zeros.scatter_add(1, index, (weight > 0).to(sim.dtype))  # (B, N)
    weighted = zeros.scatter_add(1, index, weight * deviation[perm])  # (B, N)
    enough = (count >= min_k) & (sum_sim > 0)  # (B, N)
    return torch.where(enough, base + weighted / sum_sim.clamp_min(1e-30), fallback)


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
                 min_support: int = 1, shrinkage: float = 0.0, variant: str = "with_means", bsl_reg_user: float = 15.0,
                 bsl_reg_item: float = 10.0, bsl_n_epochs: int = 10, max_block_elements: int = 2 ** 23):
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.k, self.min_k, self.similarity, self.variant = k, min_k, similarity, variant
        self.min_support, self.shrinkage, self.max_block_elements = min_support, float(shrinkage), max_block_elements
        self.bsl_options = (float(bsl_reg_user), float(bsl_reg_item), int(bsl_n_epochs))
        self.rating_range = None if rating_min is None or rating_max is None else (float(rating_min), float(rating_max))
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))
        self.register_buffer("user_counts", torch.zeros(num_users))
        self.register_buffer("item_counts", torch.zeros(num_items))
        # The fitted "parameters": each user's mean rating (a Parameter only so that the closed-form step
        # has one to hold; never trained by gradients), the baselines b_u, b_i, and the training ratings
        # (COO, sorted by user, item).
        self.user_means = nn.Parameter(torch.zeros(num_users), requires_grad=False)  # (U,)
        self.register_buffer("user_bias", torch.zeros(num_users))  # (U,) b_u
        self.register_buffer("item_bias", torch.zeros(num_items))  # (N,) b_i
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
        """Keep the (R,) training ratings (sorted by user, then item), μ_u and the baselines b_u, b_i (the fit
        of a memory-based model)."""
        order = torch.argsort(users * self.num_items + items)
        self.train_users, self.train_items = users[order].long(), items[order].long()
        self.train_ratings = ratings[order].float()
        counts = torch.bincount(self.train_users, minlength=self.num_users).float()  # (U,)
        sums = torch.zeros(self.num_users, device=counts.device).index_add_(0, self.train_users, self.train_ratings)
        self.user_means.copy_(torch.where(counts > 0, sums / counts.clamp_min(1), self.global_mean))
        reg_user, reg_item, n_epochs = self.bsl_options
        b_u, b_i = als_biases(self.train_users, self.train_items, self.train_ratings, self.num_users, self.num_items,
                              float(self.global_mean), reg_user, reg_item, torch.zeros_like(self.user_bias), n_epochs)
        self.user_bias.copy_(b_u)
        self.item_bias.copy_(b_i)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("train_users", "train_items", "train_ratings"):  # variable size (nnz): take the checkpoint's
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        for name in ("user_bias", "item_bias"):  # checkpoints from before the baseline variant: zeros
            state_dict.setdefault(prefix + name, torch.zeros_like(getattr(self, name)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- scores ---------------------------------------------------------------------------------------
    def scorer(self, name: str = "model") -> UserKNNScorer:
        return UserKNNScorer(self, name)

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """(B, N) kNN predictions (``variant``; not clipped) for (B,) users; fallbacks: module docstring."""
        U, N = self.num_users, self.num_items
        tu, ti, tr = self.train_users, self.train_items, self.train_ratings
        mu = self.global_mean.to(tr.dtype)
        baseline_vi = mu + self.user_bias[tu] + self.item_bias[ti]  # (R,) b_vi
        sim_values = tr - baseline_vi if self.similarity == "pearson_baseline" else tr  # (R,)
        sim_matrix = torch.sparse_coo_tensor(torch.stack([tu, ti]), sim_values, (U, N)).coalesce()  # (U, N)
        deviations = {"basic": tr, "with_means": tr - self.user_means[tu], "baseline": tr - baseline_vi}[self.variant]  # (R,)
        by_item = torch.argsort(ti * U + tu)  # (R,) the ratings sorted by item, then user
        rater, item, deviation = tu[by_item], ti[by_item], deviations[by_item]
        out = torch.empty(len(users), N, device=tr.device)
        step = max(1, min(len(users), self.max_block_elements // max(len(tr), N, 1)))
        for start in range(0, len(users), step):  # blocks of users, not single users
            batch = users[start:start + step]  # (b,)
            block = rows_dense(tu, ti, sim_values, batch, U, N)  # (b, N)
            block_mask = rows_dense(tu, ti, torch.ones_like(tr), batch, U, N)  # (b, N)
            sim = user_similarities(block, sim_matrix, self.similarity, self.min_support, self.shrinkage, block_mask)  # (b, U)
            sim[torch.arange(len(batch)), batch] = 0.0  # never one's own neighbour
            base, fallback = self._base(batch)  # each broadcastable to (b, N)
            out[start:start + step] = neighbourhood_scores(sim, rater, item, deviation, N, base, fallback, self.k, self.min_k)
        known = self.known_users[users]  # (B,)
        unknown = mu + self.item_bias if self.variant == "baseline" else mu.expand(N)  # (N,)
        return torch.where(known[:, None], out, unknown[None, :].to(out.dtype))

    def _base(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(base, fallback) of the prediction for the batch's users over every item (module docstring)."""
        mu = self.global_mean.to(self.user_means.dtype)
        if self.variant == "basic":
            return torch.zeros(()), mu
        if self.variant == "with_means":
            means = self.user_means[batch][:, None]  # (b, 1)
            return means, means
        b_ui = mu + self.user_bias[batch][:, None] + self.item_bias[None, :]  # (b, N)
        return b_ui, b_ui
