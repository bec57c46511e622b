"""A run folder belongs to one run (issue 29, the hunt): a second run is not trained into it, a resume does not
change its settings, and a moved or copied run resumes as if it had stayed where it was."""
from __future__ import annotations

import json
import shutil

import pytest

from visrec.data.errors import DataError
from visrec.pipeline.checkpointing import LeanModelCheckpoint
from visrec.pipeline.training import RunFolderInUse, train

from conftest import compose_train

COMMON = ["model.visual_mode=none", "logger=none", "evaluate=false", "data.batch_size=64"]


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_that_holds_a_run_is_refused_and_left_as_it_was(tmp_path):
    """Training again into a finished run's folder (a reused hydra.run.dir, a relaunched sweep) used to add
    best-v1.ckpt beside best.ckpt, and evaluate.py / export then read the first run's weights."""
    train(compose_train([*COMMON, "trainer.max_epochs=2"], tmp_path))
    run = tmp_path / "run"
    before = _snapshot(run)
    with pytest.raises(RunFolderInUse, match=r"already holds a run .*resume_dir="):
        train(compose_train([*COMMON, "trainer.max_epochs=2", "model.optimizer.lr=0.05"], tmp_path))
    assert _snapshot(run) == before
    assert not list((run / "checkpoints").glob("*-v1.ckpt"))


def test_a_folder_where_a_run_stopped_before_training_is_free(tmp_path):
    """A run that stopped at set-up or diverged before its first checkpoint leaves config.yaml and the split but
    nothing trained: training again there (say with a lower learning rate) loses nothing and is allowed."""
    train(compose_train([*COMMON, "trainer.max_epochs=1"], tmp_path))
    run = tmp_path / "run"
    shutil.rmtree(run / "checkpoints")
    (run / "metrics.json").unlink()
    again = train(compose_train([*COMMON, "trainer.max_epochs=1"], tmp_path))
    assert again["epochs"] == 1 and (run / "checkpoints" / "best.ckpt").is_file()


def test_a_sweep_relaunched_into_its_folder_is_refused_before_hydra_touches_the_jobs(tmp_path):
    """Relaunching a sweep (other values) into the same hydra.sweep.dir: its jobs were refused one by one, but
    Hydra had already rewritten their .hydra/overrides.yaml, and the summary then labelled job 1's k=4 results
    model.k=8 (and the relaunch exited 0)."""
    import subprocess
    import sys

    from conftest import REPO, TINY_GENERATOR

    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    sweep = tmp_path / "sweep"

    def launch(values):
        command = [sys.executable, str(REPO / "train.py"), "-m", "model=biased_mf", f"model.k={values}", *COMMON,
                   "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"paths.data_dir={tmp_path / 'data'}",
                   f"paths.log_dir={tmp_path / 'logs'}", f"hydra.sweep.dir={sweep}", *tiny]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)

    assert launch("2,4").returncode == 0
    before = _snapshot(sweep)
    done = launch("2,8")
    assert done.returncode == 2 and "already holds the runs of an earlier sweep (jobs 0, 1)" in done.stderr
    assert _snapshot(sweep) == before


def test_a_resume_with_other_settings_is_refused_naming_the_keys_before_anything_is_written(tmp_path):
    """A resume with another seed used to redraw the split (3,489 of the old test ratings moved into training)
    and continue the saved weights on it; another model.k rewrote config.yaml and split.parquet, then failed."""
    train(compose_train([*COMMON, "trainer.max_epochs=2"], tmp_path / "a"))
    run = tmp_path / "a" / "run"
    before = _snapshot(run)
    for override, key in (("seed=7", "seed"), ("model.k=16", "model.k")):
        with pytest.raises(DataError, match=rf"config\.yaml: cannot resume .*{key}: run .*, now "):
            train(compose_train([*COMMON, "trainer.max_epochs=3", override, f"resume_dir={run}"], tmp_path / "b"))
        assert _snapshot(run) == before
    # Where things are, how long to train and what is reported may change.
    resumed = train(compose_train([*COMMON, "trainer.max_epochs=3", "test=false", f"resume_dir={run}"], tmp_path / "b"))
    assert resumed["epochs"] == 3


