"""train.py's pipeline end to end on the tiny synthetic dataset, through the real Hydra config."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from visrec.pipeline.training import train

from conftest import compose_train


def test_train_writes_a_complete_run_and_learns(tmp_path):
    cfg = compose_train(["trainer.max_epochs=40", "model.optimizer.lr=0.02", "model.init_std=0.1"], tmp_path)
    metrics = train(cfg)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.json", "user_map.parquet", "item_map.parquet", "split.parquet",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test/rmse"] == metrics["test/rmse"]
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"]["num_users"] > 0 and resolved["model"]["num_items"] > 0

    # The test metric is on held-out ratings and beats predicting the training mean.
    split = pd.read_parquet(run / "split.parquet")
    train_part, test_part = split[split.part == "train"], split[split.part == "test"]
    assert len(test_part) and not set(zip(test_part.user, test_part.item)) & set(zip(train_part.user, train_part.item))
    baseline = float(np.sqrt(((test_part.rating - train_part.rating.mean()) ** 2).mean()))
    assert metrics["test/rmse"] < baseline - 0.05, (metrics["test/rmse"], baseline)

    # Checkpoints load with weights_only=True.
    state = torch.load(run / "checkpoints/best.ckpt", weights_only=True)
    assert "net.user_factors.weight" in state["state_dict"]


def test_same_seed_same_metrics(tmp_path):
    results = []
    for attempt in range(2):
        cfg = compose_train(["trainer.max_epochs=3", "callbacks=none"], tmp_path / str(attempt))
        results.append(train(cfg))
    assert results[0]["test/rmse"] == results[1]["test/rmse"]


def test_sliced_steps_equal_small_loader_batches(tmp_path):
    """model.step_batch_size=s on loader batches of 4s takes the very same SGD steps as loader batches
    of s (same row order, one step per s ratings), plateau scheduler included."""
    common = ["trainer.max_epochs=4", "model.visual_mode=none", "model.optimizer._target_=torch.optim.SGD",
              "model.optimizer.lr=0.5", "model.scheduler.patience=0", "model.scheduler.factor=0.5", "evaluate=false",
              # Tiny popularity-only data (choice_strength 0), on which lr 0.5 hits a validation plateau within
              # 4 epochs, so the scheduler's step is part of what is compared.
              "data.generator.choice_strength=0"]
    small = train(compose_train([*common, "data.batch_size=16"], tmp_path / "small"))
    sliced = train(compose_train([*common, "data.batch_size=64", "model.step_batch_size=16"], tmp_path / "sliced"))
    states = [torch.load(tmp_path / name / "run/checkpoints/last.ckpt", weights_only=True) for name in ("small", "sliced")]
    for key, value in states[0]["state_dict"].items():
        torch.testing.assert_close(states[1]["state_dict"][key], value, msg=key)
    lrs = [state["optimizer_states"][0]["param_groups"][0]["lr"] for state in states]
    assert lrs[0] == lrs[1] < 0.5 and sliced["train/loss"] == pytest.approx(small["train/loss"], rel=1e-6)
    assert sliced["test/rmse"] == small["test/rmse"]


def test_step_batch_size_must_be_positive():
    import pytest

    from visrec.models import RatingModule

    with pytest.raises(ValueError, match="model.step_batch_size must be a positive"):
        RatingModule(2, 2, step_batch_size=0)


def test_the_default_job_ranks_at_or_above_popularity(tmp_path, capsys):
    """`make train` as a new user runs it (the real default config and data, only paths moved): the
    printed evaluator table must not show the trained model below the popularity baseline at K=10."""
    cfg = compose_train(["model=ials"], tmp_path, tiny=False)  # model=ials is the default (test_configs checks it)
    train(cfg)
    (report,) = (tmp_path / "run" / "eval").glob("*/metrics.json")
    metrics = json.loads(report.read_text())["metrics"]
    for name in ("precision@10", "recall@10", "f1@10", "ndcg@10"):
        assert metrics[f"model/warm/{name}"] >= metrics[f"popularity/warm/{name}"], name
    assert "popularity@10" in capsys.readouterr().out  # both are in the printed table


def test_the_large_scale_preset_trains_plain_biased_mf_by_sparse_sgd(tmp_path):
    """experiment=large_scale (README, "Training at scale"): sparse tables, SGD, steps of 1,024 ratings
    inside large loader batches; it must compose with the default data, train without diverging and
    beat the global mean on held-out ratings."""
    cfg = compose_train(["experiment=large_scale", "trainer.max_epochs=8", "logger=none"], tmp_path)
    assert cfg.model.optimizer._target_ == "torch.optim.SGD" and cfg.model.sparse_gradients
    assert cfg.model.step_batch_size == 1024 and cfg.data.batch_size == 65536 and cfg.model.visual_mode == "none"
    metrics = train(cfg)
    split = pd.read_parquet(tmp_path / "run" / "split.parquet")
    train_part, test_part = split[split["part"] == "train"], split[split["part"] == "test"]
    global_mean_rmse = float(np.sqrt(((test_part["rating"] - train_part["rating"].mean()) ** 2).mean()))
    assert np.isfinite(metrics["test/rmse"]) and metrics["test/rmse"] < global_mean_rmse


def test_train_cli_reports_bad_input_in_one_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    table = tmp_path / "ratings.csv"
    table.write_text("user,item,rating\nu1,i1,4\nu1,i2,four\n")
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "data=ratings_table", f"data.path={table}",
                           "data.source_args.user_col=user", "data.source_args.item_col=item",
                           "data.source_args.rating_col=rating", f"paths.output_dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"train\.py: .*ratings\.csv, line 3.*'rating'", done.stderr), done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_train_cli_reports_a_refused_option_in_one_line_naming_its_key(tmp_path):
    """An option refused at set-up (here model.k) is one line naming the key, exit 2 — not Hydra's traceback."""
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run([sys.executable, str(REPO / "train.py"), "model.k=-3", "logger=none",
                           f"paths.output_dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path / 'data'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "HYDRA_FULL_ERROR" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "train.py: model.k must be a positive number of latent factors, got -3"


def test_only_visrecs_own_checks_become_option_errors():
    """A ValueError raised by visrec's option checks becomes an OptionError; one from elsewhere (a library, a
    bug) and a DataError pass unchanged, so their tracebacks still show."""
    from omegaconf import OmegaConf

    from visrec.data.errors import DataError
    from visrec.pipeline.config import OptionError, refused_options_as_option_errors
    from visrec.pipeline.training import check_trainer_options

    with pytest.raises(OptionError, match=r"trainer.max_epochs must be >= 1"):
        with refused_options_as_option_errors():
            check_trainer_options(OmegaConf.create({"trainer": {"max_epochs": 0}}))
    with pytest.raises(ValueError) as raised:
        with refused_options_as_option_errors():
            np.zeros(-1)
    assert type(raised.value) is ValueError
    with pytest.raises(DataError) as raised:
        with refused_options_as_option_errors():
            raise DataError("ratings.csv", "bad", line=2)
    assert type(raised.value) is DataError
