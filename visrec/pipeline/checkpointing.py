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
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint


class LeanModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose top-k (best) files are weights-only and whose ``last.ckpt`` is complete and
    written after every epoch (with ``save_last``), whether or not the epoch improved the monitored metric.

    Same arguments as Lightning's ``ModelCheckpoint``; ``save_weights_only`` must stay False (it would
    make ``last.ckpt`` unusable for resuming)."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("save_weights_only"):
            raise ValueError("callbacks.model_checkpoint.save_weights_only must be false: last.ckpt must keep the "
                             "optimizer state to resume; the best checkpoint is already weights-only")
        super().__init__(*args, **kwargs)

    def load_state_dict(self, state_dict: dict) -> None:
        """Lightning's, for a run folder that was moved, copied or unpacked elsewhere too: the saved paths
        (best, k-th best, last, the top-k table) are re-rooted from the folder the checkpoints were written in
        to this one, so a resumed run keeps its best score and best checkpoint as if it had never moved (Lightning
        would drop them and keep a best path in the old folder)."""
        old_dir, new_dir = state_dict.get("dirpath"), self.dirpath
        if old_dir and new_dir and os.path.normpath(old_dir) != os.path.normpath(new_dir):
            def moved(path):
                if not path:
                    return path
                relative = os.path.relpath(os.path.normpath(path), os.path.normpath(old_dir))
                return path if relative.startswith(os.pardir) else os.path.join(new_dir, relative)

            state_dict = dict(state_dict, dirpath=new_dir, best_model_path=moved(state_dict.get("best_model_path")),
                              kth_best_model_path=moved(state_dict.get("kth_best_model_path")),
                              last_model_path=moved(state_dict.get("last_model_path")),
                              best_k_models={moved(k): v for k, v in (state_dict.get("best_k_models") or {}).items()})
        super().load_state_dict(state_dict)

    # last.ckpt after every epoch. Lightning >= 2.5 writes it only in an epoch whose top-k file was saved (or at
    # the end of training when it never was): an interrupted run would resume from its last *improving* epoch.
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_not_yet(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_not_yet(trainer)

    def _save_last_if_not_yet(self, trainer: pl.Trainer) -> None:
        # Skipped when Lightning skips saving (sanity check, fast_dev_run) or already saved at this step.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        # Lightning's own save, with save_weights_only chosen per file (its only use is this call).
        self.save_weights_only = not os.path.basename(filepath).startswith(self.CHECKPOINT_NAME_LAST)
        try:
            super()._save_checkpoint(trainer, filepath)
        finally:
            self.save_weights_only = False


class ResumableEarlyStopping(EarlyStopping):
    """Lightning's ``EarlyStopping``, except that a run resumed from a ``last.ckpt`` written after it had already
    stopped trains no further epoch (Lightning's would run one more, then stop again: a resumed run must end as the
    uninterrupted one did). Same arguments; its checkpoint state keeps Lightning's key, so either loads the other's."""

    @property
    def state_key(self) -> str:
        return f"EarlyStopping{repr({'monitor': self.monitor, 'mode': self.mode})}"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stopped_epoch > 0:  # restored from a checkpoint of a run this callback had stopped
            trainer.should_stop = True


EPOCH_METRICS_FILE = "last_epoch_metrics.json"


class LastEpochMetrics(pl.Callback):
    """Beside the checkpoints, ``last_epoch_metrics.json``: the ``train/`` and ``val/`` metrics of the last
    finished epoch (``{"epoch": e, "metrics": {...}}``, written atomically by rank 0 when training ends — the
    epoch-level values exist only then: at ``on_train_epoch_end`` Lightning has not aggregated them yet).

    A run interrupted after its last epoch's ``last.ckpt`` but before ``metrics.json`` trains nothing when
    resumed, so Lightning has no train / validation metric to report; :func:`recorded_epoch_metrics` gives them
    back, so the resumed run's ``metrics.json`` has the keys and values of an uninterrupted one."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from visrec.utils.atomic import write_json_atomic

        folder = getattr(trainer.checkpoint_callback, "dirpath", None)
        if folder is None or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))}
        if not metrics:  # a resume that trained nothing: keep what the finished run recorded
            return
        os.makedirs(folder, exist_ok=True)
        write_json_atomic(os.path.join(folder, EPOCH_METRICS_FILE), {"epoch": int(trainer.current_epoch) - 1, "metrics": metrics})


def recorded_epoch_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The metrics :class:`LastEpochMetrics` recorded for the trainer's last finished epoch
    (``trainer.current_epoch − 1``); {} when there is no such file, it is unreadable, or it holds another epoch."""
    import json

    folder = getattr(trainer.checkpoint_callback, "dirpath", None)
    if folder is None:
        return {}
    try:
        recorded = json.loads(open(os.path.join(folder, EPOCH_METRICS_FILE), encoding="utf-8").read())
        if recorded.get("epoch") != trainer.current_epoch - 1:
            return {}
        return {str(k): float(v) for k, v in recorded["metrics"].items() if str(k).startswith(("train/", "val/"))}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}