def test_a_moved_run_resumes_as_if_it_had_stayed(tmp_path):
    """t3-resume-after-last-epoch, moved: the process died after the last epoch's last.ckpt, then the folder was
    moved. Lightning drops the best score when the checkpoint folder changed and kept the old best path: the
    resume read the old folder's best.ckpt (FileNotFoundError once it is gone)."""
    reference = train(compose_train([*COMMON, "trainer.max_epochs=3"], tmp_path / "a"))
    (tmp_path / "a" / "run" / "metrics.json").unlink()
    moved = tmp_path / "elsewhere" / "run"
    shutil.move(str(tmp_path / "a" / "run"), str(moved))
    train(compose_train([*COMMON, "trainer.max_epochs=3", f"resume_dir={moved}"], tmp_path / "b"))
    resumed = json.loads((moved / "metrics.json").read_text())
    for key in ("test/rmse", "val/rmse_best", "epochs"):
        assert resumed[key] == pytest.approx(reference[key], rel=1e-6), key
    assert resumed["best_checkpoint"].startswith(str(moved))


def test_checkpoint_state_is_re_rooted_to_the_folder_it_is_loaded_in(tmp_path):
    callback = LeanModelCheckpoint(dirpath=str(tmp_path / "new" / "checkpoints"), monitor="val/rmse")
    old = "/somewhere/else/run/checkpoints"
    callback.load_state_dict({"dirpath": old, "best_model_score": 0.9, "best_model_path": f"{old}/best.ckpt",
                              "kth_best_model_path": f"{old}/best.ckpt", "kth_value": 0.9,
                              "best_k_models": {f"{old}/best.ckpt": 0.9}, "last_model_path": f"{old}/last.ckpt"})
    new = str(tmp_path / "new" / "checkpoints")
    assert callback.best_model_score == 0.9
    assert callback.best_model_path == f"{new}/best.ckpt" and callback.last_model_path == f"{new}/last.ckpt"
    assert list(callback.best_k_models) == [f"{new}/best.ckpt"]


@pytest.mark.parametrize("seed", [-1, 2**32, "", 1.5])
def test_a_seed_out_of_range_is_refused_naming_seed(tmp_path, seed):
    """seed=-1 / 4294967296 / '' used to fail inside Lightning or int() with messages that do not name seed."""
    cfg = compose_train([*COMMON, "trainer.max_epochs=1"], tmp_path)
    cfg.seed = seed
    with pytest.raises(ValueError, match=r"^seed must be a whole number"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_a_part_it_cannot_score_naming_part(tmp_path):
    """evaluate.py part=bogus used to end in KeyError: 'bogus' after loading the run."""
    from omegaconf import OmegaConf

    from visrec.pipeline.evaluation import evaluate_run

    train(compose_train([*COMMON, "trainer.max_epochs=1"], tmp_path))
    for part in ("bogus", "train"):
        cfg = OmegaConf.create({"run_dir": str(tmp_path / "run"), "part": part, "ckpt": "tested"})
        with pytest.raises(ValueError, match=rf"^part must be test or val .*got '{part}'"):
            evaluate_run(cfg)


@pytest.mark.parametrize("override, message", [("relevance_threshold=nan", r"^relevance_threshold must be a finite number"),
                                               ("ks=[0]", r"^ks must be a non-empty list of positive integers"),
                                               ("exclude_train=some", r"^exclude_train must be one of"),
                                               ("activity_edges=[5,2]", r"^activity_edges must be a list of increasing"),
                                               ("ks=10", r"^ks must be a non-empty list of positive integers, got 10"),
                                               ("activity_edges=5", r"^activity_edges must be a list of increasing"),
                                               ("baselines=popularity", r"^baselines must be a list of baseline names")])
def test_evaluate_options_are_refused_before_the_run_is_read(tmp_path, override, message):
    """evaluate.py relevance_threshold=nan loaded the run and scored every user before the report writer refused
    the NaN threshold; the protocol options are now checked first, naming the key as evaluate.py spells it."""
    from hydra import compose, initialize_config_dir

    from visrec.pipeline.evaluation import evaluate_run

    from conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"run_dir={tmp_path / 'no-such-run'}", override])
    with pytest.raises(ValueError, match=message):  # the run folder does not exist: nothing was read
        evaluate_run(cfg)


