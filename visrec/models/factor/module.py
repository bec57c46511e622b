"""LightningModule that trains a :class:`BiasedMF` on observed ratings.

Loss per batch of B ratings (the objective, :meth:`RatingModule.objective`):
    L = mean_B (r̂_ui - r_ui)²
        + λ_f · mean_B (w_u ‖p_u‖² + w_i ‖q_i‖²) + λ_b · mean_B (w_u b_u² + w_i b_i²)
    w_u = (n_u / n̄_U)^(-α),  w_i = (n_i / n̄_N)^(-α)
        + [visual modes init, reg, init+reg]  λ_v · mean_B (v_i ω_i ‖q_i − E f̃_i − e‖²) + λ_vb · mean_B (v_i ω_i (b_i − w·f̃_i − c)²)
                                              + λ_E (‖E‖² + ‖w‖²)
with n_u, n_i the training ratings of user u and item i, n̄ their means over users / items that have
ratings, α = ``reg_exponent`` and ω_i = (n_i / n̄_N)^(-β), β = ``visual_reg_exponent`` (default α).
With β = 1 every item feels the visual prior equally per epoch, like a Gaussian prior
q_i ~ N(E f̃_i + e, σ²I): popular items follow their ratings, rare ones lean on their image, and each item
counts once in fitting E and w. The L2 terms are taken per rating, so over an epoch user u is
shrunk in proportion to n_u · w_u = n_u^(1-α) (up to a constant): α = 0 is the per-rating L2 of SGD
matrix factorization, α = 1 a plain Gaussian prior (the same weight for every user), and values in
between are frequency-aware L2 — rare users and items get more shrinkage per rating.

Visual modes (``visual_mode``; f̃_i standardized frozen CNN features, v_i = 1 if item i has an image):
    none      plain biased MF;
    init      q_i starts at E₀ f̃_i (E₀: the top-K whitened principal components of the
              training items' features, scaled to ``init_std``); E and w learn to predict the (detached) q_i and b_i,
              which do not feel the prior;
    reg       q_i starts as noise and is pulled toward E f̃_i + e (and b_i toward w·f̃_i + c), E, e, w, c learned jointly;
    init+reg  both.
    head      the item vectors and biases never feel the images (training is exactly that of ``none``);
              after training, :meth:`RatingModule.fit_cold_head` fits E, e, w, c in closed form to predict
              each training rating as if its item were cold (ridge regression with the number of
              components and the penalties chosen by item-fold cross-validation; see
              :mod:`visrec.models.visual.rating_head`): a cold-start head fitted for exactly what it is used for.
Cold items (no training ratings) with an image are scored with q_i = E f̃_i + e, b_i = w·f̃_i + c. Predictions are never clipped in the loss; for
metrics they are clipped to ``[rating_min, rating_max]`` when a range is set.
Optimizer steps: one per loader batch (automatic optimization), or, with ``step_batch_size = s``, one
per consecutive slice of s ratings of each loader batch (manual optimization; the same steps as loader
batches of s, without Lightning's per-batch overhead; the scheduler is stepped once per epoch).
Sparse updates (``sparse_gradients``, the default): each step looks the batch's rows up once, the L2
terms use those rows, and the embedding tables get row-sparse gradients, so a step costs O(B·K), not
O((U + N)·K). The optimizer must then take sparse gradients: ``torch.optim.SparseAdam`` (lazy Adam: the
moments of a row move only when the row is in a batch, as in TensorFlow's LazyAdam), ``SGD`` or
``Adagrad``; the visual prior's dense E, e, w, c are handed to it as full sparse gradients (every entry
present), which is Adam / SGD exactly. ``sparse_gradients=false`` gives dense tables for any optimizer.
Metrics (exact over the whole part, not averages of batch means):
    rmse = sqrt(Σ (clip(r̂) - r)² / R),  mae = Σ |clip(r̂) - r| / R,
over the R ratings of the part whose user and item both have training ratings ("warm"; the protocol
of Cornac's ``exclude_unknowns``). The other ratings (cold user or cold item, scored with the
fallback) get the same metrics as ``rmse_cold`` / ``mae_cold``; ``ratings`` and ``ratings_cold``
count both groups, so nothing is dropped silently.
"""
from __future__ import annotations

