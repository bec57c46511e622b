"""The closed-form cold-start head (visual_mode=head): normal equations, recovery, wiring, checkpoint."""
from __future__ import annotations

import json

import pytest
import torch

from visrec.interactions import Interactions
from visrec.models import RatingModule
from visrec.models.visual.rating_head import _normal_equations, _user_sums, fit_cold_head
from visrec.pipeline.evaluation import load_model, load_run_data, resolve_checkpoint
from visrec.pipeline.training import train

from conftest import compose_train


def test_per_user_normal_equations_equal_the_explicit_design_matrix():
    torch.manual_seed(0)
    U, N, K, P, R = 5, 7, 3, 2, 40
    users, items = torch.randint(0, U, (R,)), torch.randint(0, N, (R,))
    y, p, g = torch.randn(R), torch.randn(U, K), torch.cat([torch.ones(N, 1), torch.randn(N, P)], 1)  # g: (N, 1 + P)
    X = torch.cat([g[items], (p[users][:, :, None] * g[items][:, None, :]).reshape(R, -1)], 1).double()  # (R, D)
    G, b, yy = _normal_equations(p, _user_sums(users, g[items], y, U))
    torch.testing.assert_close(G, X.T @ X)
    torch.testing.assert_close(b, X.T @ y.double())
    assert yy == pytest.approx(float(y.double().pow(2).sum()))


def planted(noise=0.3, seed=0):
    """Ratings from a known head y = c + w·f + p_u·(E f + e) + noise on random users, items, features."""
    g = torch.Generator().manual_seed(seed)
    U, N, K, P, R = 150, 300, 3, 4, 20000
    f, p = torch.randn(N, P, generator=g), torch.randn(U, K, generator=g)
    E, e, w = torch.randn(K, P, generator=g) * 0.3, torch.randn(K, generator=g) * 0.3, torch.randn(P, generator=g) * 0.5
    users, items = torch.randint(0, U, (R,), generator=g), torch.randint(0, N, (R,), generator=g)
    y = 0.4 + f[items] @ w + (p[users] * (f[items] @ E.T + e)).sum(1) + noise * torch.randn(R, generator=g)
    return users, items, y, p, f, (E, e, w)


def test_recovers_a_planted_head_and_beats_the_intercept_only_model():
    users, items, y, p, f, (E, e, w) = planted()
    fit = fit_cold_head(users, items, y, p, f, component_choices=(2, 4))
    assert fit.components == 4 and fit.bias_penalty == 1.0 and fit.factor_penalty == 1.0
    assert fit.intercept == pytest.approx(0.4, abs=0.05)
    torch.testing.assert_close(fit.bias_weights, w, atol=0.05, rtol=0)
    torch.testing.assert_close(fit.vector_intercept, e, atol=0.05, rtol=0)
    torch.testing.assert_close(fit.projection, E, atol=0.05, rtol=0)
    assert fit.cv_rmse == pytest.approx(0.3, abs=0.03) and fit.cv_rmse_intercept_only > 1.0


def test_features_unrelated_to_the_ratings_are_shrunk_away():
    users, items, y, p, f, (_, _, w) = planted()
    shuffled = f[torch.randperm(len(f), generator=torch.Generator().manual_seed(1))]  # the wrong item's picture
    fit = fit_cold_head(users, items, y, p, shuffled, component_choices=(2, 4))
    assert fit.cv_rmse >= fit.cv_rmse_intercept_only - 0.01  # nothing to gain from the wrong pictures
    # The best grid setting's fold gain is not significant, so the head is intercept only: no picture term.
    assert not fit.pictures_supported and fit.cv_gain < 2.2 * fit.cv_gain_se
    assert fit.components == 0 and fit.factor_penalty is None
    assert fit.bias_weights.abs().max() == 0 and fit.projection.abs().max() == 0
    assert fit.cv_rmse == fit.cv_rmse_intercept_only


def test_the_pictures_are_kept_only_when_their_cross_validated_gain_is_significant():
    """A weak planted picture effect is kept (paired t over the folds), the same ratings with the pictures
    shuffled across items are not; the right pictures' fold gains are reported."""
    users, items, y, p, f, _ = planted(noise=1.0)
    fit = fit_cold_head(users, items, y, p, f, component_choices=(2, 4))
    assert fit.pictures_supported and fit.cv_gain > 3 * fit.cv_gain_se and fit.components > 0
    for seed in range(3):
        shuffled = f[torch.randperm(len(f), generator=torch.Generator().manual_seed(10 + seed))]
        assert not fit_cold_head(users, items, y, p, shuffled, component_choices=(2, 4)).pictures_supported


