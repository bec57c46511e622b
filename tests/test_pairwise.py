"""BPR and VBPR (visrec/models/pairwise): the negatives they sample, the loss they minimise, steps that touch
only the batch's rows, the cold head a bundle serves, bad options refused by key, and DDP on CPU."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visrec.models.pairwise.module import BPR, VBPR
from visrec.models.pairwise.sampling import NegativeSampler
from visrec.pipeline.training import train
from visrec.serving import Recommender

from conftest import REPO, TINY_GENERATOR, compose_train


def test_negatives_are_candidates_the_user_has_not_interacted_with():
    users = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2])
    items = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    candidates = torch.tensor([True, True, True, True, True, False])  # item 5: no training interaction
    sampler = NegativeSampler(users, items, 6, candidates)
    batch = torch.tensor([0, 1] * 500)
    negatives, valid = sampler.sample(batch, torch.Generator().manual_seed(0))
    assert bool(valid.all())
    assert set(negatives[batch == 0].tolist()) == {3, 4}  # never its own items 0-2, never item 5
    assert set(negatives[batch == 1].tolist()) == {0, 1, 2, 4}
    # A user who has interacted with every candidate gets no triple (valid False), never one of their own items.
    sampler = NegativeSampler(torch.tensor([3, 3]), torch.tensor([0, 1]), 2, torch.tensor([True, True]))
    _, valid = sampler.sample(torch.tensor([3, 3, 3]))
    assert not bool(valid.any())


def _vbpr(**options) -> VBPR:
    model = VBPR(num_users=6, num_items=5, k=3, k2=2, feature_dim=4, visual_pca_dim=4, **options)
    model.set_train_counts(torch.ones(6), torch.ones(5))
    features = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    model.attach_features(features, torch.ones(5, dtype=torch.bool))
    return model


def test_the_loss_is_bpr_opt_with_cornacs_regularization():
    model = _vbpr(lambda_w=0.1, lambda_b=0.2, lambda_e=0.3)
    u, i, j = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]), torch.tensor([4, 0, 1])
    net, visual = model.net, model.visual
    with torch.no_grad():
        net.item_bias.weight.normal_()
        visual.bias_projection.weight.normal_()
    gu, gi, gj = net.user_factors.weight[u], net.item_factors.weight[i], net.item_factors.weight[j]
    bi, bj = net.item_bias.weight[i, 0], net.item_bias.weight[j, 0]
    tu, E, bp = model.user_visual.weight[u], visual.projection.weight, visual.bias_projection.weight[0]
    fi, fj = visual.features[i], visual.features[j]
    x = bi - bj + (gu * (gi - gj)).sum(1) + (tu * ((fi - fj) @ E.T)).sum(1) + (fi - fj) @ bp
    expected = (-F.logsigmoid(x).sum() + 0.1 / 2 * (gu.pow(2).sum() + gi.pow(2).sum() + gj.pow(2).sum() + tu.pow(2).sum())
                + 0.2 / 2 * bi.pow(2).sum() + 0.2 / 20 * bj.pow(2).sum() + 0.3 / 2 * (E.pow(2).sum() + bp.pow(2).sum()))
    torch.testing.assert_close(model.pairwise_loss(u, i, j), expected)
    # The score it ranks with is the one the loss sees: s_ui − s_uj = x.
    tables = model.effective_factors()
    s = lambda users, items: tables["item_bias"][items] + (tables["user_factors"][users] * tables["item_factors"][items]).sum(1)  # noqa: E731
    torch.testing.assert_close(s(u, i) - s(u, j), x.detach())


def test_a_step_moves_only_the_rows_of_its_batch():
    model = BPR(num_users=50, num_items=40, k=4, optimizer="adam")
    model.set_train_counts(torch.ones(50), torch.ones(40))
    (optimizer,) = model.configure_optimizers()
    before = model.net.item_factors.weight.detach().clone()
    loss = model.pairwise_loss(torch.tensor([3, 4]), torch.tensor([5, 6]), torch.tensor([7, 8]))
    loss.backward()
    assert model.net.item_factors.weight.grad.is_sparse  # O(batch) gradients, whatever the catalog
    optimizer.step()
    changed = (model.net.item_factors.weight.detach() != before).any(1).nonzero().squeeze(1).tolist()
    assert changed == [5, 6, 7, 8]


def test_the_sgd_epoch_steps_once_per_interaction_and_learns_the_ranking():
    """One compiled epoch takes one step per interaction, moves the tables only through the update rule (lr 0:
    unchanged), and epochs of it learn to rank each user's own items above the others."""
    from visrec.models.pairwise.sgd import bpr_sgd_epoch, prepare_triples

    rng = np.random.default_rng(0)
    indptr, indices = np.array([0, 2, 3, 5]), np.array([0, 2, 1, 0, 3])  # users 0..2, rows sorted
    P, Q, b = (rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32),
               rng.normal(size=5).astype(np.float32))
    candidates = np.arange(5)
    triples = prepare_triples(indptr, indices, candidates)
    lr, lw, lb = 0.1, 0.05, 0.2
    P1, Q1, b1 = P.copy(), Q.copy(), b.copy()
    loss, steps = bpr_sgd_epoch(P1, Q1, b1, triples, lr, lw, lb, seed=3)
    assert steps == 5 and np.isfinite(loss)
    P2, Q2, b2 = P.copy(), Q.copy(), b.copy()
    bpr_sgd_epoch(P2, Q2, b2, triples, 0.0, lw, lb, seed=3)
    np.testing.assert_array_equal(P2, P)
    np.testing.assert_array_equal(Q2, Q)
    np.testing.assert_array_equal(b2, b)
    assert not np.array_equal(P1, P)
    # Many epochs at a sane rate rank each user's own items above the others.
    for seed in range(300):
        bpr_sgd_epoch(P, Q, b, triples, 0.05, 0.001, 0.001, seed)
    scores = b + P @ Q.T  # (3, 5)
    for u in range(3):
        own = indices[indptr[u]:indptr[u + 1]]
        other = np.setdiff1d(candidates, own)
        assert scores[u, own].min() > scores[u, other].max()


