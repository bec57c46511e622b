"""Exact alternating least squares for the all-cells weighted squared loss (iALS), batched in torch.

Objective (Hu, Koren & Volinsky 2008, "Collaborative Filtering for Implicit Feedback Datasets"; with
the unobserved weight and frequency-scaled L2 of Rendle, Krichene, Zhang & Koren 2022, "Revisiting
the performance of iALS on item recommendation benchmarks"):

    L(P, Q) = Σ_{(u,i) ∈ S} w_ui (1 − p_u·q_i)²  +  α₀ Σ_{all u, i} (p_u·q_i)²
              + Σ_u λ_u ‖p_u‖²  +  Σ_i λ_i ‖q_i − m_i‖² · [prior]

with S the observed interactions, w_ui > 0 their confidence, α₀ the weight of every cell (observed or
not), and λ_u = λ (|S_u| + α₀ N)^ν (frequency-scaled L2; ν = 0 is plain L2). The all-cells term is
never materialised: α₀ Σ_i (p_u·q_i)² = α₀ p_uᵀ (QᵀQ) p_u (the Gramian trick). Fixing Q, each p_u
solves the K×K system

    (α₀ QᵀQ + Σ_{i ∈ S_u} w_ui q_i q_iᵀ + λ_u I) p_u = Σ_{i ∈ S_u} w_ui q_i (+ λ_u^prior m_u)

exactly (Cholesky). Σ_{i ∈ S_u} w_ui q_i q_iᵀ is a sparse (rows × N) matrix of weights times the
table of outer products q_i q_iᵀ (N × K²), so a half-sweep costs O(|S| K² + rows K³) and memory
O(N K² + block K²). Rows are solved in blocks; no Python loop runs per row.
"""
from __future__ import annotations

import warnings

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class CSR:
    """Interactions of R rows with C columns, compressed by row: indptr (R+1,), indices (nnz,),
    weights (nnz,) float32 (the confidences w)."""

    indptr: torch.Tensor
    indices: torch.Tensor
    weights: torch.Tensor
    num_cols: int

    @property
    def num_rows(self) -> int:
        return len(self.indptr) - 1

    def counts(self) -> torch.Tensor:
        """(R,) interactions per row."""
        return self.indptr[1:] - self.indptr[:-1]

    @staticmethod
    def from_pairs(rows: torch.Tensor, cols: torch.Tensor, weights: torch.Tensor, num_rows: int, num_cols: int) -> "CSR":
        """From (nnz,) row and column indices and weights (pairs must be unique). Within a row the columns keep
        their input order (a stable counting sort by row, O(nnz + R): :mod:`visrec.models.ials.csr_kernel`), so
        a process's rows built from a subset of the pairs list them as the full table does. Raises ValueError
        for a row index outside [0, num_rows)."""
        from visrec.models.ials.csr_kernel import bucket_by_row

        as_numpy = lambda t, dtype: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)  # noqa: E731 - no copy when already so
        indptr, indices, values = bucket_by_row(as_numpy(rows, np.int64), as_numpy(cols, np.int64), as_numpy(weights, np.float32),
                                                int(num_rows), torch.get_num_threads())
        return CSR(torch.from_numpy(indptr), torch.from_numpy(indices), torch.from_numpy(values), num_cols)

    def transpose(self) -> "CSR":
        rows = torch.repeat_interleave(torch.arange(self.num_rows), self.counts())
        return CSR.from_pairs(self.indices, rows, self.weights, self.num_cols, self.num_rows)

    def block(self, start: int, stop: int, values: torch.Tensor | None = None) -> torch.Tensor:
        """Rows [start, stop) as a sparse CSR tensor (stop − start, C) of the weights, or of ``values`` (nnz,)
        aligned with ``indices`` (no copy of the indices)."""
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        values = self.weights if values is None else values
        with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice, once per process, not the user's concern
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(self.indptr[start:stop + 1] - lo, self.indices[lo:hi], values[lo:hi],
                                           (stop - start, self.num_cols), check_invariants=False)


def frequency_scaled_penalty(counts: torch.Tensor, reg: float, alpha0: float, other_side: int, exponent: float) -> torch.Tensor:
    """(R,) λ_r = λ (|S_r| + α₀ · other_side)^ν (Rendle et al. 2022, section 3.2)."""
    return reg * (counts.float() + alpha0 * other_side).pow(exponent)


