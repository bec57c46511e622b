"""model=ials refuses, when the model is built (before anything is written or trained), data its
early-stopping metric cannot be computed on."""
from __future__ import annotations

import pytest

from visrec.pipeline.training import train

from conftest import compose_train

IALS = ["model=ials", "model.k=4", "model.visual_mode=none", "logger=none", "trainer.max_epochs=2"]


def test_no_relevant_validation_rating_is_an_error_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"no validation rating >= 6(\.0)? of a user and item with training interactions"):
        train(compose_train([*IALS, "model.val_relevance_threshold=6"], tmp_path))
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_a_run_without_validation_and_without_monitoring_trains(tmp_path):
    metrics = train(compose_train([*IALS, "data.val_ratio=0", "callbacks=none"], tmp_path))
    assert metrics["epochs"] == 2 and "test/ndcg@10" in metrics
