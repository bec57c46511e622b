"""A diverged model is an error, never a result: find non-finite numbers in a model's tensors."""
from __future__ import annotations

from typing import Iterable

import torch


class DivergedError(RuntimeError):
    """Training produced non-finite numbers (NaN or ±inf), or a model holding them was about to be
    tested, evaluated or exported. The message names the tensors and, during training, the epoch."""


def non_finite_names(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding any NaN or ±inf (one reduction per tensor)."""
    return [name for name, tensor in named_tensors
            if torch.is_floating_point(tensor) and not bool(torch.isfinite(tensor).all())]


def check_finite_model(model: torch.nn.Module, where: str) -> None:
    """Raise :class:`DivergedError` if any parameter or floating buffer of ``model`` is not finite.

    ``where`` says what was about to happen (``"evaluation"``, ``"export"``, ``"epoch 3"``)."""
    bad = non_finite_names([*model.named_parameters(), *model.named_buffers()])
    if bad:
        raise DivergedError(f"{where}: the model holds non-finite numbers in {', '.join(bad[:6])}"
                            f"{' ...' if len(bad) > 6 else ''}: training diverged (lower model.optimizer.lr, "
                            "or raise model.reg_factors / model.reg_bias)")
