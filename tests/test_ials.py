"""model=ials: the exact ALS solver, and the model through the whole pipeline (train, checkpoint, test,
evaluate.py, export, serving) like biased MF, with ranking metrics and no rating metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from visrec.models.ials_solver import CSR, solve_rows, weighted_loss
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


def test_ddp_is_refused_before_any_process_is_launched(tmp_path):
    with pytest.raises(ValueError, match=r"IALSModule trains in a single process"):
        train(compose_train([*IALS, "trainer=ddp_cpu"], tmp_path))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_ials_options_are_checked_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"model\.unobserved_weight must be"):
        train(compose_train([*IALS, "model.unobserved_weight=-1"], tmp_path))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_ials_refuses_ddp():
    from types import SimpleNamespace

    from visrec.models import IALSModule

    model = IALSModule(num_users=3, num_items=2, k=2)
    model.trainer = SimpleNamespace(world_size=2)  # what Lightning attaches
    with pytest.raises(ValueError, match="single process"):
        model.setup("fit")


@pytest.mark.parametrize("with_prior", [False, True])
def test_conjugate_gradient_converges_to_the_exact_solve(with_prior):
    from visrec.models.ials_solver import solve_rows_cg

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
