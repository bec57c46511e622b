"""Validation and test by the evaluator's own ranking metrics, for models whose scores are preferences
(iALS, BPR, VBPR): ``val/ndcg@10``, ``val/recall@10``, ``val/precision@10`` on the validation part (relevant =
rating >= ``val_relevance_threshold``, candidates = warm items minus the user's training items, protocol
``all``: :func:`visrec.evaluation.evaluate`), and the same at K = 10 on the test part."""
from __future__ import annotations

import math

from visrec.evaluation import evaluate
from visrec.interactions import Interactions

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
        if len(part) == 0:
            return
        scorer = self.scorer()  # the model contract's scorer: the same tables the evaluator and the bundle use
        report = evaluate([scorer], seen, part, self.net.num_users, self.net.num_items, ks=[RANKING_K],
                          threshold=self.hparams.val_relevance_threshold, exclude_train="all",
                          known_users=self.net.known_users, known_items=self.net.known_items)
        warm = report.results.get("model", {}).get("warm", {})
        for name in ("ndcg", "recall", "precision"):
            value = warm.get(f"{name}@{RANKING_K}")
            if value is not None and math.isfinite(value):
                self.log(f"{prefix}/{name}@{RANKING_K}", float(value), sync_dist=False)
        if prefix == "val" and f"ndcg@{RANKING_K}" not in warm:
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
