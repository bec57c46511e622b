"""The base of every model's scoring half (torch only): what the evaluator, export and serving use of a model
(the "Scores" and "Writes into a bundle" parts of :mod:`visrec.models.contract`). Its own module so that
scoring halves of other forms (:mod:`visrec.models.knn`) and :mod:`visrec.models.scoring` both build on it."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


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
