"""Hybrid of biased MF and visual kNN (``model=hybrid``): a linear blend of the two rating predictions,
    r̂_ui = clip((1 − w) · r̂^MF_ui + w · r̂^vkNN_ui)
r̂^MF = μ + b_u + b_i + p_u·q_i (:class:`~visrec.models.factor.module.RatingModule`, trained exactly as
``model=biased_mf``, its visual prior included) and r̂^vkNN the item-based KNNWithMeans on image similarity
(:mod:`visrec.models.knn.visual_scoring`), both before clipping; clip to the rating range for rating metrics only
(ranking uses the raw blend). A weighted hybrid in the sense of Burke 2002 ("Hybrid recommender systems:
survey and experiments", UMUAI 12(4)), with the weight chosen on held-out data.

w: with ``blend_weight: null`` (default) it is chosen at every validation epoch from ``blend_grid`` as the
w with the lowest validation RMSE (the ``val/rmse`` ratings: user and item with training ratings; ties to
the smaller w), logged as ``val/blend_weight`` and saved with the weights, so the best checkpoint holds
the w of its own epoch; ``val/rmse`` is that of the blend at the chosen w. A number fixes w (needed when
there is no validation part, e.g. ``refit=true``'s train + val model: use the w the validated run chose).
In a cold-item split the validation ratings are warm, so w measures the blend on warm items; cold
items are scored with the same w (a separate cold weight is not built).

The kNN part is fitted (ratings and user means stored) at the start of training from the datamodule's
training part (``trainer.datamodule.tensors["train"]``), and its similarities built when the features are
attached. Not exportable (the kNN part has no factor tables), like ``model=visual_knn``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from visrec.evaluation.scorers import FactorScorer
from visrec.models.factor.scoring import RatingScoring
from visrec.models.knn.visual_scoring import VisualKNNScoring

DEFAULT_GRID = tuple(round(0.1 * i, 1) for i in range(11))  # 0, 0.1, ..., 1


@dataclass
class HybridScorer:
    """(1 − w)·MF + w·kNN: ``score_users`` (B,) -> (B, N) raw blend; ``predict`` (R,), (R,) -> (R,) clipped."""

    mf: FactorScorer  # built without a rating range: raw predictions
    knn: VisualKNNScoring
    weight: float
    rating_range: tuple[float, float] | None
    name: str = "model"

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        w = self.weight
        out = self.mf.score_users(users).mul_(1 - w)  # (B, N)
        return out.add_(self.knn.score_users(users), alpha=w) if w > 0 else out

    def raw_parts(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R,) MF and (R,) kNN predictions (not clipped) of the pairs."""
        unique, inverse = torch.unique(users, return_inverse=True)
        knn = self.knn.score_users(unique)[inverse, items]  # (R,)
        return self.mf.predict(users, items), knn

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        mf, knn = self.raw_parts(users, items)
        pred = (1 - self.weight) * mf + self.weight * knn  # (R,)
        return pred if self.rating_range is None else pred.clamp(*self.rating_range)


def check_blend(weight, grid) -> None:
    """Raise ValueError naming ``model.blend_weight`` / ``model.blend_grid`` for values outside [0, 1]."""
    def is_weight(value):
        return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1
    if weight is not None and not is_weight(weight):
        raise ValueError(f"model.blend_weight must be a number in [0, 1] or null (chosen on validation), got {weight!r}")
    if isinstance(grid, (str, bytes)) or not hasattr(grid, "__len__") or len(grid) == 0 or not all(is_weight(w) for w in grid):
        raise ValueError(f"model.blend_grid must be a non-empty list of numbers in [0, 1], got {grid!r}")


class HybridScoring(RatingScoring):
    """The scoring half of ``model=hybrid`` (torch only: what ``evaluate.py`` loads a checkpoint into): biased
    MF's tables (:class:`~visrec.models.factor.scoring.RatingScoring`), the visual kNN part ``knn``
    (:class:`~visrec.models.knn.visual_scoring.VisualKNNScoring`) and the blend weight w (a (,) buffer, saved)."""

    model_kind = "Hybrid"
    exportable = False

    def __init__(self, num_users: int, num_items: int, k: int = 64, init_std: float = 0.1, global_mean: float = 0.0,
                 rating_min: float | None = None, rating_max: float | None = None, visual_mode: str = "none",
                 feature_dim: int = 0, visual_pca_dim: int = 64, sparse: bool = False, knn_similarity: str = "cosine",
                 knn_min_similarity: float | None = 0.0, knn_k: int | None = 40, knn_center: bool = True,
                 blend_weight: float | None = None, max_block_elements: int = 2 ** 23):
        super().__init__(num_users, num_items, k, init_std=init_std, global_mean=global_mean, rating_min=rating_min,
                         rating_max=rating_max, visual_mode=visual_mode, feature_dim=feature_dim,
                         visual_pca_dim=visual_pca_dim, sparse=sparse)
        self.build_knn_part(feature_dim, knn_similarity, knn_min_similarity, knn_k, knn_center, blend_weight, max_block_elements)

    def build_knn_part(self, feature_dim: int, similarity: str, min_similarity: float | None, k: int | None, center: bool,
                       blend_weight: float | None, max_block_elements: int) -> None:
        """(Re)build the kNN part and w; ``blend_weight`` None = chosen on validation (``fixed_weight`` False)."""
        check_blend(blend_weight, DEFAULT_GRID)
        rating_range = self.rating_range or (None, None)
        self.knn = VisualKNNScoring(self.net.user_factors.num_embeddings, self.net.item_factors.num_embeddings,
                                    float(self.net.global_mean), *rating_range,
                                    feature_dim=feature_dim, similarity=similarity, min_similarity=min_similarity, k=k,
                                    center=center, max_block_elements=max_block_elements)
        self.fixed_weight = blend_weight is not None
        self.register_buffer("blend_weight", torch.tensor(float(blend_weight or 0.0)))  # w, saved with the weights

    def set_train_counts(self, user_counts: torch.Tensor, item_counts: torch.Tensor) -> None:
        super().set_train_counts(user_counts, item_counts)
        self.knn.set_train_counts(user_counts, item_counts)

    def attach_features(self, features: torch.Tensor, has_image: torch.Tensor, fit: bool = True) -> None:
        super().attach_features(features, has_image, fit)
        self.knn.attach_features(features, has_image, fit)

    @property
    def has_image_prior(self) -> bool:
        return True

    def bundle_arrays(self):
        raise NotImplementedError("model=hybrid cannot be exported: its visual kNN part has no factor tables; "
                                  "train with export=false")

    def scorer(self, name: str = "model") -> HybridScorer:
        mf = RatingScoring.scorer(self, name)  # ranking and rating tables of the MF part
        mf.rating_range = None  # raw: the blend is clipped
        return HybridScorer(mf, self.knn, float(self.blend_weight), self.rating_range, name)

    def predict_ratings(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) blended predictions, clipped (what ``test_step`` scores)."""
        return self.scorer().predict(users, items)
