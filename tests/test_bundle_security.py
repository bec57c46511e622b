"""The bundle loader treats a bundle as untrusted input: one test per tampering case (paths outside the
bundle, symlinks, special files, pickled arrays, malformed manifests, arrays that do not fit together,
non-finite numbers), each refused with BundleError naming the file, before anything outside the bundle
is opened. Also: export refuses non-finite factors. Bundles are written with the real export code from
small random arrays (no training), so the whole file runs in seconds."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from visrec.data.idmap import IdMap
from visrec.export import ExportError, export_model
from visrec.export.bundle import write_bundle
from visrec.interactions import Interactions
from visrec.serving import BundleError, Recommender
from visrec.serving import bundle as bundle_module

USERS, ITEMS, K, SEEN, FEATURES, COMPONENTS = 7, 9, 3, 2, 5, 4


def write_small_bundle(path: Path, user_ids=None, item_ids=None, visual: bool = False, seed: int = 0) -> Path:
    """A valid bundle of random factors (each user has seen SEEN items) written by ``write_bundle``."""
    rng = np.random.default_rng(seed)
    user_ids = np.arange(100, 100 + USERS, dtype=np.int64) if user_ids is None else user_ids
    item_ids = np.arange(200, 200 + ITEMS, dtype=np.int64) if item_ids is None else item_ids
    users, items = len(user_ids), len(item_ids)
    seen = np.sort(np.argsort(rng.random((users, items)), axis=1)[:, :SEEN], axis=1)
    arrays = {"user_factors": rng.normal(size=(users, K)).astype(np.float32), "user_bias": rng.normal(size=users).astype(np.float32),
              "item_factors": rng.normal(size=(items, K)).astype(np.float32), "item_bias": rng.normal(size=items).astype(np.float32),
              "known_users": np.ones(users, dtype=bool), "known_items": np.ones(items, dtype=bool),
              "seen_indptr": np.arange(0, users * SEEN + 1, SEEN, dtype=np.int64), "seen_items": seen.reshape(-1).astype(np.int64)}
    manifest = {"global_mean": 3.5, "rating_range": [1.0, 5.0], "num_users": users, "num_items": items, "k": K}
    if visual:
        arrays.update(feature_mean=rng.normal(size=FEATURES).astype(np.float32),
                      feature_components=rng.normal(size=(COMPONENTS, FEATURES)).astype(np.float32),
                      feature_scale=np.ones(COMPONENTS, dtype=np.float32),
                      visual_projection=rng.normal(size=(K, COMPONENTS)).astype(np.float32),
                      visual_vector_intercept=np.zeros(K, dtype=np.float32),
                      visual_bias_weight=rng.normal(size=COMPONENTS).astype(np.float32),
                      item_visual_features=rng.normal(size=(items, COMPONENTS)).astype(np.float32),
                      has_image=np.ones(items, dtype=bool))
        manifest["visual_bias_intercept"] = 0.1
    return write_bundle(path, arrays, IdMap(user_ids), IdMap(item_ids), manifest)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_small_bundle(tmp_path_factory.mktemp("pristine") / "bundle")


@pytest.fixture(scope="module")
def pristine_visual(tmp_path_factory) -> Path:
    return write_small_bundle(tmp_path_factory.mktemp("pristine_visual") / "bundle", visual=True)


@pytest.fixture
def bundle(pristine, tmp_path) -> Path:
    """A fresh copy of a valid bundle, to tamper with; tmp_path/outside is a folder outside it."""
    (tmp_path / "outside").mkdir()
    return Path(shutil.copytree(pristine, tmp_path / "bundle"))


# ---- helpers: files outside the bundle that must never be opened ------------------------------------
_OPENED: list[str] | None = None


def _audit(event, args):
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, os.PathLike)):
        _OPENED.append(os.path.realpath(args[0]))


sys.addaudithook(_audit)  # records only while a test's `refused` block runs


def refused(path: Path, file_pattern: str, forbidden: Path | None = None) -> BundleError:
    """Load ``path``; assert BundleError whose message names ``file_pattern`` (regex) and, with
    ``forbidden``, that no file under that folder was opened."""
    global _OPENED
    _OPENED = []
    try:
        with pytest.raises(BundleError, match=file_pattern) as caught:
            Recommender.load(path)
    finally:
        opened, _OPENED = _OPENED, None
    if forbidden is not None:
        inside = str(forbidden.resolve())
        assert not [p for p in opened if p == inside or p.startswith(inside + os.sep)], opened
    return caught.value


def manifest_of(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def put_manifest(path: Path, manifest: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest))


def entry(file: Path) -> dict:
    return {"sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "bytes": file.stat().st_size}


def relist(path: Path, name: str) -> None:
    """Update the manifest's sha256 and size of ``name`` after changing the file (a deliberate tamperer)."""
    manifest = manifest_of(path)
    manifest["files"][name] = entry(path / name)
    put_manifest(path, manifest)