def solve_rows(interactions: CSR, fixed: torch.Tensor, penalty: torch.Tensor, alpha0: float,
               prior_mean: torch.Tensor | None = None, prior_weight: torch.Tensor | None = None,
               max_block_elements: int = 1 << 24, targets: torch.Tensor | None = None) -> torch.Tensor:
    """One half-sweep: the exact minimiser of L over the R rows' vectors with the other side fixed.

    interactions: R rows over C = len(fixed) columns; fixed (C, K) float32; penalty (R,) λ_r > 0 or ≥ 0
    with α₀ > 0, or (R, K) a diagonal penalty per coordinate; prior_mean (R, K) and prior_weight (R,) add
    λ_r^prior ‖x_r − m_r‖² (None: no prior); targets (nnz,) aligned with ``interactions.indices``: each
    observed cell's target t_ri in place of 1, i.e. Σ w_ri (t_ri − x_r·q_i)² (explicit ALS: residual ratings,
    α₀ = 0). Returns (R, K). Raises ValueError when a system is not positive definite (all penalties 0 and
    a row with no signal), naming the cause.
    """
    fixed = fixed.float()
    C, K = fixed.shape
    gram = alpha0 * (fixed.T @ fixed)  # (K, K)
    outer = (fixed[:, :, None] * fixed[:, None, :]).reshape(C, K * K)  # (C, K²) q_i q_iᵀ
    out = torch.empty(interactions.num_rows, K)
    block = max(1, max_block_elements // (K * K))
    for start in range(0, interactions.num_rows, block):
        stop = min(start + block, interactions.num_rows)
        weights = interactions.block(start, stop)  # (B, C) sparse
        ridge = _diagonal(penalty[start:stop].float(), K)  # (B, K)
        rhs = torch.sparse.mm(weights if targets is None else interactions.block(start, stop, interactions.weights * targets),
                              fixed)  # (B, K) Σ w_ui t_ui q_i
        if prior_mean is not None:
            ridge = ridge + prior_weight[start:stop, None]
            rhs = rhs + prior_weight[start:stop, None] * prior_mean[start:stop]
        systems = torch.sparse.mm(weights, outer).reshape(-1, K, K) + gram + torch.diag_embed(ridge)  # (B, K, K)
        factor, info = torch.linalg.cholesky_ex(systems)
        if bool((info > 0).any()):
            raise ValueError("iALS: a least-squares system is not positive definite; use model.reg > 0 or "
                             "model.unobserved_weight > 0")
        out[start:stop] = torch.cholesky_solve(rhs[:, :, None], factor).squeeze(-1)
    return out


def _diagonal(penalty: torch.Tensor, K: int) -> torch.Tensor:
    """(R,) or (R, K) penalty -> (R, K) diagonal of each row's ridge."""
    return penalty[:, None].expand(-1, K) if penalty.dim() == 1 else penalty


def solve_rows_cg(interactions: CSR, fixed: torch.Tensor, penalty: torch.Tensor, alpha0: float, start: torch.Tensor,
                  steps: int = 3, prior_mean: torch.Tensor | None = None, prior_weight: torch.Tensor | None = None,
                  targets: torch.Tensor | None = None, compiled: bool | None = None,
                  target_offsets: torch.Tensor | None = None) -> torch.Tensor:
    """One half-sweep by ``steps`` conjugate-gradient iterations per row, warm-started at ``start`` (R, K)
    (Takács, Pilászy & Tikk 2011, "Applications of the conjugate gradient method for implicit feedback
    collaborative filtering"; what ``implicit`` does). Same systems as :func:`solve_rows`, never formed:
    A x = (α₀ QᵀQ + λ_r I) x + Σ_{i ∈ S_r} w_ri (q_i·x) q_i costs O(|S| K) per step (a sampled
    dense-dense product on the sparsity pattern, then a sparse-dense product), instead of O(|S| K²) +
    O(R K³) for the exact solve. All rows at once; returns (R, K). Converges to :func:`solve_rows`'s
    answer as ``steps`` grows, and across epochs from its warm start. ``penalty`` and ``targets`` as there;
    ``target_offsets`` (C,): each cell's target is t_ri − o_i (explicit ALS: the fixed side's biases),
    subtracted cell by cell inside the compiled kernel rather than by an (nnz,) copy of the targets.
    On the CPU each row runs its iterations together, compiled (:mod:`visrec.models.ials.cg_kernel`, the loop
    ``implicit`` runs); on a GPU the whole table steps at once in torch (below). ``compiled``: force one of
    the two (None: by device).
    """
    fixed = fixed.float()
    K = fixed.shape[1]
    if compiled if compiled is not None else (fixed.device.type == "cpu" and start.device.type == "cpu"):
        return _cg_rows_cpu(interactions, fixed, penalty, alpha0, start, steps, prior_mean, prior_weight, targets,
                            target_offsets)
    if target_offsets is not None:
        targets = (1.0 if targets is None else targets) - target_offsets[interactions.indices]  # (nnz,)
    weights = interactions.block(0, interactions.num_rows)  # (R, C) sparse CSR
    ridge = _diagonal(penalty.float(), K)  # (R, K)
    rhs = torch.sparse.mm(weights if targets is None else interactions.block(0, interactions.num_rows, interactions.weights * targets),
                          fixed)  # (R, K) Σ w_ri t_ri q_i
    if prior_mean is not None:
        ridge = ridge + prior_weight[:, None]
        rhs = rhs + prior_weight[:, None] * prior_mean
    gram = alpha0 * (fixed.T @ fixed)  # (K, K)

    def apply(x: torch.Tensor) -> torch.Tensor:  # (R, K) -> (R, K): A x, row by row
        dots = torch.sparse.sampled_addmm(weights, x, fixed.T, beta=0.0)  # (R, C) sparse: q_i·x_r on the pattern
        dots = torch.sparse_csr_tensor(dots.crow_indices(), dots.col_indices(), dots.values() * weights.values(),
                                       dots.shape, check_invariants=False)  # times w_ri
        return x @ gram + ridge * x + torch.sparse.mm(dots, fixed)

    x = start.float().clone()
    residual = rhs - apply(x)  # (R, K)
    direction = residual.clone()
    norm = residual.pow(2).sum(-1)  # (R,)
    for _ in range(steps):
        step_dir = apply(direction)
        curvature = (direction * step_dir).sum(-1)  # (R,)
        rate = torch.where(curvature > 0, norm / curvature.clamp(min=1e-30), torch.zeros_like(norm))
        x += rate[:, None] * direction
        residual -= rate[:, None] * step_dir
        new_norm = residual.pow(2).sum(-1)
        direction = residual + torch.where(norm > 0, new_norm / norm.clamp(min=1e-30), torch.zeros_like(norm))[:, None] * direction
        norm = new_norm
    return x


def _cg_rows_cpu(interactions: CSR, fixed: torch.Tensor, penalty: torch.Tensor, alpha0: float, start: torch.Tensor,
                 steps: int, prior_mean: torch.Tensor | None, prior_weight: torch.Tensor | None,
                 targets: torch.Tensor | None, target_offsets: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`solve_rows_cg` on the CPU: each row's CG iterations run together, in cache, compiled
    (:mod:`visrec.models.ials.cg_kernel`)."""
    from visrec.models.ials.cg_kernel import cg_rows

    K = fixed.shape[1]
    ridge = penalty.float()[:, None] if penalty.dim() == 1 else penalty.float()  # (R, 1) or (R, K)
    extra = None
    if prior_mean is not None:
        ridge = ridge + prior_weight.float()[:, None]
        extra = (prior_weight.float()[:, None] * prior_mean.float()).contiguous().numpy()  # (R, K)
    gram = (alpha0 * (fixed.T @ fixed)).contiguous() if alpha0 else torch.zeros(0, 0)  # (K, K); (0, 0): no all-cells term
    out = cg_rows(interactions.indptr.contiguous().numpy(), interactions.indices.long().contiguous().numpy(),
                  interactions.weights.float().contiguous().numpy(),
                  None if targets is None else targets.float().contiguous().numpy(), fixed.contiguous().numpy(),
                  gram.numpy(), ridge.contiguous().numpy(), extra, start.float().contiguous().numpy(), steps,
                  torch.get_num_threads(), None if target_offsets is None else target_offsets.float().contiguous().numpy())
    return torch.from_numpy(out).reshape(-1, K)


def weighted_loss(interactions: CSR, rows: torch.Tensor, cols: torch.Tensor, alpha0: float,
                  row_penalty: torch.Tensor, col_penalty: torch.Tensor) -> float:
    """L(P, Q) without the prior term, exactly (Gramian trick for the all-cells part); for logging."""
    users = torch.repeat_interleave(torch.arange(interactions.num_rows), interactions.counts())
    observed = torch.zeros((), dtype=torch.float64)
    for lo in range(0, len(users), 1 << 20):  # chunks of 1M cells: a (chunk, K) gather at a time, never (nnz, K)
        hi = min(lo + (1 << 20), len(users))
        scores = (rows[users[lo:hi]] * cols[interactions.indices[lo:hi]]).sum(-1)  # (chunk,)
        observed += (interactions.weights[lo:hi] * (1.0 - scores).pow(2)).sum().double()
    all_cells = alpha0 * ((rows.T @ rows) * (cols.T @ cols)).sum()  # Σ_u Σ_i (p_u·q_i)²
    l2 = (row_penalty * rows.pow(2).sum(-1)).sum() + (col_penalty * cols.pow(2).sum(-1)).sum()
    return float(observed + all_cells + l2)
