"""BPR's per-sample SGD epoch (LearnBPR: Rendle et al., UAI 2009, fig. 4), compiled with numba.

One epoch draws S triples, S = the number of training interactions: (u, i) uniformly from the interactions
(with replacement, as LearnBPR and Cornac's BPR do), j uniformly from the candidate items, redrawn while u
has interacted with j (a binary search in u's sorted row; a user who has seen every candidate is skipped).
Each triple takes one SGD step on the loss of :mod:`visrec.models.pairwise.module` (−ln σ(x_uij) and its
L2 terms), x_uij = β_i − β_j + γ_u · (γ_i − γ_j), z = σ(−x_uij):

    β_i += lr (z − λ_b β_i)              β_j += lr (−z − λ_b/10 β_j)
    γ_u += lr (z (γ_i − γ_j) − λ_w γ_u)   γ_i += lr (z γ_u − λ_w γ_i)   γ_j += lr (−z γ_u − λ_w γ_j)

the update of Cornac's Cython BPR (which uses one λ for all). A sequential loop is what per-sample SGD is;
compiled it costs O(S·K) per epoch with no per-step framework overhead (numba is imported on first use; the
compiled kernel is cached beside this file, so a run after the first loads it instead of compiling).
"""
from __future__ import annotations

import numpy as np

_KERNEL = None


def _compile():
    import numba

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def epoch(user_factors, item_factors, item_bias, indptr, indices, sample_users, candidates, lr, lambda_w, lambda_b,
              seed, max_redraws):
        # xorshift64* (Marsaglia 2003; Vigna 2016), its high 32 bits mapped onto [0, n) by a multiply (Lemire 2019)
        # instead of a division: a few integer operations per draw, seeded from torch's stream.
        state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
        samples = len(indices)
        k = user_factors.shape[1]
        lr, lambda_w, lambda_b = np.float32(lr), np.float32(lambda_w), np.float32(lambda_b)
        loss, steps = 0.0, 0
        for _ in range(samples):
            state ^= state >> np.uint64(12)
            state ^= state << np.uint64(25)
            state ^= state >> np.uint64(27)
            row = (((state * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(32)) * np.uint64(samples)) >> np.uint64(32)
            u, i = sample_users[row], indices[row]
            j, found = -1, False
            for _ in range(max_redraws):
                state ^= state >> np.uint64(12)
                state ^= state << np.uint64(25)
                state ^= state >> np.uint64(27)
                j = candidates[(((state * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(32)) * np.uint64(len(candidates))) >> np.uint64(32)]
                low, high = indptr[u], indptr[u + 1]  # binary search of j in u's sorted row
                while low < high:
                    mid = (low + high) // 2
                    if indices[mid] < j:
                        low = mid + 1
                    else:
                        high = mid
                if low == indptr[u + 1] or indices[low] != j:
                    found = True
                    break
            if not found:
                continue
            pu, qi, qj = user_factors[u], item_factors[i], item_factors[j]  # row views (K,)
            x = item_bias[i] - item_bias[j]
            for f in range(k):
                x += pu[f] * (qi[f] - qj[f])
            e = np.exp(-abs(x))  # −ln σ(x) and z = σ(−x), without overflow
            if x >= 0:
                loss += np.log1p(e)
                z = e / (1.0 + e)
            else:
                loss += -x + np.log1p(e)
                z = 1.0 / (1.0 + e)
            z = np.float32(z)
            item_bias[i] += lr * (z - lambda_b * item_bias[i])
            item_bias[j] += lr * (-z - lambda_b / np.float32(10.0) * item_bias[j])
            for f in range(k):
                gu, gi, gj = pu[f], qi[f], qj[f]
                pu[f] = gu + lr * (z * (gi - gj) - lambda_w * gu)
                qi[f] = gi + lr * (z * gu - lambda_w * gi)
                qj[f] = gj + lr * (-z * gu - lambda_w * gj)
            steps += 1
        return loss / max(steps, 1), steps

    return epoch


def bpr_sgd_epoch(user_factors: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray, indptr: np.ndarray,
                  indices: np.ndarray, candidates: np.ndarray, lr: float, lambda_w: float, lambda_b: float, seed: int,
                  max_redraws: int = 100) -> tuple[float, int]:
    """One epoch in place on float32 arrays γ_u (U, K), γ_i (N, K), β (N,).

    indptr (U + 1,), indices (S,) int64: the training interactions by user, each row sorted; candidates (M,)
    int64: the items j may be. Returns (mean −ln σ(x_uij) over the steps taken, steps taken)."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _compile()
    sample_users = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))  # (S,)
    return _KERNEL(user_factors, item_factors, item_bias, indptr, indices, sample_users, candidates, float(lr),
                   float(lambda_w), float(lambda_b), int(seed), int(max_redraws))
