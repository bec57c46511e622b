"""Cold-start head for iALS, fitted in closed form for what it is used for (torch only).

A cold item i (no training interactions, image present) gets the vector q_i = W g_i = E f̃_i + e, with
g_i = [1, f̃_i] ∈ R^Q (Q = 1 + P', f̃_i the leading P' whitened image components) and W = [e | E]
(K, Q). Its scores are s_ui = p_u · q_i = θ · x_ui with θ = vec(W) and x_ui = vec(p_u g_iᵀ) (the
same bilinear design as :mod:`visrec.models.visual.rating_head`, without the rating-model's bias terms). Within
the cold candidates p_u · e is the same for every item, so the ranking of cold items comes from
p_u · E f̃_i alone: the head helps only if E does.

W is fitted, with the trained user vectors P (U, K) fixed, to minimise iALS's own loss (see
:mod:`visrec.models.ials.solver`) of the training items that have an image, as if each were cold:

    L(W) = Σ_i [ Σ_{u ∈ S_i} w_ui (1 − p_u·W g_i)²  +  α₀ Σ_u (p_u·W g_i)² ]  +  λ_E ‖E‖²_F

(e is not shrunk). L is quadratic in θ: with x_ui as above,

    XᵀWX = Σ_{(u,i) ∈ S} w_ui x_ui x_uiᵀ + α₀ (PᵀP) ⊗ (Σ_i g_i g_iᵀ),   Xᵀy = Σ_{(u,i) ∈ S} w_ui x_ui,
    const = Σ_{(u,i) ∈ S} w_ui,

the all-cells part by the Gramian trick (Hu et al. 2008; a Kronecker product, never U × N), the
observed part accumulated per user as in :func:`visrec.models.visual.rating_head._normal_equations` (rows
scaled by √w_ui). The number of components P' and λ_E (or no E at all: every cold item gets e) are
chosen by K-fold cross-validation over *items*: each fold's items are held out with all their
interactions, and its held-out loss comes from its own normal equations,
L_f = const_f − 2 θᵀ b_f + θᵀ G_f θ, so no fold needs a pass over the interactions. P was trained with
the held-out items in the data: the CV is slightly optimistic, but it never looks at the test part.

On the trained items' scale. The fit above extrapolates: the trained item vectors are shrunk by iALS's
frequency-scaled L2, while the fitted e_fit predicts a typical item's interactions at full scale, so
p_u·e_fit lands above every trained item's score for every user (with uninformative pictures, never-rated
items took the top of every list). The head that scores is therefore q_i = q̄ + s E_fit f̃_i: the intercept
is the typical candidate item's vector q_c (:mod:`visrec.models.visual.typical`: the mean trained item
vector q̄ scaled to the mean score of the items users have not interacted with), and E is scaled by
s = Σ_u p_u·q̄ / Σ_u p_u·e_fit (clipped to [0, 1]), the shrinkage that separates the mean trained item's
score from the fit's. An uninformative picture (E dropped by the CV) then scores as a typical candidate,
p_u·q_c, in the middle of each user's list rather than at its top; and since p_u·q_c is the same for every
cold item and s > 0, the ranking *among* cold items is the CV fit's, unchanged.

Why not ridge-regress the trained item vectors on the features (what ``visual_mode=reg`` does)? With
whitened features (f̃ᵀf̃ ∝ I over the training items) the ridge penalty shrinks every direction of E by
the same factor, so it cannot change the ranking of cold items at all; and the trained q_i of rare
items are shrunk towards 0 by the frequency-scaled L2, so that regression learns the wrong target.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from visrec.models.ials.solver import CSR
from visrec.models.visual.rating_head import _normal_equations, _user_sums

DEFAULT_COMPONENTS = (2, 4, 8, 16, 32)
DEFAULT_PENALTIES = (10.0, 100.0, 1e3, 1e4, 1e5)


@dataclass
class IALSColdHeadFit:
    """The chosen head and how it was chosen."""

    vector_intercept: torch.Tensor  # e: (K,), the typical candidate vector it was given (q̄ by default)
    projection: torch.Tensor  # s·E_fit: (K, P), zero beyond the components used
    components: int  # P' used (0 when CV dropped E)
    factor_penalty: float | None  # λ_E; None when CV dropped the E f̃ term
    cv_loss: float  # held-out iALS loss of the chosen setting, summed over folds
    cv_loss_intercept_only: float  # the same folds with q_i = e (no image information)
    items: int  # training items the head was fitted on
    cells: int  # items × users: the (user, item) cells the loss sums over
    grid: list = field(default_factory=list)  # (P', λ_E or None, cv_loss) for every setting tried
    fitted_intercept: torch.Tensor | None = None  # e_fit: (K,), the CV fit's own intercept (not used to score)
    scale: float = 1.0  # s: E_fit's factor onto the trained items' scale

    @property
    def cv_rmse(self) -> float:
        """√(cv_loss / cells): root of the held-out weighted squared error per (user, item) cell (the
        model reports it as ``cold_head/cv_loss_rms``; a preference error, not a rating error)."""
        return (self.cv_loss / max(self.cells, 1)) ** 0.5

    @property
    def cv_rmse_intercept_only(self) -> float:
        return (self.cv_loss_intercept_only / max(self.cells, 1)) ** 0.5

    def summary(self) -> str:
        head = "E off (every cold item gets e)" if self.factor_penalty is None else f"{self.components} components, λ_E {self.factor_penalty:g}"
        return (f"iALS cold-start head (closed form on the all-cells loss of {self.items} training items): {head}; "
                f"item-fold CV loss {self.cv_loss:.1f} (intercept only {self.cv_loss_intercept_only:.1f}); "
                f"on the trained items' scale: e = the typical candidate item"
                + ("" if self.factor_penalty is None else f", E × {self.scale:.3g}"))


def _fold_equations(interactions: CSR, user_factors: torch.Tensor, g: torch.Tensor, fold_of_item: torch.Tensor,
                    folds: int, alpha0: float) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """Per item fold f: G_f (KQ, KQ), b_f (KQ,), const_f of the loss in the module docstring, float64.
    interactions: users × items confidences; g (N, Q); fold_of_item (N,) in [0, folds) or −1 (not fitted)."""
    U, K = user_factors.shape
    Q = g.shape[1]
    users = torch.repeat_interleave(torch.arange(interactions.num_rows), interactions.counts())  # (nnz,)
    items, weights = interactions.indices, interactions.weights.double()  # (nnz,)
    p = user_factors.double()
    gram_users = p.T @ p  # (K, K)
    parts = []
    for f in range(folds):
        rows = fold_of_item[items] == f
        root = weights[rows].sqrt()  # (R_f,) √w: _user_sums then gives Σ w g gᵀ, Σ w g, Σ w
        sums = _user_sums(users[rows], g[items[rows]] * root[:, None], root, U)
        G, b, const = _normal_equations(p, sums)  # blocks [g | vec(p gᵀ)]; only the second is this model's
        g_f = g[fold_of_item == f].double()  # (N_f, Q)
        G = G[Q:, Q:] + alpha0 * torch.kron(gram_users, g_f.T @ g_f)  # (KQ, KQ), row k·Q + q
        parts.append((G, b[Q:], const))
    return parts


def fit_ials_cold_head(interactions: CSR, user_factors: torch.Tensor, item_features: torch.Tensor, items: torch.Tensor,
                       alpha0: float, typical_item: torch.Tensor, cold_intercept: torch.Tensor | None = None,
                       component_choices=DEFAULT_COMPONENTS, penalties=DEFAULT_PENALTIES, folds: int = 5,
                       seed: int = 0) -> IALSColdHeadFit:
    """Fit E for iALS's cold items and put the head on the trained items' scale: e = ``typical_item``, E scaled
    by s (see module docstring).

    interactions: users × items CSR of confidences w_ui (the model's training interactions);
    user_factors P (U, K); item_features f̃ (N, P) whitened; items (N,) bool: the items to fit on
    (trained, with an image); alpha0: the unobserved weight α₀; typical_item q̄ (K,): the mean trained
    item vector (the scale's reference); cold_intercept (K,): the e to score with (default q̄; the model
    passes the typical candidate, :mod:`visrec.models.visual.typical`). P' ∈ ``component_choices`` and λ_E ∈ ``penalties`` (or E off) are
    chosen by ``folds``-fold item CV of the loss. Raises ValueError when no item can be fitted on."""
    interactions = CSR(interactions.indptr.cpu(), interactions.indices.cpu(), interactions.weights.cpu(), interactions.num_cols)
    user_factors, item_features, items = user_factors.detach().cpu().float(), item_features.detach().cpu().float(), items.cpu()
    items = items & (torch.bincount(interactions.indices, minlength=len(items)) > 0)
    if not bool(items.any()):
        raise ValueError("fit_ials_cold_head: no training item with an image to fit the head on")
    K, P = user_factors.shape[1], item_features.shape[1]
    choices = sorted({min(int(c), P) for c in component_choices if int(c) > 0})
    width = max(choices, default=0)  # the normal equations need only the leading `width` components
    Q = 1 + width
    g = torch.cat([torch.ones(len(item_features), 1), item_features[:, :width]], 1)  # (N, Q)
    fitted = torch.nonzero(items).squeeze(1)
    folds = max(2, min(int(folds), len(fitted)))
    fold_of_item = torch.full((len(items),), -1, dtype=torch.long)
    fold_of_item[fitted] = torch.randperm(len(fitted), generator=torch.Generator().manual_seed(seed)) % folds
    parts = _fold_equations(interactions, user_factors, g, fold_of_item, folds, alpha0)
    G = sum(part[0] for part in parts)
    b = sum(part[1] for part in parts)
    G_folds = torch.stack([part[0] for part in parts])  # (F, KQ, KQ)
    b_folds = torch.stack([part[1] for part in parts])  # (F, KQ)
    const = sum(part[2] for part in parts)

    def columns(used: int) -> torch.Tensor:  # θ entries of [e | E_:used] among the K·Q
        return (torch.arange(K)[:, None] * Q + torch.arange(1 + used)[None, :]).reshape(-1)

    def penalty(used: int, lam: float) -> torch.Tensor:  # e gets 1e-6 only (unique solution for empty columns)
        return torch.tensor([1e-6] + [float(lam)] * used, dtype=torch.float64).repeat(K)

    def solve(A: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:  # (..., D, D) SPD, (..., D) -> (..., D)
        factor, info = torch.linalg.cholesky_ex(A)  # half the cost of LU; LU if a system is not PD
        if bool((info > 0).any()):
            return torch.linalg.solve(A, rhs[..., None]).squeeze(-1)
        return torch.cholesky_solve(rhs[..., None], factor).squeeze(-1)

    def cv_loss(used: int, lam: float) -> float:
        cols = columns(used)
        G_c, b_c = G[cols][:, cols] + torch.diag(penalty(used, lam)), b[cols]
        G_fc, b_fc = G_folds[:, cols][:, :, cols], b_folds[:, cols]  # (F, D, D), (F, D)
        theta = solve(G_c - G_fc, b_c - b_fc)  # (F, D): fitted without fold f
        held_out = -2 * (theta * b_fc).sum(-1) + torch.einsum("fd,fde,fe->f", theta, G_fc, theta)
        return float(const + held_out.sum())

    intercept_only = cv_loss(0, 1.0)
    grid = [(0, None, intercept_only)] + [(used, float(lam), cv_loss(used, lam)) for used in choices for lam in penalties]
    used, lam, best = min(grid, key=lambda row: row[2])
    cols = columns(used)
    theta = solve(G[cols][:, cols] + torch.diag(penalty(used, 1.0 if lam is None else lam)), b[cols]).float()
    coef = theta.reshape(K, 1 + used)  # [e | E_:used]
    fitted_intercept = coef[:, 0]
    # Onto the trained items' scale (module docstring): e = q̄, E scaled by s = Σ_u p_u·q̄ / Σ_u p_u·e_fit.
    typical = typical_item.detach().cpu().float().reshape(K)
    user_sum = user_factors.sum(0)  # (K,)
    fitted_level, typical_level = float(user_sum @ fitted_intercept), float(user_sum @ typical)
    scale = min(max(typical_level / fitted_level, 0.0), 1.0) if fitted_level > 0 and typical_level > 0 else 1.0
    projection = torch.zeros(K, P)
    projection[:, :used] = coef[:, 1:] * scale
    intercept = typical if cold_intercept is None else cold_intercept.detach().cpu().float().reshape(K)
    return IALSColdHeadFit(intercept.clone(), projection, used, lam, best, intercept_only, len(fitted),
                           len(fitted) * user_factors.shape[0], grid, fitted_intercept.clone(), scale)
