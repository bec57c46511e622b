"""W&B tracking (offline), sweeps as separate runs in one group, and resuming an interrupted run."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from visrec.pipeline.training import train
from wandb_offline import read_offline_run

from conftest import REPO, TINY_GENERATOR, compose_train


def offline_runs(run_dir):
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_wandb_offline_run_has_config_metrics_summary_media_and_bundle(tmp_path):
    epochs = 3
    cfg = compose_train(["logger=wandb", "logger.wandb.mode=offline", f"trainer.max_epochs={epochs}", "export=true",
                         "features=random"], tmp_path)
    train(cfg)
    (run_dir,) = offline_runs(tmp_path / "run")
    run = read_offline_run(run_dir)
    assert run.exit_code == 0  # finished
    assert run.config["model"]["k"] == cfg.model.k and run.config["data"]["_target_"].endswith("synthetic")  # full config
    assert len([h for h in run.history if "val/rmse" in h]) == epochs  # per-epoch metrics
    assert any("train/loss" in h for h in run.history)
    report = json.loads((tmp_path / "run" / "eval" / "best_test_all" / "metrics.json").read_text())["metrics"]
    assert run.summary["eval/model/warm/ndcg@10"] == pytest.approx(report["model/warm/ndcg@10"])
    media = {p.name.split("_")[0] for p in (run.files_dir / "media").rglob("*.png")}
    assert {"recommendations", "item"} <= media  # poster grid and the item-vector map
    assert any(p.name.endswith(".table.json") for p in (run.files_dir / "media").rglob("*"))
    assert any(name.startswith("bundle-") for name in run.artifacts)

    # evaluate.py later logs into the same W&B run.
    from test_evaluate import compose_evaluate
    from visrec.pipeline.evaluation import evaluate_run

    evaluate_run(compose_evaluate(tmp_path / "run", ["exclude_train=positives"]))
    later = [read_offline_run(d) for d in offline_runs(tmp_path / "run")]
    assert {r.run_id for r in later} == {run.run_id} and len(later) == 2
    assert any("eval/model/warm/ndcg@10" in h for h in later[-1].history)


@pytest.mark.parametrize("model", ["biased_mf", "ials"])
def test_multirun_gives_one_finished_wandb_run_per_job_in_one_group(tmp_path, model):
    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    command = [sys.executable, str(REPO / "train.py"), "-m", f"model={model}", "model.k=4,8,16", "logger=wandb", "logger.wandb.mode=offline",
               "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "model.visual_mode=none", "evaluate=false",
               f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'logs'}", *tiny]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    every = [read_offline_run(d) for d in sorted((tmp_path / "logs").rglob("offline-run-*"))]
    runs = [r for r in every if r.job_type == "train"]
    assert len(runs) == 3
    # The sweep summary (visrec/pipeline/cross_validation.py): one run per configuration, here one per k.
    summaries = [r for r in every if r.job_type == "cv_summary"]
    assert len(summaries) == 3 and {r.group for r in summaries} == {r.group for r in runs}
    assert len({r.run_id for r in runs}) == 3 and all(r.exit_code == 0 for r in runs)
    groups = {r.group for r in runs}
    assert len(groups) == 1 and groups != {""}
    assert sorted(r.config["model"]["k"] for r in runs) == [4, 8, 16]
    monitored = "val/ndcg@10" if model == "ials" else "val/rmse"
    assert all(any(monitored in h for h in r.history) for r in runs)


def test_resumed_run_ends_like_an_uninterrupted_one_and_continues_its_wandb_run(tmp_path):
    # Small batches, so the order of the rows matters (the tiny dataset fits in one default batch).
    common = ["logger=wandb", "logger.wandb.mode=offline", "model.visual_mode=none", "evaluate=false", "data.batch_size=64"]
    full = train(compose_train([*common, "trainer.max_epochs=6"], tmp_path / "full"))
    stopped_dir = tmp_path / "stopped" / "run"
    train(compose_train([*common, "trainer.max_epochs=3"], tmp_path / "stopped"))  # "interrupted" after 3 epochs
    first_id = (stopped_dir / "wandb_run_id.txt").read_text().strip()
    resumed = train(compose_train([*common, "trainer.max_epochs=6", f"resume_dir={stopped_dir}"], tmp_path / "other"))
    assert resumed["epochs"] == full["epochs"] == 6
    # Last-epoch values too: the best checkpoint may predate the interruption.
    for key in ("test/rmse", "test/mae", "val/rmse_best", "val/rmse", "train/loss"):
        assert resumed[key] == pytest.approx(full[key], rel=1e-6), key
    assert (stopped_dir / "wandb_run_id.txt").read_text().strip() == first_id
    assert {read_offline_run(d).run_id for d in offline_runs(stopped_dir)} == {first_id}
    assert not (tmp_path / "other" / "run").exists()  # the resumed run wrote into its own directory


def test_resume_without_a_last_checkpoint_is_a_clear_error(tmp_path):
    from visrec.data.errors import DataError

    with pytest.raises(DataError, match=r"last\.ckpt: cannot resume"):
        train(compose_train([f"resume_dir={tmp_path / 'nothing'}"], tmp_path))


@pytest.mark.parametrize("search, best_of, key", [("optuna", min, "val/rmse_best"), ("optuna_ials", max, "val/ndcg@10_best")])
def test_optuna_search_runs_four_trials(tmp_path, search, best_of, key):
    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    command = [sys.executable, str(REPO / "train.py"), "-m", f"hparams_search={search}", "hydra.sweeper.n_trials=4",
               "hydra.sweeper.sampler.n_startup_trials=2", "trainer.max_epochs=3", "trainer.enable_progress_bar=false",
               "model.visual_mode=none", "logger=none", f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'logs'}", *tiny]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = [t for t in sorted((tmp_path / "logs").rglob("metrics.json")) if "eval" not in t.parts]  # not the evaluator's
    assert len(trials) == 4
    (results,) = (tmp_path / "logs").rglob("optimization_results.yaml")
    import yaml

    best = yaml.safe_load(results.read_text())
    values = [json.loads(t.read_text())[key] for t in trials]
    assert best["best_value"] == pytest.approx(best_of(values))


def test_an_optuna_search_with_sqlite_storage_resumes_its_study(tmp_path):
    """hydra.sweeper.storage (issue 29, t3-optuna-storage): a second launch with the same storage and study name
    loads the study and adds its trials to the first launch's (optuna 2.10 needs SQLAlchemy < 2: pyproject), with
    new suggestions (visrec.pipeline.optuna_sampler), not the first launch's again."""
    import optuna

    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    for launch in range(2):
        command = [sys.executable, str(REPO / "train.py"), "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1",
                   f"hydra.sweeper.storage={storage}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                   "model.visual_mode=none", "logger=none", "evaluate=false", f"paths.data_dir={tmp_path / 'data'}",
                   f"paths.log_dir={tmp_path / 'logs'}", f"hydra.sweep.dir={tmp_path / f'sweep{launch}'}", *tiny]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="visrec", storage=storage)
    first, second = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # The relaunch's sampler is seeded past the stored trials: a new suggestion, not the first launch's again.
    assert first.params != second.params, first.params


