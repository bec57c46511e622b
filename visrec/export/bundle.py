"""Export a trained model as a serving bundle: a directory of .npy arrays, Parquet id maps and a manifest.

Layout (format version 1; no pickle anywhere — arrays are saved and loaded with ``allow_pickle=False``):
    manifest.json              format_version, global_mean, rating_range, model config, training metrics,
                               data fingerprint, library versions, backbone spec, sha256 + size of every file
    user_map.parquet, item_map.parquet     raw id <-> index, original ids and dtypes
    user_factors.npy (U, K) float32, user_bias.npy (U,), item_factors.npy (N, K), item_bias.npy (N,)
                               effective factors: r̂_ui = μ + b_u + b_i + p_u · q_i reproduces the model,
                               fallbacks folded in (cold items with an image carry E f̃_i + e and w·f̃_i + c)
    known_users.npy (U,), known_items.npy (N,) bool   have training data (train + validation parts)
    seen_indptr.npy (U+1,), seen_items.npy (nnz,) int64   each user's training items (CSR), for exclude_seen
  visual models only:
    feature_mean.npy (D,), feature_components.npy (P, D), feature_scale.npy (P,)   whitening f -> f̃
    visual_projection.npy (K, P), visual_vector_intercept.npy (K,), visual_bias_weight.npy (P,)  (intercept c in the manifest)
    item_visual_features.npy (N, P) float32, has_image.npy (N,) bool   catalog items' whitened features

The bundle is written into a temporary directory beside the target and renamed into place, so a crash
never leaves half a bundle; an existing bundle at the target is replaced only once the new one is complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from visrec.data.idmap import IdMap
from visrec.interactions import Interactions
from visrec.utils.checksums import sha256_file

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def _versions() -> dict[str, str]:
    out = {}
    for package in ("visrec", "torch", "numpy", "pandas", "pytorch-lightning", "timm"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def _seen_csr(seen: Interactions, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    order = torch.argsort(seen.users * (int(seen.items.max()) + 1 if len(seen) else 1) + seen.items)
    users, items = seen.users[order], seen.items[order]
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.bincount(users.numpy(), minlength=num_users))
    return indptr, items.numpy().astype(np.int64)


def model_arrays(model, seen: Interactions) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of a bundle and the scalar fields of its manifest, from a trained ``RatingModule``."""
    tables = model.effective_factors()
    arrays = {name: tables[name].numpy().astype(np.float32) for name in ("user_factors", "user_bias", "item_factors", "item_bias")}
    # Known = has training data (train + validation parts), the evaluator's definition.
    arrays["known_users"] = np.bincount(seen.users.numpy(), minlength=model.net.num_users) > 0
    arrays["known_items"] = np.bincount(seen.items.numpy(), minlength=model.net.num_items) > 0
    arrays["seen_indptr"], arrays["seen_items"] = _seen_csr(seen, model.net.num_users)
    scalars = {"global_mean": tables["global_mean"],
               "rating_range": None if model.rating_range is None else list(model.rating_range)}
    visual = getattr(model, "visual", None)
    if visual is not None:
        arrays.update(
            feature_mean=visual.feature_mean.numpy(),
            feature_components=visual.components.numpy(),
            feature_scale=visual.component_scale.numpy(),
            visual_projection=visual.projection.weight.detach().numpy(),
            visual_vector_intercept=visual.projection.bias.detach().numpy(),
            visual_bias_weight=visual.bias_projection.weight.detach().numpy()[0],
            item_visual_features=visual.features.numpy(),
            has_image=visual.has_image.numpy(),
        )
        scalars["visual_bias_intercept"] = float(visual.bias_projection.bias.detach()[0])
    return arrays, scalars


def data_fingerprint(user_map: IdMap, item_map: IdMap, seen: Interactions) -> str:
    """sha256 over the raw ids of both maps and the training (user, item, rating) triples."""
    digest = hashlib.sha256()
    for values in (user_map.raw_ids, item_map.raw_ids):
        digest.update(np.asarray(values).astype(str).astype("U").tobytes())
    for tensor in (seen.users, seen.items, seen.ratings):
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def write_bundle(out_dir: str | Path, arrays: dict[str, np.ndarray], user_map: IdMap, item_map: IdMap, manifest: dict) -> Path:
    """Write arrays, maps and manifest (with checksums) to a temporary directory, then rename it to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        user_map.save(tmp / "user_map.parquet")
        item_map.save(tmp / "item_map.parquet")
        files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir())}
        full = {"format_version": FORMAT_VERSION, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **manifest, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def export_model(model, user_map: IdMap, item_map: IdMap, seen: Interactions, out_dir: str | Path,
                 model_config: dict | None = None, metrics: dict | None = None, backbone: dict | None = None) -> Path:
    """Export a trained ``RatingModule`` (weights loaded, features attached) to ``out_dir``.

    ``seen``: the training data (train + validation parts) — recorded per user for ``exclude_seen``."""
    arrays, scalars = model_arrays(model, seen)
    manifest = {
        **scalars,
        "num_users": len(user_map), "num_items": len(item_map), "k": int(arrays["user_factors"].shape[1]),
        "model_config": model_config or {}, "metrics": metrics or {},
        "data_fingerprint": data_fingerprint(user_map, item_map, seen),
        "library_versions": _versions(), "backbone": backbone,
    }
    return write_bundle(out_dir, arrays, user_map, item_map, manifest)
