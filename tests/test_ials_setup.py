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


def test_ials_refit_trains_the_chosen_epochs_on_train_plus_val_and_is_what_is_tested(tmp_path):
    from visrec.pipeline.evaluation import load_model, load_run_data, resolve_checkpoint

    metrics = train(compose_train([*IALS, "trainer.max_epochs=4", "refit=true", "export=true"], tmp_path))
    run = tmp_path / "run"
    assert metrics["tested_checkpoint"].endswith("refit.ckpt") and 1 <= metrics["refit/epochs"] <= 4
    model = load_model(load_run_data(run), resolve_checkpoint(run, "tested"))
    assert model.trained_on_validation  # its training counts are train + val
    split = load_run_data(run).parts
    assert int(model.item_train_counts.sum()) == len(split["train"]) + len(split["val"])
    assert (run / "eval" / "refit_test_all" / "metrics.json").is_file()


def test_a_non_finite_positive_threshold_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"model\.positive_threshold must be a finite rating"):
        train(compose_train([*IALS, "model.positive_threshold=nan"], tmp_path))
