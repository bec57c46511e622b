"""What every entry point needs to set a run up: image features, a model built for the data, weights
loaded or stored safely, config nodes instantiated. The bottom layer of :mod:`visrec.pipeline`: it
imports no other pipeline module except :mod:`visrec.pipeline.config`, and training, refit, evaluation
and export all import it (nothing imports upward). Importing it does not import Lightning (evaluation and
export need none): the datamodule and the model contract are imported where they are used.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from visrec.features import BackboneSpec, ItemFeatures, create_backbone, extract_item_features
from visrec.features.images import image_file_exists
from visrec.models.visual.prior import AUTO, AUTO_WITH_IMAGES
from visrec.pipeline.config import instantiate_node
from visrec.utils.atomic import atomic_path

if TYPE_CHECKING:
    from visrec.data.datamodule import RatingsDataModule
    from visrec.models.contract import DataSummary, RecommenderModel


def model_class(cfg: DictConfig) -> type[RecommenderModel]:
    """The class ``cfg.model._target_`` names; a ValueError naming the key when it is not a visrec model."""
    from visrec.models.contract import RecommenderModel

    target = cfg.model.get("_target_")
    try:
        cls = get_class(target)
    except Exception as error:
        raise ValueError(f"model._target_={target!r} cannot be imported: {error}") from error
    if not (isinstance(cls, type) and issubclass(cls, RecommenderModel)):
        raise ValueError(f"model._target_={target!r} is not a visrec model (a subclass of visrec.models.contract.RecommenderModel)")
    return cls


def model_options(cfg: DictConfig) -> dict:
    """``cfg.model`` as a plain dict (resolved; keys still ``???`` are left out)."""
    options = OmegaConf.to_container(cfg.model, resolve=True, throw_on_missing=False)
    return {key: value for key, value in options.items() if value != "???"}


def _first_found(image_paths: list) -> int | None:
    """Index of the first item whose image path names an existing file (None: no picture at all)."""
    return next((i for i, path in enumerate(image_paths) if image_file_exists(path)), None)


def _no_images(image_paths: list) -> str:
    """Why the data has no picture, for messages."""
    with_path = [path for path in image_paths if path is not None]
    if not with_path:
        return (f"no item of the data's {len(image_paths)} has an image path (give the data pictures: "
                "data.source_args.images_dir or data.source_args.image_col)")
    return f"none of the {len(with_path)} image paths exists (e.g. {with_path[0]})"


def _refuse(cfg: DictConfig, why: str) -> ValueError:
    """The error for a model set to use pictures the data does not have, naming the config key."""
    mode = cfg.model.get("visual_mode")
    if mode is not None and mode != "none":
        return ValueError(f"model.visual_mode={mode} needs item pictures, but {why}: set model.visual_mode=none "
                          f"(or auto: the image prior on when the data has pictures, off otherwise)")
    return ValueError(f"model._target_={cfg.model._target_} scores items by their pictures, but {why}: "
                      "choose a model that does not need them (model=biased_mf or model=ials)")


def resolve_visual_mode(cfg: DictConfig, image_paths: list) -> bool:
    """Decide ``model.visual_mode=auto`` from the data, in ``cfg`` (so the run's config.yaml records the
    choice): ``reg`` when at least one item's image file exists, ``none`` otherwise, with one printed line
    saying which and why. Returns True when the mode was ``auto``.

    A model set explicitly to use pictures (``model.visual_mode`` other than none / auto, or a model that
    always scores by pictures, such as visual_knn) on data with no existing image file is refused with a
    ValueError naming the key, at set-up, before any feature is extracted or anything trained."""
    if cfg.model.get("visual_mode") == AUTO:
        found = _first_found(image_paths)
        with open_dict(cfg):
            cfg.model.visual_mode = "none" if found is None else AUTO_WITH_IMAGES
        if found is None:
            print(f"visual prior off (model.visual_mode=auto -> none): {_no_images(image_paths)}")
        else:
            print(f"visual prior on (model.visual_mode=auto -> {AUTO_WITH_IMAGES}): the items have pictures")
        return True
    if model_class(cfg).uses_image_features(model_options(cfg)) and _first_found(image_paths) is None:
        raise _refuse(cfg, f"the data has none: {_no_images(image_paths)}")
    return False


def item_features(cfg: DictConfig, image_paths: list, item_ids: list) -> ItemFeatures | None:
    """Frozen CNN features of the catalog's images (cached), or None when the model uses none.

    Decides ``model.visual_mode=auto`` first (:func:`resolve_visual_mode`). When no picture can be read
    (every file unreadable), ``auto`` turns the prior off (one printed line) and an explicit setting is a
    ValueError naming ``model.visual_mode``, before training."""
    automatic = resolve_visual_mode(cfg, image_paths)
    if not model_class(cfg).uses_image_features(model_options(cfg)):
        return None
    features = extract_features(cfg, image_paths, item_ids)
    if features.report.images > 0:
        return features
    why = f"none of the {features.report.found} image files found can be read"
    if not automatic:
        raise _refuse(cfg, why)
    with open_dict(cfg):
        cfg.model.visual_mode = "none"
    print(f"visual prior off (model.visual_mode=auto -> none): {why}")
    return None


def extract_features(cfg: DictConfig, image_paths: list, item_ids: list, announce: bool = True) -> ItemFeatures:
    """Frozen CNN features of the catalog's images (cached) with ``cfg.features``.

    ``announce``: print the extraction summary (training does, once per run; evaluation and export, which
    re-read the run's features from the cache, do not)."""
    backbone = create_backbone(BackboneSpec(**cfg.features.backbone))
    features = extract_item_features(
        image_paths, backbone, cfg.features.cache_dir, item_ids=item_ids,
        batch_size=cfg.features.batch_size, num_workers=cfg.features.num_workers,
        progress=cfg.features.progress and announce,
    )
    if announce:
        print(features.report.summary())
    if cfg.features.get("permute_seed") is not None:
        if announce:
            print(f"image features permuted across items (control run, features.permute_seed={cfg.features.permute_seed})")
        features = features.permuted(cfg.features.permute_seed)
    return features


def data_summary(datamodule: RatingsDataModule, features: ItemFeatures | None = None) -> DataSummary:
    """What a model may be built from (:class:`~visrec.models.contract.DataSummary`)."""
    from visrec.models.contract import DataSummary

    low, high = (float(v) for v in datamodule.rating_range)
    return DataSummary(num_users=datamodule.num_users, num_items=datamodule.num_items, global_mean=float(datamodule.global_mean),
                       rating_range=(low, high), feature_dim=0 if features is None else features.feature_dim)


def fill_data_sizes(cfg: DictConfig, datamodule: RatingsDataModule, features: ItemFeatures | None = None) -> None:
    """Write the values the model takes from the data (its ``DATA_KEYS``, ``???`` in YAML) into ``cfg.model``."""
    with open_dict(cfg):
        cfg.model.update(model_class(cfg).data_config(data_summary(datamodule, features)))


def build_model(cfg: DictConfig, datamodule: RatingsDataModule, features: ItemFeatures | None = None,
                fit: bool = True) -> RecommenderModel:
    """Instantiate ``cfg.model`` for this data (sizes filled in, cold users / items marked, features attached).

    ``fit=False`` for a model about to receive a checkpoint's weights (its data needs are not checked)."""
    fill_data_sizes(cfg, datamodule, features)
    model = instantiate_node(cfg.model)
    if model.TRAINING_BATCHES not in ("ratings", "whole"):
        raise TypeError(f"{type(model).__name__}.TRAINING_BATCHES must be 'ratings' or 'whole', got {model.TRAINING_BATCHES!r}")
    datamodule.train_batches = model.TRAINING_BATCHES
    model.set_train_counts(datamodule.user_train_counts, datamodule.item_train_counts)
    if fit and datamodule.holds_all_rows:  # a DDP process with only its own rows: rank 0 checked the whole split
        model.check_training_data(datamodule.tensors["train"], datamodule.tensors["val"])
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
