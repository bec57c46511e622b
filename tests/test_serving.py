"""Export bundles and the numpy serving API: round trip against the Lightning model and the evaluator,
tampering (more in test_bundle_security.py), unknown ids and id types, image queries, FAISS, and no
torch import."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from visrec.evaluation.ranking import top_k_lists
from visrec.evaluation.segments import build_segments
from visrec.interactions import Interactions
from visrec.pipeline.evaluation import load_model, load_run_data, model_scorer, resolve_checkpoint
from visrec.pipeline.exporting import export_run
from visrec.pipeline.training import train
from visrec.serving import BundleError, Recommender, UnknownIdError

from conftest import REPO, compose_train
from test_bundle_security import write_small_bundle


@pytest.fixture(scope="module")
def visual_run(tmp_path_factory):
    """Visual prior on a random split with some cold items (tiny data, random tiny backbone with stage
    pooling, so serving must embed new pictures the same way), exported."""
    tmp = tmp_path_factory.mktemp("serving")
    cfg = compose_train(["features=random", "features.backbone.pooling=stages", "model.visual_mode=reg", "trainer.max_epochs=4", "export=true",
                         "data/split=cold_item", "data.split.test_ratio=0.3"], tmp)
    train(cfg)
    return tmp / "run"


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serving_plain")
    train(compose_train(["model.visual_mode=none", "trainer.max_epochs=6", "export=true"], tmp))
    return tmp / "run"


def test_scores_equal_the_lightning_model(visual_run):
    data = load_run_data(visual_run)
    model = load_model(data, resolve_checkpoint(visual_run, "best"))
    rec = Recommender.load(visual_run / "export")
    pairs = Interactions.concat(data.parts["train"], data.parts["test"])
    with torch.no_grad():
        expected = model.predict_ratings(pairs.users, pairs.items).numpy()  # clipped to the rating range
    full = rec.score_indices(pairs.users.numpy())  # (R, N)
    got = np.clip(full[np.arange(len(pairs)), pairs.items.numpy()], *rec.bundle.manifest["rating_range"])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (~rec.bundle.arrays["known_items"] & rec.bundle.arrays["has_image"]).any()  # cold items with images exist
    rows = (pairs.users == pairs.users[0]).nonzero().squeeze(1).numpy()  # one user's ratings
    user = data.user_map.raw_ids[int(pairs.users[0])]
    items = data.item_map.raw_ids[pairs.items[rows].numpy()]
    np.testing.assert_allclose(np.clip(rec.score(user, items), 1, 5), expected[rows], atol=1e-5)


def test_recommend_equals_the_evaluators_top_k(plain_run):
    data = load_run_data(plain_run)
    model = load_model(data, resolve_checkpoint(plain_run, "best"))
    seen = Interactions.concat(data.parts["train"], data.parts["val"])
    segment = build_segments(seen, data.parts["test"], len(data.user_map), len(data.item_map))["warm"]
    expected = top_k_lists(model_scorer(model).score_users, segment.task, 10).numpy()  # (E, 10) indices
    rec = Recommender.load(plain_run / "export")
    ids, scores = rec.recommend(data.user_map.raw_ids[segment.task.users.numpy()], k=10, include_cold=False)
    got = np.array([[-1 if i is None else rec.item_index([i])[0] for i in row] for row in ids])  # None = no candidate left
    np.testing.assert_array_equal(got, expected)
    assert (expected == -1).any()  # users with fewer candidates than K are part of the check
    assert np.all(np.diff(np.where(np.isfinite(scores), scores, -1e9), axis=1) <= 0)


def test_bundle_is_complete_and_pickle_free(visual_run):
    bundle = visual_run / "export"
    manifest = json.loads((bundle / "manifest.json").read_text())
    for key in ("format_version", "global_mean", "model_config", "metrics", "data_fingerprint", "library_versions", "backbone", "files"):
        assert key in manifest, key
    assert manifest["backbone"]["name"] == "test_efficientnet" and len(manifest["backbone"]["weights_digest"]) == 64
    for name in manifest["files"]:
        if name.endswith(".npy"):
            np.load(bundle / name, allow_pickle=False)  # raises on any pickled object array
    ids = pd.read_parquet(bundle / "item_map.parquet")["raw_id"]
    assert ids.tolist() == list(load_run_data(visual_run).item_map.raw_ids)
    assert not [p for p in visual_run.iterdir() if p.name.startswith(".export")]  # no temporary leftovers


def test_export_from_a_checkpoint_matches_the_training_time_bundle(plain_run, tmp_path):
    done = subprocess.run([sys.executable, "-m", "visrec.export", str(plain_run), "--out", str(tmp_path / "b")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    again, original = Recommender.load(tmp_path / "b"), Recommender.load(plain_run / "export")
    for name in ("user_factors", "item_factors", "item_bias", "seen_items"):
        np.testing.assert_array_equal(again.bundle.arrays[name], original.bundle.arrays[name])
    export_run(plain_run, out_dir=tmp_path / "b")  # replacing an existing bundle works, atomically
    assert Recommender.load(tmp_path / "b").bundle.manifest["format_version"] == 1


@pytest.mark.parametrize("damage", ["changed byte", "missing file", "newer format", "extra file"])
def test_tampered_bundle_is_refused(plain_run, tmp_path, damage):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(plain_run / "export", bundle)
    if damage == "changed byte":
        path = bundle / "item_factors.npy"
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0x01
        path.write_bytes(bytes(raw))
        message = r"item_factors\.npy: checksum mismatch"
    elif damage == "missing file":
        (bundle / "user_bias.npy").unlink()
        message = r"user_bias\.npy: missing from the bundle"
    elif damage == "newer format":
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["format_version"] = 99
        (bundle / "manifest.json").write_text(json.dumps(manifest))
        message = "format_version 99 is not supported"
    else:
        (bundle / "evil.npy").write_bytes(b"x")
        message = r"files not in the manifest: \['evil\.npy'\]"
    with pytest.raises(BundleError, match=message):
        Recommender.load(bundle)


def test_unknown_ids_and_fallbacks(plain_run):
    rec = Recommender.load(plain_run / "export")
    with pytest.raises(UnknownIdError, match=r"1 unknown user id\(s\): \['nobody'\]"):
        rec.recommend([rec.user_ids[0], "nobody"], k=3)
    with pytest.raises(UnknownIdError, match="unknown item id"):
        rec.score(rec.user_ids[0], ["no-such-item"])
    ids, scores = rec.recommend(["nobody"], k=3, on_unknown="fallback")  # ranked by μ + b_i
    order = np.argsort(-(rec.item_bias + np.where(rec.known_items, 0, -np.inf)), kind="stable")[:3]
    assert list(ids[0]) == list(rec.item_ids[order])
    assert np.isnan(rec.score(rec.user_ids[0], ["no-such-item"], on_unknown="fallback")[0])
    with pytest.raises(ValueError, match="no visual prior"):
        rec.recommend_for_new_item(np.zeros(8))


def test_more_k_than_candidates_pads_with_none(plain_run):
    rec = Recommender.load(plain_run / "export")
    ids, scores = rec.recommend(rec.user_ids[:2], k=len(rec.item_ids) + 3, include_cold=False)
    assert ids.dtype == object and ids[0, -1] is None and scores[0, -1] == -np.inf
    assert all(i is not None for i in ids[0, : int(np.isfinite(scores[0]).sum())])


def test_similar_items_and_new_items(visual_run):
    rec = Recommender.load(visual_run / "export")
    item = rec.item_ids[np.nonzero(rec.known_items)[0][0]]
    ids, cosines = rec.similar_items(item, k=5)
    assert item not in list(ids) and np.all(np.diff(cosines) <= 0) and cosines[0] <= 1 + 1e-6
    features = np.random.default_rng(0).normal(size=rec.bundle.arrays["feature_mean"].shape[0]).astype(np.float32)
    users, predicted = rec.recommend_for_new_item(features, k=4, raw=True)
    q, b = rec.new_item_factors(features)
    u = rec.user_index(users)
    np.testing.assert_allclose(predicted, rec.global_mean + rec.user_bias[u] + b[0] + rec.user_factors[u] @ q[0], rtol=1e-5)


def test_items_like_image_finds_the_item_whose_picture_it_is(visual_run):
    rec = Recommender.load(visual_run / "export")
    images = pd.read_parquet(visual_run / "item_images.parquet").dropna()
    has_image = rec.bundle.arrays["has_image"]
    item, path = next((i, p) for i, p in zip(images["item"], images["image_path"]) if has_image[rec.item_index([i])[0]])
    ids, cosines = rec.items_like_image(path, k=3)
    assert ids[0] == item and cosines[0] == pytest.approx(1.0, abs=1e-4)


def test_recommend_for_new_item_takes_a_picture_path(visual_run):
    from visrec.serving.embed import embed_image

    rec = Recommender.load(visual_run / "export")
    path = pd.read_parquet(visual_run / "item_images.parquet").dropna()["image_path"].iloc[0]
    users, scores = rec.recommend_for_new_item(path, k=5)
    expected_users, expected = rec.recommend_for_new_item(embed_image(path, rec.bundle.manifest["backbone"])[0], k=5)
    np.testing.assert_array_equal(users, expected_users)
    np.testing.assert_allclose(scores, expected)
    low, high = rec.bundle.manifest["rating_range"]
    assert np.all((scores >= low) & (scores <= high))


def test_faiss_flat_and_full_ivf_equal_exact_numpy(plain_run):
    pytest.importorskip("faiss")
    from visrec.serving.faiss_index import FaissIndex

    rec = Recommender.load(plain_run / "export")
    users = rec.user_ids[:50]
    exact_ids, exact_scores = rec.recommend(users, k=10)
    for kind, options in (("flat", {}), ("ivf", {"nlist": 4, "nprobe": 4})):
        rec.index = FaissIndex(rec, kind=kind, **options)
        ids, scores = rec.recommend(users, k=10)
        rec.index = None
        np.testing.assert_allclose(scores, exact_scores, atol=1e-4)
        assert (ids == exact_ids).mean() > 0.99, kind  # float rounding may swap near-ties


def test_serving_imports_no_torch(plain_run):
    code = ("import sys; from visrec.serving import Recommender; "
            f"r = Recommender.load({str(plain_run / 'export')!r}); r.recommend(r.user_ids[:3], k=2); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("seed", range(4))
def test_numpy_top_k_orders_like_the_evaluator(seed):
    """Both top-K paths of the serving code (whole rows, and two stages over chunks for large
    catalogs) against the evaluator's torch top_k, on scores with many ties, NaN and -inf."""
    from visrec.evaluation.topk import top_k as torch_top_k
    from visrec.serving.topk import top_k

    rng = np.random.default_rng(seed)
    for _ in range(60):
        rows, n, k = int(rng.integers(1, 6)), int(rng.integers(1, 9000)), int(rng.integers(1, 14))
        scores = rng.integers(0, int(rng.integers(1, 2000)), (rows, n)).astype(np.float32)
        scores[rng.random((rows, n)) < rng.choice([0.0, 0.2])] = np.nan
        scores[rng.random((rows, n)) < rng.choice([0.0, 0.5, 0.999])] = -np.inf
        np.testing.assert_array_equal(top_k(scores, k), torch_top_k(torch.from_numpy(scores), k).numpy())


