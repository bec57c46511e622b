"""Visual kNN (model=visual_knn: item-based KNNWithMeans on image similarity): similarities, threshold,
neighbours per item, scores and fallbacks against hand-computed values on 3 users x 4 items with hand-made
features; the vectorized blocks against a plain loop; option checks naming the key."""
from __future__ import annotations

import math

import pytest
import torch

from visrec.models.knn.visual_scoring import item_similarities
from visrec.models.knn.visual_module import VisualKNN

# u0: i0=5, i1=3 (μ=4) | u1: i0=4, i2=2 (μ=3) | u2: no rating. Item 3: no rating (cold), image present.
USERS, ITEMS = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 2])
RATINGS = torch.tensor([5.0, 3.0, 4.0, 2.0])
MU = 3.5
# Features: i0 = (1, 0), i1 = (0, 1), i2 = (1, 1), i3 = (1, 0.2).
FEATURES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.2]])
R2 = 1 / math.sqrt(2)  # cos(i0, i2) = cos(i1, i2)
C03, C13, C23 = 1 / math.sqrt(1.04), 0.2 / math.sqrt(1.04), 1.2 / math.sqrt(2 * 1.04)  # cos(i, i3)
ALL = torch.ones(4, dtype=torch.bool)


def fitted(features=FEATURES, has_image=ALL, center=False, **options) -> VisualKNN:
    model = VisualKNN(3, 4, MU, 1.0, 5.0, feature_dim=features.shape[1], center=center, **options)
    model.set_train_counts(torch.bincount(USERS, minlength=3).float(), torch.bincount(ITEMS, minlength=4).float())
    model.fit(USERS, ITEMS, RATINGS)
    model.attach_features(features, has_image)
    return model


def test_cosine_similarity_neighbours_exclude_self_and_items_without_ratings():
    S = item_similarities(FEATURES, ALL, candidates=torch.tensor([True, True, True, False]), k=None)
    expected = torch.tensor([[0.0, 0.0, R2, C03],   # cos(i0, i1) = 0 is not > min_similarity = 0
                             [0.0, 0.0, R2, C13],
                             [R2, R2, 0.0, C23],
                             [0.0, 0.0, 0.0, 0.0]])  # i3 has no rating: no one's neighbour
    torch.testing.assert_close(S, expected)


def test_euclidean_similarity_is_one_over_one_plus_distance():
    S = item_similarities(FEATURES, ALL, ALL, similarity="euclidean", k=None)
    torch.testing.assert_close(S[0, 1], torch.tensor(1 / (1 + math.sqrt(2))))
    torch.testing.assert_close(S[0, 3], torch.tensor(1 / 1.2))
    torch.testing.assert_close(S[2, 0], torch.tensor(0.5))  # ‖(1,1) − (1,0)‖ = 1
    assert torch.equal(S.diagonal(), torch.zeros(4))


def test_threshold_and_top_k_per_item():
    S = item_similarities(FEATURES, ALL, ALL, min_similarity=0.75, k=None)
    assert S[0, 2] == 0 and S[2, 1] == 0  # 0.707 <= 0.75: dropped
    torch.testing.assert_close(S[0, 3], torch.tensor(C03))
    S1 = item_similarities(FEATURES, ALL, ALL, k=1)
    assert torch.equal((S1 != 0).sum(0), torch.ones(4, dtype=torch.long))  # one neighbour per target item
    expected = torch.zeros(4, 4)
    expected[3, 0], expected[2, 1], expected[3, 2], expected[0, 3] = C03, R2, C23, C03  # each item's nearest
    torch.testing.assert_close(S1, expected)
    tied = item_similarities(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), ALL, ALL, k=1)
    assert tied[1, 0] > 0 and tied[2, 0] == 0 and tied[0, 2] > 0  # ties: the lower item index
    # No threshold: negative cosines count (with |s| in the denominator).
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    S_neg = item_similarities(opposite, ALL, ALL, min_similarity=None, k=None)
    torch.testing.assert_close(S_neg[0, 1], torch.tensor(-1.0))
    assert item_similarities(opposite, ALL, ALL, k=None)[0, 1] == 0


def test_scores_are_knn_with_means_on_image_similarity():
    scores = fitted(k=None).score_users(torch.tensor([0, 1]))
    # u0 (μ 4, deviations i0 +1, i1 −1); u1 (μ 3, deviations i0 +1, i2 −1).
    expected = torch.tensor([
        [4.0, 4.0, 4 + (R2 * 1 + R2 * -1) / (2 * R2), 4 + (C03 - C13) / (C03 + C13)],
        [3 + (R2 * -1) / R2, 3 + (R2 * -1) / R2, 3 + (R2 * 1) / R2, 3 + (C03 - C23) / (C03 + C23)],
    ])  # u0 on i0: its only rated neighbour-candidate i1 has cos 0 (dropped), i2 not rated by u0: μ_u
    torch.testing.assert_close(scores, expected)
    # Negative similarities with |s| in the denominator (no threshold).
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    neg = fitted(features=opposite, min_similarity=None, k=None).score_users(torch.tensor([0]))[0]
    torch.testing.assert_close(neg[3], torch.tensor(4 + (R2 * 1 + -R2 * -1) / (2 * R2)))  # i1 = −i0: counts against
    torch.testing.assert_close(neg[0], torch.tensor(4 + (-1.0 * -1) / 1.0))  # cos(i1, i0) = −1, u0's i1 deviation −1


