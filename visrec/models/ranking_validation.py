"""Validation and test by the evaluator's own ranking metrics, for models whose scores are preferences
(iALS, BPR, VBPR): ``val/ndcg@10``, ``val/recall@10``, ``val/precision@10`` on the validation part (relevant =
rating >= ``val_relevance_threshold``, candidates = warm items minus the user's training items, protocol
``all``: :func:`visrec.evaluation.evaluate`), and the same at K = 10 on the test part."""
from __future__ import annotations

import math

import torch

from visrec.evaluation import evaluate
from visrec.interactions import Interactions
from visrec.models.ials.sharding import rank_and_world, row_slice, sum_over_processes

RANKING_K = 10
RANKING_METRICS = (f"val/ndcg@{RANKING_K}", f"val/recall@{RANKING_K}", f"val/precision@{RANKING_K}")


class RankingValidation:
    """Mixin for a :class:`~visrec.models.contract.RecommenderModel` with ``self.net`` (known users / items),
    ``self.hparams.val_relevance_threshold`` and ``MODEL_NAME`` (``model=<name>`` in messages)."""

    MODEL_NAME = "model"
    VALIDATION_METRICS = RANKING_METRICS

    def check_ranking_validation(self, val: Interactions | None) -> None:
        """Refuse a validation part (when there is one) with no relevant rating of a warm user and item: the
        early-stopping metric val/ndcg@10 could not be computed (ValueError naming the keys to change)."""
        if val is None or len(val) == 0:
            return
        threshold = self.hparams.val_relevance_threshold
        relevant = val.ratings >= threshold  # (V,)
        warm = self.net.known_users[val.users] & self.net.known_items[val.items]  # (V,)
        if not bool((relevant & warm).any()):
            raise ValueError(f"model={self.MODEL_NAME}: no validation rating >= {threshold} of a user and item with "
                             "training interactions, so val/ndcg@10 (what early stopping watches) cannot be computed: "
                             "raise data.val_ratio, or lower model.val_relevance_threshold (default: eval.relevance_threshold)")

    def _ranking(self, seen: Interactions, part: Interactions, prefix: str) -> None:
        """Log ``prefix``/ndcg, recall, precision @10 of the warm segment of ``part`` (candidates: the known items
        minus each user's items in ``seen``). Under DDP each process ranks only the users of its own slice
        (:func:`~visrec.models.ials.sharding.row_slice`, the users its ALS sweeps solve) and the per-user sums
        and user counts are added up over the processes (4 all-reduces), so the means are the single-process
        ones and the U × N scoring is split W ways instead of repeated by every process."""
        rank, world = rank_and_world()
        if len(part) == 0 and world == 1:  # under DDP a process may hold none of the part: it still joins the sums
            return
        if world > 1:
            start, stop = row_slice(self.net.num_users, rank, world)
            part = part.subset((part.users >= start) & (part.users < stop))
            seen = seen.subset((seen.users >= start) & (seen.users < stop))
        names = ("ndcg", "recall", "precision")
        users, sums = 0, [0.0] * len(names)  # this process's warm users and their per-user metric sums
        if len(part):
            scorer = self.scorer()  # the model contract's scorer: the same tables the evaluator and the bundle use
            report = evaluate([scorer], seen, part, self.net.num_users, self.net.num_items, ks=[RANKING_K],
                              threshold=self.hparams.val_relevance_threshold, exclude_train="all",
                              known_users=self.net.known_users, known_items=self.net.known_items)
            warm_users, values = report.per_user.get(scorer.name, {}).get("warm", (torch.zeros(0), {}))
            users = len(warm_users)
            sums = [float(values[f"{name}@{RANKING_K}"].sum()) if users else 0.0 for name in names]
        users = sum_over_processes(float(users), world, self.device)
        sums = [sum_over_processes(total, world, self.device) for total in sums]
        for name, total in zip(names, sums):
            value = total / users if users else float("nan")
            if math.isfinite(value):
                self.log(f"{prefix}/{name}@{RANKING_K}", value, sync_dist=False)
        if prefix == "val" and not users:
            raise ValueError(f"model={self.MODEL_NAME}: no validation user has a relevant warm item (rating >= "
                             f"{self.hparams.val_relevance_threshold}); val/ndcg@10 cannot be computed (raise data.val_ratio, "
                             "or lower model.val_relevance_threshold)")

    def validation_step(self, batch, batch_idx):
        return None

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        tensors = self.trainer.datamodule.tensors
        self._ranking(tensors["train"], tensors["val"], "val")

    def test_step(self, batch, batch_idx):
        return None

    def on_test_epoch_end(self):
        tensors = self.trainer.datamodule.tensors
        self._ranking(Interactions.concat(tensors["train"], tensors["val"]), tensors["test"], "test")
