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

"Has u interacted with j" is one bit of a user × item bitset when that fits in ``BITSET_LIMIT_BYTES``
(U·⌈N/64⌉·8 bytes: 0.2 MB for MovieLens-100K), else a binary search of u's sorted row (Cornac's check);
both give the same triples. The step's arithmetic is float32 (the tables' type); the epoch's loss sum is
float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BITSET_LIMIT_BYTES = 64 * 2**20
_KERNEL = None


@dataclass(frozen=True)
class TrainingTriples:
    """What an epoch samples from, built once per fit (:func:`prepare_triples`).

    indptr (U + 1,), indices (S,) int64: the interactions by user, rows sorted; sample_users (S,) int64: each
    interaction's user; candidates (M,) int64: the items j may be; seen (U, W) uint64: the bitset of
    interactions (W = ⌈N/64⌉), or (0, 0) when it would exceed ``BITSET_LIMIT_BYTES``."""

    indptr: np.ndarray
    indices: np.ndarray
    sample_users: np.ndarray
    candidates: np.ndarray
    seen: np.ndarray


def prepare_triples(indptr: np.ndarray, indices: np.ndarray, candidates: np.ndarray, num_items: int | None = None,
                    bitset_limit_bytes: int = BITSET_LIMIT_BYTES) -> TrainingTriples:
    """:class:`TrainingTriples` of a CSR table (indptr (U + 1,), indices (S,), rows sorted) and candidates (M,)."""
    indptr, indices = np.ascontiguousarray(indptr, np.int64), np.ascontiguousarray(indices, np.int64)
    candidates = np.ascontiguousarray(candidates, np.int64)
    users = len(indptr) - 1
    sample_users = np.repeat(np.arange(users, dtype=np.int64), np.diff(indptr))  # (S,)
    num_items = int(num_items if num_items is not None else max(indices.max(initial=-1), candidates.max(initial=-1)) + 1)
    words = (num_items + 63) // 64
    if users * words * 8 <= bitset_limit_bytes:
        seen = np.zeros((users, words), np.uint64)  # (U, W)
        np.bitwise_or.at(seen, (sample_users, indices >> 6), np.left_shift(np.uint64(1), (indices & 63).astype(np.uint64)))
    else:
        seen = np.zeros((0, 0), np.uint64)
    return TrainingTriples(indptr, indices, sample_users, candidates, seen)


def _compile():
    import numba

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def epoch(user_factors, item_factors, item_bias, indptr, indices, sample_users, candidates, seen, lr, lambda_w,
              lambda_b, seed, max_redraws):
        # xorshift64* (Marsaglia 2003; Vigna 2016), its high 32 bits mapped onto [0, n) by a multiply (Lemire 2019)
        # instead of a division: a few integer operations per draw, seeded from torch's stream.
        state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
        samples = len(indices)
        k = user_factors.shape[1]
        use_bitset = seen.shape[0] > 0
        one = np.float32(1.0)
        lr, lambda_w, lambda_b = np.float32(lr), np.float32(lambda_w), np.float32(lambda_b)
        lambda_neg = lambda_b / np.float32(10.0)
        loss, steps = 0.0, 0
        product, pending = 1.0, 0
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
                if use_bitset:
                    if (seen[u, j >> 6] >> np.uint64(j & 63)) & np.uint64(1) == np.uint64(0):
                        found = True
                        break
                else:
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
            e = np.exp(-abs(x))  # −ln σ(x) = max(−x, 0) + ln(1 + e^−|x|) and z = σ(−x), without overflow
            product *= 1.0 + e  # Σ ln(1 + e) as ln of products of at most 512 factors in (1, 2]: one log per 512 steps
            if x >= 0:
                z = e / (one + e)
            else:
                loss -= x
                z = one / (one + e)
            pending += 1
            if pending == 512:
                loss += np.log(product)
                product, pending = 1.0, 0
            item_bias[i] += lr * (z - lambda_b * item_bias[i])
            item_bias[j] += lr * (-z - lambda_neg * item_bias[j])
            for f in range(k):
                gu, gi, gj = pu[f], qi[f], qj[f]
                pu[f] = gu + lr * (z * (gi - gj) - lambda_w * gu)
                qi[f] = gi + lr * (z * gu - lambda_w * gi)
                qj[f] = gj + lr * (-z * gu - lambda_w * gj)
            steps += 1
        loss += np.log(product)
        return loss / max(steps, 1), steps

    return epoch


def load_kernel() -> None:
    """Compile the epoch, or load it from numba's cache (about 0.3 s): done when a model that uses it is built,
    as a compiled extension is loaded on import, so that training time is training."""
    global _KERNEL
    if _KERNEL is None:
        kernel = _compile()
        # numba compiles (or loads) at the first call: one epoch on a 1-user, 2-item table with lr 0.
        triples = prepare_triples(np.array([0, 1]), np.array([0]), np.array([0, 1]), 2)
        t = triples
        kernel(np.zeros((1, 1), np.float32), np.zeros((2, 1), np.float32), np.zeros(2, np.float32), t.indptr, t.indices,
               t.sample_users, t.candidates, t.seen, 0.0, 0.0, 0.0, 0, 1)
        _KERNEL = kernel


def bpr_sgd_epoch(user_factors: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray,
                  triples: TrainingTriples, lr: float, lambda_w: float, lambda_b: float, seed: int,
                  max_redraws: int = 100) -> tuple[float, int]:
    """One epoch in place on float32 arrays γ_u (U, K), γ_i (N, K), β (N,), sampling from ``triples``
    (:func:`prepare_triples`). Returns (mean −ln σ(x_uij) over the steps taken, steps taken)."""
    load_kernel()
    t = triples
    return _KERNEL(user_factors, item_factors, item_bias, t.indptr, t.indices, t.sample_users, t.candidates, t.seen,
                   float(lr), float(lambda_w), float(lambda_b), int(seed), int(max_redraws))
