"""What the README says and what a run does (issue 29, kind 8): each statement checked against a real run or
config. (The warm training of iALS + head equals plain iALS: tests/test_visual_ials.py.)"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from visrec.pipeline.training import train

from conftest import CONF, compose_train


def test_popularity_counts_the_train_and_validation_parts(tmp_path):
    """README: the popularity baseline and the serving fallback rank items by their interactions in the train
    and validation parts."""
    train(compose_train(["model=ials", "trainer.max_epochs=1", "logger=none", "export=true"], tmp_path))
    from visrec.serving import Recommender

    rec = Recommender.load(tmp_path / "run" / "export")
    split = pd.read_parquet(tmp_path / "run" / "split.parquet")
    seen = split[split["part"].isin(["train", "val"])]
    assert len(split[split["part"] == "val"]) > 0
    counts = seen["item"].value_counts()
    expected = np.array([counts.get(item, 0) for item in rec.item_ids], dtype=np.float32)
    np.testing.assert_array_equal(rec.item_popularity, expected)


def test_an_image_pattern_is_given_quoted_on_the_command_line():
    """README: 'data.source_args.image_pattern="{item}.png"' works; the unquoted form is a grammar error."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["data=ratings_table", 'data.source_args.image_pattern="{item}.png"'])
        assert cfg.data.source_args.image_pattern == "{item}.png"
        with pytest.raises(HydraException):
            compose("train", overrides=["data=ratings_table", "data.source_args.image_pattern={item}.png"])