# ---- id types at serving time (bundles written from small random arrays: no training) ----------------
@pytest.fixture(scope="module")
def int_and_str_bundles(tmp_path_factory):
    """The same ids as int64 (a MovieLens or Parquet bundle) and as strings (a CSV bundle)."""
    tmp = tmp_path_factory.mktemp("ids")
    users, items = np.array([196, 186, 22, 244, 166, 298, 115], dtype=np.int64), np.arange(242, 251, dtype=np.int64)
    return {"int": Recommender.load(write_small_bundle(tmp / "int", users, items)),
            "str": Recommender.load(write_small_bundle(tmp / "str", users.astype(str).astype(object), items.astype(str).astype(object)))}


def test_readme_serving_example_works_on_integer_ids(int_and_str_bundles):
    """README "Export and serving": the MovieLens-100K calls, with ids as strings or as ints."""
    rec = int_and_str_bundles["int"]
    assert rec.user_ids.dtype == np.int64
    ids, scores = rec.recommend(["196", "186"], k=10)
    np.testing.assert_array_equal(ids, rec.recommend([196, 186], k=10)[0])
    np.testing.assert_allclose(rec.score("196", ["242", "245"]), rec.score(196, [242, 245]))
    similar, cosines = rec.similar_items("242", k=3)
    np.testing.assert_array_equal(similar, rec.similar_items(242, k=3)[0])


