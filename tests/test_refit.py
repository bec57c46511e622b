"""refit=true: after early stopping, a fresh model on train + val for the chosen epochs with the replayed
learning rates is what gets tested, evaluated and exported."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from visrec.data.errors import DataError
from visrec.pipeline.evaluation import evaluate_run
from visrec.pipeline.exporting import export_run
from visrec.pipeline.refit import LearningRateHistory, LearningRateReplay
from visrec.pipeline.training import train

from conftest import CONF, compose_train

# SGD with a schedule that halves the rate every 2 epochs, so the validated run's rates change from epoch
# to epoch and the replay has something to reproduce.
REFIT_RUN = ["refit=true", "trainer.max_epochs=12", "model.visual_mode=none", "model.optimizer._target_=torch.optim.SGD",
             "model.optimizer.lr=2.0", "model.scheduler._target_=torch.optim.lr_scheduler.StepLR", "~model.scheduler.mode",
             "~model.scheduler.factor", "~model.scheduler.patience", "+model.scheduler.step_size=2", "+model.scheduler.gamma=0.5",
             "data.val_ratio=0.2"]


@pytest.fixture(scope="module")
def refit_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refit")
    metrics = train(compose_train(REFIT_RUN, tmp))
    return tmp / "run", metrics


def _checkpoint(run, name):
    return torch.load(run / "checkpoints" / f"{name}.ckpt", map_location="cpu", weights_only=True)


def test_refit_trains_on_train_and_val_for_the_chosen_epochs_with_the_replayed_rates(refit_run):
    run, metrics = refit_run
    best, last, refit = (_checkpoint(run, name) for name in ("best", "last", "refit"))
    epochs = best["epoch"] + 1
    assert metrics["refit/epochs"] == epochs and refit["epoch"] == epochs  # saved after fit: epochs completed
    assert metrics["tested_checkpoint"] == str(run / "checkpoints" / "refit.ckpt")

    split = pd.read_parquet(run / "split.parquet")
    train_only = best["state_dict"]["net.item_counts"]
    with_val = refit["state_dict"]["net.item_counts"]
    assert with_val.sum() == (split.part != "test").sum() > train_only.sum() == (split.part == "train").sum()

    history = next(state["rates"] for key, state in last["callbacks"].items() if "LearningRateHistory" in key)
    assert len(set(r[0] for r in history[:epochs])) > 1, f"the schedule never changed the rate before epoch {epochs}: {history}"
    assert refit["optimizer_states"][0]["param_groups"][0]["lr"] == history[epochs - 1][0]
    assert "lr_schedulers" not in refit or not refit["lr_schedulers"]  # the replay is the schedule


def test_refit_checkpoint_is_what_was_tested_evaluated_and_exported(refit_run):
    run, metrics = refit_run
    assert (run / "eval" / "refit_test_all" / "metrics.json").is_file()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[f"run_dir={run}", "log_to_run_logger=false"])
    report = evaluate_run(cfg).flat()  # default ckpt=tested
    saved = json.loads((run / "eval" / "refit_test_all" / "metrics.json").read_text())["metrics"]
    assert report["model/warm/rmse"] == pytest.approx(saved["model/warm/rmse"], abs=1e-9)
    if metrics["test/ratings_cold"] == 0:
        assert report["model/warm/rmse"] == pytest.approx(metrics["test/rmse"], abs=1e-5)
    bundle = export_run(run, out_dir=run / "bundle")
    assert json.loads((bundle / "manifest.json").read_text())["metrics"]["checkpoint"].endswith("refit.ckpt")

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        on_val = compose(config_name="evaluate", overrides=[f"run_dir={run}", "part=val", "log_to_run_logger=false"])
    with pytest.raises(DataError, match="refit on train \\+ val"):
        evaluate_run(on_val)


@pytest.mark.parametrize("overrides, message", [
    (["data.val_ratio=0"], "data.val_ratio > 0"),
    (["callbacks=none"], "best checkpoint"),
])
def test_refit_without_a_validated_run_is_refused_before_training(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(compose_train(["refit=true", "trainer.max_epochs=2", "model.visual_mode=none", *overrides], tmp_path))
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_learning_rate_history_survives_a_checkpoint_and_replay_sets_each_epoch():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    trainer = SimpleNamespace(optimizers=[optimizer], current_epoch=0)
    history = LearningRateHistory()
    for epoch, rate in enumerate([1.0, 1.0, 0.5]):
        optimizer.param_groups[0]["lr"] = rate
        trainer.current_epoch = epoch
        history.on_train_epoch_start(trainer, None)
    restored = LearningRateHistory()
    restored.load_state_dict(history.state_dict())
    assert restored.rates == [[1.0], [1.0], [0.5]]

    replay = LearningRateReplay(restored.rates)
    for epoch, rate in enumerate([1.0, 1.0, 0.5]):
        optimizer.param_groups[0]["lr"] = 123.0
        trainer.current_epoch = epoch
        replay.on_train_epoch_start(trainer, None)
        assert optimizer.param_groups[0]["lr"] == rate


@pytest.mark.parametrize("trainer", [["trainer=ddp_cpu"], ["trainer=ddp_cpu", "trainer.devices=[0,1]"], ["+trainer.num_nodes=2"]])
def test_refit_on_several_processes_is_refused_before_anything_is_read_or_written(tmp_path, trainer):
    """refit=true on a trainer the config gives several processes: refused by check_options, naming the keys,
    before the data are read — no run folder, no split files (it was refused only once the trainer was built)."""
    with pytest.raises(ValueError, match=r"refit=true runs in a single process; this trainer has 2 \(trainer.devices="):
        train(compose_train(["model=ials", "refit=true", *trainer], tmp_path))
    assert not (tmp_path / "run").exists()
