"""A diverged run is an error, never a result; options that train nothing are refused before training;
"warm" means the same set in trainer.test, the evaluator and the model; every JSON file is strict."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from visrec.data.errors import DataError
from visrec.models.divergence import DivergedError
from visrec.pipeline.training import train
from visrec.utils.atomic import NonFiniteValueError, write_json_atomic

from conftest import compose_train

DIVERGING = ["model.visual_mode=none", "model.optimizer._target_=torch.optim.SGD", "model.optimizer.lr=10000",
             "data.batch_size=32", "trainer.max_epochs=3", "export=true"]


def test_diverging_sgd_is_an_error_naming_the_epoch_and_the_learning_rate(tmp_path):
    with pytest.raises(DivergedError, match=r"diverged in epoch 0.*model\.optimizer\.lr = 10000"):
        train(compose_train(DIVERGING, tmp_path))
    run = tmp_path / "run"
    assert not (run / "metrics.json").exists() and not (run / "export").exists()  # nothing that looks like a result


def test_evaluator_refuses_a_model_with_non_finite_weights(tmp_path):
    from visrec.pipeline.evaluation import evaluate_run
    from test_evaluate import compose_evaluate

    train(compose_train(["model.visual_mode=none", "trainer.max_epochs=2", "evaluate=false"], tmp_path))
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    checkpoint["state_dict"]["net.item_factors.weight"][3, 0] = float("nan")
    torch.save(checkpoint, best)
    with pytest.raises(DivergedError, match=r"evaluation: .*net\.item_factors\.weight"):
        evaluate_run(compose_evaluate(tmp_path / "run", ["ckpt=best"]))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_json_files_are_strict_and_refuse_non_finite_numbers(tmp_path, value):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"ok": 1.0})
    with pytest.raises(NonFiniteValueError, match=r"metrics\.json.*'val\.rmse_best'"):
        write_json_atomic(path, {"val": {"rmse_best": value}})
    assert json.loads(path.read_text()) == {"ok": 1.0}  # the previous file is intact


@pytest.mark.parametrize("override, key", [
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("trainer.max_epochs=-3", "trainer.max_epochs"),
    ("model.k=0", "model.k"),
    ("model.reg_factors=-1", "model.reg_factors"),
    ("model.reg_bias=-0.5", "model.reg_bias"),
    ("model.init_std=0", "model.init_std"),
    ("model.reg_bias=abc", "model.reg_bias"),  # a non-number: named, not a TypeError from a comparison
    ("model.init_std=true", "model.init_std"),
    ("trainer.max_epochs=abc", "trainer.max_epochs"),
])
def test_options_that_train_nonsense_are_refused_before_training(tmp_path, override, key):
    with pytest.raises(ValueError, match=rf"{key.replace('.', '[.]')} must be"):
        train(compose_train(["model.visual_mode=none", override], tmp_path))
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_visual_pca_dim_zero_is_refused_for_a_visual_model(tmp_path):
    with pytest.raises(ValueError, match=r"model\.visual_pca_dim must be"):
        train(compose_train(["model.visual_mode=head", "features=random", "model.visual_pca_dim=0"], tmp_path))


def test_resume_from_a_truncated_last_checkpoint_names_the_file(tmp_path):
    train(compose_train(["model.visual_mode=none", "trainer.max_epochs=1", "evaluate=false"], tmp_path))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"last\.ckpt: cannot resume .*truncated or corrupt"):
        train(compose_train(["model.visual_mode=none", "trainer.max_epochs=2", f"resume_dir={tmp_path / 'run'}"],
                            tmp_path / "other"))


def _temporal_table(path):
    """User 'late' and item 'late' rate only in the latest 26% of time: nothing of them in the train part,
    some in the validation window (8% of the remaining ratings) and some in the test window (20%)."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", float(rng.integers(1, 6))) for u in range(20) for i in range(12) if rng.random() < 0.8]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"]).sample(frac=1, random_state=0)
    late = pd.DataFrame([("late", f"i{i}", 4.0) for i in range(6)] + [(f"u{u}", "late", 3.0) for u in range(10)],
                        columns=["user", "item", "rating"])
    n_early = int((len(frame) + len(late)) * 0.74)  # validation window: about 73.6%..80% of the time line
    frame = pd.concat([frame.iloc[:n_early], pd.concat([frame.iloc[n_early:], late]).sample(frac=1, random_state=1)])
    frame["timestamp"] = np.arange(len(frame)) * 60 + 1_700_000_000
    frame.to_csv(path, index=False)