@pytest.mark.parametrize("side", ["int", "str"])
def test_query_ids_of_the_other_type_find_the_same_user(int_and_str_bundles, side):
    rec = int_and_str_bundles[side]
    expected = rec.recommend(rec.user_ids[:2], k=4)
    for query in ([196, 186], ["196", "186"], np.array([196, 186]), np.array(["196", "186"]), [196, "186"]):
        got = rec.recommend(query, k=4, on_unknown="fallback")
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_allclose(got[1], expected[1])
    np.testing.assert_array_equal(rec.item_index([242, "243"]), [0, 1])


@pytest.mark.parametrize("side, query", [("int", "0196"), ("int", " 196"), ("int", "+196"), ("int", "196.0"), ("int", 196.0),
                                         ("str", 196.0), ("str", np.float32(196))])
def test_known_id_in_another_form_is_refused_even_with_fallback(int_and_str_bundles, side, query):
    """Never served as a brand-new user: the error names both types and the id it looks like."""
    rec = int_and_str_bundles[side]
    for on_unknown in ("error", "fallback"):
        with pytest.raises(UnknownIdError, match=rf"\({type(query).__name__[:5]}\w*\) looks like .?196.*the bundle's user ids are "
                                                 rf"{'int64' if side == 'int' else 'str'}") as caught:
            rec.recommend([query], k=3, on_unknown=on_unknown)
        assert "fallback' does not apply" in str(caught.value)