def replace_array(path: Path, name: str, array: np.ndarray) -> None:
    np.save(path / name, array, allow_pickle=False)
    relist(path, name)


# ---- the pristine bundles load -----------------------------------------------------------------------
def test_pristine_bundles_load(pristine, pristine_visual):
    assert len(Recommender.load(pristine).recommend([100, 101], k=3)[0]) == 2
    rec = Recommender.load(pristine_visual)
    assert rec.bundle.is_visual and rec.recommend_for_new_item(np.zeros(FEATURES), k=2)[0].shape == (2,)
    assert Recommender.load(pristine, verify=False).bundle.manifest["num_users"] == USERS


# ---- paths and links -----------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["relative", "absolute", "backslash"])
def test_manifest_entry_outside_the_bundle_is_refused_unopened(bundle, form):
    secret = bundle.parent / "outside" / "secret.txt"
    secret.write_text("root:x:0:0\n")
    name = {"relative": "../outside/secret.txt", "absolute": str(secret), "backslash": "..\\outside\\secret.txt"}[form]
    manifest = manifest_of(bundle)
    manifest["files"][name] = entry(secret)  # the right checksum: only the name can give it away
    put_manifest(bundle, manifest)
    error = refused(bundle, r"manifest\.json: file entry .* is not a plain file name", forbidden=secret.parent)
    assert "secret.txt" in str(error)


@pytest.mark.parametrize("name", ["user_factors.npy", "user_map.parquet"])
@pytest.mark.parametrize("content", ["identical", "other (checksum updated)"])
def test_symlinked_file_is_refused_unopened(bundle, name, content):
    outside = bundle.parent / "outside" / name
    shutil.copy(bundle / name, outside)
    if content != "identical":
        if name.endswith(".npy"):
            np.save(outside, np.zeros((USERS, K), dtype=np.float32))
        else:
            pd.DataFrame({"raw_id": np.arange(USERS, dtype=np.int64), "index": np.arange(USERS)}).to_parquet(outside, index=False)
    (bundle / name).unlink()
    os.symlink(outside, bundle / name)
    if content != "identical":
        manifest = manifest_of(bundle)
        manifest["files"][name] = entry(outside)
        put_manifest(bundle, manifest)
    refused(bundle, rf"{name}: is a symlink", forbidden=outside.parent)


def test_symlinked_manifest_is_refused_unopened(bundle):
    outside = bundle.parent / "outside" / "manifest.json"
    shutil.copy(bundle / "manifest.json", outside)
    (bundle / "manifest.json").unlink()
    os.symlink(outside, bundle / "manifest.json")
    refused(bundle, r"manifest\.json: is a symlink", forbidden=outside.parent)


def test_symlinked_bundle_folder_is_refused(bundle):
    link = bundle.parent / "link"
    os.symlink(bundle, link)
    refused(link, r"link: the bundle folder is a symlink")


