"""``model=visual_knn`` under the model contract: the Lightning half of item-based KNNWithMeans on image
similarity. Formulas, similarities and the scoring half (torch only, what ``evaluate.py`` loads a checkpoint
into): :mod:`visrec.models.knn.visual_scoring`."""
from __future__ import annotations

from visrec.interactions import Interactions
from visrec.models.closed_form import ClosedFormStep
from visrec.models.contract import RecommenderModel
from visrec.models.knn.visual_scoring import VisualKNNScoring, check_visual_knn_options
from visrec.models.rating_metrics import RatingMetricsMixin


class VisualKNN(RatingMetricsMixin, VisualKNNScoring, RecommenderModel):
    """Item-based KNNWithMeans on image similarity under the model contract (``model=visual_knn``; formulas:
    module docstring). Training (``TRAINING_BATCHES = "whole"``): one closed-form step stores the training
    ratings and μ_u (persistent buffers, so checkpoints hold them) and stops the trainer. Validation logs
    ``val/rmse`` / ``val/mae`` (:mod:`visrec.models.rating_metrics`)."""

    DATA_KEYS = ("num_users", "num_items", "global_mean", "rating_min", "rating_max", "feature_dim")
    TRAINING_BATCHES = "whole"
    VALIDATION_METRICS = ("val/rmse", "val/mae")
    single_process = True

    def __init__(self, num_users: int, num_items: int, global_mean: float, rating_min: float | None = None,
                 rating_max: float | None = None, feature_dim: int = 0, similarity: str = "cosine",
                 min_similarity: float | None = 0.0, k: int | None = 40, center: bool = True,
                 ranking: str = "similarity_sum", max_block_elements: int = 2 ** 23):
        super().__init__(num_users, num_items, global_mean, rating_min, rating_max, feature_dim, similarity=similarity,
                         min_similarity=min_similarity, k=k, center=center, ranking=ranking,
                         max_block_elements=max_block_elements)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self._batch = None

    # ---- contract: built from ---------------------------------------------------------------------
    @classmethod
    def check_options(cls, options: dict) -> None:
        """Raise ValueError naming ``model.<key>`` for option values that would score nonsense."""
        check_visual_knn_options(options)

    @classmethod
    def uses_image_features(cls, options: dict) -> bool:
        return True  # the similarities are the pictures'

    def check_training_data(self, train: Interactions, val: Interactions | None = None) -> None:
        if len(train) == 0:
            raise ValueError("model=visual_knn: the training part has no rating (check the data and data.split)")

    # ---- training (Lightning) -----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.world_size > 1:
            raise ValueError("model=visual_knn trains in a single process; use trainer=cpu or trainer=gpu, not DDP")

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
