"""Load and verify an export bundle (numpy, pandas and the standard library only; no torch, no pickle)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visrec.utils.checksums import sha256_file

SUPPORTED_FORMAT_VERSION = 1
REQUIRED_ARRAYS = ("user_factors", "user_bias", "item_factors", "item_bias", "known_users", "known_items",
                   "seen_indptr", "seen_items")
VISUAL_ARRAYS = ("feature_mean", "feature_components", "feature_scale", "visual_projection", "visual_vector_intercept",
                 "visual_bias_weight",
                 "item_visual_features", "has_image")


class BundleError(ValueError):
    """A bundle that cannot be trusted: missing or changed files, or a format this code does not read."""


@dataclass
class Bundle:
    path: Path
    manifest: dict
    arrays: dict[str, np.ndarray]
    user_ids: pd.Index  # raw user ids, position = index
    item_ids: pd.Index  # raw item ids, position = index

    @property
    def is_visual(self) -> bool:
        return "visual_projection" in self.arrays


def _read_map(path: Path) -> pd.Index:
    frame = pd.read_parquet(path)
    if list(frame.columns) != ["raw_id", "index"] or not np.array_equal(frame["index"], np.arange(len(frame))):
        raise BundleError(f"{path}: not an id map (expected columns raw_id, index = 0..n-1)")
    return pd.Index(frame["raw_id"].to_numpy())


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read a bundle; with ``verify`` (default) check the format version and every file's sha256 first."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"{path}: not a bundle (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{manifest_path}: unreadable manifest ({error})") from error
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > SUPPORTED_FORMAT_VERSION or version < 1:
        raise BundleError(f"{manifest_path}: format_version {version!r} is not supported by this visrec "
                          f"(reads 1..{SUPPORTED_FORMAT_VERSION}); upgrade visrec or re-export the model")
    files = manifest.get("files", {})
    if verify:
        for name, entry in files.items():
            file = path / name
            if not file.is_file():
                raise BundleError(f"{file}: missing from the bundle (listed in manifest.json)")
            if file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
                raise BundleError(f"{file}: checksum mismatch — the file changed after export; refusing to load")
        unlisted = sorted(p.name for p in path.iterdir() if p.name != "manifest.json" and p.name not in files)
        if unlisted:
            raise BundleError(f"{path}: files not in the manifest: {unlisted}")
    names = list(REQUIRED_ARRAYS) + [n for n in VISUAL_ARRAYS if f"{n}.npy" in files]
    arrays = {}
    for name in names:
        file = path / f"{name}.npy"
        if not file.is_file():
            raise BundleError(f"{file}: missing from the bundle")
        arrays[name] = np.load(file, allow_pickle=False)
    bundle = Bundle(path, manifest, arrays, _read_map(path / "user_map.parquet"), _read_map(path / "item_map.parquet"))
    _check_shapes(bundle)
    return bundle


def _check_shapes(bundle: Bundle) -> None:
    a, users, items = bundle.arrays, len(bundle.user_ids), len(bundle.item_ids)
    expected = {"user_factors": users, "user_bias": users, "known_users": users, "item_factors": items,
                "item_bias": items, "known_items": items, "seen_indptr": users + 1}
    for name, rows in expected.items():
        if a[name].shape[0] != rows:
            raise BundleError(f"{bundle.path / (name + '.npy')}: {a[name].shape[0]} rows, expected {rows} (from the id maps)")
    if a["user_factors"].shape[1] != a["item_factors"].shape[1]:
        raise BundleError(f"{bundle.path}: user and item factors have different widths")
