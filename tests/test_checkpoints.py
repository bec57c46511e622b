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
