"""Every option of every config group composes, and everything in it instantiates."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from visrec.data import RatingsDataModule
from visrec.data.splits import Split

from conftest import CONF, compose_train


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_every_group_has_options():
    for group in ("data", "data/split", "model", "features", "visual_prior", "trainer", "logger", "callbacks", "paths",
                  "experiment", "hparams_search", "hydra/launcher"):
        assert options(group), group


@pytest.mark.parametrize("name", options("data"))
@pytest.mark.parametrize("split", options("data/split"))
def test_data_options_instantiate(tmp_path, name, split):
    overrides = [f"data={name}", f"data/split={split}"]
    if name != "synthetic":
        overrides.append("data.root=somewhere" if name == "movielens_100k" else "data.path=some.csv")
    cfg = compose_train(overrides, tmp_path)
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, RatingsDataModule)
    assert isinstance(datamodule.split, Split) and datamodule.split.name == split


@pytest.mark.parametrize("name", options("features"))
def test_features_options_compose(tmp_path, name):
    from visrec.features import BackboneSpec

    overrides = [f"features={name}"] + (["features.backbone.name=x", "features.backbone.path=y"] if name == "file" else [])
    cfg = compose_train(overrides, tmp_path)
    spec = BackboneSpec(**cfg.features.backbone)
    assert spec.weights == {"bundled": "bundled", "hub": "hub", "file": "file", "random": "random"}[name]


@pytest.mark.parametrize("name", options("model"))
def test_model_options_instantiate(tmp_path, name):
    cfg = compose_train([f"model={name}"], tmp_path)
    with pytest.raises(Exception, match="num_users"):  # data-derived sizes must be filled in
        instantiate(cfg.model)
    from hydra.utils import get_class

    from visrec.models.contract import DataSummary, RecommenderModel

    model_class = get_class(cfg.model._target_)
    assert issubclass(model_class, RecommenderModel)
    data = DataSummary(num_users=5, num_items=7, global_mean=3.0, rating_range=(1.0, 5.0), feature_dim=8)
    with open_dict(cfg):
        cfg.model.update(model_class.data_config(data))  # only the keys the model declares
        if cfg.model.get("visual_mode") == "auto":  # decided from the data by the pipeline (resolve_visual_mode)
            cfg.model.visual_mode = "reg"
    model = instantiate(cfg.model)
    assert isinstance(model, pl.LightningModule)
    assert model.known_users.shape == (5,) and model.known_items.shape == (7,)
    assert model.configure_optimizers()


@pytest.mark.parametrize("name", options("trainer"))
def test_trainer_options_instantiate(tmp_path, name):
    cfg = compose_train([f"trainer={name}"], tmp_path)
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        assert OmegaConf.to_container(cfg.trainer, resolve=True)  # composes; cannot run here
        pytest.skip("no GPU on this machine")
    assert isinstance(instantiate(cfg.trainer), pl.Trainer)


@pytest.mark.parametrize("group", ["logger", "callbacks"])
def test_logger_and_callback_options_instantiate(tmp_path, group):
    for name in options(group):
        cfg = compose_train([f"{group}={name}"], tmp_path)
        for node in (cfg.get(group) or {}).values():
            assert instantiate(node) is not None


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_options_compose(tmp_path, name):
    cfg = compose_train([f"experiment={name}", "data.root=somewhere"], tmp_path)
    assert instantiate(cfg.data) is not None


# The image-prior settings tuned on ML-100K (conf/visual_prior/ml100k_tuned.yaml), by config key.
TUNED_PRIOR = {"model.visual_pca_dim": 8, "model.visual_reg_exponent": 0, "model.reg_projection": 0.01,
               "features.backbone.pooling": "stages"}


def test_experiment_ml100k_u1_has_the_tuned_prior_settings_from_the_preset(tmp_path):
    preset = OmegaConf.load(CONF / "visual_prior" / "ml100k_tuned.yaml")
    keys = {f"{group}.{key}" for group in ("model", "features") for key, _ in _leaves(preset.get(group) or {})}
    assert keys == set(TUNED_PRIOR)  # the preset holds exactly these settings
    cfg = compose_train(["experiment=ml100k_u1", "data.root=somewhere"], tmp_path)
    assert {key: OmegaConf.select(cfg, key) for key in TUNED_PRIOR} == TUNED_PRIOR
    assert cfg.model.visual_mode == "none"  # the experiment's own choice still wins over the model default


@pytest.mark.parametrize("data", ["synthetic", "ratings_table", "movielens_100k"])
def test_the_tuned_prior_preset_applies_to_any_table(tmp_path, data):
    extra = {"synthetic": [], "ratings_table": ["data.path=some.csv"], "movielens_100k": ["data.root=somewhere"]}[data]
    cfg = compose_train(["model=biased_mf", "visual_prior=ml100k_tuned", f"data={data}", *extra], tmp_path)
    assert {key: OmegaConf.select(cfg, key) for key in TUNED_PRIOR} == TUNED_PRIOR
    plain = compose_train(["model=biased_mf", f"data={data}", *extra], tmp_path)
    assert OmegaConf.select(plain, "model.visual_pca_dim") == 64  # the preset, not the data, sets them
    for group in ("model", "features"):  # nothing else changes
        mine, theirs = dict(_leaves(cfg[group])), dict(_leaves(plain[group]))
        assert mine.keys() == theirs.keys()
        assert {f"{group}.{key}" for key in mine if mine[key] != theirs[key]} == {k for k in TUNED_PRIOR if k.startswith(group)}


def test_the_tuned_prior_preset_trains_on_the_synthetic_table(tmp_path):
    from visrec.pipeline.training import train

    cfg = compose_train(["model=biased_mf", "visual_prior=ml100k_tuned", "features=random", "logger=none", "evaluate=false",
                         "trainer.max_epochs=1"], tmp_path)
    metrics = train(cfg)
    assert metrics["epochs"] == 1
    saved = OmegaConf.load(tmp_path / "run" / "config.yaml")
    assert saved.model.visual_mode == "reg" and saved.model.visual_pca_dim == 8 and saved.features.backbone.pooling == "stages"


def _leaves(node, prefix=""):
    """(dotted key, value) of every leaf of a config node, unresolved (``???`` and ``${...}`` as written)."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_paths_resolve(tmp_path):
    cfg = compose_train([], tmp_path)
    assert OmegaConf.to_container(cfg.paths, resolve=True)["data_dir"] == str(tmp_path / "data")


def test_search_and_launcher_options_compose():
    from hydra import compose, initialize_config_dir

    assert options("hparams_search") == ["optuna", "optuna_ials"] and options("hydra/launcher") == ["slurm"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna", "hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.timeout_min == 240
    assert type(instantiate(cfg.hydra.sweeper.sampler)).__name__ == "TPESampler"
    assert cfg.optimized_metric == "val/rmse_best"


def test_the_default_job_trains_the_ranking_model_and_optimizes_its_monitor():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        default = compose("train")
        search = compose("train", overrides=["hparams_search=optuna_ials"], return_hydra_config=True)
        rating = compose("train", overrides=["model=biased_mf"])
    assert default.model._target_ == "visrec.models.IALSModule"
    assert default.optimized_metric == "val/ndcg@10_best" and default.monitor_mode == "max"
    assert rating.optimized_metric == "val/rmse_best" and rating.monitor_mode == "min"
    assert search.hydra.sweeper.direction == "maximize" and search.optimized_metric == "val/ndcg@10_best"
    assert {key.removeprefix("model.") for key in search.hydra.sweeper.params} <= set(search.model)
