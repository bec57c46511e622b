"""Export a trained model as a serving bundle: a directory of .npy arrays, Parquet id maps and a manifest.

Layout (format version 1; no pickle anywhere — arrays are saved and loaded with ``allow_pickle=False``):
    manifest.json              format_version, global_mean, rating_range, model config, training metrics,
                               data fingerprint, library versions, backbone spec, sha256 + size of every file
    user_map.parquet, item_map.parquet     raw id <-> index, original ids and dtypes
    user_factors.npy (U, K) float32, user_bias.npy (U,), item_factors.npy (N, K), item_bias.npy (N,)
                               effective factors: r̂_ui = μ + b_u + b_i + p_u · q_i reproduces the model,
                               fallbacks folded in (cold items with an image carry E f̃_i + e and w·f̃_i + c)
    known_users.npy (U,), known_items.npy (N,) bool   have a trained vector (ratings in the part the model was trained on)
    seen_indptr.npy (U+1,), seen_items.npy (nnz,) int64   each user's training items (CSR), for exclude_seen
  visual models only:
    feature_mean.npy (D,), feature_components.npy (P, D), feature_scale.npy (P,)   whitening f -> f̃
    visual_projection.npy (K, P), visual_vector_intercept.npy (K,), visual_bias_weight.npy (P,)  (intercept c in the manifest)
    item_visual_features.npy (N, P) float32, has_image.npy (N,) bool   catalog items' whitened features

The bundle is written into a temporary directory beside the target and renamed into place, so a crash
never leaves half a bundle; an existing bundle at the target is replaced only once the new one is complete.
A file that cannot be written (full disk, quota, file-size limit, unwritable folder) raises
:class:`~visrec.utils.atomic.WriteError` naming it; the target is then as it was.
Non-finite factors (a diverged model) are refused with :class:`ExportError` before anything is written,
and manifest.json is strict JSON (non-finite metrics are written as null).
"""
from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from visrec.data.idmap import IdMap
from visrec.interactions import Interactions
from visrec.utils.atomic import atomic_dir, writing
from visrec.utils.checksums import sha256_file

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ExportError(ValueError):
    """A model that must not be served (non-finite factors): nothing was written."""


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
    """The arrays of a bundle and the scalar fields of its manifest: what the model writes (model
    contract: ``bundle_arrays``) plus ``seen`` (train + validation), what recommend(exclude_seen=True)
    leaves out, as a CSR over users."""
    arrays, scalars = model.bundle_arrays()
    arrays["seen_indptr"], arrays["seen_items"] = _seen_csr(seen, len(arrays["known_users"]))
    return arrays, scalars


def data_fingerprint(user_map: IdMap, item_map: IdMap, seen: Interactions) -> str:
    """sha256 over the raw ids of both maps and the training (user, item, rating) triples."""
    digest = hashlib.sha256()
    for values in (user_map.raw_ids, item_map.raw_ids):
        digest.update(np.asarray(values).astype(str).astype("U").tobytes())
    for tensor in (seen.users, seen.items, seen.ratings):
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def check_finite(arrays: dict[str, np.ndarray], scalars: dict, source: str) -> None:
    """Raise ExportError naming ``source`` (the checkpoint) and the arrays if a float array or a scalar
    of ``scalars`` holds NaN or inf — the sign of a model that diverged in training."""
    bad = {name: int(array.size - np.isfinite(array).sum()) for name, array in arrays.items()
           if np.asarray(array).dtype.kind == "f" and not np.isfinite(array).all()}
    bad.update({name: 1 for name, value in scalars.items() if isinstance(value, float) and not math.isfinite(value)})
    if bad:
        counts = ", ".join(f"{name}: {count} value(s)" for name, count in bad.items())
        raise ExportError(f"{source}: refusing to export non-finite (NaN/inf) parameters ({counts}) — the model diverged "
                          "in training; retrain with a lower learning rate (model.optimizer.lr) or more regularization. "
                          "No bundle was written")


def _strict_json(value):
    """``value`` with non-finite floats replaced by None (JSON has no NaN/Infinity)."""
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def write_bundle(out_dir: str | Path, arrays: dict[str, np.ndarray], user_map: IdMap, item_map: IdMap, manifest: dict,
                 source: str = "model") -> Path:
    """Write arrays, maps and manifest (with checksums) to a temporary directory, then rename it to ``out_dir``.

    Raises ExportError naming ``source`` (before writing anything) if an array or a manifest number
    (global_mean, ...) is not finite, and WriteError naming the file that could not be written (the
    bundle at ``out_dir``, if any, is then unchanged)."""
    check_finite(arrays, {key: value for key, value in manifest.items() if key in ("global_mean", "visual_bias_intercept")},
                 source)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, "bundle") as tmp:
        _write_files(tmp, out_dir, arrays, user_map, item_map, manifest)
    return out_dir


def _write_files(tmp: Path, out_dir: Path, arrays: dict[str, np.ndarray], user_map: IdMap, item_map: IdMap, manifest: dict) -> None:
    """The bundle's files in the folder ``tmp`` (renamed to ``out_dir`` once complete); a file that cannot
    be written raises WriteError naming it as ``out_dir/<file>``."""
    for name, array in arrays.items():
        with writing(out_dir / f"{name}.npy"):
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    for name, id_map in (("user_map.parquet", user_map), ("item_map.parquet", item_map)):
        with writing(out_dir / name):
            id_map.save(tmp / name)
    files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir())}
    full = {"format_version": FORMAT_VERSION, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **manifest, "files": files}
    text = json.dumps(_strict_json(full), indent=2, sort_keys=True, default=str, allow_nan=False)
    with writing(out_dir / MANIFEST):
        (tmp / MANIFEST).write_text(text + "\n", encoding="utf-8")


def export_model(model, user_map: IdMap, item_map: IdMap, seen: Interactions, out_dir: str | Path,
                 model_config: dict | None = None, metrics: dict | None = None, backbone: dict | None = None) -> Path:
    """Export a trained ``RatingModule`` (weights loaded, features attached) to ``out_dir``.

    ``seen``: the training data (train + validation parts) — recorded per user for ``exclude_seen``.
    Raises ExportError naming the checkpoint (``metrics["checkpoint"]`` or ``["tested_checkpoint"]``)
    if the model's factors are not finite, or if the model has no factor tables (``exportable`` False, e.g.
    kNN: a bundle format of its own is not built); nothing is written then."""
    if not getattr(model, "exportable", True):
        raise ExportError(f"{type(model).__name__} cannot be exported: a serving bundle holds factor tables and this model "
                          "has none (a bundle format for it is not built); train it with export=false")
    arrays, scalars = model_arrays(model, seen)
    manifest = {
        **scalars,
        "num_users": len(user_map), "num_items": len(item_map), "k": int(arrays["user_factors"].shape[1]),
        "model_config": model_config or {}, "metrics": metrics or {},
        "data_fingerprint": data_fingerprint(user_map, item_map, seen),
        "library_versions": _versions(), "backbone": backbone,
    }
    checkpoint = (metrics or {}).get("checkpoint") or (metrics or {}).get("tested_checkpoint")
    source = f"checkpoint {checkpoint}" if checkpoint else "the trained model"
    return write_bundle(out_dir, arrays, user_map, item_map, manifest, source=source)
