"""Lightning plugins of the training pipeline (Lightning; used by :mod:`visrec.pipeline.training`): DDP for models
that train by closed-form steps, and a checkpoint writer whose failures name the file."""
from __future__ import annotations

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.strategies import DDPStrategy

from visrec.utils.atomic import WriteError


class ClosedFormDDPStrategy(DDPStrategy):
    """Lightning's DDP (its processes, process group and the datamodule's rank-sharded batches) for a model
    with no parameter that takes gradients (iALS, explicit ALS: one closed-form sweep per step, the solved
    rows exchanged by the model's own collectives, :mod:`visrec.models.ials.sharding`). It leaves out the
    ``DistributedDataParallel`` wrapper, which refuses such a module and would have no gradient to
    all-reduce; a model with trainable parameters gets plain DDP."""

    def configure_ddp(self) -> None:
        if any(p.requires_grad for p in self.model.parameters()):
            super().configure_ddp()


class CheckpointWriteIO(TorchCheckpointIO):
    """Lightning's checkpoint writer (``torch.save`` into memory, then the file written inside an fsspec
    transaction: a failed write leaves the file that was there as it was) with a failed write reported as
    :class:`~visrec.utils.atomic.WriteError` naming the checkpoint file and the reason, so ``train.py``
    prints one line and exits with status 2, as for any output it cannot write."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        try:
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
        except OSError as error:
            if isinstance(error, WriteError):
                raise
            raise WriteError(path, error, "the checkpoint there before (if any) is unchanged; the run stopped") from None
