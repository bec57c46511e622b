"""Shared fixtures: the ML-100K path (skip when absent), tiny datasets, Hydra composition."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
ML100K = REPO.parent / "shared" / "datasets" / "ml-100k"

# A small synthetic dataset: seconds to generate and train.
TINY_GENERATOR = {"num_users": 60, "num_items": 40, "mean_ratings_per_user": 15.0, "image_size": 16}


@pytest.fixture
def ml100k() -> Path:
    if not (ML100K / "u.data").is_file():
        pytest.skip(f"MovieLens-100K not found at {ML100K} (../shared/datasets/ml-100k beside the repo)")
    return ML100K


def compose_train(overrides: list[str], tmp_path: Path, tiny: bool = True):
    """The real conf/train.yaml, composed with Hydra and shrunk for a test (tmp dirs, no progress bar;
    ``tiny``: the synthetic dataset at a few dozen users and items). Tests name their model; without a
    ``model=`` or ``experiment=`` override it is ``model=biased_mf`` (most tests are about the rating
    model; the default job's own model, iALS, is tested with ``model=ials`` and by test_default_job)."""
    if not any(o.startswith(("model=", "experiment=")) for o in overrides):
        overrides = ["model=biased_mf", *overrides]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.data_dir = str(tmp_path / "data")
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.trainer.enable_progress_bar = False
        if tiny and cfg.data._target_.endswith("synthetic"):
            cfg.data.generator.update(TINY_GENERATOR)
    return cfg
