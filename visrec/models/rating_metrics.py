"""Validation / test rating metrics for models that predict ratings through their scorer (torch only).

Logged at the end of each validation / test epoch, exact over the whole part (not means of batch means):
    rmse = sqrt(Σ (r̂ - r)² / R),  mae = Σ |r̂ - r| / R
over the R ratings whose user and item are both known to the model (``known_users`` / ``known_items``,
the "warm" ratings: Cornac's ``exclude_unknowns``), and the same over the others as ``rmse_cold`` /
``mae_cold``; ``ratings`` / ``ratings_cold`` count both groups. r̂ = ``self.scorer().predict`` (the
model contract's scorer, clipped to the rating range when it has one): the numbers the evaluator gives.
The same definitions as :class:`visrec.models.factor.module.RatingModule` (single process only).
"""
from __future__ import annotations

import torch

# The logged metrics that are counts (``<stage>/ratings``, ``<stage>/ratings_cold``): Lightning hands
# every logged value back as a float tensor, and readers turn these into ints (visrec.pipeline.training).
COUNT_METRICS = ("ratings", "ratings_cold")


class RatingMetricsMixin:
    """Adds ``validation_step`` / ``test_step`` and their epoch ends to a LightningModule whose ``scorer()``
    predicts ratings; the scorer is built once per epoch (``_epoch_scorer``)."""

    _rating_sums: torch.Tensor | None = None
    _epoch_scorer = None

    def _accumulate_ratings(self, batch) -> None:
        users, items, ratings = batch
        if self._epoch_scorer is None:
            self._epoch_scorer = self.scorer()
        err = self._epoch_scorer.predict(users, items) - ratings  # (B,)
        warm = (self.known_users[users] & self.known_items[items]).float()  # (B,)
        groups = torch.stack([warm, 1.0 - warm])  # (2, B): warm, cold
        sums = torch.stack([groups @ err.pow(2), groups @ err.abs(), groups.sum(1)], dim=1)  # (2, 3): sse, sae, count
        self._rating_sums = sums if self._rating_sums is None else self._rating_sums + sums

    def _log_rating_metrics(self, stage: str) -> None:
        sums, self._rating_sums, self._epoch_scorer = self._rating_sums, None, None
        if sums is None:
            return
        for (sse, sae, count), suffix in zip(sums, ("", "_cold")):
            self.log(f"{stage}/ratings{suffix}", count, sync_dist=False)
            if count > 0:
                self.log(f"{stage}/rmse{suffix}", (sse / count).sqrt(), prog_bar=not suffix, sync_dist=False)
                self.log(f"{stage}/mae{suffix}", sae / count, sync_dist=False)

    def validation_step(self, batch, batch_idx):
        self._accumulate_ratings(batch)

    def on_validation_epoch_end(self):
        self._log_rating_metrics("val")

    def test_step(self, batch, batch_idx):
        self._accumulate_ratings(batch)

    def on_test_epoch_end(self):
        self._log_rating_metrics("test")
