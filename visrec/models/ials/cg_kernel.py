"""Row-by-row conjugate gradient on the CPU, compiled with numba (the CPU path of
:func:`visrec.models.ials.solver.solve_rows_cg`).

Each row r solves its own K×K system A_r x = b_r with

    A_r x = G x + λ_r ∘ x + Σ_{i ∈ S_r} w_ri (q_i·x) q_i,      b_r = Σ_{i ∈ S_r} w_ri t_ri q_i (+ extra_r)

by ``steps`` CG iterations from its warm start, all of them before the next row (Takács, Pilászy & Tikk
2011; the loop ``implicit``'s CPU ALS runs): the row's item vectors are read from cache in every
iteration, where the whole-table torch version makes a pass over every interaction per iteration. Rows
run in parallel (numba ``prange``, ``torch.get_num_threads()`` threads). Same arithmetic as the torch
version (a step with zero curvature moves nothing), so the two agree to float rounding. O(|S| K + R K²)
per iteration. numba is imported on first use and the kernel is cached beside this file.
"""
from __future__ import annotations

import numpy as np

_KERNEL = None


def _compile():
    import numba

    @numba.njit(inline="always", fastmath=True, cache=True)
    def gram_and_ridge(gram, ridge, r, v, f, has_gram, per_coordinate):
        """((G + diag λ_r) v)_f: the all-cells term (when there is one) and row r's penalty at coordinate f."""
        gv = np.float32(0.0)
        if has_gram:
            for g in range(v.shape[0]):
                gv += gram[f, g] * v[g]
        lam = ridge[r, f] if per_coordinate else ridge[r, 0]
        return gv + lam * v[f]

    @numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def cg_rows(indptr, indices, weights, targets, offsets, fixed, gram, ridge, extra, start, steps, spans):
        k = start.shape[1]
        out = np.empty_like(start)
        per_coordinate = ridge.shape[1] > 1
        has_targets = targets.shape[0] > 0
        has_offsets = offsets.shape[0] > 0  # t_ri − o_i: the other side's biases, subtracted here (no (nnz,) copy)
        has_extra = extra.shape[0] > 0
        has_gram = gram.shape[0] > 0  # an empty gram: no all-cells term (explicit ALS), K² per row per step saved
        for chunk in numba.prange(len(spans)):  # row spans of about equal work, interleaved (balanced_spans)
            for r in range(spans[chunk, 0], spans[chunk, 1]):
                x = start[r].copy()
                residual = np.zeros(k, dtype=np.float32)
                product = np.zeros(k, dtype=np.float32)
                # residual = b − A x
                for j in range(indptr[r], indptr[r + 1]):
                    q = fixed[indices[j]]
                    dot = np.float32(0.0)
                    for f in range(k):
                        dot += q[f] * x[f]
                    t = targets[j] if has_targets else np.float32(1.0)
                    if has_offsets:
                        t -= offsets[indices[j]]
                    scale = weights[j] * (t - dot)
                    for f in range(k):
                        residual[f] += scale * q[f]
                for f in range(k):
                    residual[f] -= gram_and_ridge(gram, ridge, r, x, f, has_gram, per_coordinate)
                    if has_extra:
                        residual[f] += extra[r, f]
                direction = residual.copy()
                norm = np.float32(0.0)
                for f in range(k):
                    norm += residual[f] * residual[f]
                for _ in range(steps):
                    # product = A direction
                    for f in range(k):
                        product[f] = gram_and_ridge(gram, ridge, r, direction, f, has_gram, per_coordinate)
                    for j in range(indptr[r], indptr[r + 1]):
                        q = fixed[indices[j]]
                        dot = np.float32(0.0)
                        for f in range(k):
                            dot += q[f] * direction[f]
                        scale = weights[j] * dot
                        for f in range(k):
                            product[f] += scale * q[f]
                    curvature = np.float32(0.0)
                    for f in range(k):
                        curvature += direction[f] * product[f]
                    rate = norm / curvature if curvature > 0 else np.float32(0.0)
                    new_norm = np.float32(0.0)
                    for f in range(k):
                        x[f] += rate * direction[f]
                        residual[f] -= rate * product[f]
                        new_norm += residual[f] * residual[f]
                    beta = new_norm / norm if norm > 0 else np.float32(0.0)
                    for f in range(k):
                        direction[f] = residual[f] + beta * direction[f]
                    norm = new_norm
                out[r] = x
        return out

    return cg_rows


