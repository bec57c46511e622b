"""Scoring halves of BPR and VBPR (torch only: ``evaluate.py`` and export load checkpoints into these).

BPR (Rendle et al., UAI 2009), with an item bias as in Cornac and in VBPR's paper:
    s_ui = β_i + γ_u · γ_i
VBPR (He & McAuley, AAAI 2016, eq. 2), over visrec's frozen image features f̃_i (whitened principal
components, :class:`~visrec.models.visual.prior.VisualPrior`):
    s_ui = β_i + γ_u · γ_i + θ_u · (E f̃_i) + β' · f̃_i
with γ (k factors), θ_u (k2 visual factors), E (k2, P), β' (P,). Scores are preferences, not ratings (no
RMSE/MAE; a bundle says "preference"). Users without training interactions get zero vectors.

Cold items (no training interaction) with a picture: the paper and Cornac set γ_i = 0, β_i = 0. A pairwise
loss fixes β_i and γ_i only up to a common shift (it sees differences s_ui − s_uj), so 0 is not a neutral
value: here a cold item gets the *typical* item's latent part, γ̄ and β̄ (the means over trained items),
plus what its picture adds, θ_u · E f̃_i + β' · f̃_i. An uninformative picture therefore scores like a
typical item, never above every trained one. Cold items without a picture get a zero vector (serving
leaves them out: not scorable).

Export: the tables fold into the bundle's factor form s_ui = b_i + p_u · q_i with p_u = [γ_u | θ_u] and
q_i = [γ_i | E f̃_i] (K = k + k2), b_i = β_i + β' · f̃_i; the visual arrays are written so that serving
scores a new picture as q = [γ̄ | E f̃], b = β̄ + β' · f̃ (the same rule as for catalog cold items)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from visrec.models.factor.net import BiasedMF
from visrec.models.scoring import FactorScoring
from visrec.models.visual.prior import VisualPrior


class BPRScoring(FactorScoring):
    """BPR's scores (``model=bpr``; trained by :class:`~visrec.models.pairwise.module.BPR`)."""

    model_kind = "BPR"
    predicts_ratings = False

    def __init__(self, num_users: int, num_items: int, k: int = 64, init_std: float = 0.1, sparse_gradients: bool = True):
        super().__init__()
        # γ_u, γ_i, β_i; the user bias of BiasedMF stays 0 (it cancels in s_ui − s_uj) and μ = 0.
        self.net = BiasedMF(num_users, num_items, k, init_std=init_std, global_mean=0.0, sparse=sparse_gradients)
        self.net.user_bias.weight.requires_grad_(False)
        self.visual = None

    def _item_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, k) γ_i and (N,) β_i of trained items, zero for the others."""
        known = self.net.known_items[:, None].float()  # (N, 1)
        return self.net.item_factors.weight * known, self.net.item_bias.weight.squeeze(-1) * known.squeeze(-1)

    def _user_table(self) -> torch.Tensor:
        """(U, K) user vectors of trained users, zero for the others."""
        return self.net.user_factors.weight * self.net.known_users[:, None].float()

    @torch.no_grad()
    def effective_factors(self) -> dict[str, torch.Tensor | float]:
        """Tables with s_ui = b_i + p_u · q_i (see module docstring); user biases and μ are 0."""
        item_factors, item_bias = self._item_tables()
        users = self._user_table()
        return {"user_factors": users.detach().clone(), "user_bias": torch.zeros(len(users), device=users.device),
                "item_factors": item_factors.detach().clone(), "item_bias": item_bias.detach().clone(), "global_mean": 0.0}

    def predict_ratings(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) preference scores s_ui (not ratings), with the cold fallbacks."""
        tables = self.effective_factors()
        return tables["item_bias"][items] + (tables["user_factors"][users] * tables["item_factors"][items]).sum(-1)


