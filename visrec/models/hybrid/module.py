"""``model=hybrid`` under the model contract: the Lightning half (training as ``model=biased_mf``, the kNN
part fitted at the start of training, w chosen on validation). Formulas and the scoring half (torch only):
:mod:`visrec.models.hybrid.scoring`."""
from __future__ import annotations

import torch

from visrec.interactions import Interactions
from visrec.models.factor.module import RatingModule
from visrec.models.hybrid.scoring import DEFAULT_GRID, HybridScoring, check_blend
from visrec.models.knn.visual_module import VisualKNN


class Hybrid(RatingModule, HybridScoring):
    """Biased MF blended with visual kNN (module docstring). Takes every ``model=biased_mf`` option plus
    the kNN part's (``knn_similarity``, ``knn_min_similarity``, ``knn_k``, ``knn_center``, as
    ``model=visual_knn``'s ``similarity``, ``min_similarity``, ``k``, ``center``) and ``blend_weight`` /
    ``blend_grid``."""

    VALIDATION_METRICS = ("val/rmse", "val/mae")
    single_process = True  # the blend weight is chosen from one process's validation sums

    def __init__(self, num_users: int, num_items: int, k: int = 64, init_std: float = 0.1, reg_factors: float = 0.05,
                 reg_bias: float = 0.01, reg_exponent: float = 0.5, global_mean: float = 0.0, rating_min: float | None = None,
                 rating_max: float | None = None, optimizer=None, scheduler=None, scheduler_monitor: str = "val/rmse",
                 visual_mode: str = "none", feature_dim: int = 0, reg_visual: float = 1.0, reg_visual_bias: float = 1.0,
                 reg_projection: float = 1e-3, visual_pca_dim: int = 64, visual_reg_exponent: float | None = None,
                 step_batch_size: int | None = None, sparse_gradients: bool = True, knn_similarity: str = "cosine",
                 knn_min_similarity: float | None = 0.0, knn_k: int | None = 40, knn_center: bool = True,
                 blend_weight: float | None = None, blend_grid: list[float] | tuple[float, ...] = DEFAULT_GRID,
                 max_block_elements: int = 2 ** 23):
        check_blend(blend_weight, blend_grid)
        blend_grid = [float(w) for w in blend_grid]  # plain floats (a ListConfig would not load with weights_only=True)
        super().__init__(num_users, num_items, k=k, init_std=init_std, reg_factors=reg_factors, reg_bias=reg_bias,
                         reg_exponent=reg_exponent, global_mean=global_mean, rating_min=rating_min, rating_max=rating_max,
                         optimizer=optimizer, scheduler=scheduler, scheduler_monitor=scheduler_monitor,
                         visual_mode=visual_mode, feature_dim=feature_dim, reg_visual=reg_visual,
                         reg_visual_bias=reg_visual_bias, reg_projection=reg_projection, visual_pca_dim=visual_pca_dim,
                         visual_reg_exponent=visual_reg_exponent, step_batch_size=step_batch_size,
                         sparse_gradients=sparse_gradients)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.build_knn_part(feature_dim, knn_similarity, knn_min_similarity, knn_k, knn_center, blend_weight,
                            max_block_elements)
        self.blend_grid = tuple(float(w) for w in blend_grid)
        self._parts: list[torch.Tensor] = []

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
        check_blend(options.get("blend_weight"), options.get("blend_grid", DEFAULT_GRID))

    @classmethod
    def uses_image_features(cls, options: dict) -> bool:
        return True

    # ---- built for the data ---------------------------------------------------------------------------
    def check_training_data(self, train: Interactions, val: Interactions | None = None) -> None:
        if not self.fixed_weight and (val is None or len(val) == 0):
            raise ValueError("model.blend_weight=null chooses w on the validation part, and there is none "
                             "(data.val_ratio=0 or refit=true): set model.blend_weight to a number in [0, 1]")

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
