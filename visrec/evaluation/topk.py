"""Top-K selection with a defined order for ties.

Items are ranked by score, highest first; items with equal scores are ranked by item index, lowest
first (NaN counts as -inf). ``torch.topk`` alone leaves the order of ties unspecified (it differs
between CPU and GPU), which would make Precision@K depend on the machine.

Fast path: a float ``topk``, then a stable re-sort of the K selected items so that ties inside the top
K follow the index order. That is exact unless a row has more items tied at its K-th score than made
it in (a tie across the cut-off); only those rows take the exact path, where each (score, index) pair
is packed into one int64 key whose integer order is the ranking (integer ``topk`` is several times
slower on CPU, so it is kept for the rows that need it).
"""
from __future__ import annotations

import torch

_LOW31 = 0x7FFFFFFF


def ordered_int(scores: torch.Tensor) -> torch.Tensor:
    """float32 -> int32 with the same order (IEEE-754 bit trick; -inf lowest, +inf highest). No NaN."""
    bits = scores.contiguous().view(torch.int32)
    return torch.where(bits >= 0, bits, bits ^ _LOW31)


def ranking_keys(scores: torch.Tensor) -> torch.Tensor:
    """(B, N) float32 scores without NaN -> (B, N) int64 keys: larger key = better rank."""
    n = scores.shape[1]
    if n >= 2**32:
        raise ValueError(f"a catalog of {n} items is too large for 32-bit tie-break indices")
    tie_break = (2**32 - 1) - torch.arange(n, dtype=torch.int64, device=scores.device)  # (N,) lower index -> larger
    return ordered_int(scores).to(torch.int64) * 2**32 + tie_break  # (B, N)


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(B, N) scores -> (B, min(k, N)) item indices, best first, ties broken by lower index."""
    scores = scores.to(torch.float32)
    n = scores.shape[1]
    k = min(int(k), n)
    if k == 0:
        return torch.empty(scores.shape[0], 0, dtype=torch.int64, device=scores.device)
    if torch.isnan(scores.sum()):  # one cheap reduction; only then the full NaN -> -inf pass
        scores = torch.nan_to_num(scores, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
    values, indices = torch.topk(scores, min(k + 1, n), dim=1, sorted=True)  # (B, k+1): one extra to see the cut-off
    across_cut = values[:, k] == values[:, k - 1] if k < n else torch.zeros(len(values), dtype=torch.bool, device=values.device)
    values, indices = values[:, :k], indices[:, :k]
    # Ties inside the top k: order by index, then stable-sort by score (descending).
    indices, order = indices.sort(dim=1)
    values = values.gather(1, order)
    indices = indices.gather(1, torch.sort(values, dim=1, descending=True, stable=True).indices)  # (B, k)
    # Rows with a tie across the cut-off (the (k+1)-th score equals the k-th): exact path.
    rows = across_cut.nonzero().squeeze(1)
    if len(rows):
        indices[rows] = torch.topk(ranking_keys(scores[rows]), k, dim=1, sorted=True).indices
    return indices
