"""Hybrid (model=hybrid): the blend (1 − w)·MF + w·visual kNN, the choice of w on validation RMSE, the
no-validation refusal and option checks naming the key."""
from __future__ import annotations

import pytest
import torch

from visrec.models.hybrid.module import Hybrid

from test_visual_knn import FEATURES, ITEMS, MU, RATINGS, USERS, ALL


def built(**options) -> Hybrid:
    model = Hybrid(3, 4, k=2, global_mean=MU, rating_min=1.0, rating_max=5.0, feature_dim=2, knn_k=None,
                   knn_center=False, **options)
    model.set_train_counts(torch.bincount(USERS, minlength=3).float(), torch.bincount(ITEMS, minlength=4).float())
    model.knn.fit(USERS, ITEMS, RATINGS)
    model.attach_features(FEATURES, ALL)
    return model


def test_scores_and_predictions_are_the_blend_of_the_two_parts():
    model = built(blend_weight=0.3)
    users = torch.arange(3)
    mf = model.scorer().mf.score_users(users)  # (3, 4) MF part
    knn = model.knn.score_users(users)  # (3, 4) kNN part
    torch.testing.assert_close(model.scorer().score_users(users), 0.7 * mf + 0.3 * knn)
    pairs_u, pairs_i = torch.tensor([0, 1, 2, 1]), torch.tensor([3, 3, 0, 1])
    expected = (0.7 * mf + 0.3 * knn)[pairs_u, pairs_i].clamp(1, 5)
    torch.testing.assert_close(model.scorer().predict(pairs_u, pairs_i), expected)
    torch.testing.assert_close(model.predict_ratings(pairs_u, pairs_i), expected)  # what test_step scores


def test_w_is_chosen_on_validation_rmse_from_the_grid():
    model = built(blend_grid=[0.0, 0.5, 1.0])
    logged = {}
    model.log = lambda name, value, **_: logged.__setitem__(name, float(value))
    users, items = torch.tensor([0, 1, 0]), torch.tensor([2, 0, 1])  # warm pairs (items 0-2 have ratings)
    mf, knn = model.scorer().raw_parts(users, items)
    target = 0.5 * mf + 0.5 * knn  # ratings exactly halfway: w = 0.5 has zero error
    assert not torch.allclose(mf, knn)
    model.validation_step((users, items, target), 0)
    model.on_validation_epoch_end()
    assert float(model.blend_weight) == 0.5 and logged["val/blend_weight"] == 0.5
    assert logged["val/rmse"] == pytest.approx(0.0, abs=1e-6)
    model.validation_step((users, items, knn), 0)  # ratings = the kNN part: w = 1
    model.on_validation_epoch_end()
    assert float(model.blend_weight) == 1.0
    fixed = built(blend_weight=0.0, blend_grid=[0.0, 0.5, 1.0])
    fixed.log = lambda *a, **k: None
    fixed.validation_step((users, items, knn), 0)
    fixed.on_validation_epoch_end()
    assert float(fixed.blend_weight) == 0.0  # a fixed w is never re-chosen


def test_choosing_w_without_a_validation_part_is_refused_naming_the_key():
    from visrec.interactions import Interactions

    model = built()
    train = Interactions(USERS, ITEMS, RATINGS)
    with pytest.raises(ValueError, match="model.blend_weight"):
        model.check_training_data(train, Interactions(USERS[:0], ITEMS[:0], RATINGS[:0]))
    built(blend_weight=0.4).check_training_data(train, Interactions(USERS[:0], ITEMS[:0], RATINGS[:0]))


@pytest.mark.parametrize("key, value", [("blend_weight", 1.5), ("blend_grid", []), ("blend_grid", [0.2, -1.0]),
                                        ("knn_k", 0), ("knn_similarity", "pearson"), ("knn_min_similarity", "x")])
def test_bad_options_are_refused_naming_the_key(key, value):
    with pytest.raises(ValueError, match=f"model.{key}"):
        Hybrid.check_options({key: value})