def test_special_file_is_refused_without_blocking(bundle):
    (bundle / "user_bias.npy").unlink()
    os.mkfifo(bundle / "user_bias.npy")  # opening a FIFO for reading would wait for a writer
    refused(bundle, r"user_bias\.npy: not a regular file")


def test_file_over_the_size_limit_is_refused_unread(bundle):
    from visrec.serving import load_bundle

    with pytest.raises(BundleError, match=r"/bundle/\w+\.(npy|parquet): \d+ bytes, more than the limit of 120"):
        load_bundle(bundle, max_file_bytes=120)


# ---- pickles and headers ------------------------------------------------------------------------------
class Payload:
    marker: Path | None = None

    def __reduce__(self):
        return (Path.touch, (Payload.marker,))


def test_pickled_object_array_is_refused_and_does_not_run(bundle):
    Payload.marker = bundle.parent / "outside" / "PWNED"
    array = np.empty(USERS, dtype=object)
    array[0] = Payload()
    np.save(bundle / "user_bias.npy", array, allow_pickle=True)
    relist(bundle, "user_bias.npy")
    refused(bundle, r"user_bias\.npy: holds Python objects")
    assert not Payload.marker.exists()


def test_npy_header_claiming_huge_shape_is_refused_before_allocating(bundle):
    file = bundle / "item_factors.npy"
    data = np.load(file)
    with open(file, "wb") as handle:  # numpy's own header writer, with a shape of 1e11 rows (1.2 TB)
        np.lib.format.write_array_header_1_0(handle, {"descr": np.lib.format.dtype_to_descr(data.dtype), "fortran_order": False,
                                                      "shape": (10 ** 11, K)})
        handle.write(data.tobytes())
    relist(bundle, "item_factors.npy")
    refused(bundle, r"item_factors\.npy: the header claims shape \(100000000000, 3\)")


def test_unreadable_npy_is_a_bundle_error(bundle):
    (bundle / "item_bias.npy").write_bytes(b"\x93NUMPY garbage")
    relist(bundle, "item_bias.npy")
    refused(bundle, r"item_bias\.npy: not a readable \.npy file")


def test_unreadable_parquet_is_a_bundle_error(bundle):
    (bundle / "item_map.parquet").write_bytes(b"PAR1 not really PAR1")
    relist(bundle, "item_map.parquet")
    refused(bundle, r"item_map\.parquet: not a readable Parquet file")


# ---- the manifest --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("[1, 2]", r"manifest\.json: not a manifest \(a JSON object expected, got list\)"),
    ("[" * 200_000 + "]" * 200_000, r"manifest\.json: unreadable manifest \(nested too deeply\)"),
    ("{\"format_version\": 1,", r"manifest\.json: unreadable manifest"),
    ("\xff\xfe", r"manifest\.json: unreadable manifest"),
])
def test_malformed_manifest_is_refused(bundle, text, message):
    (bundle / "manifest.json").write_bytes(text.encode("latin1"))
    refused(bundle, message)


def test_oversize_manifest_is_refused_unread(bundle):
    manifest = manifest_of(bundle)
    text = json.dumps(manifest)
    (bundle / "manifest.json").write_text(text[:-1] + " " * (bundle_module.MAX_MANIFEST_BYTES + 1) + "}")
    refused(bundle, r"manifest\.json: .*more than the limit of 4194304")


@pytest.mark.parametrize("damage, message", [
    (lambda m: m["files"]["user_factors.npy"].pop("bytes"), r"file entry 'user_factors\.npy' must be"),
    (lambda m: m["files"]["user_factors.npy"].update(sha256="abc"), r"file entry 'user_factors\.npy' must be"),
    (lambda m: m.pop("global_mean"), r"'global_mean' must be a finite number"),
    (lambda m: m.update(global_mean="3.5"), r"'global_mean' must be a finite number"),
    (lambda m: m.update(files=[]), r"'files' must be an object"),
    (lambda m: m.pop("num_users"), r"'num_users' must be a non-negative integer"),
    (lambda m: m.update(num_items=ITEMS + 1), rf"num_items = {ITEMS + 1}, but the arrays and id maps have {ITEMS}"),
    (lambda m: m.update(rating_range=[5, 1]), r"'rating_range' must be null or \[low, high\]"),
    (lambda m: m.update(format_version=True), r"format_version True is not supported"),
    (lambda m: m.update(metrics=[1]), r"'metrics' has the wrong type"),
])
def test_manifest_schema(bundle, damage, message):
    manifest = manifest_of(bundle)
    damage(manifest)
    put_manifest(bundle, manifest)
    refused(bundle, r"manifest\.json: " + message)


