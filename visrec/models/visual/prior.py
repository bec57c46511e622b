"""Visual prior: a learned projection of frozen, whitened image features (torch only).

f̃_i = diag(1/σ) V (f_i − m) ∈ R^P: the raw features projected on their top-P principal directions
V (P, D) and scaled to unit variance, with m, V, σ fitted on *training* items that have an image (so
nothing about held-out items leaks in). Whitening onto a few principal components matters: on
1280-d CNN features of a few hundred items, per-dimension standardization blows up near-constant,
noisy dimensions and a projection fitted on them overfits (see README, "Visual prior").
    E f̃_i + e ∈ R^K   predicted item vector   (E: P -> K, intercept e: the typical item vector)
    w·f̃_i + c         predicted item bias
Features live in a non-persistent buffer (they come from the feature cache, not the checkpoint);
m, V, σ, E, e, w, c are saved with the model.
"""
from __future__ import annotations

import torch
from torch import nn

VISUAL_MODES = ("none", "init", "reg", "init+reg", "head")
# A config value, not a model mode: the pipeline (visrec.pipeline.setup.resolve_visual_mode) replaces it
# before the model is built, by AUTO_WITH_IMAGES when the data has pictures and by "none" otherwise.
AUTO = "auto"
AUTO_WITH_IMAGES = "reg"


class VisualPrior(nn.Module):
    def __init__(self, num_items: int, feature_dim: int, k: int, pca_dim: int = 64):
        super().__init__()
        P = min(int(pca_dim), int(feature_dim))
        self.projection = nn.Linear(P, k)  # E: (K, P), e: (K,)
        self.bias_projection = nn.Linear(P, 1)  # w: (1, P), c: (1,)
        nn.init.zeros_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)
        nn.init.zeros_(self.bias_projection.weight)
        nn.init.zeros_(self.bias_projection.bias)
        self.register_buffer("feature_mean", torch.zeros(feature_dim))  # m: (D,)
        self.register_buffer("components", torch.zeros(P, feature_dim))  # V: (P, D); unused rows stay 0
        self.register_buffer("component_scale", torch.ones(P))  # σ: (P,)
        self.register_buffer("has_image", torch.zeros(num_items, dtype=torch.bool), persistent=False)  # (N,)
        self.register_buffer("features", torch.zeros(num_items, P), persistent=False)  # f̃: (N, P)

    def whiten(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) raw features -> (B, P) whitened principal components."""
        return (features.float() - self.feature_mean) @ self.components.T / self.component_scale

    @torch.no_grad()
    def attach(self, features: torch.Tensor, has_image: torch.Tensor, train_items: torch.Tensor, fit_scaler: bool = True) -> None:
        """Set the (N, D) raw features; fit the whitening on ``train_items`` (N,) bool that have an image."""
        features = features.float()
        if fit_scaler:
            rows = features[train_items & has_image]  # (M, D)
            if len(rows) >= 2:
                mean = rows.mean(0)  # (D,)
                _, sing, v = torch.linalg.svd(rows - mean, full_matrices=False)  # sing: (r,), v: (r, D)
                kept = int((sing > sing[0] * 1e-4).sum()) if sing[0] > 0 else 0  # drop degenerate directions
                P = min(len(self.components), kept)
                scale = sing[:P] / (len(rows) - 1) ** 0.5  # std along each kept component
                self.feature_mean.copy_(mean)
                self.components.zero_()
                self.components[:P] = v[:P]
                self.component_scale.fill_(1.0)
                self.component_scale[:P] = scale
        self.features.copy_(self.whiten(features) * has_image[:, None])
        self.has_image.copy_(has_image)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """E f̃_i + e for (B,) items -> (B, K)."""
        return self.projection(self.features[items])

    def item_biases(self, items: torch.Tensor) -> torch.Tensor:
        """w·f̃_i + c for (B,) items -> (B,)."""
        return self.bias_projection(self.features[items]).squeeze(-1)

    def fill_cold_items(self, known_items: torch.Tensor, item_factors: torch.Tensor,
                        item_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Item tables with cold items that have an image scored from it: rows of (N, K) ``item_factors``
        (and (N,) ``item_bias``) where ``known_items`` (N,) is false and the item has an image become
        E f̃_i + e (and w·f̃_i + c). Returns new tensors."""
        cold_image = (~known_items) & self.has_image  # (N,)
        all_items = torch.arange(len(self.has_image), device=item_factors.device)
        item_factors = torch.where(cold_image[:, None], self.item_vectors(all_items), item_factors)
        if item_bias is not None:
            item_bias = torch.where(cold_image, self.item_biases(all_items), item_bias)
        return item_factors, item_bias

    def leading_components(self, k: int) -> torch.Tensor:
        """(K, P) selector of the first K whitened components (the top principal directions)."""
        out = torch.zeros(k, self.features.shape[1])
        n = min(k, self.features.shape[1])
        out[range(n), range(n)] = 1.0
        return out

    @torch.no_grad()
    def set_head(self, projection: torch.Tensor, vector_intercept: torch.Tensor, bias_weights: torch.Tensor, intercept: float) -> None:
        """Set E (K, P), e (K,), w (P,), c."""
        self.projection.weight.copy_(projection)
        self.projection.bias.copy_(vector_intercept)
        self.bias_projection.weight.copy_(bias_weights[None, :])
        self.bias_projection.bias.fill_(float(intercept))

    def shrinkage(self) -> torch.Tensor:
        """‖E‖²_F + ‖w‖² (the intercepts e and c are not shrunk)."""
        return self.projection.weight.pow(2).sum() + self.bias_projection.weight.pow(2).sum()
