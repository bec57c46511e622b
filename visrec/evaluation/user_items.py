"""Per-user item sets in CSR form, sliced by contiguous ranges of rows for batched evaluation."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class UserItems:
    """Row r's items are ``items[indptr[r]:indptr[r+1]]``. indptr: (E+1,) int64, items: (nnz,) int64."""

    indptr: torch.Tensor
    items: torch.Tensor

    @classmethod
    def from_pairs(cls, rows: torch.Tensor, items: torch.Tensor, num_rows: int) -> "UserItems":
        """Build from (nnz,) row and item indices (any order; rows in 0..num_rows-1)."""
        order = torch.argsort(rows, stable=True)
        counts = torch.bincount(rows, minlength=num_rows)  # (E,)
        indptr = torch.zeros(num_rows + 1, dtype=torch.int64)
        indptr[1:] = counts.cumsum(0)
        return cls(indptr, items[order].to(torch.int64))

    @property
    def num_rows(self) -> int:
        return len(self.indptr) - 1

    def counts(self) -> torch.Tensor:
        """(E,) items per row."""
        return self.indptr[1:] - self.indptr[:-1]

    def block(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows start..stop-1 as (m,) local row numbers (0-based in the block) and (m,) items."""
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        local = torch.repeat_interleave(torch.arange(stop - start), self.counts()[start:stop])  # (m,)
        return local, self.items[lo:hi]

    def dense_block(self, start: int, stop: int, num_items: int) -> torch.Tensor:
        """(stop-start, N) bool matrix of the rows' items."""
        local, items = self.block(start, stop)
        dense = torch.zeros(stop - start, num_items, dtype=torch.bool)
        dense[local, items] = True
        return dense