def test_nan_in_the_manifest_is_refused(bundle):
    (bundle / "manifest.json").write_text((bundle / "manifest.json").read_text().replace('"global_mean": 3.5', '"global_mean": NaN'))
    refused(bundle, r"manifest\.json: 'global_mean' must be a finite number")


@pytest.mark.parametrize("name", ["user_map.parquet", "seen_items.npy", "known_items.npy"])
def test_required_file_missing_with_its_entry_is_refused(bundle, name):
    (bundle / name).unlink()
    manifest = manifest_of(bundle)
    del manifest["files"][name]
    put_manifest(bundle, manifest)
    refused(bundle, rf"manifest\.json: required files not listed: \['{name}'\]")


def test_listed_file_missing_is_refused(bundle):
    (bundle / "item_bias.npy").unlink()
    refused(bundle, r"item_bias\.npy: missing from the bundle")


def test_unexpected_plain_file_entry_is_refused(bundle):
    (bundle / "extra.npy").write_bytes(b"x")
    manifest = manifest_of(bundle)
    manifest["files"]["extra.npy"] = entry(bundle / "extra.npy")
    put_manifest(bundle, manifest)
    refused(bundle, r"manifest\.json: file entry 'extra\.npy' is not a file of a format-1 bundle")


@pytest.mark.parametrize("name", ["has_image.npy", "visual_projection.npy", "feature_mean.npy"])
def test_visual_arrays_are_all_or_none(pristine_visual, tmp_path, name):
    bundle = Path(shutil.copytree(pristine_visual, tmp_path / "bundle"))
    (bundle / name).unlink()
    manifest = manifest_of(bundle)
    del manifest["files"][name]
    put_manifest(bundle, manifest)
    refused(bundle, rf"manifest\.json: a visual bundle needs all visual arrays; not listed: \['{name}'\]")


# ---- arrays against each other ------------------------------------------------------------------------
def test_duplicate_ids_are_refused(bundle):
    ids = np.arange(100, 100 + USERS, dtype=np.int64)
    ids[1] = ids[0]
    pd.DataFrame({"raw_id": ids, "index": np.arange(USERS, dtype=np.int64)}).to_parquet(bundle / "user_map.parquet", index=False)
    relist(bundle, "user_map.parquet")
    refused(bundle, r"user_map\.parquet: duplicate raw ids \[100\]")


def test_huge_seen_indptr_is_refused_at_load(bundle):
    indptr = np.load(bundle / "seen_indptr.npy")
    indptr[3] = 2 ** 40
    replace_array(bundle, "seen_indptr.npy", indptr)
    refused(bundle, r"seen_indptr\.npy: must start at 0 and never decrease")


