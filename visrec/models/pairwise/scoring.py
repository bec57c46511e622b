"""Scoring halves of BPR and VBPR (torch only: ``evaluate.py`` and export load checkpoints into these).

BPR (Rendle et al., UAI 2009), with an item bias as in Cornac and in VBPR's paper:
    s_ui = β_i + γ_u · γ_i
VBPR (He & McAuley, AAAI 2016, eq. 2), over visrec's frozen image features f̃_i (whitened principal
components, :class:`~visrec.models.visual.prior.VisualPrior`):
    s_ui = β_i + γ_u · γ_i + θ_u · (E f̃_i) + β' · f̃_i
with γ (k factors), θ_u (k2 visual factors), E (k2, P), β' (P,). Scores are preferences, not ratings (no
RMSE/MAE; a bundle says "preference"). Users without training interactions get zero vectors.

Cold items (no training interaction) with a picture: the paper and Cornac score them with γ_i = 0, β_i = 0,
i.e. by the visual part θ_u · E f̃_i + β' · f̃_i alone. Two things make that unsafe. A pairwise loss fixes β_i
and γ_i only up to a common shift, so 0 is not a neutral value; and E is trained jointly with the item
vectors (unpenalized by default, λ_E = 0), so it can memorise items through their pictures: a picture that
carries no information still moves a cold item as far as a trained item's visual part moves it (with
random pictures, 15 of 30 users of a small dense table had a never-rated item in their top 2). Here a cold item with a picture is scored as

    q_i = q_c + H f̃_i  (rows over [γ | θ]),   b_i = b_c + h · f̃_i

from a *cold head* set after training (:meth:`~visrec.models.pairwise.module.VBPR.finish_training`).
``cold_scoring=visual`` (default) is the paper's rule on top of a neutral base: H = [0 | E], h = β', i.e.
θ_u · E f̃_i + β' · f̃_i as trained, added to q_c, b_c, the typical candidate item
(:mod:`visrec.models.visual.typical`) of the trained representation [γ_i | E f̃_i], β_i + β' · f̃_i, in place
of γ_i = 0, β_i = 0. ``cold_scoring=head`` fits (H, h) in closed form on the trained user vectors
[γ_u | θ_u | 1] by :func:`~visrec.models.visual.ials_head.fit_ials_cold_head` (the all-cells squared loss of
the training items as if cold, components and ridge penalty by item-fold CV, on the trained items' scale),
so a picture moves a cold item only as far as held-out items support: with uninformative pictures every
cold item is exactly the typical candidate. Measured on ML-100K posters (README, "BPR and VBPR") the
visual rule ranks cold items better, so it is the default; the head is the safe choice when the pictures
may carry nothing. Cold items without a picture get a zero vector (serving leaves them out: not scorable).

Export: the tables fold into the bundle's factor form s_ui = b_i + p_u · q_i with p_u = [γ_u | θ_u] and
q_i = [γ_i | E f̃_i] (K = k + k2), b_i = β_i + β' · f̃_i; the bundle's visual arrays are the cold head, so
serving scores a new picture exactly as a catalog cold item."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from visrec.models.factor.net import BiasedMF
from visrec.models.scoring import FactorScoring
from visrec.models.visual.prior import VisualPrior

# How a cold item's picture is scored (module docstring).
COLD_SCORING = ("head", "visual")


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

    def __init__(self, num_users: int, num_items: int, k: int = 32, k2: int = 32, init_std: float = 0.1,
                 feature_dim: int = 0, visual_pca_dim: int = 8, sparse_gradients: bool = True, cold_scoring: str = "visual"):
        super().__init__(num_users, num_items, k, init_std=init_std, sparse_gradients=sparse_gradients)
        if cold_scoring not in COLD_SCORING:
            raise ValueError(f"model.cold_scoring must be one of {COLD_SCORING}, got {cold_scoring!r}")
        self.cold_scoring = cold_scoring
        if feature_dim <= 0:
            raise ValueError("model=vbpr needs image features (feature_dim > 0): the data has no picture")
        self.user_visual = nn.Embedding(num_users, k2, sparse=sparse_gradients)  # θ: (U, k2)
        nn.init.normal_(self.user_visual.weight, std=init_std)
        self.visual = VisualPrior(num_items, feature_dim, k2, pca_dim=visual_pca_dim)  # E (k2, P), β' (P,)
        # E starts at N(0, init_std² / P): E f̃ of unit-variance whitened features starts at the scale of γ (Xavier-like;
        # Cornac draws E Xavier-uniform), not √P times larger.
        nn.init.normal_(self.visual.projection.weight, std=init_std / max(self.visual.features.shape[1], 1) ** 0.5)
        # The intercepts e and c of the projection cancel in s_ui − s_uj: fixed at 0.
        self.visual.projection.bias.requires_grad_(False)
        self.visual.bias_projection.bias.requires_grad_(False)
        P = self.visual.features.shape[1]
        # The cold head over [γ | θ | bias]: rows (k + k2 + 1); set after training (module docstring), saved.
        self.register_buffer("cold_intercept", torch.zeros(k + k2 + 1))  # [q_c | b_c]
        self.register_buffer("cold_projection", torch.zeros(k + k2 + 1, P))  # [H | h]

    def attach_features(self, features: torch.Tensor, has_image: torch.Tensor, fit: bool = True) -> None:
        """The (N, D) frozen features and (N,) has-image mask; ``fit``: whiten on training items with an image."""
        self.visual.attach(features, has_image, self.net.known_items, fit_scaler=fit)

    @torch.no_grad()
    def trained_item_representation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, k + k2) [γ_i | E f̃_i] and (N,) β_i + β' · f̃_i of every item (zero γ, β for untrained ones)."""
        gamma, beta = self._item_tables()  # (N, k), (N,)
        all_items = torch.arange(len(beta), device=beta.device)
        visual_vectors = self.visual.item_vectors(all_items)  # (N, k2); f̃ = 0 without a picture, intercept 0
        return torch.cat([gamma, visual_vectors], 1), beta + self.visual.item_biases(all_items)

    @torch.no_grad()
    def effective_factors(self) -> dict[str, torch.Tensor | float]:
        """p_u = [γ_u | θ_u] (U, k + k2), q_i = [γ_i | E f̃_i] (N, k + k2), b_i = β_i + β'·f̃_i for trained items;
        cold items with a picture from the cold head, [q_i | b_i] = cold_intercept + cold_projection f̃_i (module
        docstring); other items zero; μ and user biases 0."""
        items, bias = self.trained_item_representation()
        known = self.net.known_items  # (N,)
        cold_image = (~known) & self.visual.has_image  # (N,)
        head = self.cold_intercept + self.visual.features @ self.cold_projection.T  # (N, k + k2 + 1)
        items = torch.where(cold_image[:, None], head[:, :-1], items * known[:, None])
        bias = torch.where(cold_image, head[:, -1], bias * known)
        known_users = self.net.known_users[:, None].float()  # (U, 1)
        users = torch.cat([self.net.user_factors.weight, self.user_visual.weight], 1) * known_users  # (U, k + k2)
        return {"user_factors": users.detach().clone(), "user_bias": torch.zeros(len(users), device=users.device),
                "item_factors": items.detach().clone(), "item_bias": bias.detach().clone(), "global_mean": 0.0}

    def bundle_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The factor tables (module docstring) and, as the bundle's visual arrays, the cold head: serving scores
        a new picture f̃ as q = q_c + H f̃, b = b_c + h · f̃, as a catalog cold item."""
        arrays, scalars = super().bundle_arrays()
        arrays["visual_projection"] = self.cold_projection[:-1].cpu().numpy().astype(np.float32)  # (k + k2, P)
        arrays["visual_vector_intercept"] = self.cold_intercept[:-1].cpu().numpy().astype(np.float32)  # (k + k2,)
        arrays["visual_bias_weight"] = self.cold_projection[-1].cpu().numpy().astype(np.float32)  # (P,)
        scalars["visual_bias_intercept"] = float(self.cold_intercept[-1])
        return arrays, scalars
