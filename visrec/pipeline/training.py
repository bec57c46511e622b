"""``train(cfg)``: build data, model, trainer from a composed Hydra config; fit; test; write results.

A run directory (``cfg.paths.output_dir``) ends up holding:
    config.yaml          the resolved config, data-derived sizes filled in
    user_map.parquet, item_map.parquet, split.parquet   the exact data the run saw
    checkpoints/best.ckpt, checkpoints/last.ckpt
    metrics.json         final metrics (test metrics from the best checkpoint), wall times
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from visrec.data.datamodule import RatingsDataModule
from visrec.evaluation import DEFAULT_KS
from visrec.features import BackboneSpec, ItemFeatures, create_backbone, extract_item_features
from visrec.utils.atomic import write_json_atomic, write_text_atomic
from visrec.utils.report import format_table

log = logging.getLogger(__name__)


def item_features(cfg: DictConfig, image_paths: list, item_ids: list) -> ItemFeatures | None:
    """Frozen CNN features of the catalog's images (cached), or None when the model uses none."""
    if cfg.model.get("visual_mode", "none") == "none":
        return None
    backbone = create_backbone(BackboneSpec(**cfg.features.backbone))
    features = extract_item_features(
        image_paths, backbone, cfg.features.cache_dir, item_ids=item_ids,
        batch_size=cfg.features.batch_size, num_workers=cfg.features.num_workers, progress=cfg.features.progress,
    )
    print(features.report.summary())
    return features


def fill_data_sizes(cfg: DictConfig, datamodule: RatingsDataModule, features: ItemFeatures | None = None) -> None:
    """Write the sizes that come from the data into ``cfg.model`` (they are ``???`` in YAML)."""
    with open_dict(cfg):
        cfg.model.feature_dim = 0 if features is None else features.feature_dim
        cfg.model.num_users = datamodule.num_users
        cfg.model.num_items = datamodule.num_items
        cfg.model.global_mean = datamodule.global_mean
        cfg.model.rating_min, cfg.model.rating_max = (float(v) for v in datamodule.rating_range)


def build_model(cfg: DictConfig, datamodule: RatingsDataModule, features: ItemFeatures | None = None, fit: bool = True) -> pl.LightningModule:
    """Instantiate ``cfg.model`` for this data (sizes filled in, cold users / items marked, features attached).

    ``fit=False`` for a model about to receive a checkpoint's weights."""
    fill_data_sizes(cfg, datamodule, features)
    model = instantiate(cfg.model)
    model.net.set_train_counts(datamodule.user_train_counts, datamodule.item_train_counts)
    if features is not None:
        model.attach_features(features.features, features.has_image, fit=fit)
    return model


def _instantiate_all(group: DictConfig | None) -> list:
    return [instantiate(node) for node in (group or {}).values() if node is not None and "_target_" in node]


def load_weights(model: torch.nn.Module, ckpt_path: str | Path) -> None:
    """Load a Lightning checkpoint's ``state_dict`` safely (``weights_only=True``)."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])


def train(cfg: DictConfig) -> dict:
    """Fit the configured model; return the final metrics (also written to ``metrics.json``)."""
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule: RatingsDataModule = instantiate(cfg.data)
    datamodule.setup("fit")
    features = item_features(cfg, datamodule.image_paths, list(datamodule.item_map.raw_ids))
    model = build_model(cfg, datamodule, features)
    if features is not None:
        write_json_atomic(out_dir / "features_report.json", {"backbone_key": features.backbone_key, **vars(features.report)})
    write_text_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    datamodule.save(out_dir)

    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=_instantiate_all(cfg.get("callbacks")), logger=_instantiate_all(cfg.get("logger")) or False)
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.perf_counter() - started

    metrics: dict = {"fit_seconds": round(fit_seconds, 3), "epochs": trainer.current_epoch}
    metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))})
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.monitor and checkpoint.best_model_path:
        # Test the best model by the monitored metric, not the last epoch's.
        load_weights(model, checkpoint.best_model_path)
        metrics["best_checkpoint"] = checkpoint.best_model_path
        metrics[f"{checkpoint.monitor}_best"] = float(checkpoint.best_model_score)
    if cfg.get("test"):
        (results,) = trainer.test(model, datamodule=datamodule, verbose=False)
        metrics.update({k: float(v) for k, v in results.items()})
    write_json_atomic(out_dir / "metrics.json", metrics)
    if cfg.get("test") and cfg.get("evaluate"):
        _evaluate_after_training(model, datamodule, out_dir, metrics.get("best_checkpoint"))
    if cfg.get("export"):
        _export_after_training(cfg, model, datamodule, features, out_dir, metrics)
    print(format_table(
        f"Results — {datamodule.source_description}, split {datamodule.split.describe()}",
        [(k, metrics[k]) for k in ("test/rmse", "test/mae", "test/ratings", "test/rmse_cold", "test/mae_cold", "test/ratings_cold",
                                    "val/rmse_best", "epochs", "fit_seconds") if k in metrics],
    ))
    print(f"Run directory: {out_dir}")
    return metrics


def _evaluate_after_training(model: pl.LightningModule, datamodule: RatingsDataModule, out_dir: Path, checkpoint: str | None) -> None:
    """The evaluator's default protocol on the test part (what ``evaluate.py run_dir=...`` gives)."""
    from visrec.pipeline.evaluation import run_evaluation, write_report

    model.eval()
    report = run_evaluation(model, datamodule.tensors, datamodule.num_users, datamodule.num_items, ks=DEFAULT_KS,
                            threshold=4.0, exclude_train="all")
    stem = Path(checkpoint).stem if checkpoint else "final"
    write_report(report, out_dir / "eval" / f"{stem}_test_all", {"checkpoint": checkpoint, "part": "test"})
    print(report.format())


def _export_after_training(cfg: DictConfig, model: pl.LightningModule, datamodule: RatingsDataModule,
                           features: ItemFeatures | None, out_dir: Path, metrics: dict) -> None:
    """A serving bundle of the tested model in ``<run dir>/export`` (see :mod:`visrec.export`)."""
    from visrec.export import export_model
    from visrec.interactions import Interactions

    seen = Interactions.concat(datamodule.tensors["train"], datamodule.tensors["val"])
    path = export_model(model, datamodule.user_map, datamodule.item_map, seen, out_dir / "export",
                        model_config=OmegaConf.to_container(cfg.model, resolve=True), metrics=metrics,
                        backbone=None if features is None else features.backbone)
    print(f"Serving bundle: {path}")
