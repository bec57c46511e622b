"""Content-based item kNN on frozen image features (``model=visual_knn``): item-based KNNWithMeans whose
item-item similarities come from the pictures, not from co-ratings, so a cold item (no training rating,
image present) is scored from its image.

Prediction (item-based CF, Sarwar, Karypis, Konstan & Riedl 2001, "Item-based collaborative filtering
recommendation algorithms", WWW, §3.2 weighted sum, here mean-centred as Surprise's ``KNNWithMeans``
(Hug 2020, JOSS 5(52); Desrosiers & Karypis 2011, eq. 4.9) with μ_u in place of its user_based=False item means):
    r̂_uj = μ_u + Σ_{i ∈ R(u) ∩ N(j)} s_ij (r_ui − μ_u) / Σ_{i ∈ R(u) ∩ N(j)} |s_ij|
R(u) = the user's training items; μ_u = their mean rating; N(j) = j's neighbours (below). When no
neighbour of j is in R(u) (Σ |s_ij| = 0) the deviation term is 0: r̂_uj = μ_u. A user without training
ratings gets μ (the global training mean) for every item. Items without an image have no neighbours
and are no one's neighbour, so they fall back to μ_u. Predictions are clipped to the rating range for
rating metrics (``predict``), as Surprise's ``predict``.

Top-N ranking (the evaluator's ``score_users``), ``ranking``: ``similarity_sum`` (default) scores
    score_uj = Σ_{i ∈ R(u) ∩ N(j)} s_ij
the item-based top-N rule for what a user will pick (Deshpande & Karypis 2004, "Item-based top-N
recommendation algorithms", TOIS 22(1), §4; the rule of ``implicit``'s ItemItemRecommender); ``rating`` ranks
by r̂_uj, whose mean-centred average says how a user would rate j, not whether they would pick it.

Similarity of items i, j from their frozen features f (after subtracting m, the mean feature of the
training items that have an image, when ``center`` is true; m is saved with the model):
    cosine     s_ij = f_i·f_j / (‖f_i‖ ‖f_j‖)            (0 when a norm is 0)
    euclidean  s_ij = 1 / (1 + ‖f_i − f_j‖₂)             (in (0, 1]; centring does not change it)
Neighbours N(j) (Sarwar et al. 2001 §3.4, a "model size" of k items per item, precomputed): the items i ≠ j
that have an image and training ratings (only rated items can contribute) with s_ij > ``min_similarity``
(null: no threshold; then negative cosines count, with |s_ij| in the denominator), keeping the ``k``
largest s_ij per target item j (null: all; ties by lower item index). Surprise's item-based k instead
picks the k most similar items among those each user rated; the per-item list is what lets the whole
(N, N) neighbour matrix be built once and every user be scored by two matrix products.

Vectorized: the similarities are a dense (N, N) matrix S (S[i, j] = s_ij if i ∈ N(j), else 0) built once
when the features are attached, in blocks of target items (a (N, C) block at a time, ≤ ``max_block_elements``
cells); a dense S costs 4·N² bytes (11 MB at N = 1,650; 400 MB at N = 10⁴; use a sparse S beyond that).
A batch of B users is scored with (B, N) dense rows of centred ratings and rated-indicators: numerator
= Dev @ S, denominator = Ind @ |S|, each (B, N); user blocks hold ≤ ``max_block_elements`` cells of a row.
S is not saved in checkpoints (it is recomputed from the cached features; evaluate.py attaches them since
``has_image_prior`` is True). Not exportable: serving reads factor tables (:mod:`visrec.export.bundle`)
and this model has none (``exportable`` False, ``export=true`` refused at set-up), like ``model=user_knn``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from visrec.models.knn.user_scoring import UserKNNScorer, rows_dense
from visrec.models.scoring import ScoringModel


class VisualKNNScorer(UserKNNScorer):
    """The evaluator's scorer of :class:`VisualKNNScoring`: ``score_users`` ranks by ``ranking_scores``,
    ``predict`` gives clipped rating predictions (as :class:`~visrec.models.knn.user_scoring.UserKNNScorer`)."""

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.model.ranking_scores(users)

SIMILARITIES = ("cosine", "euclidean")
RANKINGS = ("similarity_sum", "rating")


def item_similarities(features: torch.Tensor, has_image: torch.Tensor, candidates: torch.Tensor,
                      similarity: str = "cosine", min_similarity: float | None = 0.0, k: int | None = None,
                      max_block_elements: int = 2 ** 23) -> torch.Tensor:
    """(N, N) neighbour-similarity matrix S with S[i, j] = s_ij when i ∈ N(j), else 0 (module docstring).

    features: (N, D) (already centred if wanted); has_image: (N,) bool; candidates: (N,) bool, the items that
    may be neighbours (those with training ratings). Built in blocks of target items (columns).
    Raises ValueError for an unknown ``similarity`` (``model.similarity``)."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"model.similarity must be one of {SIMILARITIES}, got {similarity!r}")
    features = features.float()
    N = len(features)
    out = torch.zeros(N, N, device=features.device)
    if similarity == "cosine":
        norms = features.norm(dim=1, keepdim=True)  # (N, 1)
        unit = torch.where(norms > 0, features / norms.clamp_min(1e-30), torch.zeros_like(features))  # (N, D)
    neighbour_ok = (has_image & candidates)[:, None]  # (N, 1) rows i that may be neighbours
    width = max(1, min(N, max_block_elements // max(N, 1)))
    for lo in range(0, N, width):  # blocks of target items j
        hi = min(N, lo + width)
        if similarity == "cosine":
            sim = unit @ unit[lo:hi].T  # (N, C)
        else:
            sim = 1.0 / (1.0 + torch.cdist(features, features[lo:hi]))  # (N, C)
        ok = neighbour_ok & has_image[None, lo:hi]  # (N, C)
        ok[torch.arange(lo, hi), torch.arange(hi - lo)] = False  # an item is not its own neighbour
        if min_similarity is not None:
            ok &= sim > min_similarity
        if k is not None and k < N:
            ranked = sim.masked_fill(~ok, -math.inf)  # (N, C)
            order = torch.sort(ranked, dim=0, descending=True, stable=True).indices[:k]  # (k, C): ties, lower i first
            top = torch.zeros_like(ok).scatter_(0, order, True)  # (N, C)
            ok &= top
        out[:, lo:hi] = torch.where(ok, sim, torch.zeros_like(sim))
    return out


def check_visual_knn_options(options: dict) -> None:
    """Raise ValueError naming ``model.<key>`` for option values that would score nonsense."""
    similarity = options.get("similarity", "cosine")
    if similarity not in SIMILARITIES:
        raise ValueError(f"model.similarity must be one of {SIMILARITIES}, got {similarity!r}")
    k = options.get("k", 40)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"model.k must be an integer >= 1 (neighbours per item) or null (all), got {k!r}")
    threshold = options.get("min_similarity", 0.0)
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not math.isfinite(threshold)):
        raise ValueError(f"model.min_similarity must be a finite number or null (no threshold), got {threshold!r}")
    if not isinstance(options.get("center", True), bool):
        raise ValueError(f"model.center must be true or false, got {options.get('center')!r}")
    if options.get("ranking", "similarity_sum") not in RANKINGS:
        raise ValueError(f"model.ranking must be one of {RANKINGS}, got {options.get('ranking')!r}")
    blocks = options.get("max_block_elements", 2 ** 23)
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"model.max_block_elements must be an integer >= 1, got {blocks!r}")


