"""The scoring half of the model contract (torch only: nothing here imports Lightning, nor any model family).

:class:`ScoringModel` is what the evaluator, export, serving and W&B use of a model (the "Scores" and
"Writes into a bundle" parts of :mod:`visrec.models.contract`); :class:`FactorScoring` implements it for
r̂_ui = μ + b_u + b_i + p_u·q_i. The built-in models' scoring halves live in their families
(:class:`~visrec.models.factor.scoring.RatingScoring` and :class:`~visrec.models.factor.scoring.BaselineScoring`,
:class:`~visrec.models.ials.scoring.IALSScoring`, :mod:`visrec.models.knn`, :mod:`visrec.models.hybrid`):
their submodules (so their checkpoints' ``state_dict``), tables and scores, which the LightningModules
inherit and add training to. ``evaluate.py`` and ``python -m visrec.export`` load a built-in model's
checkpoint into its scoring half (:func:`visrec.models.registry.build_scoring`), so they never import
Lightning; any other model loads into its own class (its ``_target_``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from visrec.evaluation.scorers import FactorScorer


class ScoringModel(nn.Module):
    """What a model gives the evaluator, export and serving (see :mod:`visrec.models.contract`)."""

    # True when ``scorer().predict`` gives ratings (RMSE/MAE are reported); False for preference scores.
    predicts_ratings: bool = True
    # False for a model without factor tables (kNN): export refuses it (export=true is refused at set-up).
    exportable: bool = True

    def attach_features(self, features: torch.Tensor, has_image: torch.Tensor, fit: bool = True) -> None:
        """Give the model the (N, D) frozen features and (N,) has-image mask; ``fit=False`` when the model
        is about to receive (or has) a checkpoint's weights. A model without an image prior ignores them."""

    @property
    def has_image_prior(self) -> bool:
        """Whether this instance scores with image features (they must be attached when it is loaded)."""
        return False

    @property
    def known_users(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def known_items(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def item_train_counts(self) -> torch.Tensor:
        raise NotImplementedError

    def scorer(self, name: str = "model"):
        raise NotImplementedError

    def item_vectors(self) -> torch.Tensor | None:
        """(N, K) item vectors for the item map (W&B), or None for a model without them."""
        return None

    def bundle_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        raise NotImplementedError


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
