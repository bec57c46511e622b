"""numpy top-K with the evaluator's order: score descending, ties by lower item index (NaN lowest)."""
from __future__ import annotations

import numpy as np


CHUNK = 256  # items per chunk in the two-stage search


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(B, N) scores -> (B, min(k, N)) item indices, best first; same order as
    :func:`visrec.evaluation.topk.top_k` (score descending, ties by lower index, NaN as -inf).

    Large catalogs take two stages, because ``np.argpartition`` over whole rows is slow (it builds a
    full (B, N) index array): split each row into chunks of 256 items, keep the k chunks with the
    highest maxima (every top-k item lies in them: k chunks reach at least the k-th chunk maximum, so
    the k-th best score does too), and rank only those k·256 items. Rows where a left-out chunk ties
    the k-th best score are redone over the whole row."""
    scores = scores.astype(np.float32, copy=False)
    if np.isnan(scores.sum()):  # one cheap reduction; only then the NaN -> -inf copy
        scores = np.nan_to_num(scores, nan=-np.inf, posinf=np.inf, neginf=-np.inf)
    rows, n = scores.shape
    if n <= 4 * max(int(k), 1) * CHUNK:
        return _top_k_rows(scores, k)
    chunks = -(-n // CHUNK)
    padded = np.full((rows, chunks * CHUNK), -np.inf, dtype=np.float32)
    padded[:, :n] = scores
    blocks = padded.reshape(rows, chunks, CHUNK)  # (B, C, 256)
    maxima = blocks.max(axis=2)  # (B, C)
    kept = np.sort(_top_k_rows(maxima, k), axis=1)  # (B, k) chunk numbers, in index order
    candidates = (kept[:, :, None] * CHUNK + np.arange(CHUNK)).reshape(rows, -1)  # (B, k*256) item indices, ascending
    values = np.take_along_axis(padded, candidates, axis=1)
    local = _top_k_rows(values, k)  # ties by position = by item index, since candidates ascend
    top = np.take_along_axis(candidates, local, axis=1)  # (B, k)
    # Exactness check: a chunk left out whose maximum reaches the k-th score (a tie) -> whole row.
    kth = np.take_along_axis(values, local[:, -1:], axis=1)  # (B, 1)
    left_out = maxima.copy()
    np.put_along_axis(left_out, kept, -np.inf, axis=1)
    redo = np.nonzero(left_out.max(axis=1) >= kth[:, 0])[0]
    if len(redo):
        top[redo] = _top_k_rows(scores[redo], k)
    return top


def _top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """The direct path: argpartition over whole rows (no NaN in ``scores``)."""
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
