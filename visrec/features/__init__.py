"""Frozen image features: the only package that imports timm.

backbone: create a timm model (hub / file / bundled / random weights) and its preprocessing.
images:   load an image as RGB, or say why it cannot be loaded.
cache:    on-disk feature cache keyed by backbone, weights, preprocessing and image content.
extract:  batched extraction with a DataLoader, using and filling the cache.
"""
from visrec.features.backbone import Backbone, BackboneSpec, create_backbone
from visrec.features.extract import ExtractionReport, ItemFeatures, extract_item_features

__all__ = ["Backbone", "BackboneSpec", "ExtractionReport", "ItemFeatures", "create_backbone", "extract_item_features"]
