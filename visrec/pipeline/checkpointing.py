"""Checkpoints sized for large models: the best checkpoint holds the weights, ``last.ckpt`` everything.

A Lightning checkpoint with the optimizer state of Adam is about three times the size of the weights
(the weights plus both moment estimates); two of them per epoch for a model of a million users is
gigabytes. Only ``last.ckpt`` is ever resumed from (``resume_dir``), so only it needs the optimizer,
scheduler, loop and callback state; the best checkpoint is read for its weights (``state_dict``) and its
``epoch`` (evaluate.py, export, refit) and is saved weights-only (``trainer.save_checkpoint(...,
weights_only=True)``: state_dict, epoch, global_step, hyperparameters).
"""
from __future__ import annotations

import os

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class LeanModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose top-k (best) files are weights-only and whose ``last.ckpt`` is complete.

    Same arguments as Lightning's ``ModelCheckpoint``; ``save_weights_only`` must stay False (it would
    make ``last.ckpt`` unusable for resuming)."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("save_weights_only"):
            raise ValueError("callbacks.model_checkpoint.save_weights_only must be false: last.ckpt must keep the "
                             "optimizer state to resume; the best checkpoint is already weights-only")
        super().__init__(*args, **kwargs)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        # Lightning's own save, with save_weights_only chosen per file (its only use is this call).
        self.save_weights_only = not os.path.basename(filepath).startswith(self.CHECKPOINT_NAME_LAST)
        try:
            super()._save_checkpoint(trainer, filepath)
        finally:
            self.save_weights_only = False
