"""The visual prior: cold-item scoring, whitening on training items only, init/reg semantics."""
from __future__ import annotations

import pytest
import torch

from visrec.models import RatingModule

N, U, D, K = 6, 3, 10, 2


def make(mode: str, pca_dim: int = 4) -> RatingModule:
    torch.manual_seed(0)
    module = RatingModule(U, N, k=K, global_mean=3.0, visual_mode=mode, feature_dim=D, visual_pca_dim=pca_dim)
    # items 0-3 warm, 4 cold with image, 5 cold without image; user 2 cold.
    module.set_train_counts(torch.tensor([5.0, 5.0, 0.0]), torch.tensor([3.0, 2.0, 4.0, 1.0, 0.0, 0.0]))
    features = torch.randn(N, D)
    has_image = torch.tensor([True, True, True, True, True, False])
    module.attach_features(features, has_image)
    return module


def test_cold_items_are_scored_from_their_picture():
    module = make("reg")
    visual, net = module.visual, module.net
    with torch.no_grad():
        visual.projection.weight.normal_()
        visual.bias_projection.weight.normal_()
        visual.bias_projection.bias.fill_(0.3)
        net.user_bias.weight.fill_(0.2)
        net.item_bias.weight.fill_(-5.0)  # untrained junk that must not be used for cold items
    users, items = torch.tensor([0, 0, 2]), torch.tensor([4, 5, 4])
    pred = net.predict(users, items) + module._visual_cold_terms(users, items)
    f = visual.features[4]
    cold_with_image = 3.0 + 0.2 + (visual.bias_projection.weight @ f + 0.3) + net.user_factors.weight[0] @ (visual.projection.weight @ f)
    torch.testing.assert_close(pred[0], cold_with_image.squeeze())
    torch.testing.assert_close(pred[1], torch.tensor(3.2))  # neither ratings nor image: mu + b_u
    torch.testing.assert_close(pred[2], (3.0 + visual.bias_projection.weight @ f + 0.3).squeeze())  # cold user too
    assert torch.isfinite(pred).all()


def test_whitening_is_fitted_on_training_items_only():
    module = make("reg")
    before = (module.visual.feature_mean.clone(), module.visual.components.clone())
    features = torch.randn(N, D)
    features[4] += 100.0  # a cold item's features must not move the statistics
    module2 = make("reg")
    warm = module2.net.known_items
    module2.visual.attach(features, module2.visual.has_image, warm)
    rows = features[warm & module2.visual.has_image]
    torch.testing.assert_close(module2.visual.feature_mean, rows.mean(0))
    z = module2.visual.features[warm]  # whitened warm rows: zero mean, unit variance per kept component
    torch.testing.assert_close(z.mean(0), torch.zeros(z.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(z[:, :3].std(0), torch.ones(3), atol=1e-4, rtol=0)
    assert before[0].shape == module2.visual.feature_mean.shape


def test_init_starts_item_vectors_at_the_projection():
    module = make("init")
    has = module.visual.has_image
    torch.testing.assert_close(module.net.item_factors.weight[has], module.visual.item_vectors(torch.arange(N)[has]))
    assert module.net.item_factors.weight[has].std().item() == pytest.approx(0.1, rel=0.5)


def test_init_mode_does_not_pull_item_vectors_but_reg_does():
    batch = (torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([4.0, 2.0]))
    grads = {}
    for mode in ("init", "reg"):
        module = make(mode)
        with torch.no_grad():
            module.visual.projection.weight.normal_()
        module.reg_factors = 0.0
        q = module.net.item_factors
        align = module.objective(*batch)["align"]
        (grad,) = torch.autograd.grad(align, q.weight, allow_unused=True)
        grads[mode] = grad
    assert grads["init"] is None or grads["init"].abs().sum() == 0
    assert grads["reg"].abs().sum() > 0


def test_none_mode_has_no_prior_and_visual_needs_features():
    assert make("none").visual is None
    with pytest.raises(ValueError, match="needs image features"):
        RatingModule(2, 2, visual_mode="reg", feature_dim=0)
    with pytest.raises(ValueError, match="visual_mode must be one of"):
        RatingModule(2, 2, visual_mode="sometimes", feature_dim=4)


def test_features_are_not_saved_in_checkpoints_but_statistics_are():
    state = make("reg").state_dict()
    assert "visual.features" not in state and "visual.feature_mean" in state and "visual.components" in state


def test_sparse_adam_trains_the_dense_projection_like_adam():
    """With sparse gradients, E, e, w, c get full sparse gradients in on_before_optimizer_step, so one
    SparseAdam step moves them exactly as Adam would (every entry present)."""
    import functools

    sparse = make("reg")
    sparse.optimizer_factory = functools.partial(torch.optim.SparseAdam, lr=0.1)
    batch = (torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([5.0, 1.0]))
    projection = sparse.visual.projection.weight
    reference = projection.detach().clone().requires_grad_(True)
    optimizer = sparse.configure_optimizers()
    sparse.objective(*batch)["loss"].backward()
    adam = torch.optim.Adam([reference], lr=0.1)
    reference.grad = projection.grad.clone()
    sparse.on_before_optimizer_step(optimizer)
    optimizer.step()
    adam.step()
    assert projection.detach().abs().sum() > 0  # E started at zero and moved
    torch.testing.assert_close(projection.detach(), reference.detach())
