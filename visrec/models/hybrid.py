"""Hybrid of biased MF and visual kNN (``model=hybrid``): a linear blend of the two rating predictions,
    r̂_ui = clip((1 − w) · r̂^MF_ui + w · r̂^vkNN_ui)
r̂^MF = μ + b_u + b_i + p_u·q_i (:class:`~visrec.models.rating_module.RatingModule`, trained exactly as
``model=biased_mf``, its visual prior included) and r̂^vkNN the item-based KNNWithMeans on image similarity
(:mod:`visrec.models.visual_knn`), both before clipping; clip to the rating range for rating metrics only
(ranking uses the raw blend). A weighted hybrid in the sense of Burke 2002 ("Hybrid recommender systems:
survey and experiments", UMUAI 12(4)), with the weight chosen on held-out data.

w: with ``blend_weight: null`` (default) it is chosen at every validation epoch from ``blend_grid`` as the
w with the lowest validation RMSE (the ``val/rmse`` ratings: user and item with training ratings; ties to
the smaller w), logged as ``val/blend_weight`` and saved with the weights, so the best checkpoint holds
the w of its own epoch; ``val/rmse`` is that of the blend at the chosen w. A number fixes w (needed when
there is no validation part, e.g. ``refit=true``'s train + val model: use the w the validated run chose).
In a cold-item split the validation ratings are warm, so w measures the blend on warm items; cold
items are scored with the same w (a separate cold weight is not built).

The kNN part is fitted (ratings and user means stored) at the start of training from the datamodule's
training part (``trainer.datamodule.tensors["train"]``), and its similarities built when the features are
attached. Not exportable (the kNN part has no factor tables), like ``model=visual_knn``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from visrec.evaluation.scorers import FactorScorer
from visrec.interactions import Interactions
from visrec.models.rating_module import RatingModule
from visrec.models.visual_knn import VisualKNN, VisualKNNScoring

DEFAULT_GRID = tuple(round(0.1 * i, 1) for i in range(11))  # 0, 0.1, ..., 1


@dataclass
class HybridScorer:
    """(1 − w)·MF + w·kNN: ``score_users`` (B,) -> (B, N) raw blend; ``predict`` (R,), (R,) -> (R,) clipped."""

    mf: FactorScorer  # built without a rating range: raw predictions
    knn: VisualKNNScoring
    weight: float
    rating_range: tuple[float, float] | None
    name: str = "model"

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        w = self.weight
        out = self.mf.score_users(users).mul_(1 - w)  # (B, N)
        return out.add_(self.knn.score_users(users), alpha=w) if w > 0 else out

    def raw_parts(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R,) MF and (R,) kNN predictions (not clipped) of the pairs."""
        unique, inverse = torch.unique(users, return_inverse=True)
        knn = self.knn.score_users(unique)[inverse, items]  # (R,)
        return self.mf.predict(users, items), knn

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        mf, knn = self.raw_parts(users, items)
        pred = (1 - self.weight) * mf + self.weight * knn  # (R,)
        return pred if self.rating_range is None else pred.clamp(*self.rating_range)