def test_an_evaluation_under_other_rules_never_replaces_the_report_written_after_training(tmp_path):
    """evaluate.py relevance_threshold=5 used to overwrite eval/best_test_all (the training-time report, threshold
    4), and the sweep summary then showed one job at threshold 5 beside the others at 4."""
    from hydra import compose, initialize_config_dir

    from visrec.pipeline.cross_validation import read_job
    from visrec.pipeline.evaluation import evaluate_run

    from conftest import CONF

    train(compose_train(["model.visual_mode=none", "logger=none", "data.batch_size=64", "trainer.max_epochs=1"], tmp_path))
    run = tmp_path / "run"
    (report,) = (run / "eval").iterdir()
    before = (report / "metrics.json").read_bytes()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"run_dir={run}", "relevance_threshold=5", "log_to_run_logger=false"])
    evaluate_run(cfg)
    assert (report / "metrics.json").read_bytes() == before
    (variant,) = [p for p in (run / "eval").iterdir() if p != report]
    assert variant.name.startswith(f"{report.name}_protocol-")
    assert json.loads((variant / "metrics.json").read_text())["protocol"]["threshold"] == 5
    # The same rules again write where they wrote before; the sweep summary reads the training-time report only.
    evaluate_run(cfg)
    assert len(list((run / "eval").iterdir())) == 2
    # Without the baselines the report is another report too (it overwrote the training-time one, popularity rows lost).
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        evaluate_run(compose("evaluate", overrides=[f"run_dir={run}", "baselines=[]", "log_to_run_logger=false"]))
    assert (report / "metrics.json").read_bytes() == before and len(list((run / "eval").iterdir())) == 3
    for variant in (run / "eval").iterdir():
        if variant != report:
            shutil.rmtree(variant)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("[]")
    job = read_job(run.rename(tmp_path / "0"))
    assert [p.parent.name for p in job.per_user_files] == [report.name]


@pytest.mark.parametrize("override, key", [("paths.data_dir=", "paths.data_dir"),
                                           ("data=ratings_table data.path=", "data.path")])
def test_an_empty_path_is_refused_naming_its_key(tmp_path, override, key):
    """paths.data_dir='' generated the synthetic data into the current directory; data.path='' said
    "train.py: .: file not found"."""
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["model=biased_mf", *override.split()])
    cfg.paths.output_dir = str(tmp_path / "run")
    with pytest.raises(ValueError, match=rf"^{key} is empty"):
        train(cfg)



def test_a_resume_from_the_command_line_writes_its_logs_into_the_run_it_continues(tmp_path):
    """``train.py resume_dir=<run>`` used to open a new timestamped Hydra folder under paths.log_dir (its .hydra/
    and train.log) while the run went on in <run>: the resumed epochs' log was in a folder holding nothing else."""
    import subprocess
    import sys

    from conftest import REPO, TINY_GENERATOR

    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    common = ["model=biased_mf", *COMMON, "trainer.enable_progress_bar=false", f"paths.data_dir={tmp_path / 'data'}",
              f"paths.log_dir={tmp_path / 'logs'}", *tiny]
    run = tmp_path / "run"

    def launch(*extra):
        return subprocess.run([sys.executable, str(REPO / "train.py"), *common, *extra], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)

    first = launch("trainer.max_epochs=1", f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr
    resumed = launch("trainer.max_epochs=2", f"resume_dir={run}")
    assert resumed.returncode == 0, resumed.stderr
    assert not (tmp_path / "logs").exists()  # no stray Hydra folder
    assert (run / "train.log").is_file()
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    overrides = (run / ".hydra" / "overrides.yaml").read_text()
    assert f"resume_dir={run}" in overrides