def test_a_cold_item_with_an_image_is_scored_from_it_and_predict_clips():
    model = fitted(k=None)
    assert not bool(model.known_items[3])
    score = model.score_users(torch.tensor([1]))[0, 3]
    assert float(score) == pytest.approx(3 + (C03 - C23) / (C03 + C23)) and float(score) != 3.0
    # predict gathers the same rows, clipped to [1, 5].
    torch.testing.assert_close(model.scorer().predict(torch.tensor([1, 0]), torch.tensor([3, 3])),
                               model.score_users(torch.tensor([1, 0]))[[0, 1], [3, 3]].clamp(1, 5))


def test_fallbacks_unknown_user_item_without_image_and_no_neighbour():
    model = fitted(has_image=torch.tensor([True, True, True, False]), k=None)
    scores = model.score_users(torch.tensor([2, 0, 1]))
    torch.testing.assert_close(scores[0], torch.full((4,), MU))  # no training rating: μ everywhere
    torch.testing.assert_close(scores[1:, 3], torch.tensor([4.0, 3.0]))  # i3 has no image: μ_u
    high = fitted(min_similarity=0.99, k=None).score_users(torch.tensor([0, 1]))  # nothing passes: μ_u
    torch.testing.assert_close(high, torch.tensor([[4.0] * 4, [3.0] * 4]))
    assert torch.isfinite(scores).all()


def test_centring_is_fitted_on_training_items_and_kept_when_loading():
    model = fitted(center=True, k=None)
    torch.testing.assert_close(model.feature_mean, FEATURES[:3].mean(0))  # i3 is cold: not in the mean
    again = VisualKNN(3, 4, MU, 1.0, 5.0, feature_dim=2, center=True, k=None)
    again.load_state_dict(model.state_dict())
    again.attach_features(FEATURES + 1.0, ALL, fit=False)  # fit=False keeps the saved mean
    torch.testing.assert_close(again.feature_mean, model.feature_mean)
    model.attach_features(FEATURES, ALL, fit=False)
    centred = FEATURES - FEATURES[:3].mean(0)
    expected = item_similarities(centred, ALL, torch.tensor([True, True, True, False]), k=None)
    torch.testing.assert_close(model.neighbour_similarity, expected)


def reference_scores(model: VisualKNN, features: torch.Tensor, has_image: torch.Tensor) -> torch.Tensor:
    """The module docstring's formula by plain loops over users, target items and neighbours."""
    U, N = model.num_users, model.num_items
    R = torch.zeros(U, N)
    R[model.train_users, model.train_items] = model.train_ratings
    f = features - model.feature_mean if model.center else features
    out = torch.zeros(U, N)
    for j in range(N):
        cands = []
        for i in range(N):
            if i == j or not (has_image[i] and has_image[j] and model.item_counts[i] > 0):
                continue
            s = float(f[i] @ f[j] / (f[i].norm() * f[j].norm()))
            if model.min_similarity is None or s > model.min_similarity:
                cands.append((s, i))
        neighbours = sorted(cands, key=lambda t: (-t[0], t[1]))[:model.k or N]
        for u in range(U):
            if model.user_counts[u] == 0:
                out[u, j] = float(model.global_mean)
                continue
            mu = float(R[u][R[u] > 0].mean())
            num = sum(s * (float(R[u, i]) - mu) for s, i in neighbours if R[u, i] > 0)
            den = sum(abs(s) for s, i in neighbours if R[u, i] > 0)
            out[u, j] = mu + (num / den if den > 0 else 0.0)
    return out


@pytest.mark.parametrize("options", [dict(k=3, min_similarity=0.0), dict(k=None, min_similarity=None), dict(k=1, min_similarity=-0.2)])
def test_vectorized_blocks_match_a_plain_loop(options):
    gen = torch.Generator().manual_seed(0)
    U, N, D = 7, 9, 5
    cells = torch.randperm(U * N, generator=gen)[:30]
    users, items = cells // N, cells % N
    ratings = torch.randint(1, 6, (30,), generator=gen).float()
    features = torch.randn(N, D, generator=gen)
    has_image = torch.ones(N, dtype=torch.bool)
    has_image[4] = False
    model = VisualKNN(U + 1, N, float(ratings.mean()), 1.0, 5.0, feature_dim=D, max_block_elements=20, **options)
    model.set_train_counts(torch.bincount(users, minlength=U + 1).float(), torch.bincount(items, minlength=N).float())
    model.fit(users, items, ratings)
    model.attach_features(features, has_image)
    torch.testing.assert_close(model.score_users(torch.arange(U + 1)), reference_scores(model, features, has_image))


def test_scoring_without_features_is_refused():
    model = VisualKNN(3, 4, MU, feature_dim=2)
    model.set_train_counts(torch.ones(3), torch.ones(4))
    with pytest.raises(RuntimeError, match="attach_features"):
        model.score_users(torch.tensor([0]))
    with pytest.raises(ValueError, match="feature_dim"):
        model.attach_features(torch.zeros(4, 3), ALL)


@pytest.mark.parametrize("key, value", [("similarity", "pearson"), ("k", 0), ("k", 2.5), ("min_similarity", float("nan")),
                                        ("min_similarity", "high"), ("center", "yes"), ("max_block_elements", 0)])
def test_bad_options_are_refused_naming_the_key(key, value):
    with pytest.raises(ValueError, match=f"model.{key}"):
        VisualKNN.check_options({key: value})
    with pytest.raises(ValueError, match=f"model.{key}"):
        VisualKNN(3, 4, MU, feature_dim=2, **{key: value})