class VisualKNNScoring(ScoringModel):
    """The scoring half (formulas: module docstring): the stored training ratings, μ_u, the centring mean m
    and S; ``fit`` stores the ratings, ``attach_features`` builds S, ``score_users`` scores. Used by
    :class:`~visrec.models.knn.visual_module.VisualKNN` and as the kNN part of :class:`~visrec.models.hybrid.scoring.HybridScoring`."""

    predicts_ratings = True
    exportable = False  # serving reads factor tables; a kNN bundle format is not built
    model_kind = "VisualKNN"

    def __init__(self, num_users: int, num_items: int, global_mean: float, rating_min: float | None = None,
                 rating_max: float | None = None, feature_dim: int = 0, similarity: str = "cosine",
                 min_similarity: float | None = 0.0, k: int | None = 40, center: bool = True,
                 ranking: str = "similarity_sum", max_block_elements: int = 2 ** 23):
        check_visual_knn_options(dict(similarity=similarity, min_similarity=min_similarity, k=k, center=center,
                                     ranking=ranking, max_block_elements=max_block_elements))
        super().__init__()
        self.num_users, self.num_items, self.ranking = num_users, num_items, ranking
        self.similarity, self.k, self.center, self.max_block_elements = similarity, k, bool(center), max_block_elements
        self.min_similarity = None if min_similarity is None else float(min_similarity)
        self.rating_range = None if rating_min is None or rating_max is None else (float(rating_min), float(rating_max))
        self.register_buffer("global_mean", torch.tensor(float(global_mean)))
        self.register_buffer("user_counts", torch.zeros(num_users))
        self.register_buffer("item_counts", torch.zeros(num_items))
        self.register_buffer("feature_mean", torch.zeros(feature_dim))  # m: (D,), fitted on training items
        # μ_u (a Parameter only so that the closed-form step has one to hold; never trained by gradients).
        self.user_means = nn.Parameter(torch.zeros(num_users), requires_grad=False)  # (U,)
        self.register_buffer("train_users", torch.zeros(0, dtype=torch.long))  # (nnz,)
        self.register_buffer("train_items", torch.zeros(0, dtype=torch.long))  # (nnz,)
        self.register_buffer("train_ratings", torch.zeros(0))  # (nnz,)
        # S: (N, N) neighbour similarities, recomputed from the features (not saved); (0, 0) until attached.
        self.register_buffer("neighbour_similarity", torch.zeros(0, 0), persistent=False)

    # ---- contract: built for the data ---------------------------------------------------------------
    def set_train_counts(self, user_counts: torch.Tensor, item_counts: torch.Tensor) -> None:
        self.user_counts.copy_(user_counts)
        self.item_counts.copy_(item_counts)

    @torch.no_grad()
    def attach_features(self, features: torch.Tensor, has_image: torch.Tensor, fit: bool = True) -> None:
        """Build S (N, N) from the (N, D) frozen features and (N,) has-image mask. ``fit=True`` fits the centring
        mean m on training items with an image; ``fit=False`` (a checkpoint's model) keeps the saved m.
        Raises ValueError when the features' shape does not match the model's (N, ``feature_dim``)."""
        if features.shape != (self.num_items, len(self.feature_mean)):
            raise ValueError(f"model=visual_knn: features of shape {tuple(features.shape)} for {self.num_items} items and "
                             f"model.feature_dim={len(self.feature_mean)}")
        features = features.float().to(self.feature_mean.device)
        has_image = has_image.bool().to(features.device)
        if fit and self.center:
            rows = features[self.known_items & has_image]  # (M, D)
            self.feature_mean.copy_(rows.mean(0) if len(rows) else torch.zeros_like(self.feature_mean))
        centred = features - self.feature_mean if self.center else features  # (N, D)
        self.neighbour_similarity = item_similarities(centred, has_image, self.known_items, self.similarity,
                                                      self.min_similarity, self.k, self.max_block_elements)

    @property
    def has_image_prior(self) -> bool:
        return True

    @property
    def known_users(self) -> torch.Tensor:
        return self.user_counts > 0  # (U,)

    @property
    def known_items(self) -> torch.Tensor:
        return self.item_counts > 0  # (N,)

    @property
    def item_train_counts(self) -> torch.Tensor:
        return self.item_counts  # (N,)

    def bundle_arrays(self):
        raise NotImplementedError("model=visual_knn cannot be exported: serving bundles hold factor tables and a kNN "
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
    def scorer(self, name: str = "model") -> "VisualKNNScorer":
        """``score_users`` (B,) -> (B, N) ranking scores (``ranking``); ``predict`` (R,), (R,) -> (R,) ratings
        clipped to the rating range."""
        return VisualKNNScorer(self, name)

    @torch.no_grad()
    def ranking_scores(self, users: torch.Tensor) -> torch.Tensor:
        """(B, N) top-N scores for (B,) users: ``ranking=rating`` the predictions r̂_uj; ``similarity_sum``
        Σ_{i ∈ R(u)} S[i, j], the summed neighbour similarity of j to the user's training items (item-based
        top-N, Deshpande & Karypis 2004, "Item-based top-N recommendation algorithms", TOIS 22(1), §4).
        Users without training ratings get 0 everywhere (no order). Raises RuntimeError without features."""
        if self.ranking == "rating":
            return self.score_users(users)
        U, N = self.num_users, self.num_items
        S = self.neighbour_similarity  # (N, N)
        if S.shape != (N, N):
            raise RuntimeError("model=visual_knn scores from image similarities: attach_features was not called")
        tu, ti = self.train_users, self.train_items
        out = torch.empty(len(users), N, device=S.device)
        step = max(1, self.max_block_elements // max(N, 1))
        for start in range(0, len(users), step):  # blocks of users
            batch = users[start:start + step]  # (b,)
            rated = rows_dense(tu, ti, torch.ones(len(tu), device=S.device), batch, U, N)  # (b, N) 1 where rated
            out[start:start + step] = rated @ S  # (b, N)
        return out

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """(B, N) predictions r̂_uj (not clipped) for (B,) users; users without training ratings get μ.
        Raises RuntimeError when no features were attached (S not built)."""
        U, N = self.num_users, self.num_items
        S = self.neighbour_similarity  # (N, N)
        if S.shape != (N, N):
            raise RuntimeError("model=visual_knn scores from image similarities: attach_features was not called")
        tu, ti, tr = self.train_users, self.train_items, self.train_ratings
        centred = tr - self.user_means[tu]  # (nnz,) r_ui − μ_u
        magnitude = S.abs()  # (N, N)
        out = torch.empty(len(users), N, device=S.device)
        step = max(1, self.max_block_elements // max(N, 1))
        for start in range(0, len(users), step):  # blocks of users
            batch = users[start:start + step]  # (b,)
            deviations = rows_dense(tu, ti, centred, batch, U, N)  # (b, N)
            rated = rows_dense(tu, ti, torch.ones_like(tr), batch, U, N)  # (b, N) 1 where rated
            num, den = deviations @ S, rated @ magnitude  # (b, N) each
            term = torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))  # (b, N)
            out[start:start + step] = self.user_means[batch, None] + term
        known = self.known_users[users]  # (B,)
        return torch.where(known[:, None], out, self.global_mean.to(out.dtype))