class Hybrid(RatingModule):
    """Biased MF blended with visual kNN (module docstring). Takes every ``model=biased_mf`` option plus
    the kNN part's (``knn_similarity``, ``knn_min_similarity``, ``knn_k``, ``knn_center``, as
    ``model=visual_knn``'s ``similarity``, ``min_similarity``, ``k``, ``center``) and ``blend_weight`` /
    ``blend_grid``."""

    VALIDATION_METRICS = ("val/rmse", "val/mae")
    single_process = True  # the blend weight is chosen from one process's validation sums
    exportable = False
    model_kind = "Hybrid"

    def __init__(self, num_users: int, num_items: int, k: int = 64, init_std: float = 0.1, reg_factors: float = 0.05,
                 reg_bias: float = 0.01, reg_exponent: float = 0.5, global_mean: float = 0.0, rating_min: float | None = None,
                 rating_max: float | None = None, optimizer=None, scheduler=None, scheduler_monitor: str = "val/rmse",
                 visual_mode: str = "none", feature_dim: int = 0, reg_visual: float = 1.0, reg_visual_bias: float = 1.0,
                 reg_projection: float = 1e-3, visual_pca_dim: int = 64, visual_reg_exponent: float | None = None,
                 step_batch_size: int | None = None, sparse_gradients: bool = True, knn_similarity: str = "cosine",
                 knn_min_similarity: float | None = 0.0, knn_k: int | None = 40, knn_center: bool = True,
                 blend_weight: float | None = None, blend_grid: list[float] | tuple[float, ...] = DEFAULT_GRID,
                 max_block_elements: int = 2 ** 23):
        self._check_blend(blend_weight, blend_grid)
        blend_grid = [float(w) for w in blend_grid]  # plain floats (a ListConfig would not load with weights_only=True)
        super().__init__(num_users, num_items, k=k, init_std=init_std, reg_factors=reg_factors, reg_bias=reg_bias,
                         reg_exponent=reg_exponent, global_mean=global_mean, rating_min=rating_min, rating_max=rating_max,
                         optimizer=optimizer, scheduler=scheduler, scheduler_monitor=scheduler_monitor,
                         visual_mode=visual_mode, feature_dim=feature_dim, reg_visual=reg_visual,
                         reg_visual_bias=reg_visual_bias, reg_projection=reg_projection, visual_pca_dim=visual_pca_dim,
                         visual_reg_exponent=visual_reg_exponent, step_batch_size=step_batch_size,
                         sparse_gradients=sparse_gradients)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        rating_range = self.rating_range or (None, None)
        self.knn = VisualKNNScoring(num_users, num_items, float(self.net.global_mean), *rating_range, feature_dim=feature_dim,
                                    similarity=knn_similarity, min_similarity=knn_min_similarity, k=knn_k,
                                    center=knn_center, max_block_elements=max_block_elements)
        self.fixed_weight = blend_weight is not None
        self.blend_grid = tuple(float(w) for w in blend_grid)
        self.register_buffer("blend_weight", torch.tensor(float(blend_weight or 0.0)))  # w, saved with the weights
        self._parts: list[torch.Tensor] = []

    @staticmethod
    def _check_blend(weight, grid) -> None:
        def is_weight(value):
            return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1
        if weight is not None and not is_weight(weight):
            raise ValueError(f"model.blend_weight must be a number in [0, 1] or null (chosen on validation), got {weight!r}")
        if isinstance(grid, (str, bytes)) or not hasattr(grid, "__len__") or len(grid) == 0 or not all(is_weight(w) for w in grid):
            raise ValueError(f"model.blend_grid must be a non-empty list of numbers in [0, 1], got {grid!r}")

    @classmethod
    def check_options(cls, options: dict) -> None:
        """The MF options (as ``model=biased_mf``), the kNN part's (named ``model.knn_<key>``) and the blend's."""
        super().check_options(options)
        knn = {key[4:]: options[key] for key in ("knn_similarity", "knn_min_similarity", "knn_k", "knn_center")
               if key in options}
        try:
            VisualKNN.check_options({**knn, "max_block_elements": options.get("max_block_elements", 2 ** 23)})
        except ValueError as error:  # name the hybrid's key (model.knn_k, not model.k)
            message = str(error)
            for key in ("similarity", "min_similarity", "k", "center"):
                message = message.replace(f"model.{key} ", f"model.knn_{key} ")
            raise ValueError(message) from None
        cls._check_blend(options.get("blend_weight"), options.get("blend_grid", DEFAULT_GRID))

    @classmethod
    def uses_image_features(cls, options: dict) -> bool:
        return True

    # ---- built for the data ---------------------------------------------------------------------------
    def set_train_counts(self, user_counts: torch.Tensor, item_counts: torch.Tensor) -> None:
        super().set_train_counts(user_counts, item_counts)
        self.knn.set_train_counts(user_counts, item_counts)

    def check_training_data(self, train: Interactions, val: Interactions | None = None) -> None:
        if not self.fixed_weight and (val is None or len(val) == 0):
            raise ValueError("model.blend_weight=null chooses w on the validation part, and there is none "
                             "(data.val_ratio=0 or refit=true): set model.blend_weight to a number in [0, 1]")

    def attach_features(self, features: torch.Tensor, has_image: torch.Tensor, fit: bool = True) -> None:
        super().attach_features(features, has_image, fit)
        self.knn.attach_features(features, has_image, fit)

    @property
    def has_image_prior(self) -> bool:
        return True

    def bundle_arrays(self):
        raise NotImplementedError("model=hybrid cannot be exported: its visual kNN part has no factor tables; "
                                  "train with export=false")

    # ---- scores ---------------------------------------------------------------------------------------
    def scorer(self, name: str = "model") -> HybridScorer:
        mf = FactorScorer(**self.effective_factors(), rating_range=None, name=name)
        return HybridScorer(mf, self.knn, float(self.blend_weight), self.rating_range, name)

    def predict_ratings(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) blended predictions, clipped (what ``test_step`` scores)."""
        return self.scorer().predict(users, items)

    # ---- training ---------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        train = self.trainer.datamodule.tensors["train"]
        self.knn.fit(train.users.to(self.device), train.items.to(self.device), train.ratings.to(self.device))
        super().on_fit_start()

    def validation_step(self, batch, batch_idx):
        users, items, ratings = batch
        mf, knn = self.scorer().raw_parts(users, items)  # (B,) each
        warm = (self.known_users[users] & self.known_items[items]).float()  # (B,)
        self._parts.append(torch.stack([mf, knn, ratings.float(), warm]))  # (4, B)

    @torch.no_grad()
    def on_validation_epoch_end(self):
        if not self._parts:
            return
        mf, knn, ratings, warm = torch.cat(self._parts, dim=1)  # (R,) each
        self._parts = []
        grid = torch.tensor(self.blend_grid if not self.fixed_weight else (float(self.blend_weight),), device=mf.device)  # (G,)
        pred = (1 - grid[:, None]) * mf + grid[:, None] * knn  # (G, R)
        if self.rating_range is not None:
            pred = pred.clamp(*self.rating_range)
        err = pred - ratings  # (G, R)
        groups = torch.stack([warm, 1 - warm])  # (2, R)
        sse, sae, count = err.pow(2) @ groups.T, err.abs() @ groups.T, groups.sum(1)  # (G, 2), (G, 2), (2,)
        best = int(torch.argmin(sse[:, 0])) if count[0] > 0 else 0  # first minimum: the smaller w on ties
        self.blend_weight.fill_(float(grid[best]))
        self.log("val/blend_weight", self.blend_weight, sync_dist=False)
        for col, suffix in ((0, ""), (1, "_cold")):
            self.log(f"val/ratings{suffix}", count[col], sync_dist=False)
            if count[col] > 0:
                self.log(f"val/rmse{suffix}", (sse[best, col] / count[col]).sqrt(), prog_bar=not suffix, sync_dist=False)
                self.log(f"val/mae{suffix}", sae[best, col] / count[col], sync_dist=False)