def test_the_sgd_epoch_draws_the_same_triples_with_the_bitset_and_the_binary_search():
    """The bitset of seen items (small tables) and the binary search of a user's row (large ones) are one
    rule: the same seed gives the same epoch, bit for bit, and a negative is never one of the user's items."""
    from visrec.models.pairwise.sgd import bpr_sgd_epoch, prepare_triples

    rng = np.random.default_rng(1)
    users, items = 40, 130  # 130 items: three 64-bit words per user
    dense = rng.random((users, items)) < 0.3
    indptr = np.concatenate([[0], dense.sum(1).cumsum()])
    indices = np.nonzero(dense)[1]
    candidates = np.arange(items)
    with_bits = prepare_triples(indptr, indices, candidates, items)
    without = prepare_triples(indptr, indices, candidates, items, bitset_limit_bytes=0)
    assert with_bits.seen.shape == (users, 3) and without.seen.size == 0
    np.testing.assert_array_equal(np.unpackbits(with_bits.seen.view(np.uint8), axis=1, bitorder="little")[:, :items], dense)
    tables = [rng.normal(size=(users, 8)).astype(np.float32), rng.normal(size=(items, 8)).astype(np.float32),
              rng.normal(size=items).astype(np.float32)]
    first, second = [t.copy() for t in tables], [t.copy() for t in tables]
    for seed in range(3):
        assert bpr_sgd_epoch(*first, with_bits, 0.05, 0.01, 0.01, seed) == bpr_sgd_epoch(*second, without, 0.05, 0.01, 0.01, seed)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # A user's own item is never a negative: with lr on the item bias only (γ = 0), β_j moves only for negatives.
    P, Q, beta = np.zeros((users, 8), np.float32), np.zeros((items, 8), np.float32), np.zeros(items, np.float32)
    only_user = prepare_triples(np.array([0, 3] + [3] * (users - 1)), np.array([5, 64, 129]), candidates, items)
    for seed in range(20):
        bpr_sgd_epoch(P, Q, beta, only_user, 0.1, 0.0, 0.0, seed)
    assert (beta[[5, 64, 129]] > 0).all() and (np.delete(beta, [5, 64, 129]) <= 0).all() and (beta < 0).sum() > 20


