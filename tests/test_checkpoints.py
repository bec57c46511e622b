"""Checkpoints sized for large models: best.ckpt holds the weights, last.ckpt the full training state."""
from __future__ import annotations

import pytest
import torch

from visrec.pipeline.checkpointing import LeanModelCheckpoint
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


def test_weights_only_for_every_file_is_refused():
    with pytest.raises(ValueError, match="save_weights_only must be false"):
        LeanModelCheckpoint(save_weights_only=True)
