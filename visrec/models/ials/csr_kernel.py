"""Stable bucketing of (row, column, weight) triples by row: the build of
:class:`visrec.models.ials.solver.CSR`, compiled with numba.

A counting sort (Knuth, TAOCP vol. 3, §5.2, "distribution counting"): count each row's entries, prefix-sum
the counts to the rows' starts (``indptr``), then move every entry to its row's next free slot in input
order, so a row's columns keep the order they came in — a stable sort by row in O(nnz + R), one pass of
reads and scattered writes where a comparison or radix sort needs its passes plus a gather of the columns
and one of the weights. With T threads the input is cut into T contiguous chunks, each counted and moved by
one thread; a chunk's entries of a row go after those of the earlier chunks, so the result is the same for
every T. numba is imported on first use and the kernel is cached beside this file.
"""
from __future__ import annotations

import numpy as np

_KERNEL = None


def _compile():
    import numba

    @numba.njit(parallel=True, cache=True, nogil=True)
    def bucket(rows, cols, weights, num_rows, chunks, indptr, out_cols, out_weights):
        n = len(rows)
        size = (n + chunks - 1) // chunks
        slots = np.zeros((chunks, num_rows), np.int64)  # first the counts, then each chunk's next slot per row
        for c in numba.prange(chunks):
            for k in range(c * size, min(n, (c + 1) * size)):
                slots[c, rows[k]] += 1
        total = 0
        for r in range(num_rows):
            indptr[r] = total
            for c in range(chunks):
                count = slots[c, r]
                slots[c, r] = total
                total += count
        indptr[num_rows] = total
        for c in numba.prange(chunks):
            free = slots[c]
            for k in range(c * size, min(n, (c + 1) * size)):
                r = rows[k]
                at = free[r]
                free[r] = at + 1
                out_cols[at] = cols[k]
                out_weights[at] = weights[k]

    return bucket


def load_kernel() -> None:
    """Compile the kernel, or load it from numba's cache (one call on a single triple): done when a model that
    builds tables is built, so that the first table build of a fit is not also the compilation."""
    global _KERNEL
    if _KERNEL is None:
        kernel = _compile()
        kernel(np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1, np.float32), 1, 1, np.empty(2, np.int64),
               np.empty(1, np.int64), np.empty(1, np.float32))
        _KERNEL = kernel


def bucket_by_row(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, num_rows: int,
                  threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr (R + 1,) int64, columns (nnz,) int64, weights (nnz,) float32) of the triples grouped by row,
    input order kept within a row. rows, cols (nnz,) int64 and weights (nnz,) float32, C-contiguous; every row
    in [0, num_rows) (checked: ValueError otherwise, as an index out of range would write out of bounds)."""
    if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= num_rows):
        raise ValueError(f"row indices must be in [0, {num_rows}), got [{int(rows.min())}, {int(rows.max())}]")
    load_kernel()
    import numba

    # One chunk per thread, unless the per-chunk row counts (chunks × R) would outgrow the data itself.
    chunks = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS, len(rows) // max(num_rows, 1)))
    indptr = np.empty(num_rows + 1, np.int64)
    out_cols, out_weights = np.empty(len(rows), np.int64), np.empty(len(rows), np.float32)
    previous = numba.get_num_threads()
    numba.set_num_threads(chunks)
    try:
        _KERNEL(rows, cols, weights, num_rows, chunks, indptr, out_cols, out_weights)
    finally:
        numba.set_num_threads(previous)
    return indptr, out_cols, out_weights
