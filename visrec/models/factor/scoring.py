"""The scoring halves of the factor family (torch only): :class:`RatingScoring` (``model=biased_mf``) and
:class:`BaselineScoring` (``model=bias_only``), trained by :class:`~visrec.models.factor.module.RatingModule`
and :class:`~visrec.models.factor.baseline_only.BaselineOnly`."""
from __future__ import annotations

import torch

from visrec.models.factor.net import BiasedMF
from visrec.models.scoring import FactorScoring
from visrec.models.visual.prior import AUTO, VISUAL_MODES, VisualPrior


class RatingScoring(FactorScoring):
    """Biased MF's scores (``model=biased_mf``; trained by :class:`~visrec.models.factor.module.RatingModule`,
    whose docstring has the model): ratings, clipped to ``[rating_min, rating_max]``, and cold items with an
    image scored from it (q_i = E f̃_i + e, b_i = w·f̃_i + c)."""

    model_kind = "RatingModule"

    def __init__(self, num_users: int, num_items: int, k: int = 64, init_std: float = 0.1, global_mean: float = 0.0,
                 rating_min: float | None = None, rating_max: float | None = None, visual_mode: str = "none",
                 feature_dim: int = 0, visual_pca_dim: int = 64, sparse: bool = False):
        super().__init__()
        # sparse: the tables give row-sparse gradients (training; see RatingModule); scoring is the same.
        self.net = BiasedMF(num_users, num_items, k, init_std=init_std, global_mean=global_mean, sparse=sparse)
        self.rating_range = None if rating_min is None or rating_max is None else (float(rating_min), float(rating_max))
        if visual_mode == AUTO:
            raise ValueError("model.visual_mode=auto is decided from the data by the pipeline (visrec.pipeline.setup."
                             f"resolve_visual_mode); a model built directly needs one of {VISUAL_MODES}")
        if visual_mode not in VISUAL_MODES:
            raise ValueError(f"model.visual_mode must be one of {VISUAL_MODES}, got {visual_mode!r}")
        self.visual_mode = visual_mode
        self.visual = None
        if visual_mode != "none":
            if feature_dim <= 0:
                raise ValueError(f"visual_mode={visual_mode} needs image features (feature_dim > 0)")
            self.visual = VisualPrior(num_items, feature_dim, k, pca_dim=visual_pca_dim)
            if visual_mode == "head":  # fitted after training (fit_cold_head), never by the optimizer
                self.visual.requires_grad_(False)

    def attach_features(self, features: torch.Tensor, has_image: torch.Tensor, fit: bool = True) -> None:
        """Give the model the (N, D) frozen features and (N,) has-image mask; ``fit=True`` fits the
        whitening on training items, ``fit=False`` (a model restored from a checkpoint) keeps the saved one."""
        if self.visual is not None:
            self.visual.attach(features, has_image, self.net.known_items, fit_scaler=fit)

    @torch.no_grad()
    def effective_factors(self) -> dict[str, torch.Tensor | float]:
        """The factor tables that reproduce :meth:`predict_ratings` (before clipping) as
        r̂_ui = μ + b_u + b_i + p_u · q_i, with the fallbacks folded in: users and items without training
        ratings get zero vectors and biases, except cold items with an image, which get q_i = E f̃_i + e and
        b_i = w·f̃_i + c. Returns user_factors (U, K), user_bias (U,), item_factors (N, K), item_bias (N,),
        global_mean (float) — what the evaluator ranks with and what an export bundle stores."""
        net = self.net
        known_users = net.known_users[:, None].float()  # (U, 1)
        known_items = net.known_items[:, None].float()  # (N, 1)
        item_factors = net.item_factors.weight * known_items  # (N, K)
        item_bias = net.item_bias.weight.squeeze(-1) * known_items.squeeze(-1)  # (N,)
        if self.visual is not None:
            item_factors, item_bias = self.visual.fill_cold_items(net.known_items, item_factors, item_bias)
        return {
            "user_factors": (net.user_factors.weight * known_users).detach().clone(),
            "user_bias": (net.user_bias.weight * known_users).squeeze(-1).detach().clone(),
            "item_factors": item_factors.detach().clone(),
            "item_bias": item_bias.detach().clone(),
            "global_mean": float(net.global_mean),
        }

    def predict_ratings(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) predictions with cold fallbacks, clipped to the rating range when one is set."""
        pred = self.net.predict(users, items)
        if self.visual is not None:
            pred = pred + self._visual_cold_terms(users, items)
        return pred if self.rating_range is None else pred.clamp(*self.rating_range)

    def _visual_cold_terms(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) what the visual prior adds for cold items with an image: w·f̃_i + c + p_u·(E f̃_i + e) (p_u if u is known)."""
        cold_image = (~self.net.known_items[items]) & self.visual.has_image[items]  # (B,)
        user_ok = self.net.known_users[users]  # (B,)
        dot = (self.net.user_factors(users) * self.visual.item_vectors(items)).sum(-1) * user_ok  # (B,)
        return (self.visual.item_biases(items) + dot) * cold_image

class BaselineScoring(RatingScoring):
    """BaselineOnly's scores (``model=bias_only``; trained by :class:`~visrec.models.factor.baseline_only.BaselineOnly`,
    whose docstring has the model): r̂_ui = μ + b_u + b_i, a :class:`RatingScoring` with K = 0 factors, so
    the evaluator, export and serving treat it as any factor model (``k = 0`` in a bundle). Unknown users /
    items get b = 0; ratings are clipped to ``[rating_min, rating_max]`` (Surprise clips them too)."""

    model_kind = "BaselineOnly"

    def __init__(self, num_users: int, num_items: int, global_mean: float = 0.0,
                 rating_min: float | None = None, rating_max: float | None = None):
        super().__init__(num_users, num_items, k=0, global_mean=global_mean, rating_min=rating_min, rating_max=rating_max)
        self.net.requires_grad_(False)  # fitted in closed form, never by an optimizer
