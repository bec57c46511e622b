"""Explicit ALS for biased MF (model=als): each half-sweep is the exact minimiser, the loss never rises, CG
reaches the exact solve, and the model trains, checkpoints and refuses what it cannot do at set-up."""
from __future__ import annotations

import pytest
import torch

from visrec.interactions import Interactions
from visrec.models.factor.als import ExplicitALS
from visrec.models.ials.solver import CSR, solve_rows, solve_rows_cg
from visrec.pipeline.training import train

from conftest import compose_train


def small_problem(seed=0, U=30, N=20, K=3, R=250):
    g = torch.Generator().manual_seed(seed)
    cells = torch.randperm(U * N, generator=g)[:R]
    users, items = cells // N, cells % N
    ratings = torch.randint(1, 6, (R,), generator=g).float()
    model = ExplicitALS(U, N, k=K, global_mean=float(ratings.mean()), rating_min=1.0, rating_max=5.0, reg_factors=0.1,
                        reg_bias=0.2, reg_exponent=1.0)
    train_part = Interactions(users, items, ratings)
    model.set_train_counts(torch.bincount(users, minlength=U), torch.bincount(items, minlength=N))
    model.prepare(train_part)
    return model, train_part


def objective(model: ExplicitALS, part: Interactions) -> float:
    """L of the module docstring, computed directly from the tables."""
    net = model.net
    pred = net.global_mean + net.user_bias.weight[part.users, 0] + net.item_bias.weight[part.items, 0] + (
        net.user_factors.weight[part.users] * net.item_factors.weight[part.items]).sum(-1)
    n_u = torch.bincount(part.users, minlength=net.num_users).clamp(min=1).float()
    n_i = torch.bincount(part.items, minlength=net.num_items).clamp(min=1).float()
    l2 = (n_u * (model.reg_factors * net.user_factors.weight.pow(2).sum(-1) + model.reg_bias * net.user_bias.weight[:, 0].pow(2))).sum()
    l2 += (n_i * (model.reg_factors * net.item_factors.weight.pow(2).sum(-1) + model.reg_bias * net.item_bias.weight[:, 0].pow(2))).sum()
    return float((pred - part.ratings).pow(2).sum() + l2)


def test_a_user_half_sweep_zeroes_the_gradient_of_the_objective_in_every_user():
    model, part = small_problem()
    with torch.no_grad():
        users = model._solve_side("user", model.net.item_bias.weight.detach()[:, 0], model.net.item_factors.weight.detach(),
                                  model.net.user_factors.weight.detach(), model.net.user_bias.weight.detach()[:, 0])
        model.net.user_factors.weight.copy_(users[:, :-1])
        model.net.user_bias.weight.copy_(users[:, -1:])
    model.net.requires_grad_(True)  # for autograd's check only (the model solves, it never steps on gradients)
    with torch.enable_grad():
        net = model.net
        pred = net.global_mean + net.user_bias.weight[part.users, 0] + net.item_bias.weight[part.items, 0] + (
            net.user_factors.weight[part.users] * net.item_factors.weight[part.items]).sum(-1)
        n_u = torch.bincount(part.users, minlength=net.num_users).clamp(min=1).float()
        loss = (pred - part.ratings).pow(2).sum() + (n_u * (model.reg_factors * net.user_factors.weight.pow(2).sum(-1)
                                                            + model.reg_bias * net.user_bias.weight[:, 0].pow(2))).sum()
        loss.backward()
    assert net.user_factors.weight.grad.abs().max() < 1e-3 and net.user_bias.weight.grad.abs().max() < 1e-3


def test_the_loss_never_rises_and_the_logged_loss_is_the_objective():
    model, part = small_problem(seed=1)
    before = objective(model, part)
    losses = []
    for _ in range(8):
        reported = model.sweep()
        losses.append(objective(model, part))
        assert reported == pytest.approx(losses[-1] / len(part), rel=1e-4)
    assert losses[0] < before
    assert all(b <= a * (1 + 1e-5) for a, b in zip(losses, losses[1:]))