def test_unknown_id_error_names_the_bundles_dtype_and_the_querys_type(int_and_str_bundles):
    with pytest.raises(UnknownIdError, match=r"1 unknown user id\(s\): \['nobody'\].*bundle's user ids are int64 and the query's are str"):
        int_and_str_bundles["int"].recommend(["nobody"], k=3)
    with pytest.raises(UnknownIdError, match=r"1 unknown user id\(s\): \[999\].*bundle's user ids are str \(strings\) and the query's are int"):
        int_and_str_bundles["str"].recommend([999], k=3)
    with pytest.raises(UnknownIdError, match=r"\['nobody'\] \(on_unknown='fallback' scores them as users without ratings \(rating models: μ \+ b_i; preference models: item popularity\)\)$"):
        int_and_str_bundles["str"].recommend(["nobody"], k=3)  # same type: no type hint
    with pytest.raises(ValueError, match="on_unknown must be 'error' or 'fallback'"):
        int_and_str_bundles["str"].recommend(["196"], k=3, on_unknown="ignore")


def test_fallback_serves_only_really_new_ids_as_new(int_and_str_bundles):
    rec = int_and_str_bundles["str"]
    new_user = rec.recommend(["nobody"], k=5, on_unknown="fallback")[0]
    known = rec.recommend([196], k=5, on_unknown="fallback")[0]  # int on a string-id bundle: user "196"
    np.testing.assert_array_equal(known, rec.recommend(["196"], k=5)[0])
    assert not np.array_equal(known, new_user)
    assert np.isnan(rec.score(196, [242, "nothing"], on_unknown="fallback")[1])
    assert rec.user_index([True], on_unknown="fallback")[0] == -1  # bools are not ids
    assert rec.user_index(["0196"], on_unknown="fallback")[0] == -1  # strings are exact ids in a string-id bundle


def test_similar_items_error_suggests_only_what_it_takes(int_and_str_bundles):
    with pytest.raises(UnknownIdError) as caught:
        int_and_str_bundles["int"].similar_items("no-such-item")
    assert "on_unknown" not in str(caught.value) and "similar_items needs an item of the catalog" in str(caught.value)


@pytest.mark.parametrize("k", [-1, 2.5, "3", True])
def test_k_must_be_a_whole_number(plain_run, k):
    rec = Recommender.load(plain_run / "export")
    user, item = rec.user_ids[0], rec.item_ids[0]
    for call in (lambda: rec.recommend([user], k=k), lambda: rec.similar_items(item, k=k)):
        with pytest.raises(ValueError, match=r"k must be a whole number >= 0"):
            call()
    assert rec.recommend([user], k=0)[0].shape == (1, 0)
