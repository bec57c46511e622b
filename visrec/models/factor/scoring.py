"""The scoring halves of the factor family (torch only): :class:`RatingScoring` (``model=biased_mf``) and
:class:`BaselineScoring` (``model=bias_only``), trained by :class:`~visrec.models.factor.module.RatingModule`
and :class:`~visrec.models.factor.baseline_only.BaselineOnly`."""
from __future__ import annotations

import torch

from visrec.evaluation.scorers import FactorScorer
from visrec.models.factor.net import BiasedMF
from visrec.models.scoring import FactorScoring
from visrec.models.visual.prior import AUTO, VISUAL_MODES, VisualPrior


class RatingScoring(FactorScoring):
    """Biased MF's scores (``model=biased_mf``; trained by :class:`~visrec.models.factor.module.RatingModule`,
    whose docstring has the model): ratings, clipped to ``[rating_min, rating_max]``, and cold items with an
    image scored from it (q_i = E f̃_i + e, b_i = w·f̃_i + c).

    A cold item has two scores. Its **predicted rating** (``predict_ratings``, the evaluator's RMSE/MAE) uses
    the head's intercepts (c, e), the RMSE-optimal level of a rated item. Its **ranking score** (the
    evaluator's top-K lists, the export bundle, serving) starts from the *typical candidate item* instead
    (:mod:`visrec.models.visual.typical`: the mean score of the items users have not rated), plus what its
    picture adds: b_i = b_c + w·f̃_i, q_i = q_c + E f̃_i. The ratings the head is fitted on are of items users
    chose to rate, and p_u was trained with them, so μ + b_u + c + p_u·e is the level of a rated item, above
    most of a user's unrated candidates: with pictures that carry nothing, never-rated items scored at it were
    in the top 2 of 18 of 30 users (``../shared/bugcases/t3-head-cold-items-on-top``'s kind). Among cold items
    the two orders are the same (the shift is one per user), so the cold-item segment's ranking is the head's.
    ``cold_rank_shift`` (K,) = q_c − e and ``cold_rank_bias_shift`` = b_c − c hold the difference (zero until
    :meth:`~visrec.models.factor.module.RatingModule.finish_training` sets them; zero in checkpoints saved
    before they existed)."""

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
        self.register_buffer("cold_rank_shift", torch.zeros(k))  # (K,) q_c − e (class docstring)
        self.register_buffer("cold_rank_bias_shift", torch.zeros(()))  # b_c − c

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("cold_rank_shift", "cold_rank_bias_shift"):  # checkpoints from before the ranking shift: none
            state_dict.setdefault(prefix + name, torch.zeros_like(getattr(self, name)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def attach_features(self, features: torch.Tensor, has_image: torch.Tensor, fit: bool = True) -> None:
        """Give the model the (N, D) frozen features and (N,) has-image mask; ``fit=True`` fits the
        whitening on training items, ``fit=False`` (a model restored from a checkpoint) keeps the saved one."""
        if self.visual is not None:
            self.visual.attach(features, has_image, self.net.known_items, fit_scaler=fit)

    @torch.no_grad()
    def effective_factors(self, ranking: bool = True) -> dict[str, torch.Tensor | float]:
        """The factor tables r̂_ui = μ + b_u + b_i + p_u · q_i with the fallbacks folded in: users and items
        without training ratings get zero vectors and biases, except cold items with an image, which get
        their ranking score's q_i = q_c + E f̃_i, b_i = b_c + w·f̃_i (class docstring), or with
        ``ranking=False`` their predicted rating's q_i = E f̃_i + e, b_i = w·f̃_i + c (the tables that reproduce
        :meth:`predict_ratings` before clipping). Returns user_factors (U, K), user_bias (U,), item_factors
        (N, K), item_bias (N,), global_mean (float) — what the evaluator ranks with and an export bundle stores."""
        net = self.net
        known_users = net.known_users[:, None].float()  # (U, 1)
        known_items = net.known_items[:, None].float()  # (N, 1)
        item_factors = net.item_factors.weight * known_items  # (N, K)
        item_bias = net.item_bias.weight.squeeze(-1) * known_items.squeeze(-1)  # (N,)
        if self.visual is not None:
            item_factors, item_bias = self.visual.fill_cold_items(net.known_items, item_factors, item_bias)
            if ranking:
                cold_image = ((~net.known_items) & self.visual.has_image).float()  # (N,)
                item_factors = item_factors + cold_image[:, None] * self.cold_rank_shift  # (N, K)
                item_bias = item_bias + cold_image * self.cold_rank_bias_shift  # (N,)
        return {
            "user_factors": (net.user_factors.weight * known_users).detach().clone(),
            "user_bias": (net.user_bias.weight * known_users).squeeze(-1).detach().clone(),
            "item_factors": item_factors.detach().clone(),
            "item_bias": item_bias.detach().clone(),
            "global_mean": float(net.global_mean),
        }

    def scorer(self, name: str = "model") -> FactorScorer:
        """Ranks with the ranking tables and predicts ratings with the rating tables (class docstring)."""
        rating = self.effective_factors(ranking=False) if self.visual is not None else None
        return FactorScorer(**self.effective_factors(), rating_range=self.rating_range, name=name,
                            predicts_ratings=self.predicts_ratings,
                            rating_item_factors=None if rating is None else rating["item_factors"],
                            rating_item_bias=None if rating is None else rating["item_bias"])

    def bundle_arrays(self):
        """:meth:`FactorScoring.bundle_arrays` with the ranking tables, and the visual intercepts a new item is
        embedded with (``visual_vector_intercept`` e + q_c − e, ``visual_bias_intercept`` c + b_c − c) on the
        same ranking scale: serving ranks and scores cold and new items by their ranking score."""
        arrays, scalars = super().bundle_arrays()
        if self.visual is not None:
            arrays["visual_vector_intercept"] = (self.visual.projection.bias.detach() + self.cold_rank_shift).cpu().numpy()
            scalars["visual_bias_intercept"] = float(self.visual.bias_projection.bias.detach()[0] + self.cold_rank_bias_shift)
        return arrays, scalars

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
