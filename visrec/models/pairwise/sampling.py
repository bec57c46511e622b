"""Uniform negative sampling for pairwise ranking losses (torch only).

For each observed (u, i) of a batch, j is drawn uniformly from the candidate items (the items with training
interactions) and redrawn, for the rows where u has interacted with j, up to ``max_redraws`` times: the
sampling of BPR (Rendle et al. 2009, D_S = {(u, i, j) : i ∈ I_u⁺, j ∈ I \\ I_u⁺}) and of Cornac's BPR.
Membership is a binary search of u·N + j in the sorted keys of the training interactions, so a batch costs
O(B log |S|) and never touches the catalog."""
from __future__ import annotations

import torch


class NegativeSampler:
    """Draws negatives j ∉ I_u⁺ among ``candidates``.

    users, items: (S,) the training interactions (u, i); num_items: N; candidates: (N,) bool, the items j may
    be (those with training interactions: an item no one has seen in training is never a negative, so a
    cold item's picture is never learned as "disliked")."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, num_items: int, candidates: torch.Tensor,
                 max_redraws: int = 20):
        self.num_items = int(num_items)
        self.keys = torch.unique(users.long().cpu() * self.num_items + items.long().cpu())  # (S',) sorted
        self.pool = torch.nonzero(candidates.cpu()).squeeze(1)  # (M,)
        if len(self.pool) == 0:
            raise ValueError("negative sampling needs at least one item with training interactions")
        self.max_redraws = int(max_redraws)

    def observed(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) bool: whether each (u, j) is a training interaction."""
        keys = users.long() * self.num_items + items.long()  # (B,)
        at = torch.searchsorted(self.keys, keys).clamp(max=len(self.keys) - 1)  # (B,)
        return self.keys[at] == keys

    def sample(self, users: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) users -> (B,) negatives and (B,) bool ``valid``: False where every redraw hit an item of
        I_u⁺ (a user who has interacted with almost every candidate); those rows are left out of the loss."""
        users = users.cpu()
        draw = lambda n: self.pool[torch.randint(len(self.pool), (n,), generator=generator)]  # noqa: E731
        negatives = draw(len(users))  # (B,)
        clash = self.observed(users, negatives)  # (B,)
        for _ in range(self.max_redraws):
            if not bool(clash.any()):
                break
            rows = torch.nonzero(clash).squeeze(1)
            negatives[rows] = draw(len(rows))
            clash[rows] = self.observed(users[rows], negatives[rows])
        return negatives, ~clash