@pytest.mark.parametrize("name, array, message", [
    ("seen_indptr.npy", np.arange(0, USERS * SEEN + 2, SEEN, dtype=np.int64)[:USERS + 1] + 1, r"must start at 0"),
    ("seen_indptr.npy", np.arange(0, USERS + 1, dtype=np.int64), rf"ends at {USERS}, but seen_items\.npy holds {USERS * SEEN}"),
    ("seen_items.npy", np.full(USERS * SEEN, ITEMS, dtype=np.int64), rf"item indices must lie in 0\.\.{ITEMS - 1}"),
    ("seen_items.npy", np.full(USERS * SEEN, -1, dtype=np.int64), rf"item indices must lie in 0\.\.{ITEMS - 1}"),
    ("user_factors.npy", np.zeros((USERS + 1, K), dtype=np.float32), r"shape \(8, 3\), expected \(7, 3\)"),
    ("item_factors.npy", np.zeros((ITEMS, K + 1), dtype=np.float32), r"shape \(9, 4\), expected \(9, 3\)"),
    ("item_bias.npy", np.zeros((ITEMS, 1), dtype=np.float32), r"shape \(9, 1\), expected 1 dimension"),
    ("known_items.npy", np.ones(ITEMS, dtype=np.float32), r"dtype float32 \(expected kind 'b'\)"),
    ("user_factors.npy", np.full((USERS, K), np.nan, dtype=np.float32), r"21 of 21 values are not finite \(NaN/inf\)"),
    ("item_bias.npy", np.array([np.inf] + [0.0] * (ITEMS - 1), dtype=np.float32), r"1 of 9 values are not finite"),
])
def test_arrays_that_do_not_fit_are_refused(bundle, name, array, message):
    replace_array(bundle, name, array)
    refused(bundle, rf"{name.replace('.', chr(92) + '.')}: {message}")


def test_nan_visual_arrays_are_refused(pristine_visual, tmp_path):
    bundle = Path(shutil.copytree(pristine_visual, tmp_path / "bundle"))
    features = np.load(bundle / "item_visual_features.npy")
    features[2, 1] = np.nan
    replace_array(bundle, "item_visual_features.npy", features)
    refused(bundle, r"item_visual_features\.npy: 1 of 36 values are not finite")


# ---- export ---------------------------------------------------------------------------------------------
def _diverged_model():
    from visrec.models.factor.module import RatingModule

    model = RatingModule(USERS, ITEMS, k=K, global_mean=3.0)
    with torch.no_grad():
        model.net.item_factors.weight.fill_(float("nan"))
    return model


def test_export_refuses_nan_factors_and_writes_nothing(tmp_path):
    out = tmp_path / "export"
    write_small_bundle(out)  # an earlier, good bundle at the target stays as it is
    before = manifest_of(out)
    seen = Interactions(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([4.0, 3.0]))
    with pytest.raises(ExportError, match=r"checkpoint runs/x/best\.ckpt: refusing to export non-finite .*item_factors.*diverged"):
        export_model(_diverged_model(), IdMap(np.arange(USERS)), IdMap(np.arange(ITEMS)), seen, out,
                     metrics={"checkpoint": "runs/x/best.ckpt"})
    assert manifest_of(out) == before and Recommender.load(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary folder left behind


def test_write_bundle_refuses_non_finite_arrays_and_writes_strict_json(tmp_path):
    arrays = {"user_factors": np.array([[np.inf]], dtype=np.float32)}
    with pytest.raises(ExportError, match=r"model: refusing to export .*user_factors: 1 value"):
        write_bundle(tmp_path / "b", arrays, IdMap([1]), IdMap([1]), {"global_mean": 3.0})
    assert not list(tmp_path.iterdir())
    with pytest.raises(ExportError, match=r"global_mean"):
        write_bundle(tmp_path / "b", {}, IdMap([1]), IdMap([1]), {"global_mean": float("nan")})
    good = write_small_bundle(tmp_path / "good")
    manifest = manifest_of(good)
    manifest["metrics"] = {"val/rmse_best": float("inf")}
    path = write_bundle(tmp_path / "strict", {name[:-4]: np.load(good / name) for name in manifest["files"] if name.endswith(".npy")},
                        IdMap(np.arange(100, 100 + USERS)), IdMap(np.arange(200, 200 + ITEMS)),
                        {key: manifest[key] for key in ("global_mean", "rating_range", "num_users", "num_items", "k", "metrics")})
    text = (path / "manifest.json").read_text()
    assert "Infinity" not in text and json.loads(text, parse_constant=lambda c: pytest.fail(c))["metrics"]["val/rmse_best"] is None
    Recommender.load(path)
