"""The scoring half of the model contract (torch only: nothing here imports Lightning).

:class:`ScoringModel` is what the evaluator, export, serving and W&B use of a model (the "Scores" and
"Writes into a bundle" parts of :mod:`visrec.models.contract`); :class:`FactorScoring` implements it for
r̂_ui = μ + b_u + b_i + p_u·q_i. :class:`RatingScoring` and :class:`IALSScoring` are the scoring halves of
the built-in models (and :class:`BaselineScoring`, ``model=bias_only``'s): their submodules (so their checkpoints' ``state_dict``), tables and scores, which
:class:`~visrec.models.rating_module.RatingModule` and :class:`~visrec.models.ials_module.IALSModule`
inherit and add training to. ``evaluate.py`` and ``python -m visrec.export`` load a built-in model's
checkpoint into its scoring half (:func:`build_scoring`), so they never import Lightning; any other model
loads into its own class (its ``_target_``).
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import nn

from visrec.evaluation.scorers import FactorScorer
from visrec.models.biased_mf import BiasedMF
from visrec.models.knn import UserKNNScoring
from visrec.models.scoring_base import ScoringModel
from visrec.models.visual import AUTO, VISUAL_MODES, VisualPrior
from visrec.models.visual_knn import VisualKNNScoring


class FactorScoring(ScoringModel):
    """Scores r̂_ui = μ + b_u + b_i + p_u·q_i. Subclasses hold a :class:`BiasedMF` as ``self.net``, an
    optional :class:`VisualPrior` as ``self.visual``, ``self.rating_range`` and implement
    :meth:`effective_factors` (the tables with the cold fallbacks folded in)."""

    net: nn.Module  # (set in __init__; no class-level module defaults: they would shadow submodules)
    visual: nn.Module | None
    rating_range: tuple[float, float] | None = None  # preference models: no rating scale
    model_kind: str | None = None  # a bundle's manifest "model_kind" (default: the class name)

    def set_train_counts(self, user_counts: torch.Tensor, item_counts: torch.Tensor) -> None:
        self.net.set_train_counts(user_counts, item_counts)

    @property
    def has_image_prior(self) -> bool:
        return self.visual is not None

    @property
    def known_users(self) -> torch.Tensor:
        return self.net.known_users  # (U,) bool

    @property
    def known_items(self) -> torch.Tensor:
        return self.net.known_items  # (N,) bool

    @property
    def item_train_counts(self) -> torch.Tensor:
        return self.net.item_counts  # (N,)

    def effective_factors(self) -> dict[str, torch.Tensor | float]:
        raise NotImplementedError

    def scorer(self, name: str = "model") -> FactorScorer:
        return FactorScorer(**self.effective_factors(), rating_range=self.rating_range, name=name,
                            predicts_ratings=self.predicts_ratings)

    def item_vectors(self) -> torch.Tensor:
        return self.effective_factors()["item_factors"]  # (N, K)

    def bundle_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """Factor tables (float32), known masks, the visual prior's arrays when there is one, and the
        manifest fields global_mean, rating_range, score ("rating" | "preference") and model_kind."""
        tables = self.effective_factors()
        arrays = {name: tables[name].cpu().numpy().astype(np.float32)
                  for name in ("user_factors", "user_bias", "item_factors", "item_bias")}
        arrays["known_users"] = self.known_users.cpu().numpy().astype(bool)
        arrays["known_items"] = self.known_items.cpu().numpy().astype(bool)
        scalars = {"global_mean": tables["global_mean"],
                   "rating_range": None if self.rating_range is None else list(self.rating_range),
                   "score": "rating" if self.predicts_ratings else "preference",
                   "model_kind": self.model_kind or type(self).__name__}
        visual = self.visual
        if visual is not None:
            arrays.update(
                feature_mean=visual.feature_mean.cpu().numpy(),
                feature_components=visual.components.cpu().numpy(),
                feature_scale=visual.component_scale.cpu().numpy(),
                visual_projection=visual.projection.weight.detach().cpu().numpy(),
                visual_vector_intercept=visual.projection.bias.detach().cpu().numpy(),
                visual_bias_weight=visual.bias_projection.weight.detach().cpu().numpy()[0],
                item_visual_features=visual.features.cpu().numpy(),
                has_image=visual.has_image.cpu().numpy(),
            )
            scalars["visual_bias_intercept"] = float(visual.bias_projection.bias.detach()[0])
        return arrays, scalars


class RatingScoring(FactorScoring):
    """Biased MF's scores (``model=biased_mf``; trained by :class:`~visrec.models.rating_module.RatingModule`,
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


