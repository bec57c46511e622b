"""BaselineOnly (model=bias_only): the ALS updates against a hand-computed case and the exact minimizer,
option checks naming the key, and the model stopping itself after model.n_epochs."""
from __future__ import annotations

import pytest
import torch

from visrec.models.factor.baseline_only import BaselineOnly, als_biases
from visrec.pipeline.training import train

from conftest import compose_train


def test_one_als_epoch_matches_the_hand_computed_biases():
    # Ratings (u, i, r): (0, 0, 5), (0, 1, 3), (1, 0, 4); μ = 4, λ_u = λ_i = 1; item 2 has no rating.
    users, items, ratings = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]), torch.tensor([5.0, 3.0, 4.0])
    b_u, b_i = als_biases(users, items, ratings, 2, 3, 4.0, 1.0, 1.0, torch.zeros(2, dtype=torch.float64))
    # b_i0 = (1 + 0) / (1 + 2), b_i1 = -1 / (1 + 1); then b_u0 = ((1 - 1/3) + (-1 + 1/2)) / 3, b_u1 = (0 - 1/3) / 2.
    torch.testing.assert_close(b_i, torch.tensor([1 / 3, -1 / 2, 0.0], dtype=torch.float64))
    torch.testing.assert_close(b_u, torch.tensor([1 / 18, -1 / 6], dtype=torch.float64))


def test_without_penalty_an_item_without_ratings_gets_zero_not_nan():
    b_u, b_i = als_biases(torch.tensor([0]), torch.tensor([0]), torch.tensor([4.0]), 2, 2, 3.0, 0.0, 0.0,
                          torch.zeros(2, dtype=torch.float64))
    assert torch.isfinite(b_u).all() and torch.isfinite(b_i).all()
    assert b_i[1] == 0 and b_u[1] == 0


def test_als_converges_to_the_minimizer_of_the_regularized_objective():
    gen = torch.Generator().manual_seed(0)
    U, N, R = 7, 5, 25
    users, items = torch.randint(U, (R,), generator=gen), torch.randint(N, (R,), generator=gen)
    ratings = torch.randint(1, 6, (R,), generator=gen).double()
    mu, reg_u, reg_i = float(ratings.mean()), 1.5, 0.7
    b_u, b_i = als_biases(users, items, ratings, U, N, mu, reg_u, reg_i, torch.zeros(U, dtype=torch.float64), n_epochs=500)
    # Normal equations of Σ (r - μ - b_u - b_i)² + λ_u Σ b_u² + λ_i Σ b_i² over x = [b_u; b_i].
    X = torch.zeros(R, U + N, dtype=torch.float64)
    X[torch.arange(R), users] = 1.0
    X[torch.arange(R), U + items] = 1.0
    penalty = torch.diag(torch.cat([torch.full((U,), reg_u), torch.full((N,), reg_i)]).double())
    exact = torch.linalg.solve(X.T @ X + penalty, X.T @ (ratings - mu))
    torch.testing.assert_close(torch.cat([b_u, b_i]), exact, atol=1e-8, rtol=0)


@pytest.mark.parametrize("key, value", [("reg_user", -1.0), ("reg_item", float("nan")), ("n_epochs", 0), ("n_epochs", 2.5)])
def test_bad_options_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"model.{key}"):
        BaselineOnly(num_users=3, num_items=3, global_mean=3.0, **{key: value})


def test_training_runs_n_epochs_als_epochs_then_stops(tmp_path):
    metrics = train(compose_train(["model=bias_only", "model.n_epochs=2", "trainer.max_epochs=6", "logger=none",
                                   "evaluate=false"], tmp_path))
    assert metrics["epochs"] == 2
    assert metrics["test/rmse"] < 1.5
