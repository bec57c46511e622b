"""What every entry point needs to set a run up: image features, a model built for the data, weights
loaded or stored safely, config nodes instantiated. The bottom layer of :mod:`visrec.pipeline`: it
imports no other pipeline module except :mod:`visrec.pipeline.config`, and training, refit, evaluation
and export all import it (nothing imports upward).
"""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from visrec.data.datamodule import RatingsDataModule
from visrec.features import BackboneSpec, ItemFeatures, create_backbone, extract_item_features
from visrec.pipeline.config import instantiate_node
from visrec.utils.atomic import atomic_path


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
    if cfg.features.get("permute_seed") is not None:
        print(f"image features permuted across items (control run, features.permute_seed={cfg.features.permute_seed})")
        features = features.permuted(cfg.features.permute_seed)
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
    model = instantiate_node(cfg.model)
    model.net.set_train_counts(datamodule.user_train_counts, datamodule.item_train_counts)
    check_data = getattr(model, "check_training_data", None)  # a model's own data needs, checked before training
    if check_data is not None and fit:
        check_data(datamodule.tensors["train"])
    if features is not None:
        model.attach_features(features.features, features.has_image, fit=fit)
    return model


def _instantiate_all(group: DictConfig | None) -> list:
    return [instantiate(node) for node in (group or {}).values() if node is not None and "_target_" in node]


def load_weights(model: torch.nn.Module, ckpt_path: str | Path) -> None:
    """Load a Lightning checkpoint's ``state_dict`` safely (``weights_only=True``)."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])


def store_weights(model: torch.nn.Module, ckpt_path: str | Path) -> None:
    """Replace the ``state_dict`` of a Lightning checkpoint with the model's (atomically; the rest is kept)."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = model.state_dict()
    with atomic_path(ckpt_path) as tmp:
        torch.save(checkpoint, tmp)
