"""Serving API over an export bundle: numpy only (torch and timm are imported lazily, and only by
:meth:`Recommender.items_like_image`, which has to run the CNN on a new picture).

Scores are the model's: r̂_ui = μ + b_u + b_i + p_u · q_i (float32 factors, float64 arithmetic).
What the numbers are depends on the bundle's ``score_kind`` (manifest ``score``):

- ``"rating"`` (biased MF): predicted ratings on the training data's scale. :meth:`Recommender.score`,
  :meth:`Recommender.recommend` and :meth:`Recommender.recommend_for_new_item` clip them to the
  bundle's ``rating_range`` [low, high] (what the evaluator's RMSE scores), unless ``raw=True``; the
  raw value r̂ can leave the scale (5.08 on a 0.5-5 scale), and it is what ranks: clipping never
  changes the order, the top-K is chosen on raw scores.
- ``"preference"`` (iALS): p_u · q_i, a unitless preference with no scale (roughly 0..1 for items the
  user would interact with); nothing is clipped and ``raw`` changes nothing.

Unknown raw ids raise :class:`UnknownIdError` naming them, unless ``on_unknown="fallback"``: an
unknown user is then scored like a user without training ratings: for a rating model r̂ = μ + b_i
(items ranked by their bias); for a preference model (iALS, whose μ and biases are 0) the item's number
of interactions in the train and validation parts (popularity: the evaluator's baseline), since p_u·q_i has no user to use.
Unknown items in :meth:`score` get NaN. Query ids are matched to the bundle's id
dtype by the rule of :mod:`visrec.serving.ids` ("196" finds user 196 of an integer-id bundle, 196
finds "196" of a string-id bundle); a known id in another form ("0196", 196.0) is refused, never
served as a new user.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from visrec.serving.bundle import Bundle, load_bundle
from visrec.serving.ids import IdLookup, UnknownIdError
from visrec.serving.topk import top_k

__all__ = ["Recommender", "UnknownIdError"]

_FALLBACK = {"user": "on_unknown='fallback' scores them as users without ratings (rating models: μ + b_i; "
                     "preference models: item popularity)",
             "item": "on_unknown='fallback' scores them as NaN"}


class Recommender:
    """Recommendations, scores and similar items from one bundle (see the module docstring for what the
    scores are). ``batch_size``: users scored at once by :meth:`recommend` ((batch_size, N) float32 in memory)."""

    def __init__(self, bundle: Bundle, batch_size: int = 1024):
        self.bundle = bundle
        a = bundle.arrays
        self.user_factors = a["user_factors"]  # (U, K)
        self.user_bias = a["user_bias"]  # (U,)
        self.item_factors = a["item_factors"]  # (N, K)
        self.item_bias = a["item_bias"]  # (N,)
        self.global_mean = float(bundle.manifest["global_mean"])
        # "rating" (biased MF: scores are predicted ratings) or "preference" (iALS: p_u·q_i, no scale).
        self.score_kind = bundle.manifest.get("score", "rating")
        # [low, high] of the training ratings (rating models; None for preference models): scores are clipped to it.
        rating_range = bundle.manifest.get("rating_range")
        self.rating_range = None if (rating_range is None or self.score_kind != "rating") else (float(rating_range[0]), float(rating_range[1]))
        self.known_items = a["known_items"]  # (N,)
        has_image = a.get("has_image", np.zeros(len(self.item_bias), dtype=bool))
        # Items that can be recommended: trained ones, and cold ones whose image gives them a vector.
        self.scorable_items = self.known_items | (has_image & bundle.is_visual)  # (N,)
        self.batch_size = int(batch_size)
        self.index = None  # optional approximate / exact FAISS index (see visrec.serving.faiss_index)
        # An unknown user's scores for a preference model: training interactions per item (N,).
        # (N,) int64: ratings per item the bundle records as seen in training (train + validation parts,
        # every rating, also those below an iALS positive_threshold); similar_items(min_support=n) reads it.
        self.item_support = np.bincount(a["seen_items"], minlength=len(self.item_bias)).astype(np.int64)
        self.item_popularity = self.item_support.astype(np.float32)
        self._user_lookup = IdLookup(bundle.user_ids, "user")
        self._item_lookup = IdLookup(bundle.item_ids, "item")

    @classmethod
    def load(cls, path: str | Path, verify: bool = True, **kwargs) -> "Recommender":
        """Load and check a bundle (see :func:`visrec.serving.bundle.load_bundle`); raises BundleError naming
        the file at fault for a tampered, incomplete or non-finite bundle."""
        return cls(load_bundle(path, verify=verify), **kwargs)

    # ---- ids ---------------------------------------------------------------------------------------
    @property
    def user_ids(self) -> np.ndarray:
        """(U,) raw user ids, position = user index."""
        return self.bundle.user_ids.to_numpy()

    @property
    def item_ids(self) -> np.ndarray:
        """(N,) raw item ids, position = item index."""
        return self.bundle.item_ids.to_numpy()

    def user_index(self, user_ids, on_unknown: str = "error") -> np.ndarray:
        """(B,) indices of raw user ids (-1: unknown, with ``on_unknown="fallback"``). Raises UnknownIdError."""
        return self._user_lookup.indices(user_ids, on_unknown, _FALLBACK["user"])

    def item_index(self, item_ids, on_unknown: str = "error") -> np.ndarray:
        """(M,) indices of raw item ids (-1: unknown, with ``on_unknown="fallback"``). Raises UnknownIdError."""
        return self._item_lookup.indices(item_ids, on_unknown, _FALLBACK["item"])

    # ---- scoring -----------------------------------------------------------------------------------
    def _clip(self, scores: np.ndarray, raw: bool) -> np.ndarray:
        """Scores clipped to ``rating_range`` (rating models, ``raw=False``); -inf / NaN stay as they are."""
        if raw or self.rating_range is None:
            return scores
        finite = np.isfinite(scores)
        return np.where(finite, np.clip(scores, *self.rating_range), scores).astype(scores.dtype, copy=False)

    def _user_rows(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, K) vectors and (B,) biases; index -1 (unknown user, fallback) -> zeros."""
        known = users >= 0
        vectors = np.where(known[:, None], self.user_factors[np.maximum(users, 0)], 0.0)
        biases = np.where(known, self.user_bias[np.maximum(users, 0)], 0.0)
        return vectors, biases

    def score_indices(self, users: np.ndarray) -> np.ndarray:
        """(B,) user indices (-1 = unknown) -> (B, N) float32 *raw* scores over the whole catalog: r̂_ui
        unclipped (rating models; may leave the rating scale) or p_u·q_i (preference models). What ranks."""
        vectors, biases = self._user_rows(users)
        scores = vectors.astype(np.float32) @ self.item_factors.T  # (B, N)
        scores += self.item_bias
        scores += (biases + self.global_mean).astype(np.float32)[:, None]
        if self.score_kind == "preference" and (users < 0).any():  # unknown users: popularity (see module docstring)
            scores[users < 0] = self.item_popularity
        return scores

    def score(self, user_id, item_ids: Sequence, on_unknown: str = "error", raw: bool = False) -> np.ndarray:
        """Scores of one user for M given items -> (M,) float64, in the order given.

        Rating models (``score_kind == "rating"``): predicted ratings, clipped to ``rating_range``
        (``raw=True``: r̂ unclipped). Preference models: p_u·q_i, no scale (``raw`` changes nothing).
        Unknown items with ``on_unknown="fallback"`` get NaN. Raises UnknownIdError for unknown ids."""
        (user,) = self.user_index([user_id], on_unknown)
        items = self.item_index(item_ids, on_unknown)
        vector, bias = self._user_rows(np.array([user]))
        ok = items >= 0
        safe = np.maximum(items, 0)
        out = self.global_mean + bias[0] + self.item_bias[safe].astype(np.float64) + self.item_factors[safe].astype(np.float64) @ vector[0].astype(np.float64)
        if self.score_kind == "preference" and user < 0:  # unknown user of a preference model: popularity
            out = self.item_popularity[safe].astype(np.float64)
        return np.where(ok, self._clip(out, raw), np.nan)

    # ---- recommendation ----------------------------------------------------------------------------
    def _excluded(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(m,) rows in the batch and (m,) items each user has seen in training."""
        indptr, seen = self.bundle.arrays["seen_indptr"], self.bundle.arrays["seen_items"]
        safe = np.maximum(users, 0)
        counts = np.where(users >= 0, indptr[safe + 1] - indptr[safe], 0)  # (B,)
        rows = np.repeat(np.arange(len(users)), counts)
        starts = np.repeat(indptr[safe] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        return rows, seen[starts + np.arange(counts.sum())]

    def recommend(self, user_ids, k: int = 10, exclude_seen: bool = True, include_cold: bool = True,
                  on_unknown: str = "error", raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for each of B users -> (item_ids (B, k), scores (B, k) float32), best first.

        Scores as in :meth:`score`: predicted ratings clipped to ``rating_range`` for a rating model
        (``raw=True``: unclipped r̂), p_u·q_i for a preference model. The order is always that of the
        raw scores, so two items clipped to the top of the scale keep their raw order.

        Candidates: trained items, plus (``include_cold``) cold items whose image gives them a vector;
        minus the user's training items when ``exclude_seen``. Ties are broken by lower item index,
        as in the evaluator, so ``include_cold=False`` reproduces the evaluator's top-K under
        ``exclude_train=all``. A row with fewer than ``k`` candidates is padded with item id None
        (the id array is then of dtype object) and score -inf.
        """
        k = _check_k(k)
        users = self.user_index(user_ids, on_unknown)
        candidates = self.scorable_items if include_cold else self.known_items
        if self.index is not None:
            ids, scores = self.index.recommend(self, users, k, exclude_seen, candidates)
            return ids, self._clip(scores, raw)
        top = np.empty((len(users), min(k, len(candidates))), dtype=np.int64)
        top_scores = np.empty(top.shape, dtype=np.float32)
        for start in range(0, len(users), self.batch_size):
            batch = users[start:start + self.batch_size]
            scores = self.score_indices(batch)  # (B, N)
            scores[:, ~candidates] = -np.inf
            if exclude_seen:
                rows, items = self._excluded(batch)
                scores[rows, items] = -np.inf
            chosen = top_k(scores, k)
            top[start:start + len(batch)] = chosen
            top_scores[start:start + len(batch)] = np.take_along_axis(scores, chosen, axis=1)
        ids, top_scores = self._as_ids(top, top_scores, k)
        return ids, self._clip(top_scores, raw)

    def _as_ids(self, top: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices -> raw ids; slots with -inf score or beyond the catalog become None / -inf."""
        if top.shape[1] < k:
            top = np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=0)
            scores = np.pad(scores, ((0, 0), (0, k - scores.shape[1])), constant_values=-np.inf)
        ids = self.item_ids[top]
        empty = ~np.isfinite(scores) & (scores < 0)
        if empty.any():
            ids = ids.astype(object)
            ids[empty] = None
        return ids, scores

    def similar_items(self, item_id, k: int = 10, min_support: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items whose vectors q_j have the highest cosine with q_i -> (item_ids (k,), cosines (k,)
        float32 in [-1, 1]), best first; padded with None / -inf when fewer qualify.

        Left out: the item itself, items without a vector (no training ratings and no image), and items
        with fewer than ``min_support`` training ratings (``item_support``: ratings in the train and
        validation parts; 0 keeps cold items with an image, 1 keeps only rated items). The query item
        itself may have any support. Raises UnknownIdError for an unknown id, ValueError for an item
        without a vector or a ``min_support`` that is not a whole number >= 0."""
        k = _check_k(k)
        if isinstance(min_support, bool) or not isinstance(min_support, (int, np.integer)) or min_support < 0:
            raise ValueError(f"min_support must be a whole number >= 0 (training ratings an item needs), got {min_support!r}")
        remedy = "similar_items needs an item of the catalog" + (
            "; for a new picture use items_like_image(path)" if self.bundle.is_visual else "")
        (item,) = self._item_lookup.indices([item_id], "error", remedy)
        norms = np.linalg.norm(self.item_factors, axis=1)  # (N,)
        if norms[item] == 0:
            raise ValueError(f"item {item_id!r} has no vector (no training ratings and no image): nothing is similar to it")
        cosines = (self.item_factors @ self.item_factors[item]) / (np.maximum(norms, 1e-12) * norms[item])  # (N,)
        cosines[(norms == 0) | (np.arange(len(norms)) == item) | (self.item_support < min_support)] = -np.inf
        top = top_k(cosines[None], k)
        ids, scores = self._as_ids(top, np.take_along_axis(cosines[None], top, axis=1), k)
        return ids[0], scores[0]

    # ---- new items from image features ------------------------------------------------------------
    def _require_visual(self) -> None:
        if not self.bundle.is_visual:
            raise ValueError(f"{self.bundle.path}: this bundle has no visual prior (trained with visual_mode=none)")

    def whiten(self, features: np.ndarray) -> np.ndarray:
        """(M, D) raw CNN features (or one (D,) row) -> (M, P) whitened components f̃ = diag(1/σ) V (f − m),
        as in training (unitless, about unit variance per component). Raises ValueError for a bundle
        without a visual prior or features of another width than the bundle's backbone gives."""
        self._require_visual()
        a = self.bundle.arrays
        features = np.atleast_2d(np.asarray(features, dtype=np.float32))
        if features.shape[1] != a["feature_mean"].shape[0]:
            raise ValueError(f"features have width {features.shape[1]}, the bundle's backbone gives {a['feature_mean'].shape[0]}")
        return (features - a["feature_mean"]) @ a["feature_components"].T / a["feature_scale"]

    def new_item_factors(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cold-start factors of M new items from raw CNN features (M, D) -> (q (M, K) = E f̃ + e, b (M,) = w·f̃ + c):
        the item vector and item bias a cold item with this picture is scored with (r̂ = μ + b_u + b + p_u·q)."""
        whitened = self.whiten(features)  # (M, P)
        a = self.bundle.arrays
        # Bundles exported before the prior had an intercept e carry no visual_vector_intercept: e = 0 there.
        vectors = whitened @ a["visual_projection"].T + a.get("visual_vector_intercept", 0.0)  # (M, K)
        return vectors, whitened @ a["visual_bias_weight"] + self.bundle.manifest["visual_bias_intercept"]

    def recommend_for_new_item(self, item, k: int = 10, raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` known users with the highest predicted score for one new item -> (user_ids (k,),
        scores (k,) float64), best first.

        ``item``: the path of its picture (``str`` or ``Path``; embedded with the bundle's backbone, which
        imports torch and timm, as :meth:`items_like_image` does) or its raw CNN features (D,) as the
        backbone gives them. The item is scored as a cold item: q = E f̃ + e, b = w·f̃ + c. Scores as in
        :meth:`score`: predicted ratings clipped to ``rating_range`` for a rating model (``raw=True``:
        unclipped; the order is the raw one), p_u·q for a preference model. Raises ValueError for a
        bundle without a visual prior, features of the wrong width or an unusable picture."""
        k = _check_k(k)
        self._require_visual()
        if isinstance(item, (str, Path)):
            from visrec.serving.embed import embed_image

            item = embed_image(item, self.bundle.manifest["backbone"])  # (1, D)
        q, b = self.new_item_factors(item)
        scores = self.user_factors @ q[0] + self.user_bias + b[0] + self.global_mean  # (U,)
        scores = np.where(self.bundle.arrays["known_users"], scores, -np.inf)
        top = top_k(scores[None].astype(np.float32), k)[0]
        return self.user_ids[top], self._clip(scores[top], raw)

    def items_like_image(self, image_path: str | Path, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Catalog items whose images look most like a new picture: cosine between whitened CNN
        features (items with an image only) -> (item_ids (k,), cosines (k,)). Runs the bundle's
        backbone on the picture (imports torch and timm here), checking its weights digest."""
        k = _check_k(k)
        self._require_visual()
        from visrec.serving.embed import embed_image

        whitened = self.whiten(embed_image(image_path, self.bundle.manifest["backbone"]))[0]  # (P,)
        catalog = self.bundle.arrays["item_visual_features"]  # (N, P)
        norms = np.linalg.norm(catalog, axis=1) * max(np.linalg.norm(whitened), 1e-12)
        cosines = np.where(self.bundle.arrays["has_image"] & (norms > 0), catalog @ whitened / np.maximum(norms, 1e-12), -np.inf)
        top = top_k(cosines[None].astype(np.float32), k)
        ids, scores = self._as_ids(top, np.take_along_axis(cosines[None], top, axis=1).astype(np.float32), k)
        return ids[0], scores[0]


def _check_k(k) -> int:
    """``k`` as an int >= 0 (0 gives empty lists); anything else is a ValueError naming ``k``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a whole number >= 0 (how many results to return), got {k!r}")
    return int(k)
