"""model=ials: the exact ALS solver, and the model through the whole pipeline (train, checkpoint, test,
evaluate.py, export, serving) like biased MF, with ranking metrics and no rating metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from visrec.models.ials.solver import CSR, solve_rows, weighted_loss
from visrec.pipeline.training import train

from conftest import compose_train


def _problem(seed=0, U=30, N=20, K=4):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(U, N, generator=g) < 0.3
    rows, cols = mask.nonzero(as_tuple=True)
    weights = 1 + torch.rand(len(rows), generator=g)
    dense = torch.zeros(U, N)
    dense[rows, cols] = weights
    return CSR.from_pairs(rows, cols, weights, U, N), dense, torch.randn(N, K, generator=g)


def test_csr_from_pairs_in_any_order():
    """Shuffled pairs give each row its columns and weights, in input order within the row (a stable sort), so a
    DDP process building its rows from a subset of the pairs lists them as the full table does."""
    g = torch.Generator().manual_seed(3)
    csr, dense, _ = _problem(3)
    rows = torch.repeat_interleave(torch.arange(csr.num_rows), csr.counts())
    order = torch.randperm(len(rows), generator=g)
    shuffled = CSR.from_pairs(rows[order], csr.indices[order], csr.weights[order], csr.num_rows, csr.num_cols)
    assert torch.equal(shuffled.indptr, csr.indptr)
    rebuilt = torch.zeros_like(dense)
    rebuilt[torch.repeat_interleave(torch.arange(csr.num_rows), shuffled.counts()), shuffled.indices] = shuffled.weights
    assert torch.equal(rebuilt, dense)
    for r in range(csr.num_rows):  # within row r: the input order of its pairs
        lo, hi = int(shuffled.indptr[r]), int(shuffled.indptr[r + 1])
        assert torch.equal(shuffled.indices[lo:hi], csr.indices[order][rows[order] == r])
    assert torch.equal(shuffled.transpose().transpose().indices, csr.indices)  # a transpose lists columns in order


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_csr_build_is_a_stable_sort_by_row_for_any_thread_count(threads):
    """The counting sort (visrec.models.ials.csr_kernel) cuts the input into one chunk per thread: the table
    must be the stable sort by row whatever the chunks, with rows left empty and rows given in any order."""
    from visrec.models.ials.csr_kernel import bucket_by_row

    g = torch.Generator().manual_seed(threads)
    rows = torch.randint(0, 40, (3000,), generator=g) * 2  # odd rows stay empty
    cols = torch.randint(0, 1000, (3000,), generator=g)
    weights = torch.rand(3000, generator=g)
    indptr, indices, values = bucket_by_row(rows.numpy(), cols.numpy(), weights.numpy(), 81, threads)
    order = torch.sort(rows, stable=True).indices
    assert np.array_equal(indptr[1:] - indptr[:-1], torch.bincount(rows, minlength=81).numpy())
    assert np.array_equal(indices, cols[order].numpy()) and np.array_equal(values, weights[order].numpy())
    with pytest.raises(ValueError, match=r"row indices must be in \[0, 81\)"):
        bucket_by_row(np.array([0, 81]), np.array([0, 1]), np.ones(2, np.float32), 81, threads)


def _dense_loss(P, Q, W, alpha0, penalty, prior_mean=None, prior_weight=None):
    S = P @ Q.T
    loss = (W * (1 - S) ** 2).sum() + alpha0 * (S ** 2).sum() + (penalty * (P ** 2).sum(1)).sum()
    if prior_mean is not None:
        loss = loss + (prior_weight * ((P - prior_mean) ** 2).sum(1)).sum()
    return loss


@pytest.mark.parametrize("with_prior", [False, True])
def test_a_half_sweep_is_the_exact_minimiser(with_prior):
    csr, W, Q = _problem()
    penalty = torch.rand(csr.num_rows) + 0.1
    prior_mean = torch.randn(csr.num_rows, Q.shape[1]) if with_prior else None
    prior_weight = torch.rand(csr.num_rows) if with_prior else None
    P = solve_rows(csr, Q, penalty, 0.3, prior_mean, prior_weight, max_block_elements=7 * 16)  # several blocks
    P = P.clone().requires_grad_(True)
    _dense_loss(P, Q, W, 0.3, penalty, prior_mean, prior_weight).backward()
    assert P.grad.norm() < 1e-3  # the gradient of the all-cells loss vanishes at the solution


def test_the_logged_loss_is_the_all_cells_loss():
    csr, W, Q = _problem(1)
    P = torch.randn(csr.num_rows, Q.shape[1])
    row_penalty, col_penalty = torch.rand(csr.num_rows), torch.rand(len(Q))
    expected = _dense_loss(P, Q, W, 0.2, row_penalty) + (col_penalty * (Q ** 2).sum(1)).sum()
    assert weighted_loss(csr, P, Q, 0.2, row_penalty, col_penalty) == pytest.approx(float(expected), rel=1e-5)


def test_alternating_sweeps_never_increase_the_loss():
    csr, W, Q = _problem(2)
    by_col = csr.transpose()
    row_pen, col_pen = torch.full((csr.num_rows,), 0.5), torch.full((len(Q),), 0.5)
    losses = []
    for _ in range(6):
        P = solve_rows(csr, Q, row_pen, 0.1)
        Q = solve_rows(by_col, P, col_pen, 0.1)
        losses.append(weighted_loss(csr, P, Q, 0.1, row_pen, col_pen))
    assert all(b <= a * (1 + 1e-5) for a, b in zip(losses, losses[1:]))


IALS = ["model=ials", "model.k=8", "trainer.max_epochs=4", "logger=none"]


@pytest.fixture(scope="module")
def ials_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ials")
    metrics = train(compose_train([*IALS, "export=true"], tmp))
    return tmp / "run", metrics


def test_ials_trains_checkpoints_and_reports_ranking_not_rating_metrics(ials_run):
    run, metrics = ials_run
    assert {"test/ndcg@10", "test/recall@10", "val/ndcg@10_best"} <= set(metrics) and "test/rmse" not in metrics
    assert (run / "checkpoints" / "best.ckpt").is_file()
    report = json.loads((run / "eval" / "best_test_all" / "metrics.json").read_text())["metrics"]
    assert "model/warm/ndcg@10" in report and "model/warm/rmse" not in report  # preferences are not ratings
    assert report["model/warm/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"], rel=1e-5)  # one evaluator


def test_evaluate_py_and_the_bundle_work_for_ials(ials_run):
    from test_evaluate import compose_evaluate
    from visrec.pipeline.evaluation import evaluate_run
    from visrec.serving import Recommender

    run, metrics = ials_run
    report = evaluate_run(compose_evaluate(run, []))
    assert report.flat()["model/warm/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"], rel=1e-5)
    rec = Recommender.load(run / "export")
    assert rec.score_kind == "preference" and rec.bundle.manifest["rating_range"] is None
    user = rec.user_ids[0]
    items, scores = rec.recommend([user], k=5)
    again = rec.score(user, list(items[0]))
    np.testing.assert_allclose(again, scores[0], rtol=1e-5)


def test_ials_with_the_visual_prior_scores_cold_items_from_their_picture(tmp_path):
    train(compose_train([*IALS, "model.visual_mode=reg", "features=random", "data/split=cold_item", "export=true"], tmp_path))
    from visrec.serving import Recommender

    rec = Recommender.load(tmp_path / "run" / "export")
    cold_with_image = ~rec.known_items & rec.bundle.arrays["has_image"]
    assert cold_with_image.any()
    assert np.abs(rec.item_factors[cold_with_image]).sum() > 0  # E f̃_i + e, not the zero fallback


def test_no_interaction_above_the_threshold_is_an_error_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"no training interaction with a rating >= 99"):
        train(compose_train([*IALS, "model.positive_threshold=99"], tmp_path))
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused when the model is built, before anything is written


def test_ddp_with_a_visual_mode_that_refits_from_every_item_is_refused_before_any_process_is_launched(tmp_path):
    with pytest.raises(ValueError, match=r"model.visual_mode=offset trains in a single process"):
        train(compose_train([*IALS, "model.visual_mode=offset", "trainer=ddp_cpu"], tmp_path))
    assert not (tmp_path / "run").exists()  # refused from the config, before the data is read or anything written


def test_ials_options_are_checked_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"model\.unobserved_weight must be"):
        train(compose_train([*IALS, "model.unobserved_weight=-1"], tmp_path))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_ials_refuses_ddp_only_with_a_visual_mode_that_refits_from_every_item():
    from types import SimpleNamespace

    from visrec.models import IALSModule

    plain = IALSModule(num_users=3, num_items=2, k=2)
    plain.trainer = SimpleNamespace(world_size=2)  # what Lightning attaches
    plain.setup("fit")  # sharded sweeps: allowed
    model = IALSModule(num_users=3, num_items=2, k=2, visual_mode="offset", feature_dim=4)
    model.trainer = SimpleNamespace(world_size=2)
    with pytest.raises(ValueError, match="single process"):
        model.setup("fit")


@pytest.mark.parametrize("with_prior", [False, True])
def test_conjugate_gradient_converges_to_the_exact_solve(with_prior):
    from visrec.models.ials.solver import solve_rows_cg

    csr, _, Q = _problem(3)
    penalty = torch.rand(csr.num_rows) + 0.1
    prior_mean = torch.randn(csr.num_rows, Q.shape[1]) if with_prior else None
    prior_weight = torch.rand(csr.num_rows) if with_prior else None
    exact = solve_rows(csr, Q, penalty, 0.3, prior_mean, prior_weight)
    start = torch.zeros_like(exact)
    few = solve_rows_cg(csr, Q, penalty, 0.3, start, 1, prior_mean, prior_weight)
    many = solve_rows_cg(csr, Q, penalty, 0.3, start, Q.shape[1], prior_mean, prior_weight)  # K steps: exact in exact arithmetic
    assert (many - exact).norm() < 1e-3 * exact.norm()
    assert (few - exact).norm() > (many - exact).norm()


# ---- the cold-start head of visual_mode=head (visrec/models/visual/ials_head.py) -------------------------------
def _planted_cold_problem(seed=0, U=120, N=150, K=4, P=6):
    """Items whose true vectors are a linear function of their features, W* g_i; users P (U, K);
    interactions: each user's top cells of p_u · W* g_i plus noise. Returns CSR, P, features, W*."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(N, P, generator=g)
    true_w = torch.randn(K, 1 + P, generator=g) * 0.5
    users = torch.randn(U, K, generator=g)
    scores = users @ (torch.cat([torch.ones(N, 1), features], 1) @ true_w.T).T + 0.5 * torch.randn(U, N, generator=g)
    mask = scores > scores.quantile(0.85, dim=1, keepdim=True)
    rows, cols = mask.nonzero(as_tuple=True)
    weights = 1 + torch.rand(len(rows), generator=g)
    return CSR.from_pairs(rows, cols, weights, U, N), users, features, true_w


