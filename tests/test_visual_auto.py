"""Honest defaults when the data has no pictures: model.visual_mode=auto (biased MF's default) turns the
image prior off with one line saying why; a mode set explicitly on data without pictures is refused at
set-up naming model.visual_mode, before anything is trained or written."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from visrec.pipeline.setup import item_features, resolve_visual_mode
from visrec.pipeline.training import train
from visrec.serving import Recommender

from conftest import compose_train


def _ratings_csv(folder: Path, users: int = 30, items: int = 20, per_user: int = 10) -> Path:
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", int(rng.integers(1, 6))) for u in range(users)
            for i in rng.choice(items, size=per_user, replace=False)]
    path = folder / "ratings.csv"
    pd.DataFrame(rows, columns=["user", "item", "rating"]).to_csv(path, index=False)
    return path


def _table(tmp_path: Path, *extra: str):
    csv = _ratings_csv(tmp_path)
    return compose_train(["data=ratings_table", f"data.path={csv}", "data.source_args.rating_min=1",
                          "data.source_args.rating_max=5", "logger=none", "trainer.max_epochs=2", *extra], tmp_path)


def test_own_table_without_images_trains_plain_mf_and_says_why(tmp_path, capsys):
    cfg = _table(tmp_path, "export=true")
    assert cfg.model.visual_mode == "auto"  # biased MF's default
    train(cfg)
    out = capsys.readouterr().out
    assert "visual prior off (model.visual_mode=auto -> none): no item of the data's 20 has an image path" in out
    run = tmp_path / "run"
    assert OmegaConf.load(run / "config.yaml").model.visual_mode == "none"  # the run records the decision
    assert not (run / "features_report.json").exists()
    rec = Recommender.load(run / "export")
    assert not rec.bundle.is_visual
    with pytest.raises(ValueError, match="no visual prior"):
        rec.items_like_image(tmp_path / "any.jpg")


def test_image_folder_with_no_file_found_turns_the_prior_off(tmp_path, capsys):
    (tmp_path / "posters").mkdir()
    cfg = _table(tmp_path, f"data.source_args.images_dir={tmp_path / 'posters'}")
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    assert item_features(cfg, datamodule.image_paths, list(datamodule.item_map.raw_ids)) is None
    assert cfg.model.visual_mode == "none"
    assert "none of the 20 image paths exists" in capsys.readouterr().out


@pytest.mark.parametrize("model, mode", [("biased_mf", "reg"), ("biased_mf", "head"), ("ials", "reg")])
def test_explicit_visual_mode_without_images_is_refused_before_training(tmp_path, model, mode):
    cfg = _table(tmp_path, f"model={model}", f"model.visual_mode={mode}")
    with pytest.raises(ValueError, match=rf"model.visual_mode={mode} needs item pictures, but the data has none"):
        train(cfg)
    assert not (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_auto_is_reg_when_pictures_exist(tmp_path, capsys):
    cfg = compose_train([], tmp_path)
    picture = tmp_path / "a.jpg"
    picture.write_bytes(b"not looked at here")
    assert resolve_visual_mode(cfg, [None, str(picture)]) is True
    assert cfg.model.visual_mode == "reg"
    assert "model.visual_mode=auto -> reg" in capsys.readouterr().out


def test_unreadable_pictures_only_turn_auto_off_and_refuse_explicit_modes(tmp_path, capsys):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(b"not an image")
    cfg = compose_train(["features=random"], tmp_path)
    assert item_features(cfg, paths, [0, 1, 2]) is None and cfg.model.visual_mode == "none"
    assert "none of the 3 image files found can be read" in capsys.readouterr().out
    cfg = compose_train(["features=random", "model.visual_mode=reg"], tmp_path)
    with pytest.raises(ValueError, match="model.visual_mode=reg needs item pictures, but none of the 3 image files"):
        item_features(cfg, paths, [0, 1, 2])


@pytest.mark.parametrize("model", ["biased_mf", "ials"])
def test_a_bad_visual_mode_names_the_key_before_data_is_read(tmp_path, model):
    cfg = compose_train(["data=ratings_table", f"data.path={tmp_path / 'not_there.csv'}", f"model={model}",
                         "model.visual_mode=sometimes"], tmp_path)
    with pytest.raises(ValueError, match="model.visual_mode must be one of .*'auto'.*got 'sometimes'"):
        train(cfg)


def test_the_features_summary_is_printed_once_per_run_and_not_again_by_evaluate_or_export(tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from conftest import CONF
    from visrec.pipeline.evaluation import evaluate_run
    from visrec.pipeline.exporting import export_run

    train(compose_train(["features=random", "model.visual_mode=reg", "trainer.max_epochs=1", "features.progress=false"], tmp_path))
    trained = capsys.readouterr().out
    assert trained.count("image features: ") == 1, trained
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        evaluate_run(compose(config_name="evaluate", overrides=[f"run_dir={tmp_path / 'run'}", "log_to_run_logger=false"]))
    export_run(tmp_path / "run", out_dir=tmp_path / "bundle")
    again = capsys.readouterr().out
    assert "image features" not in again, again
