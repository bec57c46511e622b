"""Load and verify an export bundle (numpy, pandas and the standard library only; no torch, no pickle).

A bundle is untrusted input: every check below runs before the data is used, and every failure is a
:class:`BundleError` whose message starts with the path of the file at fault. In order:

1. the folder is a real directory (``lstat``: not a symlink), listed once;
2. ``manifest.json`` is a regular file (not a symlink, FIFO or device) of at most
   :data:`MAX_MANIFEST_BYTES`, strict UTF-8 JSON, and passes the schema check (:func:`check_manifest`):
   required keys with their types, file entries that are plain file names (no ``/``, ``\\``, ``..``
   or absolute paths) from the known set, all required files listed, visual arrays all or none;
3. each listed file is a regular file (``lstat``), opened with ``O_NOFOLLOW`` and checked with
   ``fstat`` (same inode as checked, size as in the manifest, at most ``max_file_bytes``), then hashed
   (``verify``) and parsed from the same open file: ``.npy`` headers are read with
   ``numpy.lib.format`` and checked (no object dtype, expected kind and rank, shape x itemsize = the
   bytes in the file) before any array is allocated; Parquet id maps must have unique, non-null ids;
4. the arrays are checked against each other (:func:`check_arrays`): shapes vs the id maps and the
   manifest, ``seen_indptr`` starting at 0, non-decreasing and ending at ``len(seen_items)``,
   ``seen_items`` within the catalog, every float array finite (NaN/inf: a diverged model).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from visrec.utils.parquet import read_parquet_frame

SUPPORTED_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 4 << 20  # a real manifest is a few kB; the model config and metrics are small
MAX_FILE_BYTES = 16 << 30  # per file; raise it with load_bundle(max_file_bytes=...) for huge catalogs
MAX_NPY_HEADER_BYTES = 10_000  # numpy's own default limit for a trusted header

REQUIRED_ARRAYS = ("user_factors", "user_bias", "item_factors", "item_bias", "known_users", "known_items",
                   "seen_indptr", "seen_items")
VISUAL_ARRAYS = ("feature_mean", "feature_components", "feature_scale", "visual_projection", "visual_vector_intercept",
                 "visual_bias_weight",
                 "item_visual_features", "has_image")
# Bundles exported before the visual prior had an intercept e carry no visual_vector_intercept (e = 0).
OPTIONAL_VISUAL_ARRAYS = ("visual_vector_intercept",)
ID_MAPS = {"user_ids": "user_map.parquet", "item_ids": "item_map.parquet"}
REQUIRED_FILES = frozenset([f"{n}.npy" for n in REQUIRED_ARRAYS] + list(ID_MAPS.values()))
VISUAL_FILES = frozenset(f"{n}.npy" for n in VISUAL_ARRAYS)
KNOWN_FILES = REQUIRED_FILES | VISUAL_FILES

# Array name -> (dtype kinds allowed, rank). f: float, b: bool, iu: integer.
ARRAY_SPECS = {
    "user_factors": ("f", 2), "user_bias": ("f", 1), "item_factors": ("f", 2), "item_bias": ("f", 1),
    "known_users": ("b", 1), "known_items": ("b", 1), "seen_indptr": ("iu", 1), "seen_items": ("iu", 1),
    "feature_mean": ("f", 1), "feature_components": ("f", 2), "feature_scale": ("f", 1), "visual_projection": ("f", 2),
    "visual_vector_intercept": ("f", 1), "visual_bias_weight": ("f", 1), "item_visual_features": ("f", 2),
    "has_image": ("b", 1),
}

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


class BundleError(ValueError):
    """A bundle that cannot be trusted: missing, changed, linked or malformed files, or a format this code
    does not read. The message starts with the path of the file (or folder) at fault."""


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


# ---- files -----------------------------------------------------------------------------------------
def _list_folder(path: Path) -> dict[str, os.DirEntry]:
    """The bundle folder's entries by name.

    Raises BundleError if the path is missing, a symlink or not a directory."""
    try:
        info = os.lstat(path)
    except OSError as error:
        raise BundleError(f"{path}: not a bundle ({error.strerror})") from error
    if stat.S_ISLNK(info.st_mode):
        raise BundleError(f"{path}: the bundle folder is a symlink; pass the real folder ({os.path.realpath(path)})")
    if not stat.S_ISDIR(info.st_mode):
        raise BundleError(f"{path}: not a bundle (not a directory)")
    try:
        with os.scandir(path) as entries:
            return {entry.name: entry for entry in entries}
    except OSError as error:
        raise BundleError(f"{path}: cannot list the bundle folder ({error.strerror})") from error


def _open_listed(path: Path, name: str, listing: dict[str, os.DirEntry], max_bytes: int):
    """Open the regular file ``name`` of the bundle without following links -> (binary file, size).

    Raises BundleError if it is missing, a symlink, not a regular file, not the file that was checked
    (replaced meanwhile) or larger than ``max_bytes`` — before reading a byte of it."""
    file = path / name
    if name not in listing:
        raise BundleError(f"{file}: missing from the bundle (listed in {MANIFEST})")
    try:
        checked = os.lstat(file)
    except OSError as error:
        raise BundleError(f"{file}: missing from the bundle ({error.strerror})") from error
    if stat.S_ISLNK(checked.st_mode):
        raise BundleError(f"{file}: is a symlink; a bundle holds its own files only")
    if not stat.S_ISREG(checked.st_mode):
        raise BundleError(f"{file}: not a regular file")
    try:
        fd = os.open(file, _OPEN_FLAGS)
    except OSError as error:
        raise BundleError(f"{file}: cannot open ({error.strerror}; symlinks are refused)") from error
    handle = os.fdopen(fd, "rb")
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode) or (info.st_ino, info.st_dev) != (checked.st_ino, checked.st_dev):
        problem = "replaced while the bundle was being read"
    elif info.st_size > max_bytes:
        problem = f"{info.st_size} bytes, more than the limit of {max_bytes}"
    if problem:
        handle.close()
        raise BundleError(f"{file}: {problem}")
    return handle, info.st_size


def _sha256(handle) -> str:
    """Hex sha256 of an open file from its start (1 MiB blocks); leaves it at the start."""
    digest = hashlib.sha256()
    handle.seek(0)
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    handle.seek(0)
    return digest.hexdigest()


# ---- manifest ---------------------------------------------------------------------------------------
def _read_manifest(path: Path, listing: dict) -> dict:
    """The parsed manifest.json. Raises BundleError naming manifest.json if it is not a regular file,
    larger than MAX_MANIFEST_BYTES, not UTF-8 JSON, too deeply nested, or fails :func:`check_manifest`."""
    file = path / MANIFEST
    if MANIFEST not in listing:
        raise BundleError(f"{path}: not a bundle (no {MANIFEST})")
    handle, _ = _open_listed(path, MANIFEST, listing, MAX_MANIFEST_BYTES)
    with handle:
        raw = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{file}: larger than the limit of {MAX_MANIFEST_BYTES} bytes")
    try:
        # NaN/Infinity are not JSON: read as null, so a required number holding one fails the schema check.
        manifest = json.loads(raw.decode("utf-8"), parse_constant=lambda constant: None)
    except (ValueError, RecursionError, MemoryError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)[:200]
        raise BundleError(f"{file}: unreadable manifest ({reason})") from error
    check_manifest(manifest, file)
    return manifest


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _require(ok: bool, file: Path, message: str) -> None:
    if not ok:
        raise BundleError(f"{file}: {message}")


def check_manifest(manifest, file: Path) -> None:
    """Schema of a format-1 manifest. Raises BundleError naming ``file`` (the manifest) and the key at fault."""
    _require(isinstance(manifest, dict), file, f"not a manifest (a JSON object expected, got {type(manifest).__name__})")
    version = manifest.get("format_version")
    _require(_is_count(version) and 1 <= version <= SUPPORTED_FORMAT_VERSION, file,
             f"format_version {_short(version)} is not supported by this visrec (reads 1..{SUPPORTED_FORMAT_VERSION}); "
             "upgrade visrec or re-export the model")
    _require(_is_number(manifest.get("global_mean")), file, "'global_mean' must be a finite number")
    rating_range = manifest.get("rating_range", "missing")
    _require(rating_range is None or (isinstance(rating_range, list) and len(rating_range) == 2
                                      and all(map(_is_number, rating_range)) and rating_range[0] < rating_range[1]),
             file, "'rating_range' must be null or [low, high] with finite low < high")
    for key in ("num_users", "num_items", "k"):
        _require(_is_count(manifest.get(key)), file, f"{key!r} must be a non-negative integer")
    for key, kind in (("model_config", dict), ("metrics", dict), ("library_versions", dict), ("data_fingerprint", str),
                      ("created_utc", str), ("backbone", (dict, type(None)))):
        _require(key not in manifest or isinstance(manifest[key], kind), file, f"{key!r} has the wrong type")
    _require(manifest.get("score", "rating") in ("rating", "preference"), file, "'score' must be 'rating' or 'preference'")
    _require(isinstance(manifest.get("model_kind", ""), str), file, "'model_kind' has the wrong type")
    _check_file_entries(manifest.get("files"), file)
    if any(name in manifest["files"] for name in VISUAL_FILES):
        _require(_is_number(manifest.get("visual_bias_intercept")), file,
                 "'visual_bias_intercept' must be a finite number in a visual bundle")


def _check_file_entries(files, file: Path) -> None:
    """``files``: {plain file name: {"sha256": 64 hex digits, "bytes": size}} naming every required file
    and either all visual arrays or none. Raises BundleError naming ``file`` and the entry."""
    _require(isinstance(files, dict), file, "'files' must be an object {file name: {sha256, bytes}}")
    for name, entry in files.items():
        _require(_PLAIN_NAME.fullmatch(name) is not None and ".." not in name, file,
                 f"file entry {name[:200]!r} is not a plain file name inside the bundle "
                 "(paths, '..' and absolute paths are refused)")
        _require(name in KNOWN_FILES, file, f"file entry {name!r} is not a file of a format-1 bundle")
        _require(isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                 and _SHA256.fullmatch(entry["sha256"]) is not None and _is_count(entry.get("bytes")), file,
                 f"file entry {name!r} must be {{\"sha256\": 64 hex digits, \"bytes\": size}}")
    missing = sorted(REQUIRED_FILES - files.keys())
    _require(not missing, file, f"required files not listed: {missing}")
    visual = VISUAL_FILES & files.keys()
    missing_visual = sorted(VISUAL_FILES - visual - {f"{n}.npy" for n in OPTIONAL_VISUAL_ARRAYS})
    _require(not visual or not missing_visual, file,
             f"a visual bundle needs all visual arrays; not listed: {missing_visual}")


# ---- arrays and id maps -----------------------------------------------------------------------------
def _read_npy(handle, size: int, file: Path, name: str) -> np.ndarray:
    """One array from an open ``.npy`` file, checked header first. Raises BundleError naming ``file``
    for an unreadable header, object (pickled) data, an unexpected dtype kind or rank, or a shape
    that does not match the bytes in the file (checked before the array is allocated)."""
    kinds, rank = ARRAY_SPECS[name]
    try:
        version = np.lib.format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format version {version} (expected 1.0 or 2.0)")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(handle, max_header_size=MAX_NPY_HEADER_BYTES)
    except Exception as error:  # numpy raises ValueError, SyntaxError, ...: all mean an unreadable header
        raise BundleError(f"{file}: not a readable .npy file ({str(error)[:200]})") from error
    _require(not dtype.hasobject, file, "holds Python objects (pickled data); refusing to load it")
    _require(dtype.kind in kinds and dtype.fields is None, file, f"dtype {dtype} (expected kind {kinds!r})")
    _require(len(shape) == rank, file, f"shape {shape}, expected {rank} dimension(s)")
    expected = math.prod(shape) * dtype.itemsize
    _require(expected == size - handle.tell(), file,
             f"the header claims shape {shape} of {dtype} ({expected} bytes) but the file holds {size - handle.tell()} "
             "bytes of data")
    try:
        handle.seek(0)
        return np.lib.format.read_array(handle, allow_pickle=False, max_header_size=MAX_NPY_HEADER_BYTES)
    except Exception as error:  # I/O or memory errors while reading a checked array
        raise BundleError(f"{file}: cannot read the array ({type(error).__name__}: {str(error)[:200]})") from error


def _read_map(handle, file: Path) -> pd.Index:
    """Raw ids of an id map (Parquet, columns raw_id and index = 0..n-1). Raises BundleError naming
    ``file`` if pyarrow cannot read it, the columns differ, or ids are missing or repeated."""
    try:
        frame = read_parquet_frame(handle)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, MemoryError, ...
        raise BundleError(f"{file}: not a readable Parquet file ({type(error).__name__}: {str(error)[:200]})") from error
    _require(list(frame.columns) == ["raw_id", "index"], file, "not an id map (expected columns raw_id, index)")
    _require(np.array_equal(frame["index"].to_numpy(), np.arange(len(frame))), file, "not an id map (index must be 0..n-1)")
    ids = pd.Index(frame["raw_id"].to_numpy())
    _require(not ids.hasnans, file, "missing raw ids")
    if not ids.is_unique:
        raise BundleError(f"{file}: duplicate raw ids {ids[ids.duplicated()].unique()[:5].tolist()}")
    return ids


def _read_file(path: Path, name: str, entry: dict, listing: dict, verify: bool,
               max_file_bytes: int):
    """Open, check (size, sha256 with ``verify``) and parse one listed file -> array or id Index."""
    file = path / name
    handle, size = _open_listed(path, name, listing, max_file_bytes)
    with handle:
        if size != entry["bytes"]:
            raise BundleError(f"{file}: {size} bytes, the manifest says {entry['bytes']} — the file changed after export; "
                              "refusing to load")
        if verify and _sha256(handle) != entry["sha256"]:
            raise BundleError(f"{file}: checksum mismatch — the file changed after export; refusing to load")
        if name.endswith(".parquet"):
            return _read_map(handle, file)
        return _read_npy(handle, size, file, name[:-len(".npy")])


def load_bundle(path: str | Path, verify: bool = True, max_file_bytes: int = MAX_FILE_BYTES) -> Bundle:
    """Read a bundle; with ``verify`` (default) also check every file's sha256 and refuse files the
    manifest does not list. Raises BundleError (message naming the file) for anything else than an
    intact bundle written by :func:`visrec.export.export_model`; see the module docstring."""
    path = Path(path)
    listing = _list_folder(path)
    manifest = _read_manifest(path, listing)
    files = manifest["files"]
    if verify:
        unlisted = sorted(name for name in listing if name != MANIFEST and name not in files)
        if unlisted:
            raise BundleError(f"{path}: files not in the manifest: {unlisted[:10]}")
    contents = {name: _read_file(path, name, entry, listing, verify, max_file_bytes)
                for name, entry in sorted(files.items())}
    arrays = {name[:-len(".npy")]: value for name, value in contents.items() if name.endswith(".npy")}
    bundle = Bundle(path, manifest, arrays, contents[ID_MAPS["user_ids"]], contents[ID_MAPS["item_ids"]])
    check_arrays(bundle)
    return bundle


# ---- consistency ------------------------------------------------------------------------------------
def _expected_shapes(bundle: Bundle) -> dict[str, tuple]:
    """Array name -> expected shape (None = any size) from the id maps, factor width and visual sizes."""
    users, items = len(bundle.user_ids), len(bundle.item_ids)
    a, k = bundle.arrays, bundle.arrays["user_factors"].shape[1]
    shapes = {"user_factors": (users, k), "user_bias": (users,), "item_factors": (items, k), "item_bias": (items,),
              "known_users": (users,), "known_items": (items,), "seen_indptr": (users + 1,), "seen_items": (None,)}
    if bundle.is_visual:
        d, p = a["feature_mean"].shape[0], a["feature_scale"].shape[0]
        shapes.update(feature_mean=(d,), feature_components=(p, d), feature_scale=(p,), visual_projection=(k, p),
                      visual_vector_intercept=(k,), visual_bias_weight=(p,), item_visual_features=(items, p),
                      has_image=(items,))
    return shapes


def check_arrays(bundle: Bundle) -> None:
    """Arrays against each other, the id maps and the manifest. Raises BundleError naming the file at fault:
    a shape that does not fit, a non-finite float (NaN/inf), a CSR index of seen items out of bounds."""
    path, a, manifest = bundle.path, bundle.arrays, bundle.manifest
    for name, shape in _expected_shapes(bundle).items():
        if name in a and any(want is not None and got != want for got, want in zip(a[name].shape, shape)):
            raise BundleError(f"{path / (name + '.npy')}: shape {a[name].shape}, expected {tuple('any' if s is None else s for s in shape)} "
                              f"(from the id maps: {len(bundle.user_ids)} users, {len(bundle.item_ids)} items)")
    for key, value in (("num_users", len(bundle.user_ids)), ("num_items", len(bundle.item_ids)), ("k", a["user_factors"].shape[1])):
        _require(manifest[key] == value, path / MANIFEST, f"{key} = {manifest[key]}, but the arrays and id maps have {value}")
    for name, array in a.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(array.size - np.isfinite(array).sum())
            raise BundleError(f"{path / (name + '.npy')}: {bad} of {array.size} values are not finite (NaN/inf) — the model "
                              "probably diverged in training; retrain (e.g. with a lower learning rate) and re-export")
    if bundle.is_visual:
        _require(bool((a["feature_scale"] > 0).all()), path / "feature_scale.npy", "scales must be positive")
    _check_seen(path, a["seen_indptr"], a["seen_items"], len(bundle.item_ids))


def _check_seen(path: Path, indptr: np.ndarray, seen: np.ndarray, num_items: int) -> None:
    """CSR of each user's training items: indptr[0] = 0, non-decreasing, indptr[-1] = len(seen), items
    in 0..num_items-1. Raises BundleError naming the file at fault."""
    file = path / "seen_indptr.npy"
    _require(indptr[0] == 0 and bool((np.diff(indptr) >= 0).all()), file, "must start at 0 and never decrease")
    _require(int(indptr[-1]) == len(seen), file, f"ends at {int(indptr[-1])}, but seen_items.npy holds {len(seen)} items")
    if len(seen):
        _require(int(seen.min()) >= 0 and int(seen.max()) < num_items, path / "seen_items.npy",
                 f"item indices must lie in 0..{num_items - 1}")
