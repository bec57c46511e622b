"""The "optimizer" of closed-form models (torch only): ``step()`` runs one closed-form update and returns
its loss. Being an optimizer lets Lightning count steps (checkpointing keys on them: a run whose global
step never advances saves one checkpoint only), save and restore state and replay its (unused) learning
rate like any other. Used by :mod:`visrec.models.factor.baseline_only` and :mod:`visrec.models.knn.user_module`
(:class:`visrec.models.ials.module.ALSSweep` is the same idea, kept there for iALS)."""
from __future__ import annotations

from typing import Callable, Iterable

import torch


class ClosedFormStep(torch.optim.Optimizer):
    """``step()`` calls ``update()`` (no gradients) and returns what it returns (the loss, a float).
    ``params`` must be non-empty (a torch optimizer rule); a model without parameters passes a (0,)-sized one."""

    def __init__(self, params: Iterable[torch.nn.Parameter], update: Callable[[], float]):
        super().__init__(params, {"lr": 1.0})
        self._update = update

    @torch.no_grad()
    def step(self, closure=None) -> float:
        if closure is not None:
            with torch.enable_grad():
                closure()  # Lightning's hooks around a step
        return self._update()