class VBPRScoring(BPRScoring):
    """VBPR's scores (``model=vbpr``; trained by :class:`~visrec.models.pairwise.module.VBPR`). ``k2``: the
    visual factors θ_u; ``visual_pca_dim``: P, the whitened components of the image features used."""

    model_kind = "VBPR"

    def __init__(self, num_users: int, num_items: int, k: int = 64, k2: int = 64, init_std: float = 0.1,
                 feature_dim: int = 0, visual_pca_dim: int = 64, sparse_gradients: bool = True):
        super().__init__(num_users, num_items, k, init_std=init_std, sparse_gradients=sparse_gradients)
        if feature_dim <= 0:
            raise ValueError("model=vbpr needs image features (feature_dim > 0): the data has no picture")
        self.user_visual = nn.Embedding(num_users, k2, sparse=sparse_gradients)  # θ: (U, k2)
        nn.init.normal_(self.user_visual.weight, std=init_std)
        self.visual = VisualPrior(num_items, feature_dim, k2, pca_dim=visual_pca_dim)  # E (k2, P), β' (P,)
        nn.init.normal_(self.visual.projection.weight, std=init_std)
        # The intercepts e and c of the projection cancel in s_ui − s_uj: fixed at 0.
        self.visual.projection.bias.requires_grad_(False)
        self.visual.bias_projection.bias.requires_grad_(False)

    def attach_features(self, features: torch.Tensor, has_image: torch.Tensor, fit: bool = True) -> None:
        """The (N, D) frozen features and (N,) has-image mask; ``fit``: whiten on training items with an image."""
        self.visual.attach(features, has_image, self.net.known_items, fit_scaler=fit)

    def _typical_item(self) -> tuple[torch.Tensor, torch.Tensor]:
        """γ̄ (k,) and β̄ (): the mean latent vector and bias of the trained items."""
        known = self.net.known_items
        if not bool(known.any()):
            return self.net.item_factors.weight.new_zeros(self.net.item_factors.weight.shape[1]), self.net.item_bias.weight.new_zeros(())
        return self.net.item_factors.weight[known].mean(0), self.net.item_bias.weight[known, 0].mean()

    @torch.no_grad()
    def effective_factors(self) -> dict[str, torch.Tensor | float]:
        """p_u = [γ_u | θ_u] (U, k + k2), q_i = [γ_i | E f̃_i] (N, k + k2), b_i = β_i + β'·f̃_i, with cold items
        that have a picture at γ̄, β̄ (module docstring); μ and user biases 0."""
        gamma, beta = self._item_tables()  # (N, k), (N,)
        cold_image = (~self.net.known_items) & self.visual.has_image  # (N,)
        mean_gamma, mean_beta = self._typical_item()
        gamma = torch.where(cold_image[:, None], mean_gamma.expand_as(gamma), gamma)
        beta = torch.where(cold_image, mean_beta.expand_as(beta), beta)
        all_items = torch.arange(len(beta), device=beta.device)
        scorable = (self.net.known_items | self.visual.has_image)[:, None].float()  # (N, 1)
        visual_vectors = self.visual.item_vectors(all_items) * scorable  # (N, k2); f̃ = 0 without a picture
        visual_bias = self.visual.item_biases(all_items) * scorable.squeeze(-1)  # (N,)
        known_users = self.net.known_users[:, None].float()  # (U, 1)
        users = torch.cat([self.net.user_factors.weight, self.user_visual.weight], 1) * known_users  # (U, k + k2)
        return {"user_factors": users.detach().clone(), "user_bias": torch.zeros(len(users), device=users.device),
                "item_factors": torch.cat([gamma, visual_vectors], 1).detach().clone(),
                "item_bias": (beta + visual_bias).detach().clone(), "global_mean": 0.0}

    def bundle_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The factor tables (module docstring) and the visual arrays in the bundle's form: serving scores a
        new picture as q = [γ̄ | E f̃] (projection rows of γ are 0, intercept γ̄), b = β̄ + β' · f̃."""
        arrays, scalars = super().bundle_arrays()
        mean_gamma, mean_beta = self._typical_item()
        E = self.visual.projection.weight.detach()  # (k2, P)
        arrays["visual_projection"] = torch.cat([E.new_zeros(len(mean_gamma), E.shape[1]), E]).cpu().numpy().astype(np.float32)
        arrays["visual_vector_intercept"] = torch.cat([mean_gamma, E.new_zeros(E.shape[0])]).detach().cpu().numpy().astype(np.float32)
        scalars["visual_bias_intercept"] = float(mean_beta)
        return arrays, scalars
