"""Serving says what it returns: rating-model scores clipped to the bundle's rating scale (raw on request,
ranking unchanged), preference scores untouched, and similar_items(min_support=...)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from visrec.serving import Recommender

from test_bundle_security import write_small_bundle


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Recommender:
    """Random factors around μ = 3.5 on a 1-5 scale: many raw scores leave the scale."""
    return Recommender.load(write_small_bundle(tmp_path_factory.mktemp("scale") / "bundle", visual=True))


def test_score_is_clipped_to_the_rating_range_unless_raw(rec):
    full = rec.score_indices(np.arange(len(rec.user_ids)))  # (U, N) raw
    user, items = rec.user_ids[np.argmax(np.abs(full - 3).max(axis=1))], rec.item_ids
    raw = rec.score(user, items, raw=True)
    assert (raw > 5).any() or (raw < 1).any()  # the fixture does leave the scale
    clipped = rec.score(user, items)
    np.testing.assert_array_equal(clipped, np.clip(raw, 1.0, 5.0))


def test_recommend_clips_scores_but_ranks_on_raw_scores(rec):
    users = rec.user_ids
    ids_raw, raw = rec.recommend(users, k=5, raw=True)
    ids, scores = rec.recommend(users, k=5)
    np.testing.assert_array_equal(ids, ids_raw)  # same order
    assert (raw > 5).any() or (raw < 1).any()
    assert np.all(scores[np.isfinite(scores)] <= 5.0) and np.all(scores[np.isfinite(scores)] >= 1.0)
    np.testing.assert_array_equal(scores, np.where(np.isfinite(raw), np.clip(raw, 1.0, 5.0), raw))


def test_recommend_for_new_item_is_clipped_unless_raw(rec):
    features = 10 * np.random.default_rng(1).normal(size=rec.bundle.arrays["feature_mean"].shape[0]).astype(np.float32)
    users_raw, raw = rec.recommend_for_new_item(features, k=7, raw=True)
    users, scores = rec.recommend_for_new_item(features, k=7)
    np.testing.assert_array_equal(users, users_raw)
    assert (raw > 5).any() or (raw < 1).any()
    np.testing.assert_array_equal(scores, np.clip(raw, 1.0, 5.0))


def _as_preference(bundle):
    """The bundle's manifest rewritten as a preference model's (score: preference, no rating range)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(score="preference", rating_range=None, global_mean=0.0)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def test_preference_scores_are_never_clipped(tmp_path):
    rec = Recommender.load(_as_preference(write_small_bundle(tmp_path / "bundle")))
    assert rec.rating_range is None
    raw = rec.score(rec.user_ids[0], rec.item_ids, raw=True)
    np.testing.assert_array_equal(rec.score(rec.user_ids[0], rec.item_ids), raw)
    assert (np.abs(raw) > 1).any()


def test_similar_items_min_support_leaves_out_rarely_rated_items(rec):
    support = rec.item_support
    assert support.sum() == len(rec.bundle.arrays["seen_items"]) and (support < support.max()).any()
    query = rec.item_ids[0]
    threshold = int(np.sort(support)[len(support) // 2])
    ids, cosines = rec.similar_items(query, k=len(rec.item_ids), min_support=threshold)
    kept = [i for i in ids if i is not None]
    assert kept and all(support[rec.item_index([i])[0]] >= threshold for i in kept)
    expected = {i for i, n in zip(rec.item_ids, support) if n >= threshold and i != query}
    assert set(kept) == expected
    all_ids, _ = rec.similar_items(query, k=len(rec.item_ids))
    assert [i for i in all_ids if i in expected] == kept  # the same order, fewer items


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_min_support_must_be_a_count(rec, bad):
    with pytest.raises(ValueError, match="min_support"):
        rec.similar_items(rec.item_ids[0], k=3, min_support=bad)
