import functools

import pytest
import torch

from visrec.models import BiasedMF, RatingModule


def test_prediction_is_mu_plus_biases_plus_dot():
    net = BiasedMF(3, 4, k=2, global_mean=3.5)
    with torch.no_grad():
        net.user_bias.weight[:, 0] = torch.tensor([0.1, 0.2, 0.3])
        net.item_bias.weight[:, 0] = torch.tensor([-0.1, 0.0, 0.1, 0.2])
    u, i = torch.tensor([0, 2]), torch.tensor([3, 1])
    expected = 3.5 + net.user_bias.weight[u, 0] + net.item_bias.weight[i, 0] + (net.user_factors.weight[u] * net.item_factors.weight[i]).sum(1)
    torch.testing.assert_close(net(u, i), expected)


def test_fallback_for_users_and_items_without_training_ratings():
    net = BiasedMF(2, 3, k=4, global_mean=3.0)
    with torch.no_grad():
        net.user_bias.weight[:, 0] = torch.tensor([0.5, 0.7])
        net.item_bias.weight[:, 0] = torch.tensor([0.2, 0.3, 0.9])
    net.set_train_counts(torch.tensor([1.0, 0.0]), torch.tensor([5.0, 1.0, 0.0]))
    pred = net.predict(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 1, 2]))
    known = 3.0 + 0.5 + 0.2 + (net.user_factors.weight[0] * net.item_factors.weight[0]).sum()
    torch.testing.assert_close(pred, torch.stack([known, torch.tensor(3.5), torch.tensor(3.3), torch.tensor(3.0)]))
    assert torch.isfinite(pred).all()


def test_l2_terms_per_rating():
    net = BiasedMF(2, 2, k=3)
    factors, biases = net.l2_terms(*net.rows(torch.tensor([1]), torch.tensor([0])))
    torch.testing.assert_close(factors, net.user_factors.weight[1:2].pow(2).sum(1) + net.item_factors.weight[0:1].pow(2).sum(1))
    assert biases.item() == 0.0


def test_metrics_are_exact_over_unequal_batches():
    """rmse over 3 ratings split into batches of 2 and 1 equals the rmse over all 3 (not a mean of batch rmses)."""
    module = RatingModule(2, 2, k=1, global_mean=3.0, rating_min=1, rating_max=5)
    with torch.no_grad():
        module.net.user_factors.weight.zero_()
    batches = [(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([4.0, 3.0])), (torch.tensor([0]), torch.tensor([1]), torch.tensor([1.0]))]
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    module._trainer = type("T", (), {"world_size": 1})()
    with torch.no_grad():
        for b in batches:
            module.validation_step(b, 0)
    module.on_validation_epoch_end()
    errors = torch.tensor([3.0 - 4.0, 3.0 - 3.0, 3.0 - 1.0])
    assert logged["val/rmse"] == pytest.approx(errors.pow(2).mean().sqrt().item())
    assert logged["val/mae"] == pytest.approx(errors.abs().mean().item())


def test_metric_predictions_are_clipped_but_loss_is_not():
    module = RatingModule(1, 1, k=1, global_mean=9.0, rating_min=1, rating_max=5)
    u, i = torch.tensor([0]), torch.tensor([0])
    assert module.predict_ratings(u, i).item() == 5.0
    loss = module.objective(u, i, torch.tensor([5.0]))["mse"]
    assert loss.item() == pytest.approx((9.0 + module.net(u, i).item() - 9.0 - 5.0) ** 2)


def test_frequency_aware_weights():
    """w = (n / mean n)^-alpha over rows with ratings: alpha=0 gives 1, alpha=1 gives mean/n."""
    counts = torch.tensor([1.0, 3.0, 0.0]), torch.tensor([2.0, 2.0])
    module = RatingModule(3, 2, k=1, reg_exponent=1.0)
    module.set_train_counts(*counts)
    torch.testing.assert_close(module.user_reg_weight()[:2], torch.tensor([2.0, 2.0 / 3.0]))
    torch.testing.assert_close(module.item_reg_weight(), torch.ones(2))
    plain = RatingModule(3, 2, k=1, reg_exponent=0.0)
    plain.set_train_counts(*counts)
    torch.testing.assert_close(plain.user_reg_weight(), torch.ones(3))


