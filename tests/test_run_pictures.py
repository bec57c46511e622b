"""A run that no longer matches its pictures (issue 29, kind 1: t3-run-dir-moved, t3-pictures-changed): the run
records each picture's path relative to the run directory and its sha256; evaluation and export reproduce the
training features (moved folder: the relative path; changed or missing pictures: the feature cache by digest) or
refuse naming item_images.parquet — never scoring the checkpoint with features it was not trained with."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from visrec.data.errors import DataError
from visrec.pipeline.evaluation import evaluate_run
from visrec.pipeline.exporting import export_run
from visrec.pipeline.training import train

from conftest import CONF, compose_train


def evaluate_cfg(run_dir):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="evaluate", overrides=[f"run_dir={run_dir}"])


def cold_metrics(run_dir) -> dict:
    report = evaluate_run(evaluate_cfg(run_dir))
    return {k: v for k, v in report.results["model"]["cold_items"].items() if not k.endswith("seconds")}


@pytest.fixture()
def project(tmp_path):
    """A project folder holding the data (pictures, feature cache) and a trained visual run."""
    root = tmp_path / "project"
    train(compose_train(["data/split=cold_item", "features=random", "model.visual_mode=reg", "trainer.max_epochs=2",
                         "logger=none"], root))
    return root


def test_the_run_records_relative_paths_and_digests(project):
    images = pd.read_parquet(project / "run" / "item_images.parquet")
    used = images["image_sha256"].notna()
    assert used.any() and images.loc[used, "image_sha256"].str.fullmatch("[0-9a-f]{64}").all()
    assert not images["image_path_from_run"].dropna().str.startswith("/").any()


def test_a_moved_project_evaluates_and_exports_as_before(project, tmp_path):
    before = cold_metrics(project / "run")
    moved = tmp_path / "elsewhere"
    shutil.move(str(project), str(moved))
    shutil.rmtree(moved / "data" / "feature_cache")  # nothing to fall back on: the pictures must be found again
    assert cold_metrics(moved / "run") == pytest.approx(before)
    assert not project.exists()  # nothing written at the run's old place (config.yaml's cache folder is gone)
    bundle = export_run(moved / "run", out_dir=tmp_path / "bundle")
    from visrec.serving import Recommender

    rec = Recommender.load(tmp_path / "bundle")
    recorded = pd.read_parquet(moved / "run" / "item_images.parquet")["image_sha256"].notna().sum()
    assert int(rec.bundle.arrays["has_image"].sum()) == recorded and bundle is not None


def _repaint(folder) -> int:
    count = 0
    for picture in sorted(folder.rglob("*.png")):
        Image.new("RGB", (16, 16), (count * 7 % 255, 0, 0)).save(picture)
        count += 1
    return count


def test_changed_pictures_are_scored_with_their_training_features_from_the_cache(project):
    before = cold_metrics(project / "run")
    assert _repaint(project / "data") > 0
    assert cold_metrics(project / "run") == pytest.approx(before)


def test_changed_pictures_without_the_cache_are_refused_and_the_report_is_kept(project):
    run = project / "run"
    (report,) = (run / "eval").glob("*/metrics.json")
    written = report.read_text()
    _repaint(project / "data")
    shutil.rmtree(project / "data" / "feature_cache")
    with pytest.raises(DataError, match=r"item_images\.parquet.*0 of the \d+ pictures .* missing now and \d+ changed"):
        cold_metrics(run)
    with pytest.raises(DataError, match="changed"):
        export_run(run, out_dir=project / "bundle")
    assert report.read_text() == written and not (project / "bundle").exists()


def test_missing_pictures_without_the_cache_are_refused(project):
    for picture in (project / "data").rglob("*.png"):
        picture.unlink()
    shutil.rmtree(project / "data" / "feature_cache")
    with pytest.raises(DataError, match=r"pictures the model was trained with are missing now"):
        cold_metrics(project / "run")


def test_export_reads_a_feature_cache_named_on_its_command_line(project, tmp_path):
    """A project moved with its cache, and its pictures changed since training: evaluate.py feature_cache_dir= read
    the moved cache, but export had no such option and refused (naming a deleted temporary cache)."""
    moved = tmp_path / "elsewhere"
    shutil.move(str(project), str(moved))
    _repaint(moved / "data")
    with pytest.raises(DataError, match="changed"):
        export_run(moved / "run", out_dir=tmp_path / "refused")
    bundle = export_run(moved / "run", out_dir=tmp_path / "bundle", feature_cache_dir=moved / "data" / "feature_cache")
    from visrec.serving import Recommender

    rec = Recommender.load(bundle)
    recorded = pd.read_parquet(moved / "run" / "item_images.parquet")["image_sha256"].notna().sum()
    assert int(rec.bundle.arrays["has_image"].sum()) == recorded