def test_the_ials_cold_head_is_the_exact_minimiser_of_the_all_cells_loss_of_items_as_if_cold():
    from visrec.models.visual.ials_head import fit_ials_cold_head

    csr, users, features, true_w = _planted_cold_problem()
    N, P = features.shape
    items = torch.ones(N, dtype=torch.bool)
    items[:10] = False  # not fitted on
    items &= torch.bincount(csr.indices, minlength=N) > 0  # items without interactions are never fitted on
    alpha0 = 0.3
    options = dict(component_choices=(P,), penalties=(1.0,))
    unscaled = fit_ials_cold_head(csr, users, features, items, alpha0, torch.zeros(users.shape[1]), **options)
    typical = 0.3 * unscaled.fitted_intercept  # a typical trained item vector at 0.3 of the fit's level
    fit = fit_ials_cold_head(csr, users, features, items, alpha0, typical, **options)
    torch.testing.assert_close(fit.vector_intercept, typical)  # the head scores with the trained items' intercept ...
    assert fit.scale == pytest.approx(0.3, rel=1e-4)  # ... and E shrunk by the same ratio
    torch.testing.assert_close(fit.projection, 0.3 * unscaled.projection)
    assert fit.factor_penalty == 1.0 and fit.components == P  # the planted signal is found by CV
    assert fit.cv_loss < fit.cv_loss_intercept_only
    # The dense loss of the fitted items, Σ_i Σ_u c_ui (t_ui − s_ui)² + α₀ s_ui² + λ_E ‖E‖², has zero gradient there.
    dense = torch.zeros(users.shape[0], N)
    users_of = torch.repeat_interleave(torch.arange(csr.num_rows), csr.counts())
    dense[users_of, csr.indices] = csr.weights
    W = torch.cat([fit.fitted_intercept[:, None], fit.projection / fit.scale], 1).double().requires_grad_(True)  # (K, 1 + P)
    g = torch.cat([torch.ones(N, 1), features], 1).double()[items]
    S = users.double() @ (g @ W.T).T  # (U, M)
    C = dense.double()[:, items]
    loss = (C * (1 - S) ** 2).sum() + alpha0 * (S ** 2).sum() + fit.factor_penalty * W[:, 1:].pow(2).sum()
    (grad,) = torch.autograd.grad(loss, W)
    assert float(grad.abs().max()) < 1e-3