def load_kernel() -> None:
    """Compile the kernels (CG and :func:`observed_sse`), or load them from numba's cache: done when a model that uses it is built (as a
    compiled extension is loaded on import), so that training time is training."""
    global _KERNEL
    if _KERNEL is None:
        kernel = _compile()
        one = np.ones((1, 1), np.float32)  # numba compiles (or loads) at the first call: one call on a 1 x 1 system
        kernel(np.array([0, 1]), np.array([0]), np.ones(1, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32), one, one, one,
               np.zeros((0, 1), np.float32), one.copy(), 1, np.array([[0, 1]]))
        _KERNEL = kernel
        vector = np.zeros(1, np.float32)
        observed_sse(np.array([0, 1]), np.array([0]), vector, one, vector, one, vector, 1)


def cg_rows(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray, targets: np.ndarray | None, fixed: np.ndarray,
            gram: np.ndarray, ridge: np.ndarray, extra: np.ndarray | None, start: np.ndarray, steps: int,
            threads: int, offsets: np.ndarray | None = None) -> np.ndarray:
    """(R, K) float32: ``steps`` CG iterations per row (module docstring). indptr (R + 1,), indices (nnz,) int64,
    weights (nnz,) and targets (nnz,) or None (t = 1) float32; fixed (C, K), gram (K, K), ridge (R, 1) or (R, K),
    extra (R, K) or None, start (R, K), all float32 and C-contiguous; gram (0, 0) when there is no all-cells term;
    offsets (C,) float32 or None: each cell's target is t_ri − o_i (explicit ALS: the other side's biases)."""
    load_kernel()
    import numba

    empty_vector, empty_table = np.zeros(0, np.float32), np.zeros((0, start.shape[1]), np.float32)
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        return _KERNEL(indptr, indices, weights, empty_vector if targets is None else targets,
                       empty_vector if offsets is None else offsets, fixed, gram, ridge,
                       empty_table if extra is None else extra, start, int(steps), balanced_spans(indptr, threads))
    finally:
        numba.set_num_threads(previous)


def balanced_spans(indptr: np.ndarray, threads: int) -> np.ndarray:
    """(C, 2) int64 [start, stop) row spans cutting rows 0..R into C ≈ 16 · threads contiguous spans of about equal
    work (a row costs its interactions plus a few for its own K-vector updates), listed interleaved (0, T, 2T, ...,
    1, T + 1, ...) so that each thread's static share of ``prange`` holds spans from the whole table: when a few
    rows (popular items, often numbered first) hold most interactions, a plain ``prange`` over rows gives one
    thread their whole block, and even equal-work contiguous shares leave one thread the rows too long to stay
    in cache."""
    rows = len(indptr) - 1
    threads = max(1, int(threads))
    work = indptr.astype(np.int64) + 4 * np.arange(rows + 1, dtype=np.int64)  # (R + 1,) cumulative cost
    cuts = np.unique(np.searchsorted(work, np.linspace(0, work[-1], 16 * threads + 1), side="left").clip(0, rows))
    cuts = np.unique(np.concatenate([[0], cuts, [rows]]))
    spans = np.stack([cuts[:-1], cuts[1:]], 1).astype(np.int64)  # (C, 2)
    order = np.concatenate([np.arange(t, len(spans), threads) for t in range(threads)])
    return np.ascontiguousarray(spans[order])


_SSE_KERNEL = None


def observed_sse(indptr: np.ndarray, indices: np.ndarray, targets: np.ndarray, rows: np.ndarray, row_bias: np.ndarray,
                 cols: np.ndarray, col_bias: np.ndarray, threads: int) -> float:
    """Σ over the CSR's cells (r, c) of (t_rc − b_r − b_c − x_r·y_c)², one parallel pass without forming any
    (nnz, K) gather: indptr (R + 1,), indices (nnz,) int64; targets (nnz,), rows (R, K), row_bias (R,),
    cols (C, K), col_bias (C,) float32. Float64 sums."""
    global _SSE_KERNEL
    import numba

    if _SSE_KERNEL is None:
        @numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
        def kernel(indptr, indices, targets, rows, row_bias, cols, col_bias, spans):
            total = 0.0
            for chunk in numba.prange(len(spans)):  # row spans of about equal work, interleaved (balanced_spans)
                partial = 0.0
                for r in range(spans[chunk, 0], spans[chunk, 1]):
                    x = rows[r]
                    for j in range(indptr[r], indptr[r + 1]):
                        y = cols[indices[j]]
                        dot = np.float32(0.0)
                        for f in range(x.shape[0]):
                            dot += x[f] * y[f]
                        error = targets[j] - row_bias[r] - col_bias[indices[j]] - dot
                        partial += error * error
                total += partial
            return total

        _SSE_KERNEL = kernel
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        return float(_SSE_KERNEL(indptr, indices, targets, rows, row_bias, cols, col_bias, balanced_spans(indptr, threads)))
    finally:
        numba.set_num_threads(previous)