def test_conjugate_gradient_reaches_the_exact_solve_with_targets_and_a_diagonal_penalty():
    g = torch.Generator().manual_seed(2)
    rows, cols = torch.randint(0, 15, (120,), generator=g), torch.randint(0, 10, (120,), generator=g)
    pairs = torch.unique(rows * 10 + cols)
    table = CSR.from_pairs(pairs // 10, pairs % 10, torch.ones(len(pairs)), 15, 10)
    fixed = torch.randn(10, 4, generator=g)
    targets = torch.randn(len(pairs), generator=g)
    penalty = torch.rand(15, 4, generator=g) + 0.1  # (R, K): a different λ per coordinate
    exact = solve_rows(table, fixed, penalty, 0.0, targets=targets)
    approx = solve_rows_cg(table, fixed, penalty, 0.0, torch.zeros(15, 4), steps=8, targets=targets)
    torch.testing.assert_close(approx, exact, atol=1e-4, rtol=1e-4)
    # The normal equations, row by row: (Σ z zᵀ + diag λ) x = Σ t z.
    dense_rows = torch.repeat_interleave(torch.arange(15), table.counts())
    for r in (0, 7, 14):
        z = fixed[table.indices[dense_rows == r]]
        system = z.T @ z + torch.diag(penalty[r])
        torch.testing.assert_close(system @ exact[r], z.T @ targets[dense_rows == r], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("options, key", [(["model.visual_mode=reg"], "model.visual_mode"), (["model.reg_bias=0"], "model.reg_bias"),
                                          (["model.solver=lu"], "model.solver"), (["model.epoch_unit=third"], "model.epoch_unit")])
def test_what_model_als_cannot_do_is_refused_at_set_up(tmp_path, options, key):
    with pytest.raises(Exception) as error:
        train(compose_train(["model=als", "model.k=4", *options, "trainer.max_epochs=1", "logger=none"], tmp_path))
    assert key in str(error.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_half_sweep_epochs_alternate_users_and_items(tmp_path):
    """epoch_unit=half_sweep: 2n epochs are n sweeps exactly; an odd count ends after a user half (another model)."""
    def fit(unit, epochs):
        return train(compose_train(["model=als", "model.k=4", f"model.epoch_unit={unit}", f"trainer.max_epochs={epochs}",
                                    "callbacks=none", "logger=none", "evaluate=false"], tmp_path / f"{unit}{epochs}"))

    sweeps, halves, odd = fit("sweep", 2), fit("half_sweep", 4), fit("half_sweep", 3)
    assert halves["test/rmse"] == pytest.approx(sweeps["test/rmse"], rel=1e-6)
    assert halves["train/loss"] == pytest.approx(sweeps["train/loss"], rel=1e-6)
    assert abs(odd["test/rmse"] - sweeps["test/rmse"]) > 1e-4


def test_als_trains_tests_and_fits_the_cold_head(tmp_path):
    metrics = train(compose_train(["model=als", "model.k=4", "trainer.max_epochs=4", "logger=none"], tmp_path))
    assert metrics["epochs"] == 4 and 0 < metrics["test/rmse"] < 2.0
    assert metrics["train/mse"] < metrics["train/loss"]


@pytest.mark.parametrize("case", ["ials", "targets", "prior", "per-coordinate", "explicit", "explicit-offsets"])
def test_the_compiled_row_by_row_cg_equals_the_whole_table_torch_cg(case):
    """The CPU path (numba, each row's iterations together) and the torch path (the whole table per
    iteration, what a GPU runs) take the same CG steps."""
    g = torch.Generator().manual_seed(3)
    R, C, K = 200, 120, 8
    pairs = torch.unique(torch.randint(0, R * C, (3000,), generator=g))
    table = CSR.from_pairs(pairs // C, pairs % C, torch.rand(len(pairs), generator=g) + 0.5, R, C)
    fixed, start = torch.randn(C, K, generator=g), torch.randn(R, K, generator=g)
    options = {"penalty": torch.rand(R, generator=g) + 0.1}
    if case == "targets":
        options["targets"] = torch.randn(len(pairs), generator=g)
    if case == "prior":
        options.update(prior_mean=torch.randn(R, K, generator=g), prior_weight=torch.rand(R, generator=g))
    if case == "per-coordinate":
        options.update(penalty=torch.rand(R, K, generator=g) + 0.1, targets=torch.randn(len(pairs), generator=g))
    alpha0 = 0.3
    if case == "explicit":  # explicit ALS: no all-cells term (the kernel then skips the Gramian)
        options.update(penalty=torch.rand(R, K, generator=g) + 0.1, targets=torch.randn(len(pairs), generator=g))
        alpha0 = 0.0
    if case == "explicit-offsets":  # targets t_rc − o_c, the offsets (the other side's biases) subtracted per cell
        options.update(penalty=torch.rand(R, K, generator=g) + 0.1, targets=torch.randn(len(pairs), generator=g),
                       target_offsets=torch.randn(C, generator=g))
        alpha0 = 0.0
    penalty = options.pop("penalty")
    compiled = solve_rows_cg(table, fixed, penalty, alpha0, start, 3, compiled=True, **options)
    whole = solve_rows_cg(table, fixed, penalty, alpha0, start, 3, compiled=False, **options)
    torch.testing.assert_close(compiled, whole, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(compiled, start)
    if case == "explicit-offsets":  # the same as subtracting them from the targets first
        offsets = options.pop("target_offsets")
        options["targets"] = options["targets"] - offsets[table.indices]
        torch.testing.assert_close(compiled, solve_rows_cg(table, fixed, penalty, alpha0, start, 3, compiled=True, **options),
                                   atol=1e-5, rtol=1e-5)


def test_the_sketch_start_spans_the_item_space_of_the_ratings_and_is_drawn_from_the_seed():
    """model.init=sketch: for ratings whose residuals r − μ are exactly rank 2 on every cell, the K = 2 start
    spans the true item factors' column space (the randomized range finder recovers it), with entries of
    standard deviation init_std, the same for the same seed."""
    g = torch.Generator().manual_seed(5)
    U, N = 40, 25
    A, B = torch.randn(U, 2, generator=g), torch.randn(N, 2, generator=g)
    B = B - B.mean(0)  # residuals of mean 0: r − μ = A Bᵀ exactly
    users, items = torch.arange(U).repeat_interleave(N), torch.arange(N).repeat(U)
    ratings = 3.0 + (A @ B.T).reshape(-1)  # (U·N,) every cell observed
    model = ExplicitALS(U, N, k=2, global_mean=float(ratings.mean()), rating_min=-100.0, rating_max=100.0, init_std=0.01)
    model.prepare(Interactions(users, items, ratings))
    torch.manual_seed(7)
    start = model.sketch_start(U, N, 2, "cpu")
    projector = B @ torch.linalg.pinv(B)  # (N, N) onto span(B)
    assert torch.linalg.norm(start - projector @ start) < 1e-4 * torch.linalg.norm(start)
    assert float(start.std()) == pytest.approx(0.01, rel=1e-4)
    torch.manual_seed(7)
    assert torch.equal(model.sketch_start(U, N, 2, "cpu"), start)
    assert model.sketch_start(U, N, 41, "cpu") is None  # K > min(U, N): the random start is kept


def test_the_first_sweep_from_the_sketch_fits_the_data_where_a_random_start_fits_random_directions():
    """The first user half-sweep fits the users to the start's item vectors: random ones (a random start) or
    the directions the ratings span (the sketch), so after one sweep the sketch's training error is far lower."""
    g = torch.Generator().manual_seed(2)
    U, N, K = 300, 120, 4
    A, B = torch.randn(U, K, generator=g), torch.randn(N, K, generator=g)
    cells = torch.randperm(U * N, generator=g)[: U * N // 3]
    users, items = cells // N, cells % N
    ratings = 3.0 + (A[users] * B[items]).sum(-1)
    part = Interactions(users, items, ratings)
    errors = {}
    for init in ("random", "sketch"):
        torch.manual_seed(0)
        model = ExplicitALS(U, N, k=K, global_mean=float(ratings.mean()), rating_min=-100.0, rating_max=100.0,
                            init=init, reg_factors=0.05, reg_bias=0.05, init_std=0.1)
        model.prepare(part)
        model._sketch_pending = init == "sketch"
        model._log_sweep = lambda *args: 0.0
        model.sweep()
        net = model.net
        pred = net.global_mean + net.user_bias.weight[users, 0] + net.item_bias.weight[items, 0] + (
            net.user_factors.weight[users] * net.item_factors.weight[items]).sum(-1)
        errors[init] = float((pred - ratings).pow(2).mean())
    assert errors["sketch"] < 0.5 * errors["random"], errors


def test_an_unknown_init_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"model\.init must be one of"):
        ExplicitALS(4, 4, k=2, init="svd")