def test_the_ials_cold_head_recovers_planted_item_vectors_and_drops_features_unrelated_to_the_items():
    from visrec.models.visual.ials_head import fit_ials_cold_head

    csr, users, features, true_w = _planted_cold_problem(seed=1)
    N = len(features)
    items = torch.arange(N) >= 30  # items 0..29 are held out: as if cold
    fit = fit_ials_cold_head(csr, users, features, items, 0.3, true_w[:, 0])
    predicted = features[:30] @ fit.projection.T  # (30, K) E f̃_i: what ranks cold items
    truth = features[:30] @ true_w[:, 1:].T
    cosine = torch.nn.functional.cosine_similarity(users @ predicted.T, users @ truth.T, dim=1)  # per user, over cold items
    assert float(cosine.mean()) > 0.8
    # The same rows dealt to the wrong items: CV finds nothing to gain over q_i = e (or shrinks E hard).
    shuffled = features[torch.randperm(N, generator=torch.Generator().manual_seed(0))]
    control = fit_ials_cold_head(csr, users, shuffled, items, 0.3, true_w[:, 0])
    assert control.factor_penalty is None or control.factor_penalty >= 1e4
    assert control.cv_loss > 0.99 * control.cv_loss_intercept_only


def test_ials_head_mode_trains_like_none_and_fits_the_cold_head_after_training(tmp_path):
    cold = [*IALS, "features=random", "data/split=cold_item", "export=true"]
    # reg with a zero pull trains exactly as none, after the same feature extraction (same random stream)
    plain = train(compose_train([*cold, "model.visual_mode=reg", "model.reg_visual=0"], tmp_path / "none"))
    head = train(compose_train([*cold, "model.visual_mode=head"], tmp_path / "head"))
    assert head["train/loss"] == pytest.approx(plain["train/loss"], rel=1e-6)  # the images never touch training
    assert "cold_head/components" in head and "cold_head/cv_loss_rms" in head
    from visrec.serving import Recommender

    rec = Recommender.load(tmp_path / "head" / "run" / "export")
    cold_with_image = ~rec.known_items & rec.bundle.arrays["has_image"]
    assert cold_with_image.any()
    assert np.abs(rec.item_factors[cold_with_image]).sum() > 0  # E f̃_i + e, not the zero fallback
