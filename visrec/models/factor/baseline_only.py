"""BaselineOnly: r̂_ui = μ + b_u + b_i, the regularized baseline predictor fitted by alternating least squares.

Objective (Koren 2010, "Factor in the neighbors: scalable and accurate collaborative filtering", TKDD 4(1),
§2.1, eq. 1; Surprise's ``BaselineOnly`` with ``bsl_options={'method': 'als'}``):
    min_b  Σ_(u,i)∈R (r_ui − μ − b_u − b_i)² + λ_u Σ_u b_u² + λ_i Σ_i b_i²
with μ the global mean of the training ratings. Each ALS epoch solves it exactly for the items given the
users, then for the users given the items (Surprise's order, ``baseline_als``):
    b_i = Σ_{u ∈ R(i)} (r_ui − μ − b_u) / (λ_i + |R(i)|)
    b_u = Σ_{i ∈ R(u)} (r_ui − μ − b_i) / (λ_u + |R(u)|)
vectorized with ``index_add_`` over all ratings (no loop over users or items). Defaults are Surprise's:
``reg_item`` λ_i = 10, ``reg_user`` λ_u = 15, ``n_epochs`` = 10 (Surprise 1.1 docs, "Baselines estimates
configuration"). Users / items without training ratings get b = 0 (r̂ = μ + b_u, μ + b_i or μ);
predictions are clipped to the rating range, as Surprise's ``predict`` does.

Training: one ALS epoch = one Lightning epoch = one ``training_step`` on every training row
(``TRAINING_BATCHES = "whole"``); after ``n_epochs`` of them the model stops the trainer itself (fewer when
``trainer.max_epochs`` is smaller). Validation logs ``val/rmse`` / ``val/mae`` after each epoch
(:mod:`visrec.models.rating_metrics`), so the best checkpoint and early stopping work as for any model.
It is a factor model with K = 0 (:class:`~visrec.models.factor.scoring.BaselineScoring`): evaluated, exported and
served like biased MF.
"""
from __future__ import annotations

import logging
import math

import torch

from visrec.interactions import Interactions
from visrec.models.closed_form import ClosedFormStep
from visrec.models.contract import FactorModel
from visrec.models.factor.bias_als import als_biases
from visrec.models.factor.scoring import BaselineScoring
from visrec.models.rating_metrics import RatingMetricsMixin

log = logging.getLogger(__name__)


class BaselineOnly(RatingMetricsMixin, BaselineScoring, FactorModel):
    """The baseline predictor under the model contract (:mod:`visrec.models.contract`); ``model=bias_only``.
    Its tables and scores are :class:`~visrec.models.factor.scoring.BaselineScoring` (torch only)."""

    DATA_KEYS = ("num_users", "num_items", "global_mean", "rating_min", "rating_max")
    TRAINING_BATCHES = "whole"
    VALIDATION_METRICS = ("val/rmse", "val/mae")
    single_process = True  # exact sweeps over all ratings at once

    def __init__(self, num_users: int, num_items: int, global_mean: float, rating_min: float | None = None,
                 rating_max: float | None = None, reg_user: float = 15.0, reg_item: float = 10.0, n_epochs: int = 10):
        self.check_options(dict(reg_user=reg_user, reg_item=reg_item, n_epochs=n_epochs))
        super().__init__(num_users, num_items, global_mean=global_mean, rating_min=rating_min, rating_max=rating_max)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self._batch: tuple[torch.Tensor, ...] | None = None

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Refuse option values that would fit nonsense, naming the key (``model.<name>``)."""
        for name in ("reg_user", "reg_item"):
            value = options.get(name, 1.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
                raise ValueError(f"model.{name} must be a finite number >= 0, got {value!r}")
        epochs = options.get("n_epochs", 10)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"model.n_epochs must be a positive number of ALS epochs, got {epochs!r}")

    def check_training_data(self, train: Interactions, val: Interactions | None = None) -> None:
        if len(train) == 0:
            raise ValueError("model=bias_only: the training part has no rating (check the data and data.split)")

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.world_size > 1:
            raise ValueError("model=bias_only trains in a single process (exact ALS sweeps); use trainer=cpu or trainer=gpu, not DDP")

    def on_fit_start(self) -> None:
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and 0 < max_epochs < self.hparams.n_epochs:
            log.warning("model=bias_only: trainer.max_epochs=%d < model.n_epochs=%d: only %d ALS epochs will run",
                        max_epochs, self.hparams.n_epochs, max_epochs)

    # ---- training: one ALS epoch per Lightning epoch ----------------------------------------------------
    def training_step(self, batch, batch_idx):
        if batch_idx > 0:  # one batch per epoch ("whole")
            return None
        self._batch = batch
        loss = self.optimizers().step()  # ClosedFormStep: one ALS epoch, counted by Lightning as a step
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=1)
        if not math.isfinite(loss):
            from visrec.models.divergence import DivergedError

            raise DivergedError(f"BaselineOnly diverged in epoch {self.current_epoch}: loss {loss}")
        if self.current_epoch + 1 >= self.hparams.n_epochs:
            self.trainer.should_stop = True  # the n_epochs ALS epochs are done
        return None

    @torch.no_grad()
    def als_epoch(self) -> float:
        """One ALS epoch on the current batch (all training rows); returns the objective / number of ratings."""
        users, items, ratings = self._batch
        net, hp = self.net, self.hparams
        b_u, b_i = als_biases(users, items, ratings, net.num_users, net.num_items, float(net.global_mean),
                              hp.reg_user, hp.reg_item, net.user_bias.weight[:, 0])
        net.user_bias.weight[:, 0] = b_u
        net.item_bias.weight[:, 0] = b_i
        err = ratings - float(net.global_mean) - b_u[users] - b_i[items]  # (R,)
        objective = err.pow(2).sum() + hp.reg_user * b_u.pow(2).sum() + hp.reg_item * b_i.pow(2).sum()
        return float(objective) / max(len(ratings), 1)

    def configure_optimizers(self):
        return ClosedFormStep(self.net.parameters(), self.als_epoch)