def head_module():
    torch.manual_seed(0)
    module = RatingModule(4, 6, k=2, global_mean=3.0, visual_mode="head", feature_dim=5, visual_pca_dim=3)
    module.set_train_counts(torch.tensor([3.0, 3.0, 2.0, 0.0]), torch.tensor([2.0, 2.0, 2.0, 2.0, 0.0, 0.0]))
    module.attach_features(torch.randn(6, 5), torch.tensor([True, True, True, True, True, False]))
    return module


def test_head_mode_trains_exactly_like_none_and_its_head_is_not_a_parameter_to_optimize():
    head = head_module()
    assert not any(p.requires_grad for p in head.visual.parameters())
    plain = RatingModule(4, 6, k=2, global_mean=3.0, visual_mode="none")
    plain.load_state_dict({k: v for k, v in head.state_dict().items() if k.startswith("net.")})
    batch = (torch.tensor([0, 1, 2]), torch.tensor([0, 1, 3]), torch.tensor([4.0, 2.0, 5.0]))
    torch.testing.assert_close(head.objective(*batch)["loss"], plain.objective(*batch)["loss"])


def test_fit_cold_head_sets_the_scores_of_cold_items():
    module = head_module()
    train_part = Interactions(torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0]), torch.tensor([0, 1, 1, 2, 2, 3, 3, 0, 0, 2]),
                              torch.tensor([4.0, 3.0, 2.0, 5.0, 4.0, 1.0, 2.0, 3.0, 5.0, 4.0]))
    fit = module.fit_cold_head(train_part, penalties=(1.0,), folds=2)
    visual, net = module.visual, module.net
    torch.testing.assert_close(visual.bias_projection.bias[0], torch.tensor(fit.intercept))
    torch.testing.assert_close(visual.projection.bias, fit.vector_intercept)
    f = visual.features[4]
    expected = 3.0 + net.user_bias.weight[0, 0] + fit.intercept + fit.bias_weights @ f \
        + net.user_factors.weight[0] @ (fit.projection @ f + fit.vector_intercept)
    assert module.rating_range is None  # no clipping in this module: the raw score is compared
    torch.testing.assert_close(module.predict_ratings(torch.tensor([0]), torch.tensor([4]))[0], expected)
    # Neither ratings nor image: still the bias-only fallback.
    torch.testing.assert_close(module.predict_ratings(torch.tensor([0]), torch.tensor([5]))[0], 3.0 + net.user_bias.weight[0, 0])


def test_training_fits_the_head_and_stores_it_in_the_tested_checkpoint(tmp_path):
    metrics = train(compose_train(["data/split=cold_item", "data.split.warm_test_ratio=0", "features=random", "model.visual_mode=head", "trainer.max_epochs=3",
                                   "evaluate=false"], tmp_path))
    assert metrics["cold_head/cv_rmse"] > 0 and metrics["test/ratings_cold"] > 0
    run = tmp_path / "run"
    model = load_model(load_run_data(run), resolve_checkpoint(run, "best"))
    assert model.visual.bias_projection.bias.abs().item() > 0  # the fitted intercept, not the zero init
    # The checkpoint reproduces the tested cold-item RMSE.
    test = load_run_data(run).parts["test"]
    with torch.no_grad():
        rmse = (model.predict_ratings(test.users, test.items) - test.ratings).pow(2).mean().sqrt()
    saved = json.loads((run / "metrics.json").read_text())
    assert float(rmse) == pytest.approx(saved["test/rmse_cold"], abs=1e-4)


def test_no_training_item_with_an_image_leaves_the_fallback_and_does_not_crash():
    module = head_module()
    module.visual.has_image[:4] = False  # only the cold item 4 has a picture
    train_part = Interactions(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([4.0, 2.0, 5.0]))
    assert module.finish_training(train_part) == {"cold_head/components": 0}
    assert not module.weights_changed  # nothing for the pipeline to store
    assert module.visual.bias_projection.bias.item() == 0.0
    with pytest.raises(ValueError, match="no training ratings of items with an image"):
        module.fit_cold_head(train_part)
