"""User kNN (model=user_knn, Surprise's KNNWithMeans): similarities and predictions against hand-computed
values, the vectorized neighbour selection against a plain loop, blocks, fallbacks and option checks."""
from __future__ import annotations

import math

import pytest
import torch

from visrec.models.knn import UserKNNScoring, user_similarities
from visrec.models.user_knn_module import UserKNN

# u0: i0=5, i1=3 | u1: i0=4, i1=2, i2=5 | u2: i0=1, i2=2 | u3: no rating; item 3: no rating.
USERS, ITEMS = torch.tensor([0, 0, 1, 1, 1, 2, 2]), torch.tensor([0, 1, 0, 1, 2, 0, 2])
RATINGS = torch.tensor([5.0, 3.0, 4.0, 2.0, 5.0, 1.0, 2.0])
MEANS = (4.0, 11 / 3, 1.5)
COS01 = 26 / math.sqrt(34 * 20)  # over co-rated {i0, i1}: (5·4 + 3·2) / sqrt((25 + 9)(16 + 4))


def fitted(**options) -> UserKNNScoring:
    model = UserKNNScoring(4, 4, global_mean=float(RATINGS.mean()), rating_min=1.0, rating_max=5.0, **options)
    model.set_train_counts(torch.bincount(USERS, minlength=4).float(), torch.bincount(ITEMS, minlength=4).float())
    model.fit(USERS, ITEMS, RATINGS)
    return model


def sparse_ratings():
    return torch.sparse_coo_tensor(torch.stack([USERS, ITEMS]), RATINGS, (4, 4)).coalesce()


def test_cosine_and_pearson_over_co_rated_items():
    block = sparse_ratings().to_dense()[:1]  # u0
    cos = user_similarities(block, sparse_ratings(), "cosine")[0]
    torch.testing.assert_close(cos, torch.tensor([1.0, COS01, 1.0, 0.0]))  # u2 shares only i0: 5·1 / sqrt(25·1)
    pearson = user_similarities(block, sparse_ratings(), "pearson")[0]
    torch.testing.assert_close(pearson, torch.tensor([1.0, 1.0, 0.0, 0.0]))  # (5, 3) vs (4, 2); one co-rated item: 0
    shrunk = user_similarities(block, sparse_ratings(), "cosine", shrinkage=1.0)[0]
    torch.testing.assert_close(shrunk, torch.tensor([2 / 3, COS01 * 2 / 3, 0.5, 0.0]))  # · n / (n + 1)
    support = user_similarities(block, sparse_ratings(), "cosine", min_support=2)[0]
    torch.testing.assert_close(support, torch.tensor([1.0, COS01, 0.0, 0.0]))


@pytest.mark.parametrize("options, expected", [
    ({}, 4 + (COS01 * (5 - 11 / 3) + 1.0 * (2 - 1.5)) / (COS01 + 1.0)),  # both raters of i2
    ({"k": 1}, 4 + (2 - 1.5)),  # the most similar rater only: u2 (1.0 > 0.997)
    ({"similarity": "pearson"}, 4 + (5 - 11 / 3)),  # u2's pearson is 0: u1 only (5.33, clipped by predict)
    ({"similarity": "pearson", "min_k": 2}, 4.0),  # fewer than min_k neighbours: μ_u
])
def test_knn_with_means_prediction(options, expected):
    model = fitted(**options)
    score = model.score_users(torch.tensor([0]))[0, 2]
    torch.testing.assert_close(score, torch.tensor(expected))
    torch.testing.assert_close(model.scorer().predict(torch.tensor([0]), torch.tensor([2])), torch.tensor([min(expected, 5.0)]))


def test_fallbacks_unknown_user_gets_the_global_mean_and_an_unrated_item_the_user_mean():
    model = fitted()
    scores = model.score_users(torch.tensor([3, 0]))
    torch.testing.assert_close(scores[0], torch.full((4,), float(RATINGS.mean())))
    assert float(scores[1, 3]) == pytest.approx(MEANS[0])
    assert torch.isfinite(scores).all()


def reference_scores(users, items, ratings, U, N, k, min_k, similarity):
    """KNNWithMeans by plain loops (Surprise's algorithm) on a dense similarity matrix."""
    dense = torch.sparse_coo_tensor(torch.stack([users, items]), ratings, (U, N)).coalesce()
    sim = user_similarities(dense.to_dense(), dense, similarity)
    R = dense.to_dense()
    means = [float(R[u][R[u] > 0].mean()) if (R[u] > 0).any() else None for u in range(U)]
    out = torch.zeros(U, N)
    for u in range(U):
        for i in range(N):
            raters = [(float(sim[u, v]), v) for v in range(U) if v != u and R[v, i] > 0 and sim[u, v] > 0]
            raters = sorted(raters, key=lambda t: (-t[0], t[1]))[:k]
            dev = sum(s * (float(R[v, i]) - means[v]) for s, v in raters)
            total = sum(s for s, _ in raters)
            out[u, i] = means[u] + (dev / total if len(raters) >= min_k and total > 0 else 0.0)
    return out


@pytest.mark.parametrize("similarity", ["cosine", "pearson"])
def test_vectorized_neighbours_match_a_plain_loop_in_small_blocks(similarity):
    gen = torch.Generator().manual_seed(0)
    U, N = 12, 9
    cells = torch.randperm(U * N, generator=gen)[:50]
    users, items = cells // N, cells % N
    users[:U], items[:U] = torch.arange(U), torch.arange(U) % N  # every user has a rating
    cells = torch.unique(users * N + items)
    users, items = cells // N, cells % N
    ratings = torch.randint(1, 6, (len(cells),), generator=gen).float()
    model = UserKNNScoring(U, N, global_mean=float(ratings.mean()), k=3, min_k=2, similarity=similarity, max_block_elements=40)
    model.set_train_counts(torch.bincount(users, minlength=U).float(), torch.bincount(items, minlength=N).float())
    model.fit(users, items, ratings)
    expected = reference_scores(users, items, ratings, U, N, 3, 2, similarity)
    torch.testing.assert_close(model.score_users(torch.arange(U)), expected, atol=1e-5, rtol=1e-5)


def test_checkpoint_state_restores_the_ratings_of_another_size():
    model = fitted()
    again = UserKNNScoring(4, 4, global_mean=0.0, rating_min=1.0, rating_max=5.0)
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again.score_users(torch.arange(4)), model.score_users(torch.arange(4)))


@pytest.mark.parametrize("key, value", [("k", 0), ("min_k", -1), ("similarity", "msd"), ("shrinkage", -1.0),
                                        ("min_support", 1.5), ("max_block_elements", 0)])
def test_bad_options_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"model.{key}"):
        UserKNN(num_users=3, num_items=3, global_mean=3.0, **{key: value})


def test_min_k_above_k_is_refused():
    with pytest.raises(ValueError, match="model.min_k=5 > model.k=2"):
        UserKNN(num_users=3, num_items=3, global_mean=3.0, k=2, min_k=5)
