"""Embed one new picture with a bundle's backbone (the only serving code that imports torch / timm)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def embed_image(image_path: str | Path, backbone: dict) -> np.ndarray:
    """(1, D) raw features of the image at ``image_path``, computed like the catalog's at training time.

    ``backbone``: the manifest's backbone entry (name, weights, path, pooling, weights_digest, data_config).
    Refuses a backbone whose weights differ from the ones the bundle was trained with."""
    import torch

    from visrec.features import BackboneSpec, create_backbone
    from visrec.features.images import load_rgb

    if not backbone:
        raise ValueError("the bundle records no backbone; it cannot embed new pictures")
    model = create_backbone(BackboneSpec(name=backbone["name"], weights=backbone["weights"], path=backbone.get("path"),
                                         pooling=backbone.get("pooling", "final")))
    if model.weights_digest != backbone["weights_digest"]:
        raise ValueError(f"backbone {backbone['name']} ({backbone['weights']}) has weights {model.weights_digest[:12]}..., "
                         f"the bundle was trained with {backbone['weights_digest'][:12]}...: features would not match")
    image, status = load_rgb(image_path)
    if image is None:
        raise ValueError(f"{image_path}: cannot use this picture ({status})")
    with torch.no_grad():
        features = model.model(model.transform()(image)[None]).float().numpy()  # (1, D)
    if not np.isfinite(features).all():
        raise ValueError(f"{image_path}: the backbone gives non-finite features for this picture")
    return features