import inspect
import logging
import math
from typing import Callable

import torch

from visrec.interactions import Interactions
from visrec.models.contract import FactorModel
from visrec.models.divergence import DivergedError, non_finite_names
from visrec.models.factor.scoring import RatingScoring
from visrec.models.visual.prior import AUTO, VISUAL_MODES
from visrec.models.visual.rating_head import ColdHeadFit, fit_cold_head
from visrec.models.visual.typical import typical_candidate

log = logging.getLogger(__name__)
TRAIN_PARTS = ("loss", "mse", "align", "align_bias")  # the objective's parts logged per epoch as train/<part>


class RatingModule(RatingScoring, FactorModel):
    """Biased MF under the model contract (:mod:`visrec.models.contract`); ``model=biased_mf``. Its
    submodules, tables and scores are :class:`~visrec.models.factor.scoring.RatingScoring` (torch only)."""

    # What validation logs, each exact over the part (see the module docstring): what ``monitor`` may name.
    VALIDATION_METRICS = ("val/rmse", "val/mae")
    DATA_KEYS = ("num_users", "num_items", "global_mean", "rating_min", "rating_max", "feature_dim")

    def __init__(
        self,
        num_users: int,
        num_items: int,
        k: int = 64,
        init_std: float = 0.1,
        reg_factors: float = 0.05,
        reg_bias: float = 0.01,
        reg_exponent: float = 0.5,
        global_mean: float = 0.0,
        rating_min: float | None = None,
        rating_max: float | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., object] | None = None,
        scheduler_monitor: str = "val/rmse",
        visual_mode: str = "none",
        feature_dim: int = 0,
        reg_visual: float = 1.0,
        reg_visual_bias: float = 1.0,
        reg_projection: float = 1e-3,
        visual_pca_dim: int = 64,
        visual_reg_exponent: float | None = None,
        step_batch_size: int | None = None,
        sparse_gradients: bool = True,
    ):
        _check_options(k=k, init_std=init_std, reg_factors=reg_factors, reg_bias=reg_bias, reg_visual=reg_visual,
                       reg_visual_bias=reg_visual_bias, reg_projection=reg_projection, visual_pca_dim=visual_pca_dim,
                       visual_mode=visual_mode)
        super().__init__(num_users, num_items, k, init_std=init_std, global_mean=global_mean, rating_min=rating_min,
                         rating_max=rating_max, visual_mode=visual_mode, feature_dim=feature_dim, visual_pca_dim=visual_pca_dim,
                         sparse=sparse_gradients)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.sparse_gradients = bool(sparse_gradients)
        self.reg_factors = float(reg_factors)
        self.reg_bias = float(reg_bias)
        self.reg_exponent = float(reg_exponent)
        self.optimizer_factory = optimizer or (
            (lambda params: torch.optim.SparseAdam(params, lr=1e-3)) if self.sparse_gradients
            else (lambda params: torch.optim.Adam(params, lr=1e-3)))
        if self.sparse_gradients:
            _check_takes_sparse_gradients(self.optimizer_factory)
        self.scheduler_factory = scheduler
        self.scheduler_monitor = scheduler_monitor
        self._sums: dict[str, torch.Tensor] = {}
        self._train_sums: torch.Tensor | None = None  # (len(TRAIN_PARTS) + 1,) this epoch's weighted sums
        self.reg_visual = float(reg_visual)
        self.reg_visual_bias = float(reg_visual_bias)
        self.visual_reg_exponent = self.reg_exponent if visual_reg_exponent is None else float(visual_reg_exponent)
        self.reg_projection = float(reg_projection)
        # None: one optimizer step per loader batch (Lightning's automatic optimization). An int: each
        # loader batch is cut into consecutive slices of this many ratings, one optimizer step each —
        # small-batch SGD without paying Lightning's per-batch overhead on every step.
        if step_batch_size is not None and int(step_batch_size) < 1:
            raise ValueError(f"model.step_batch_size must be a positive number of ratings or null, got {step_batch_size!r}")
        self.step_batch_size = None if step_batch_size is None else int(step_batch_size)
        self.automatic_optimization = self.step_batch_size is None
        # Per-row L2 and visual-prior weights (U,), (N,), (N,): functions of the training counts, cached
        # so a step only indexes them; refreshed when counts are set or restored from a state_dict.
        self.register_buffer("_user_weight", torch.ones(num_users), persistent=False)
        self.register_buffer("_item_weight", torch.ones(num_items), persistent=False)
        self.register_buffer("_item_visual_weight", torch.ones(num_items), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _keys: module._refresh_reg_weights())
        self._refresh_reg_weights()

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Check the option values of a ``model`` config before anything is built (the pipeline calls
        this at set-up, before reading data). Raises ``ValueError`` naming the key (``model.<name>``)."""
        defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()}
        value = {name: options.get(name, defaults.get(name)) for name in (
            "k", "init_std", "reg_factors", "reg_bias", "reg_visual", "reg_visual_bias", "reg_projection",
            "visual_pca_dim", "visual_mode")}
        _check_options(**value)

    def set_train_counts(self, user_counts: torch.Tensor, item_counts: torch.Tensor) -> None:
        super().set_train_counts(user_counts, item_counts)
        self._refresh_reg_weights()

    @classmethod
    def sparse_gradients_for(cls, options: dict) -> bool:
        return bool(options.get("sparse_gradients", True))

    # ---- image features -------------------------------------------------------------------------
    def attach_features(self, features: torch.Tensor, has_image: torch.Tensor, fit: bool = True) -> None:
        """Give the model the (N, D) frozen features and (N,) has-image mask.

        ``fit=True`` (a new training run) fits the standardization on training items and, in the
        ``init`` modes, starts item vectors and E from the features' principal directions.
        ``fit=False`` (a model restored from a checkpoint) keeps the saved statistics.
        """
        super().attach_features(features, has_image, fit)
        if self.visual is not None and fit and "init" in self.visual_mode:
            self._init_from_features(self.net.known_items)

    @torch.no_grad()
    def _init_from_features(self, train_items: torch.Tensor) -> None:
        """q_i = E₀ f̃_i for items with an image; E₀ = the top-K principal components scaled to init_std."""
        visual = self.visual
        rows = train_items & visual.has_image  # (N,)
        directions = visual.leading_components(self.net.item_factors.embedding_dim)  # (K, P)
        projected = visual.features @ directions.T  # (N, K)
        scale = self.hparams.init_std / projected[rows].std().clamp(min=1e-8)
        visual.projection.weight.copy_(directions * scale)
        has = visual.has_image
        self.net.item_factors.weight[has] = projected[has] * scale
    # ---- training -------------------------------------------------------------------------------
    def _reg_weight(self, counts: torch.Tensor, exponent: float | None = None) -> torch.Tensor:
        """(n / n̄)^(-α) per row of ``counts`` (rows with no ratings get weight 1; they are never in a batch)."""
        mean = counts[counts > 0].mean() if (counts > 0).any() else counts.new_tensor(1.0)
        return (counts.clamp(min=1.0) / mean).pow(-(self.reg_exponent if exponent is None else exponent))

    @torch.no_grad()
    def _refresh_reg_weights(self) -> None:
        self._user_weight.copy_(self._reg_weight(self.net.user_counts))
        self._item_weight.copy_(self._reg_weight(self.net.item_counts))
        self._item_visual_weight.copy_(self._reg_weight(self.net.item_counts, self.visual_reg_exponent))

    def user_reg_weight(self) -> torch.Tensor:
        return self._user_weight  # (U,)

    def item_reg_weight(self) -> torch.Tensor:
        return self._item_weight  # (N,)

    def objective(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> dict[str, torch.Tensor]:
        """MSE on observed ratings plus per-rating L2 (see module docstring). Returns loss and parts.
        Touches only the rows of the (B,) batch: one lookup per table, per-row weights indexed."""
        p, q, b_u, b_i = self.net.rows(users, items)  # (B, K), (B, K), (B,), (B,)
        pred = self.net.score_rows(p, q, b_u, b_i)  # (B,)
        mse = (pred - ratings).pow(2).mean()
        factor_l2, bias_l2 = self.net.l2_terms(p, q, b_u, b_i, self._user_weight[users], self._item_weight[items])  # (B,), (B,)
        loss = mse + self.reg_factors * factor_l2.mean() + self.reg_bias * bias_l2.mean()
        out = {"mse": mse}
        if self.visual is not None and self.visual_mode != "head":
            weight = self.visual.has_image[items] * self._item_visual_weight[items]  # (B,)
            b = b_i
            if self.visual_mode == "init":  # the prior learns from q and b but does not pull them
                q, b = q.detach(), b.detach()
            align = (weight * (q - self.visual.item_vectors(items)).pow(2).sum(-1)).mean()
            align_bias = (weight * (b - self.visual.item_biases(items)).pow(2)).mean()
            loss = loss + self.reg_visual * align + self.reg_visual_bias * align_bias + self.reg_projection * self.visual.shrinkage()
            out.update(align=align, align_bias=align_bias)
        out["loss"] = loss
        return out

    @torch.no_grad()
    def fit_cold_head(self, train: Interactions, **options) -> ColdHeadFit:
        """Fit the cold-start head (E, e, w, c) in closed form on the ``train`` ratings of items that have
        an image, with this model's μ, b_u, p_u (mode ``head``; see :mod:`visrec.models.visual.rating_head`)."""
        if self.visual is None:
            raise ValueError("fit_cold_head needs a visual model (visual_mode != none)")
        net, visual = self.net, self.visual
        train_items = train.items.to(visual.has_image.device)
        rows = visual.has_image[train_items]  # (R,)
        users, items = train.users.to(rows.device)[rows], train_items[rows]
        targets = train.ratings.to(rows.device)[rows] - net.global_mean - net.user_bias.weight[users, 0]  # (R,) y = r − μ − b_u
        fit = fit_cold_head(users, items, targets, net.user_factors.weight, visual.features, **options)
        visual.set_head(*(t.to(rows.device) for t in (fit.projection, fit.vector_intercept, fit.bias_weights)), fit.intercept)
        return fit

    def finish_training(self, train: Interactions) -> dict:
        """Mode ``head``: fit the cold-start head in closed form on ``train`` after training (the pipeline then
        stores the weights in the tested checkpoint). With no training item that has an image there is
        nothing to fit: the head stays zero and cold items use the fallback μ + b_u (said in the log, not
        an error — missing images are normal input). Other modes: nothing to do."""
        if self.visual_mode != "head":
            return {}
        if not bool(self.visual.has_image[train.items.to(self.visual.has_image.device)].any()):
            message = "cold-start head not fitted: no training item has an image; cold items use the fallback μ + b_u"
            log.warning(message)
            print(message)
            return {"cold_head/components": 0}
        fit = self.fit_cold_head(train)
        self.set_cold_rank_shift(train)
        print(fit.summary())
        self.weights_changed = True
        return {"cold_head/components": fit.components, "cold_head/cv_rmse": fit.cv_rmse,
                "cold_head/cv_rmse_intercept_only": fit.cv_rmse_intercept_only, "cold_head/cv_gain": fit.cv_gain,
                "cold_head/cv_gain_se": fit.cv_gain_se}

    @torch.no_grad()
    def set_cold_rank_shift(self, train: Interactions) -> None:
        """Set ``cold_rank_shift`` = q_c − e and ``cold_rank_bias_shift`` = b_c − c from the typical candidate
        item (q_c, b_c) of the trained tables and ``train``'s interactions (RatingScoring's docstring)."""
        net, visual = self.net, self.visual
        candidate, candidate_bias = typical_candidate(net.user_factors.weight, net.item_factors.weight,
                                                      net.item_bias.weight.squeeze(-1), net.known_items, train.users, train.items)
        self.cold_rank_shift.copy_(candidate.to(self.cold_rank_shift) - visual.projection.bias.detach())
        self.cold_rank_bias_shift.fill_(candidate_bias - float(visual.bias_projection.bias.detach()[0]))

    def training_step(self, batch, batch_idx):
        users, items, ratings = batch
        out = self.objective(users, items, ratings) if self.automatic_optimization else self._sliced_steps(users, items, ratings)
        self._add_train_sums(out, len(ratings))
        return out["loss"] if self.automatic_optimization else None

    def _add_train_sums(self, out: dict[str, torch.Tensor], size: int) -> None:
        """Add a batch's objective parts (rating-weighted) to the epoch's sums, logged once per epoch by
        :meth:`_log_train_epoch` (Lightning's ``self.log`` on every step costs more than a sparse step)."""
        parts = [out[name].detach() if name in out else out["loss"].new_zeros(()) for name in TRAIN_PARTS]
        sums = torch.stack([*parts, out["loss"].new_tensor(1.0)]) * size  # (P + 1,): weighted sums, ratings
        self._train_sums = sums if self._train_sums is None else self._train_sums + sums

    def _log_train_epoch(self) -> torch.Tensor | None:
        """Log the epoch's rating-weighted means train/loss, train/mse (and train/align, train/align_bias
        with a visual prior), summed over processes; returns train/loss (None before any batch)."""
        sums, self._train_sums = self._train_sums, None
        if sums is None:
            return None
        if self.trainer.world_size > 1:
            sums = self.all_gather(sums).reshape(-1, len(sums)).sum(0)
        means = sums[:-1] / sums[-1]
        for name, value in zip(TRAIN_PARTS, means):
            if name in ("loss", "mse") or (self.visual is not None and self.visual_mode != "head"):
                self.log(f"train/{name}", value, prog_bar=name == "loss", sync_dist=False)
        return means[0]

    def _sliced_steps(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimizer step per slice of ``step_batch_size`` ratings of the (B,) batch (manual
        optimization); returns the rating-weighted mean of each slice's objective parts (detached)."""
        optimizer = self.optimizers()
        names, totals = None, None  # the parts' names; (P,) their rating-weighted sums
        size = self.step_batch_size
        for u, i, r in zip(users.split(size), items.split(size), ratings.split(size)):
            out = self.objective(u, i, r)
            optimizer.zero_grad()
            self.manual_backward(out["loss"])
            optimizer.step()
            names = names or list(out)
            parts = torch.stack([out[name].detach() for name in names]) * len(r)  # (P,): one op per step, not P
            totals = parts if totals is None else totals.add_(parts)
        return dict(zip(names, totals / len(ratings)))

    def on_train_epoch_end(self):
        """Stop with :class:`DivergedError` when the epoch left non-finite weights (a diverged run is an
        error, not a result). Manual optimization steps no scheduler by itself: step it once per epoch
        here (after validation, so a plateau scheduler sees this epoch's ``scheduler_monitor``), as
        automatic optimization does."""
        self._check_finite_epoch(self._log_train_epoch())
        if self.automatic_optimization or self.scheduler_factory is None:
            return
        scheduler = self.lr_schedulers()
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = self.trainer.callback_metrics.get(self.scheduler_monitor)
            if value is not None:
                scheduler.step(value)
        else:
            scheduler.step()

    def _check_finite_epoch(self, loss: torch.Tensor | None) -> None:
        bad = non_finite_names(self.named_parameters())
        if bad or (loss is not None and not bool(torch.isfinite(loss))):
            lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else None
            raise DivergedError(
                f"training diverged in epoch {self.current_epoch}: train/loss {float(loss) if loss is not None else 'n/a'}, "
                f"non-finite weights in {', '.join(bad[:6]) or 'none yet'}. The learning rate is likely too high "
                f"(model.optimizer.lr = {lr}): lower it, or raise model.reg_factors / model.reg_bias")

    # ---- evaluation -----------------------------------------------------------------------------
    def _accumulate(self, batch) -> None:
        users, items, ratings = batch
        err = self.predict_ratings(users, items) - ratings  # (B,)
        warm = (self.net.known_users[users] & self.net.known_items[items]).float()  # (B,)
        groups = torch.stack([warm, 1.0 - warm])  # (2, B): warm, cold
        sums = torch.stack([groups @ err.pow(2), groups @ err.abs(), groups.sum(1)], dim=1)  # (2, 3): sse, sae, count
        self._sums["current"] = self._sums.get("current", torch.zeros_like(sums)) + sums

    def _log_epoch(self, stage: str) -> None:
        sums = self._sums.pop("current", None)
        if sums is None:
            return
        if self.trainer.world_size > 1:
            sums = self.all_gather(sums).reshape(-1, 2, 3).sum(0)
        for (sse, sae, count), suffix in zip(sums, ("", "_cold")):
            self.log(f"{stage}/ratings{suffix}", count, sync_dist=False)
            if count > 0:
                self.log(f"{stage}/rmse{suffix}", (sse / count).sqrt(), prog_bar=not suffix, sync_dist=False)
                self.log(f"{stage}/mae{suffix}", sae / count, sync_dist=False)

    def validation_step(self, batch, batch_idx):
        self._accumulate(batch)

    def on_validation_epoch_end(self):
        self._log_epoch("val")

    def test_step(self, batch, batch_idx):
        self._accumulate(batch)

    def on_test_epoch_end(self):
        self._log_epoch("test")

    # ---- optimization ---------------------------------------------------------------------------
    def on_before_optimizer_step(self, optimizer) -> None:
        """With sparse gradients, hand the visual prior's dense gradients (E, e, w, c: a few thousand
        numbers) to the optimizer as sparse tensors with every entry present, so one sparse-gradient
        optimizer (SparseAdam) updates every parameter; with all entries present its update is Adam's."""
        if not self.sparse_gradients or self.visual is None:
            return
        for param in self.visual.parameters():
            if param.grad is not None and not param.grad.is_sparse:
                param.grad = param.grad.to_sparse()

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        if not self.automatic_optimization:  # stepped by on_train_epoch_end
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": self.scheduler_monitor}}


def _check_takes_sparse_gradients(optimizer_factory: Callable[..., torch.optim.Optimizer]) -> None:
    """Refuse, at set-up, an optimizer that cannot step on sparse gradients (``torch.optim.Adam``
    raises only at the first training step): one step on a two-row sparse embedding."""
    table = torch.nn.Embedding(2, 1, sparse=True)
    optimizer = optimizer_factory(table.parameters())
    table(torch.tensor([0])).sum().backward()
    try:
        optimizer.step()
    except RuntimeError as error:
        raise ValueError(
            f"model.optimizer: {type(optimizer).__name__} cannot update the embedding "
            f"tables from sparse gradients ({error}). Use model.optimizer._target_=torch.optim.SparseAdam (or "
            f"torch.optim.SGD, torch.optim.Adagrad), or set model.sparse_gradients=false for dense tables") from None


def _check_options(*, k, init_std, reg_factors, reg_bias, reg_visual, reg_visual_bias, reg_projection, visual_pca_dim,
                   visual_mode) -> None:
    """Refuse option values that would train nonsense, naming the config key (``model.<name>``)."""
    def bad(name: str, value, expected: str) -> ValueError:
        return ValueError(f"model.{name} must be {expected}, got {value!r}")

    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise bad("k", k, "a positive number of latent factors")
    if not init_std > 0:
        raise bad("init_std", init_std, "> 0")
    for name, value in (("reg_factors", reg_factors), ("reg_bias", reg_bias), ("reg_visual", reg_visual),
                        ("reg_visual_bias", reg_visual_bias), ("reg_projection", reg_projection)):
        if not (value >= 0 and math.isfinite(value)):
            raise bad(name, value, "a finite penalty >= 0")
    if visual_mode not in (*VISUAL_MODES, AUTO):
        raise bad("visual_mode", visual_mode, f"one of {(*VISUAL_MODES, AUTO)}")
    if visual_mode != "none" and (not isinstance(visual_pca_dim, int) or visual_pca_dim < 1):
        raise bad("visual_pca_dim", visual_pca_dim, f"a positive number of components with visual_mode={visual_mode}")
