"""Visual iALS (issue 28, part 3): model.visual_mode=offset, q_i = E f̃_i + v_i with iALS's item penalty on the
offset v_i, E refit in closed form each sweep (penalty chosen by leave-one-out with offset_penalty=auto)."""
from __future__ import annotations

import math

import pytest
import torch

from visrec.models.ials.module import IALSModule, ridge_leave_one_out
from visrec.pipeline.training import train

from conftest import compose_train

IALS = ["model=ials", "model.k=8", "trainer.max_epochs=4", "logger=none", "evaluate=false", "features=random"]


def test_leave_one_out_is_the_exact_held_out_error_and_drops_pictures_that_say_nothing():
    torch.manual_seed(0)
    x = torch.randn(200, 6, dtype=torch.float64)
    weight = torch.rand(200, dtype=torch.float64) + 0.5
    informative = x @ torch.randn(6, 3, dtype=torch.float64) + 0.3 * torch.randn(200, 3, dtype=torch.float64)
    noise = torch.randn(200, 3, dtype=torch.float64)
    penalty, tried = ridge_leave_one_out(x, informative, weight)
    assert math.isfinite(penalty)
    assert ridge_leave_one_out(x, noise, weight, grid=(1e-3, 1e-2, math.inf))[0] == math.inf  # E = 0: plain iALS
    # The closed-form leave-one-out error equals refitting without each row (checked on 10 rows).
    lam = tried[2][0]
    xw, yw = x * weight.sqrt()[:, None], informative * weight.sqrt()[:, None]
    closed = tried[2][1]
    direct = 0.0
    for i in range(200):
        keep = torch.arange(200) != i
        coef = torch.linalg.solve(xw[keep].T @ xw[keep] + lam * torch.eye(6, dtype=torch.float64), xw[keep].T @ yw[keep])
        direct += float((yw[i] - xw[i] @ coef).pow(2).sum())
    assert closed == pytest.approx(direct, rel=1e-8)


def test_with_no_picture_term_visual_ials_trains_exactly_as_plain_ials(tmp_path):
    plain = train(compose_train([*IALS, "model.visual_mode=none"], tmp_path / "a"))
    offset = train(compose_train([*IALS, "model.visual_mode=offset", "model.offset_penalty=inf",
                                  "model.offset_cold_scoring=projection"], tmp_path / "b"))
    assert offset["train/loss"] == pytest.approx(plain["train/loss"], rel=1e-5)
    assert offset["val/ndcg@10"] == pytest.approx(plain["val/ndcg@10"], rel=1e-6)


def test_head_trains_exactly_as_plain_ials(tmp_path):
    """The README's "warm metrics of head equal plain iALS" (issue 29, kind 8): extracting features (which
    builds a backbone from the global generator) must not change the initial weights."""
    plain = train(compose_train([*IALS, "model.visual_mode=none"], tmp_path / "a"))
    head = train(compose_train([*IALS, "model.visual_mode=head"], tmp_path / "b"))
    assert head["train/loss"] == pytest.approx(plain["train/loss"], rel=1e-6)
    assert head["val/ndcg@10"] == pytest.approx(plain["val/ndcg@10"], rel=1e-6)


def test_each_sweep_lowers_the_joint_objective():
    """Users, items (prior mean E f̃_i), then E in closed form: block coordinate descent on one objective, so the
    loss a sweep returns never increases (with a fixed λ_E; auto may change λ_E between sweeps)."""
    from visrec.interactions import Interactions

    torch.manual_seed(0)
    U, N, D = 40, 30, 12
    users, items = torch.randint(0, U, (300,)), torch.randint(0, N, (300,))
    keep = torch.unique(users * N + items)
    ratings = Interactions(keep // N, keep % N, torch.randint(1, 6, (len(keep),)).float())
    model = IALSModule(U, N, k=4, visual_mode="offset", feature_dim=D, visual_pca_dim=5, offset_penalty=1.0)
    model.net.set_train_counts(torch.bincount(ratings.users, minlength=U), torch.bincount(ratings.items, minlength=N))
    has_image = torch.rand(N) < 0.8
    model.attach_features(torch.randn(N, D), has_image)
    model._train = model.interactions(ratings)
    model._train_by_item = model._train.transpose()
    losses = [model.sweep() for _ in range(8)]
    assert all(later <= earlier * (1 + 1e-5) for earlier, later in zip(losses, losses[1:])), losses
    assert model.visual.projection.weight.abs().sum() > 0  # E was fitted


def test_visual_ials_learns_a_picture_term_and_scores_cold_items(tmp_path):
    train(compose_train([*IALS, "model.visual_mode=offset", "data/split=cold_item", "export=true"], tmp_path))
    from visrec.serving import Recommender

    rec = Recommender.load(tmp_path / "run" / "export")
    cold_with_image = ~rec.known_items & rec.bundle.arrays["has_image"]
    assert cold_with_image.any() and abs(rec.item_factors[cold_with_image]).sum() > 0


@pytest.mark.parametrize("key, value", [("offset_penalty", -1.0), ("offset_penalty", "often"), ("offset_cold_scoring", "zero")])
def test_offset_options_are_checked(key, value):
    with pytest.raises(ValueError, match=f"model.{key}"):
        IALSModule.check_options({"visual_mode": "offset", key: value})