def test_warm_is_one_set_for_trainer_test_the_evaluator_and_the_bundle(tmp_path):
    table = tmp_path / "ratings.csv"
    _temporal_table(table)
    metrics = train(compose_train([
        "data=ratings_table", f"data.path={table}", "data.source_args.timestamp_col=timestamp",
        "data.source_args.rating_min=1", "data.source_args.rating_max=5", "data/split=temporal", "data.val_ratio=0.08",
        "model.visual_mode=none", "trainer.max_epochs=2", "export=true"], tmp_path))
    report = json.loads((tmp_path / "run" / "eval" / "best_test_all" / "metrics.json").read_text())["metrics"]
    split = pd.read_parquet(tmp_path / "run" / "split.parquet")
    val_only = set(split.loc[split.part == "val", "item"]) - set(split.loc[split.part == "train", "item"])
    assert "late" in val_only  # the case this test is about: an item seen only in validation
    assert metrics["test/ratings_cold"] > 0
    assert report["model/warm/ratings"] == metrics["test/ratings"]
    assert report["model/warm/rmse"] == pytest.approx(metrics["test/rmse"], rel=1e-5)

    from visrec.serving import Recommender

    rec = Recommender.load(tmp_path / "run" / "export")
    known = dict(zip(rec.item_ids, rec.known_items))
    assert not known["late"]  # no trained vector: not "known" to serving either
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))


def test_no_validation_part_with_callbacks_watching_it_is_refused_at_set_up(tmp_path):
    with pytest.raises(ValueError, match=r"data\.val_ratio=0.*callbacks\.early_stopping\.monitor.*model\.scheduler_monitor"):
        train(compose_train(["model.visual_mode=none", "data.val_ratio=0"], tmp_path))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_evaluation_after_training_follows_the_eval_keys(tmp_path):
    train(compose_train(["model.visual_mode=none", "trainer.max_epochs=2", "eval.ks=[3,7]", "eval.relevance_threshold=3.5",
                         "eval.exclude_train=positives"], tmp_path))
    saved = json.loads((tmp_path / "run" / "eval" / "best_test_positives" / "metrics.json").read_text())
    assert saved["protocol"]["ks"] == [3, 7] and saved["protocol"]["threshold"] == 3.5
    assert saved["protocol"]["exclude_train"] == "positives" and "model/warm/ndcg@7" in saved["metrics"]


@pytest.mark.parametrize("override, key", [("eval.ks=[0,10]", "eval.ks"), ("eval.exclude_train=some", "eval.exclude_train"),
                                           ("eval.baselines=[random]", "eval.baselines")])
def test_bad_eval_keys_are_refused_before_training(tmp_path, override, key):
    with pytest.raises(ValueError, match=rf"{key.replace('.', '[.]')}"):
        train(compose_train(["model.visual_mode=none", override], tmp_path))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_monitor_chooses_what_checkpointing_early_stopping_and_the_scheduler_watch(tmp_path):
    metrics = train(compose_train(["model.visual_mode=none", "trainer.max_epochs=3", "monitor=val/mae", "evaluate=false"], tmp_path))
    assert "val/mae_best" in metrics and "val/rmse_best" not in metrics
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("EarlyStopping")]
    assert state["best_score"] == pytest.approx(metrics["val/mae_best"])


@pytest.mark.parametrize("override, key", [("monitor=val/ndcg@10", "monitor=val/ndcg@10"), ("monitor_mode=lowest", "monitor_mode")])
def test_a_monitor_the_model_does_not_log_is_refused_before_training(tmp_path, override, key):
    with pytest.raises(ValueError, match=re.escape(key)):
        train(compose_train(["model.visual_mode=none", override], tmp_path))


def test_counts_are_whole_numbers_in_metrics_and_the_results_table(tmp_path, capsys):
    metrics = train(compose_train(["model.visual_mode=none", "trainer.max_epochs=1", "evaluate=false"], tmp_path))
    assert isinstance(metrics["test/ratings"], int) and metrics["test/ratings"] > 0
    assert isinstance(metrics["test/ratings_cold"], int)
    table = capsys.readouterr().out
    assert re.search(rf"\| test/ratings +\| +{metrics['test/ratings']} \|", table)  # not "N.0000"
    assert not re.search(r"ratings\w* +\| +\d+\.0000", table)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test/ratings"] == metrics["test/ratings"]
