"""Checkpoints sized for large models: best.ckpt holds the weights, last.ckpt the full training state."""
from __future__ import annotations

import pytest
import torch

from visrec.pipeline.checkpointing import LeanModelCheckpoint, ResumableEarlyStopping
from visrec.pipeline.training import train

from conftest import compose_train


def test_best_is_weights_only_and_last_can_resume(tmp_path):
    common = ["model.visual_mode=none", "logger=none", "evaluate=false", "data.batch_size=64"]
    train(compose_train([*common, "trainer.max_epochs=2"], tmp_path / "a"))
    folder = tmp_path / "a" / "run" / "checkpoints"
    best = torch.load(folder / "best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert "optimizer_states" not in best and "lr_schedulers" not in best and "callbacks" not in best
    assert "net.user_factors.weight" in best["state_dict"] and "epoch" in best
    assert last["optimizer_states"] and last["optimizer_states"][0]["state"]  # Adam's moments, to resume
    assert (folder / "best.ckpt").stat().st_size < 0.6 * (folder / "last.ckpt").stat().st_size
    # last.ckpt still resumes exactly (the resume test in test_tracking.py checks the metrics; here the epochs).
    resumed = train(compose_train([*common, "trainer.max_epochs=3", f"resume_dir={tmp_path / 'a' / 'run'}"], tmp_path / "b"))
    assert resumed["epochs"] == 3


def test_last_is_the_last_epoch_even_when_it_did_not_improve(tmp_path):
    """Lightning >= 2.5 writes last.ckpt only with a top-k save: here only epoch 0 is best (the metric falls),
    and last.ckpt must still hold the last epoch (resume continues from it, not from epoch 0)."""
    import pytorch_lightning as pl

    class Falling(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, batch_idx):
            self.log("val/score", -float(self.current_epoch))  # best in epoch 0, worse after

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 2)), batch_size=2)
    checkpoint = LeanModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/score", mode="max", save_last=True)
    trainer = pl.Trainer(max_epochs=3, callbacks=[checkpoint], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(Falling(), loader, loader)
    best = torch.load(tmp_path / "best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] == 0 and last["epoch"] == 2 and last["global_step"] == 6

    # Early stopping: stopped after epoch 2 (patience 2); resumed from that last.ckpt, no epoch more is trained.
    def fit(folder, ckpt_path=None):
        stopping = ResumableEarlyStopping(monitor="val/score", mode="max", patience=2)
        saving = LeanModelCheckpoint(dirpath=folder, filename="best", monitor="val/score", mode="max", save_last=True)
        trainer = pl.Trainer(max_epochs=10, callbacks=[saving, stopping], logger=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(Falling(), loader, loader, ckpt_path=ckpt_path)
        return trainer, stopping

    trainer, stopping = fit(tmp_path / "stopping")
    assert stopping.stopped_epoch == 2 and trainer.global_step == 6
    resumed, _ = fit(tmp_path / "stopping", ckpt_path=tmp_path / "stopping" / "last.ckpt")
    assert resumed.global_step == 6  # Lightning's EarlyStopping trains epoch 3 here (global step 8)


def test_weights_only_for_every_file_is_refused():
    with pytest.raises(ValueError, match="save_weights_only must be false"):
        LeanModelCheckpoint(save_weights_only=True)


def test_a_run_resumed_after_its_last_epoch_reports_what_an_uninterrupted_run_does(tmp_path):
    """t3-resume-after-last-epoch (issue 29, kind 2): the process died after the last epoch's last.ckpt but
    before metrics.json; the resume trains nothing and must still report the train/ and val/ metrics."""
    import json

    common = ["model.visual_mode=none", "logger=none", "evaluate=false", "data.batch_size=64", "trainer.max_epochs=2"]
    reference = train(compose_train(common, tmp_path / "a"))
    run = tmp_path / "a" / "run"
    (run / "metrics.json").unlink()
    train(compose_train([*common, f"resume_dir={run}"], tmp_path / "b"))
    resumed = json.loads((run / "metrics.json").read_text())
    keys = {k for k in reference if k.startswith(("train/", "val/"))}
    assert keys and keys <= set(resumed)
    for key in keys:
        assert resumed[key] == pytest.approx(reference[key], rel=1e-6), key
