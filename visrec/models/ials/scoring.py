"""The scoring half of iALS (``model=ials``, torch only), trained by :class:`~visrec.models.ials.module.IALSModule`."""
from __future__ import annotations

import torch

from visrec.models.factor.net import BiasedMF
from visrec.models.scoring import FactorScoring
from visrec.models.visual.prior import VisualPrior


class IALSScoring(FactorScoring):
    """iALS's scores (``model=ials``; trained by :class:`~visrec.models.ials.module.IALSModule`): preferences
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
