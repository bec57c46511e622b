"""One behaviour whatever the serving path (issue 29, kind 7): the exact numpy ranking and a FAISS index
give the same recommendations, unknown users (``on_unknown="fallback"``) included — popularity for a
preference bundle (iALS), μ + b_i for a rating bundle."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visrec.data.idmap import IdMap
from visrec.export.bundle import write_bundle
from visrec.serving import Recommender

USERS, ITEMS, K = 12, 30, 4


def _bundle(path: Path, preference: bool, seed: int = 0) -> Path:
    """A small bundle shaped like iALS's (``preference``: no biases, scores p_u·q_i, no rating range) or
    like biased MF's; users have seen 0..5 items, so item popularity has a clear order with ties."""
    rng = np.random.default_rng(seed)
    seen = [np.sort(rng.choice(ITEMS // 2, size=int(rng.integers(0, 6)), replace=False)) for _ in range(USERS)]
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in seen])]).astype(np.int64)
    zeros = np.zeros if preference else (lambda n, dtype: rng.normal(size=n).astype(dtype))
    arrays = {"user_factors": rng.normal(size=(USERS, K)).astype(np.float32), "user_bias": zeros(USERS, dtype=np.float32),
              "item_factors": rng.normal(size=(ITEMS, K)).astype(np.float32), "item_bias": zeros(ITEMS, dtype=np.float32),
              "known_users": np.ones(USERS, dtype=bool), "known_items": np.ones(ITEMS, dtype=bool),
              "seen_indptr": indptr, "seen_items": np.concatenate(seen).astype(np.int64)}
    manifest = {"global_mean": 0.0 if preference else 3.5, "rating_range": None if preference else [1.0, 5.0],
                "num_users": USERS, "num_items": ITEMS, "k": K}
    if preference:
        manifest["score"] = "preference"
    return write_bundle(path, arrays, IdMap(np.array([f"u{i:02d}" for i in range(USERS)])),
                        IdMap(np.array([f"i{i:02d}" for i in range(ITEMS)])), manifest)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
@pytest.mark.parametrize("preference", [True, False], ids=["preference", "rating"])
def test_unknown_user_gets_the_same_list_with_and_without_an_index(tmp_path, kind, preference):
    pytest.importorskip("faiss")
    from visrec.serving.faiss_index import FaissIndex

    rec = Recommender.load(_bundle(tmp_path / "bundle", preference))
    users = ["u00", "somebody-new", "u03", "another-new"]
    exact_ids, exact_scores = rec.recommend(users, k=5, on_unknown="fallback")
    rec.index = FaissIndex(rec, kind=kind)
    ids, scores = rec.recommend(users, k=5, on_unknown="fallback")
    np.testing.assert_array_equal(ids, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    if preference:  # the fallback is popularity: the most seen items first, with their counts as scores
        order = np.argsort(-rec.item_popularity, kind="stable")[:5]
        assert list(ids[1]) == list(rec.item_ids[order]) and list(ids[3]) == list(ids[1])
        assert scores[1].tolist() == rec.item_popularity[order].tolist() and scores[1][0] > 0


def test_unknown_user_of_a_preference_bundle_with_an_index_of_known_items_only(tmp_path):
    """include_cold=False: the popularity list keeps to the candidates, as the exact path does."""
    pytest.importorskip("faiss")
    from visrec.serving.faiss_index import FaissIndex

    rec = Recommender.load(_bundle(tmp_path / "bundle", preference=True, seed=3))
    exact = rec.recommend(["nobody"], k=ITEMS + 3, include_cold=False, on_unknown="fallback")
    rec.index = FaissIndex(rec, kind="flat", include_cold=False)
    got = rec.recommend(["nobody"], k=ITEMS + 3, include_cold=False, on_unknown="fallback")
    assert list(got[0][0]) == list(exact[0][0]) and got[0][0][-1] is None  # padded past the catalog
    np.testing.assert_array_equal(got[1], exact[1])
