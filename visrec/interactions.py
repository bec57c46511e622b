"""The one in-memory form of rating data in index space (torch only; shared by data and evaluation)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Interactions:
    """Parallel tensors of R ratings: users (R,) int64, items (R,) int64, ratings (R,) float32."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor

    def __len__(self) -> int:
        return len(self.ratings)

    def subset(self, mask: torch.Tensor) -> "Interactions":
        """The rows where (R,) ``mask`` is true (or the rows at an index tensor)."""
        return Interactions(self.users[mask], self.items[mask], self.ratings[mask])

    @staticmethod
    def concat(*parts: "Interactions") -> "Interactions":
        return Interactions(*(torch.cat([getattr(p, name) for p in parts]) for name in ("users", "items", "ratings")))

    @staticmethod
    def empty() -> "Interactions":
        return Interactions(torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64), torch.empty(0))
