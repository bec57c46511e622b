"""Lightning strategies for models that train by closed-form steps (Lightning; used by :mod:`visrec.pipeline.training`)."""
from __future__ import annotations

from pytorch_lightning.strategies import DDPStrategy


class ClosedFormDDPStrategy(DDPStrategy):
    """Lightning's DDP (its processes, process group and the datamodule's rank-sharded batches) for a model
    with no parameter that takes gradients (iALS, explicit ALS: one closed-form sweep per step, the solved
    rows exchanged by the model's own collectives, :mod:`visrec.models.ials.sharding`). It leaves out the
    ``DistributedDataParallel`` wrapper, which refuses such a module and would have no gradient to
    all-reduce; a model with trainable parameters gets plain DDP."""

    def configure_ddp(self) -> None:
        if any(p.requires_grad for p in self.model.parameters()):
            super().configure_ddp()