def test_frequency_aware_weights_follow_restored_counts():
    """The per-row weights are cached; restoring counts from a state_dict refreshes them."""
    trained = RatingModule(3, 2, k=1, reg_exponent=1.0)
    trained.set_train_counts(torch.tensor([1.0, 3.0, 0.0]), torch.tensor([2.0, 2.0]))
    restored = RatingModule(3, 2, k=1, reg_exponent=1.0)
    restored.load_state_dict(trained.state_dict())
    torch.testing.assert_close(restored.user_reg_weight(), trained.user_reg_weight())


def test_cold_ratings_are_reported_apart():
    """Warm metrics cover ratings whose user and item have training ratings; the rest are *_cold."""
    module = RatingModule(2, 2, k=1, global_mean=3.0, rating_min=1, rating_max=5)
    module.set_train_counts(torch.tensor([3.0, 3.0]), torch.tensor([4.0, 0.0]))
    with torch.no_grad():
        module.net.user_factors.weight.zero_()
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    module._trainer = type("T", (), {"world_size": 1})()
    with torch.no_grad():
        module.test_step((torch.tensor([0, 1, 0]), torch.tensor([0, 0, 1]), torch.tensor([4.0, 2.0, 5.0])), 0)
    module.on_test_epoch_end()
    assert logged["test/ratings"] == 2 and logged["test/ratings_cold"] == 1
    assert logged["test/rmse"] == pytest.approx(((1.0 + 1.0) / 2) ** 0.5)
    assert logged["test/rmse_cold"] == pytest.approx(2.0)


def test_sparse_updates_touch_only_the_batch_rows():
    """One step of SparseAdam (the default) changes the rows of the batch's users and items and no other."""
    module = RatingModule(5, 4, k=2, global_mean=3.0, optimizer=functools.partial(torch.optim.SparseAdam, lr=0.1))
    module.set_train_counts(torch.ones(5), torch.ones(4))
    optimizer = module.configure_optimizers()
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    loss = module.objective(torch.tensor([1, 3]), torch.tensor([2, 2]), torch.tensor([5.0, 1.0]))["loss"]
    loss.backward()
    assert module.net.user_factors.weight.grad.is_sparse
    optimizer.step()
    changed_users = (module.net.user_factors.weight != before["net.user_factors.weight"]).any(1)
    changed_items = (module.net.item_factors.weight != before["net.item_factors.weight"]).any(1)
    assert changed_users.tolist() == [False, True, False, True, False]
    assert changed_items.tolist() == [False, False, True, False]


def test_an_optimizer_that_cannot_take_sparse_gradients_is_refused_at_set_up():
    with pytest.raises(ValueError, match=r"model\.optimizer: Adam cannot update.*model\.sparse_gradients=false"):
        RatingModule(3, 3, k=2, optimizer=functools.partial(torch.optim.Adam, lr=0.1))
    dense = RatingModule(3, 3, k=2, sparse_gradients=False, optimizer=functools.partial(torch.optim.Adam, lr=0.1))
    assert not dense.net.user_factors.sparse


def test_sparse_gradients_are_refused_under_ddp_on_gpus_at_set_up(tmp_path):
    """NCCL has no sparse all-reduce: trainer=ddp (GPUs) with sparse tables is refused before anything runs."""
    from conftest import compose_train
    from visrec.pipeline.training import check_options

    with pytest.raises(ValueError, match=r"model\.sparse_gradients=false"):
        check_options(compose_train(["trainer=ddp"], tmp_path))
    check_options(compose_train(["trainer=ddp", "model.sparse_gradients=false", "model.optimizer._target_=torch.optim.Adam"], tmp_path))
    check_options(compose_train(["trainer=ddp_cpu"], tmp_path))  # gloo all-reduces sparse gradients