class IALSScoring(FactorScoring):
    """iALS's scores (``model=ials``; trained by :class:`~visrec.models.ials_module.IALSModule`): preferences
    s_ui = p_u·q_i (biases and μ are 0), cold items with an image scored with q_i = E f̃_i + e."""

    model_kind = "IALSModule"
    # Scores are preferences: the evaluator reports no RMSE/MAE for this model, a bundle says "preference".
    predicts_ratings = False

    def __init__(self, num_users: int, num_items: int, k: int = 64, init_std: float = 0.1, visual_mode: str = "none",
                 feature_dim: int = 0, visual_pca_dim: int = 64):
        super().__init__()
        # The factor tables (biases stay 0 and μ = 0: s_ui = p_u·q_i); known users/items come from the counts.
        self.net = BiasedMF(num_users, num_items, k, init_std=init_std, global_mean=0.0)
        self.net.requires_grad_(False)
        self.net.user_bias.weight.zero_()
        self.net.item_bias.weight.zero_()
        self.visual_mode = visual_mode
        self.visual = None
        if visual_mode != "none":
            if feature_dim <= 0:
                raise ValueError(f"model.visual_mode={visual_mode} needs image features (feature_dim > 0)")
            self.visual = VisualPrior(num_items, feature_dim, k, pca_dim=visual_pca_dim)
            self.visual.requires_grad_(False)

    def attach_features(self, features: torch.Tensor, has_image: torch.Tensor, fit: bool = True) -> None:
        """Give the model the (N, D) frozen features and (N,) has-image mask (whitening fitted on training items)."""
        if self.visual is not None:
            self.visual.attach(features, has_image, self.net.known_items, fit_scaler=fit)

    @torch.no_grad()
    def effective_factors(self) -> dict[str, torch.Tensor | float]:
        """Tables with s_ui = p_u·q_i and the fallbacks folded in: users / items without interactions get
        zero vectors, except cold items with an image (q_i = E f̃_i + e). Biases and μ are 0."""
        net = self.net
        known_users = net.known_users[:, None].float()  # (U, 1)
        item_factors = net.item_factors.weight * net.known_items[:, None].float()  # (N, K)
        if self.visual is not None:
            item_factors, _ = self.visual.fill_cold_items(net.known_items, item_factors)
        return {"user_factors": (net.user_factors.weight * known_users).clone(),
                "user_bias": torch.zeros(net.num_users, device=item_factors.device),
                "item_factors": item_factors.clone(),
                "item_bias": torch.zeros(net.num_items, device=item_factors.device),
                "global_mean": 0.0}

    def predict_ratings(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) preference scores s_ui (not ratings), with the cold fallbacks."""
        tables = self.effective_factors()
        return (tables["user_factors"][users] * tables["item_factors"][items]).sum(-1)


class BaselineScoring(RatingScoring):
    """BaselineOnly's scores (``model=bias_only``; trained by :class:`~visrec.models.baseline_only.BaselineOnly`,
    whose docstring has the model): r̂_ui = μ + b_u + b_i, a :class:`RatingScoring` with K = 0 factors, so
    the evaluator, export and serving treat it as any factor model (``k = 0`` in a bundle). Unknown users /
    items get b = 0; ratings are clipped to ``[rating_min, rating_max]`` (Surprise clips them too)."""

    model_kind = "BaselineOnly"

    def __init__(self, num_users: int, num_items: int, global_mean: float = 0.0,
                 rating_min: float | None = None, rating_max: float | None = None):
        super().__init__(num_users, num_items, k=0, global_mean=global_mean, rating_min=rating_min, rating_max=rating_max)
        self.net.requires_grad_(False)  # fitted in closed form, never by an optimizer


# The scoring half of each built-in model, by the ``_target_``s a run's config may name it with
# (tests/test_imports.py checks each target is a subclass of its scoring half).
SCORING_CLASSES: dict[str, type[ScoringModel]] = {
    "visrec.models.RatingModule": RatingScoring, "visrec.models.rating_module.RatingModule": RatingScoring,
    "visrec.models.IALSModule": IALSScoring, "visrec.models.ials_module.IALSModule": IALSScoring,
    "visrec.models.BaselineOnly": BaselineScoring, "visrec.models.baseline_only.BaselineOnly": BaselineScoring,
    "visrec.models.UserKNN": UserKNNScoring, "visrec.models.user_knn_module.UserKNN": UserKNNScoring,
    "visrec.models.VisualKNN": VisualKNNScoring, "visrec.models.visual_knn_module.VisualKNN": VisualKNNScoring,
}




def _register_hybrid() -> None:
    """The hybrid's scoring half subclasses RatingScoring (above), so it is imported after it is defined."""
    from visrec.models.hybrid import HybridScoring

    SCORING_CLASSES.update({"visrec.models.Hybrid": HybridScoring, "visrec.models.hybrid_module.Hybrid": HybridScoring})


_register_hybrid()
def build_scoring(target: str | None, options: dict) -> ScoringModel | None:
    """The scoring half of the built-in model ``target`` names, built from the ``options`` its ``__init__``
    takes (the others configure training), untrained: a checkpoint's ``state_dict`` loads into it. None
    when ``target`` is not a built-in model."""
    cls = SCORING_CLASSES.get(target)
    if cls is None:
        return None
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{key: value for key, value in options.items() if key in accepted})
