"""LightningModule of user-based kNN (``model=user_knn``): Surprise's KNNBasic, KNNWithMeans (default) or
KNNBaseline, user-based (``model.variant``).

The model, its similarities and its vectorized scoring are :mod:`visrec.models.knn.user_scoring` (torch only; its
:class:`~visrec.models.knn.user_scoring.UserKNNScoring` is what evaluate.py loads a checkpoint into). Training is the
fit of a memory-based model: one ``training_step`` on every training row (``TRAINING_BATCHES = "whole"``)
stores the ratings, each user's mean and the baselines b_u, b_i in the model's buffers (so checkpoints hold them), then the model
stops the trainer (more epochs would store the same). Validation logs ``val/rmse`` / ``val/mae``
(:mod:`visrec.models.rating_metrics`). Not exportable (no factor tables): ``export=true`` is refused at set-up.
"""
from __future__ import annotations

import math

from visrec.interactions import Interactions
from visrec.models.closed_form import ClosedFormStep
from visrec.models.contract import RecommenderModel
from visrec.models.knn.user_scoring import SIMILARITIES, VARIANTS, UserKNNScoring
from visrec.models.rating_metrics import RatingMetricsMixin


class UserKNN(RatingMetricsMixin, UserKNNScoring, RecommenderModel):
    """User-based kNN (KNNBasic / KNNWithMeans / KNNBaseline) under the model contract (:mod:`visrec.models.contract`)."""

    DATA_KEYS = ("num_users", "num_items", "global_mean", "rating_min", "rating_max")
    TRAINING_BATCHES = "whole"
    VALIDATION_METRICS = ("val/rmse", "val/mae")
    single_process = True

    def __init__(self, num_users: int, num_items: int, global_mean: float, rating_min: float | None = None,
                 rating_max: float | None = None, k: int = 40, min_k: int = 1, similarity: str = "cosine",
                 min_support: int = 1, shrinkage: float = 0.0, variant: str = "with_means", bsl_reg_user: float = 15.0,
                 bsl_reg_item: float = 10.0, bsl_n_epochs: int = 10, max_block_elements: int = 2 ** 23):
        options = dict(k=k, min_k=min_k, similarity=similarity, min_support=min_support, shrinkage=shrinkage,
                       variant=variant, bsl_reg_user=bsl_reg_user, bsl_reg_item=bsl_reg_item, bsl_n_epochs=bsl_n_epochs,
                       max_block_elements=max_block_elements)
        self.check_options(options)
        super().__init__(num_users, num_items, global_mean, rating_min, rating_max, **options)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self._batch = None

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Refuse option values that would score nonsense, naming the key (``model.<name>``)."""
        def count(name, default, low):
            value = options.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"model.{name} must be an integer >= {low}, got {value!r}")
            return value

        k = count("k", 40, 1)
        min_k = count("min_k", 1, 0)
        count("min_support", 1, 0)
        count("max_block_elements", 2 ** 23, 1)
        count("bsl_n_epochs", 10, 1)
        if min_k > k:
            raise ValueError(f"model.min_k={min_k} > model.k={k}: no prediction could use its neighbours")
        if options.get("similarity", "cosine") not in SIMILARITIES:
            raise ValueError(f"model.similarity must be one of {SIMILARITIES}, got {options.get('similarity')!r}")
        if options.get("variant", "with_means") not in VARIANTS:
            raise ValueError(f"model.variant must be one of {VARIANTS}, got {options.get('variant')!r}")
        for name in ("shrinkage", "bsl_reg_user", "bsl_reg_item"):
            value = options.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
                raise ValueError(f"model.{name} must be a finite number >= 0, got {value!r}")

    def check_training_data(self, train: Interactions, val: Interactions | None = None) -> None:
        if len(train) == 0:
            raise ValueError("model=user_knn: the training part has no rating (check the data and data.split)")

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.world_size > 1:
            raise ValueError("model=user_knn trains in a single process; use trainer=cpu or trainer=gpu, not DDP")

    def training_step(self, batch, batch_idx):
        if batch_idx > 0:
            return None
        self._batch = batch
        self.optimizers().step()  # ClosedFormStep: store the ratings and user means (counted as one step)
        self.trainer.should_stop = True  # the fit is complete; another epoch would store the same
        return None

    def _fit_batch(self) -> float:
        users, items, ratings = self._batch
        self.fit(users, items, ratings)
        return 0.0

    def configure_optimizers(self):
        return ClosedFormStep([self.user_means], self._fit_batch)
