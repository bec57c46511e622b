"""numpy top-K with the evaluator's order: score descending, ties by lower item index (NaN lowest)."""
from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(B, N) scores -> (B, min(k, N)) item indices, best first; same order as
    :func:`visrec.evaluation.topk.top_k`."""
    scores = np.nan_to_num(scores.astype(np.float32, copy=False), nan=-np.inf, posinf=np.inf, neginf=-np.inf)
    rows, n = scores.shape
    k = min(int(k), n)
    if k == 0:
        return np.empty((rows, 0), dtype=np.int64)
    across_cut = np.zeros(rows, dtype=bool)
    if k < n:
        # Partition so that ranks k and k+1 are in place: a tie between them is a tie across the cut-off.
        part = np.argpartition(-scores, (k - 1, k), axis=1)
        edge = np.take_along_axis(scores, part[:, k - 1:k + 1], axis=1)  # (B, 2)
        across_cut = edge[:, 0] == edge[:, 1]
        part = part[:, :k]  # (B, k) the k best, unordered
    else:
        part = np.broadcast_to(np.arange(n), (rows, n)).copy()
    part.sort(axis=1)  # index order, so a stable sort by score keeps ties by index
    chosen = np.take_along_axis(scores, part, axis=1)
    top = np.take_along_axis(part, np.argsort(-chosen, axis=1, kind="stable"), axis=1)  # (B, k)
    tied = np.nonzero(across_cut)[0]
    if len(tied):  # argpartition picked arbitrary members of the tied group: full stable sort of those rows
        top[tied] = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k]
    return top.astype(np.int64)