def test_ddp_on_two_cpu_processes_matches_a_single_process(tmp_path):
    """Two gloo processes, each with half the batch, take the same steps as one process with the whole
    batch (the rows of a step are the same; gradients are averaged), so the metrics agree up to float
    rounding and the one duplicated row that evens out the shards: tolerance 1e-3 relative."""
    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    common = ["model=biased_mf", "trainer.max_epochs=4", "trainer.enable_progress_bar=false", "model.visual_mode=none", "logger=none",
              "evaluate=false", f"paths.data_dir={tmp_path / 'data'}", *tiny]
    results = {}
    for name, extra in (("single", ["data.batch_size=256"]), ("ddp", ["trainer=ddp_cpu", "data.batch_size=128"])):
        out = tmp_path / name
        done = subprocess.run([sys.executable, str(REPO / "train.py"), *common, *extra, f"paths.output_dir={out}",
                               f"hydra.run.dir={out}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        results[name] = json.loads((out / "metrics.json").read_text())
    for key in ("test/rmse", "test/mae", "val/rmse_best"):
        assert results["ddp"][key] == pytest.approx(results["single"][key], rel=1e-3), key


def test_one_per_epoch_metrics_file_continues_on_resume_and_evaluate_leaves_it_alone(tmp_path):
    import pandas as pd

    from test_evaluate import compose_evaluate
    from visrec.pipeline.evaluation import evaluate_run

    common = ["logger=csv", "model.visual_mode=none", "data.batch_size=64"]
    train(compose_train([*common, "trainer.max_epochs=4", "evaluate=false"], tmp_path / "full"))
    expected = pd.read_csv(tmp_path / "full" / "run" / "metrics_per_epoch.csv")
    run = tmp_path / "stopped" / "run"
    train(compose_train([*common, "trainer.max_epochs=2", "evaluate=false"], tmp_path / "stopped"))  # "interrupted"
    path = run / "metrics_per_epoch.csv"
    # The interrupted run had logged part of epoch 2 after its last checkpoint: the resumed run replaces it.
    stale = pd.read_csv(path)
    pd.concat([stale, pd.DataFrame([{"epoch": 2, "step": 99, "val/rmse": 99.0}])]).to_csv(path, index=False)
    train(compose_train([*common, "trainer.max_epochs=4", f"resume_dir={run}"], tmp_path / "other"))
    rows = pd.read_csv(path)
    assert rows.epoch.tolist() == [0, 1, 2, 3]  # each epoch once, none lost
    assert not any(column.startswith("test/") for column in rows.columns)  # test metrics are no epoch's (metrics.json)
    pd.testing.assert_frame_equal(rows, expected, check_exact=False, rtol=1e-6)  # as an uninterrupted run
    assert not (run / "csv").exists() and sorted(p.name for p in run.glob("*metrics_per_epoch*")) == [path.name]

    before = path.read_bytes()
    for overrides in ([], ["exclude_train=positives", "ckpt=last"]):
        evaluate_run(compose_evaluate(run, overrides))
    assert path.read_bytes() == before and not (run / "csv").exists()


def test_the_per_epoch_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    from visrec.tracking import epoch_csv

    logger = epoch_csv.EpochCSVLogger(tmp_path)
    logger.log_metrics({"val/rmse": 1.0, "epoch": 0}, step=5)
    logger.save()
    path = tmp_path / epoch_csv.FILENAME
    before = path.read_bytes()
    assert before.decode().splitlines() == ["epoch,step,val/rmse", "0,5,1.0"]

    class FailingWriter:  # the disk fills up half-way through the rows
        def __init__(self, file):
            self.file = file

        def writerow(self, row):
            self.file.write("0,5,")
            raise OSError("No space left on device")

    logger.log_metrics({"val/rmse": 0.9, "epoch": 1}, step=10)
    monkeypatch.setattr(epoch_csv.csv, "writer", FailingWriter)
    with pytest.raises(OSError, match="No space"):
        logger.save()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_per_epoch_file_that_is_not_one_is_named_not_overwritten(tmp_path):
    from visrec.data.errors import DataError
    from visrec.tracking.epoch_csv import FILENAME, EpochCSVLogger

    (tmp_path / FILENAME).write_text("user,item\n1,2\n")
    with pytest.raises(DataError, match=rf"{FILENAME}: line 2: not a per-epoch metrics file"):
        EpochCSVLogger(tmp_path)
    assert (tmp_path / FILENAME).read_text() == "user,item\n1,2\n"