def test_the_sgd_epoch_reports_the_exact_mean_loss():
    """The epoch's loss is the mean −ln σ(x_uij) over its steps (summed as logs of products of 512 factors):
    600 identical users, one positive each and one other candidate, so every triple has the same x."""
    from visrec.models.pairwise.sgd import bpr_sgd_epoch, prepare_triples

    users = 600
    triples = prepare_triples(np.arange(users + 1), np.zeros(users, dtype=np.int64), np.array([0, 1]), 2)
    for x_bias in (-3.0, 0.5, 40.0):  # x < 0, x > 0, and e^−x below float32's precision
        P = np.full((users, 2), 0.5, np.float32)
        Q = np.array([[1.0, -1.0], [0.0, 2.0]], np.float32)
        b = np.array([x_bias, 0.0], np.float32)
        x = x_bias + 0.5 * (1.0 - 0.0) + 0.5 * (-1.0 - 2.0)
        loss, steps = bpr_sgd_epoch(P, Q, b, triples, 0.0, 0.0, 0.0, seed=4)  # lr 0: x never changes
        assert steps == users
        assert loss == pytest.approx(np.logaddexp(0.0, -x), rel=1e-6, abs=1e-12)


def test_sgd_bpr_refuses_ddp_naming_the_key(tmp_path):
    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    out = tmp_path / "ddp"
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "model=bpr", "model.k=4", "trainer=ddp_cpu",
                           "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger=none", *tiny,
                           f"paths.data_dir={tmp_path / 'data'}", f"paths.output_dir={out}", f"hydra.run.dir={out}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "model.optimizer=sgd" in done.stdout + done.stderr


@pytest.mark.parametrize("options", [{"k": 0}, {"lambda_w": -1.0}, {"learning_rate": 0.0}, {"step_batch_size": 0},
                                     {"cold_scoring": "zero"}, {"positive_threshold": "high"}, {"optimizer": "lbfgs"}])
def test_bad_options_are_refused_naming_the_key(options):
    key = next(iter(options))
    with pytest.raises(ValueError, match=f"model.{key}"):
        VBPR.check_options(options)


@pytest.mark.parametrize("cold_scoring", ["visual", "head"])
def test_a_vbpr_bundle_scores_a_new_picture_as_the_catalog_scores_its_cold_items(tmp_path, cold_scoring):
    cfg = compose_train(["model=vbpr", "model.k=4", "model.k2=3", "features=random", "data/split=cold_item",
                         f"model.cold_scoring={cold_scoring}", "trainer.max_epochs=3", "export=true", "logger=none"], tmp_path)
    metrics = train(cfg)
    assert ("cold_head/components" in metrics) == (cold_scoring == "head")
    rec = Recommender.load(tmp_path / "run" / "export")
    arrays = rec.bundle.arrays
    cold = ~rec.known_items & arrays["has_image"]
    assert cold.any()
    f = arrays["item_visual_features"][cold]  # (C, P) the catalog's whitened features
    q = f @ arrays["visual_projection"].T + arrays["visual_vector_intercept"]  # what serving gives a new picture
    b = f @ arrays["visual_bias_weight"] + rec.bundle.manifest["visual_bias_intercept"]
    np.testing.assert_allclose(rec.item_factors[cold], q, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rec.item_bias[cold], b, rtol=1e-4, atol=1e-5)
    if cold_scoring == "visual":  # the paper's visual part θ_u·E f̃ + β'·f̃ on top of the typical candidate
        k = 4
        assert not arrays["visual_projection"][:k].any() and arrays["visual_projection"][k:].any()


def test_vbpr_trains_on_two_cpu_processes_and_exports(tmp_path):
    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    out = tmp_path / "ddp"
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "model=vbpr", "model.k=4", "model.k2=3", "features=random",
                           "trainer=ddp_cpu", "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "logger=none",
                           "export=true", *tiny, f"paths.data_dir={tmp_path / 'data'}", f"paths.output_dir={out}",
                           f"hydra.run.dir={out}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["val/ndcg@10_best"]) and (out / "checkpoints" / "last.ckpt").exists()
    rec = Recommender.load(out / "export")
    assert rec.score_kind == "preference"
