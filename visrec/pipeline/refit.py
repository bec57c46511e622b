"""Refit on all training ratings (``refit=true``): the usual last step after early stopping.

Early stopping needs a validation carve-out, so the validated model never learns from those ratings.
The refit trains a fresh model (same config, same seed) on train + val for exactly the number of epochs
that validation chose (the best checkpoint's epoch + 1), with the learning rate of each epoch replayed
from the validated run (so a plateau schedule's drops happen at the same epochs). Nothing about the
refit is chosen on the test part; it is tested instead of the validated model and saved as
``checkpoints/refit.ckpt``.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from visrec.pipeline.setup import build_model
from visrec.utils.atomic import atomic_path


class LearningRateHistory(pl.Callback):
    """Records each epoch's learning rates (one per optimizer parameter group) as training starts it;
    kept in checkpoints, so a resumed run still has the epochs before the interruption."""

    def __init__(self):
        self.rates: list[list[float]] = []  # rates[epoch][param group]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        groups = [float(group["lr"]) for optimizer in trainer.optimizers for group in optimizer.param_groups]
        del self.rates[trainer.current_epoch:]
        self.rates.append(groups)

    def state_dict(self) -> dict:
        return {"rates": [list(r) for r in self.rates]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rates = [list(r) for r in state_dict["rates"]]


class LearningRateReplay(pl.Callback):
    """Sets each epoch's learning rates to ``rates[epoch]`` (from :class:`LearningRateHistory`)."""

    def __init__(self, rates: list[list[float]]):
        self.rates = rates

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        groups = [group for optimizer in trainer.optimizers for group in optimizer.param_groups]
        epoch_rates = self.rates[trainer.current_epoch]
        if len(epoch_rates) != len(groups):
            raise ValueError(f"learning-rate replay: the validated run had {len(epoch_rates)} parameter group(s), the refit has {len(groups)}")
        for group, rate in zip(groups, epoch_rates):
            group["lr"] = rate


def best_epoch_count(best_checkpoint: str | Path) -> int:
    """Epochs trained up to the best checkpoint (Lightning stores the 0-based epoch it was saved in)."""
    return int(torch.load(best_checkpoint, map_location="cpu", weights_only=True)["epoch"]) + 1


def refit(cfg: DictConfig, datamodule, features, epochs: int, rates: list[list[float]], checkpoint_path: Path):
    """Train a fresh ``cfg.model`` on ``datamodule.with_validation_in_train()`` for ``epochs`` epochs with
    the learning rates ``rates[:epochs]``; save it to ``checkpoint_path`` (atomically).

    Returns (model, trainer, merged datamodule, seconds). The model's own scheduler is switched off: the
    replayed rates are the schedule."""
    if len(rates) < epochs:
        raise ValueError(f"refit: learning rates recorded for {len(rates)} epoch(s), {epochs} needed")
    merged = datamodule.with_validation_in_train()
    pl.seed_everything(cfg.seed, workers=True)
    refit_cfg = copy.deepcopy(cfg)
    if "scheduler" in refit_cfg.model:  # the replayed rates are the schedule
        with open_dict(refit_cfg):
            refit_cfg.model.scheduler = None
    model = build_model(refit_cfg, merged, features)
    trainer: pl.Trainer = instantiate(cfg.trainer, max_epochs=epochs, min_epochs=epochs, callbacks=[LearningRateReplay(rates)],
                                      logger=False, enable_checkpointing=False, limit_val_batches=0, num_sanity_val_steps=0)
    started = time.perf_counter()
    trainer.fit(model, datamodule=merged)
    seconds = time.perf_counter() - started
    if trainer.is_global_zero:
        with atomic_path(checkpoint_path) as tmp:
            trainer.save_checkpoint(tmp)
    return model, trainer, merged, seconds
