"""LightningModules that train BPR and VBPR (``model=bpr``, ``model=vbpr``) with a pairwise ranking loss.

Objective (Rendle et al., UAI 2009, eq. "BPR-Opt"; VBPR: He & McAuley, AAAI 2016, sec. 3), per optimizer
step over a slice of B triples (u, i, j), i an item u interacted with and j a sampled negative:

    x_uij = s_ui − s_uj   (scores in :mod:`visrec.models.pairwise.scoring`)
    loss  = − Σ ln σ(x_uij) + λ_w/2 Σ (‖γ_u‖² + ‖γ_i‖² + ‖γ_j‖² + ‖θ_u‖²) + λ_b/2 Σ β_i² + λ_b/20 Σ β_j²
            + λ_E/2 (‖E‖²_F + ‖β'‖²)

the regularization of Cornac's VBPR (``lambda_w``, ``lambda_b``, ``lambda_e``; Cornac 2.x / 3.x
``cornac.models.VBPR``), so the same settings mean the same model; λ_E applies once per step (as in Cornac).
BPR is the same loss without θ, E, β'.

Sampling: every training interaction (or those rated >= ``positive_threshold``) is a positive once per epoch,
in the datamodule's shuffled order; each gets one negative j drawn uniformly from the items with training
interactions, redrawn while u has interacted with j (:mod:`visrec.models.pairwise.sampling`). That is the
paper's D_S and Cornac's BPR; Cornac's VBPR redraws only while r_uj >= r_ui (a lower-rated item may be j).
Items without training interactions are never negatives.

Optimizer (BPR: ``optimizer=sgd``, the default, is LearnBPR's per-sample SGD, :mod:`visrec.models.pairwise.sgd`;
VBPR and BPR's ``optimizer=adam``): Adam (Cornac uses Adam for VBPR) with ``learning_rate``; with ``sparse_gradients`` (default) the
tables γ, θ, β are sparse embeddings stepped by ``torch.optim.SparseAdam`` (lazy Adam: a row's moments move
only when it is in the batch) and E, β' by Adam, so a step costs O(B·K + k2·P) whatever the catalog.
``step_batch_size`` cuts each loader batch into steps of that many triples (Cornac's ``batch_size``);
null: one step per loader batch (``data.batch_size``).

Validation: ``val/ndcg@10`` (and recall, precision) by the evaluator's own code after every epoch, which
early stopping and the best checkpoint watch (:mod:`visrec.models.ranking_validation`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from visrec.interactions import Interactions
from visrec.models.closed_form import ClosedFormStep
from visrec.models.contract import FactorModel
from visrec.models.divergence import DivergedError
from visrec.models.ials.solver import CSR
from visrec.models.pairwise.sampling import NegativeSampler
from visrec.models.pairwise.scoring import COLD_SCORING, BPRScoring, VBPRScoring
from visrec.models.ranking_validation import RANKING_K, RankingValidation
from visrec.models.visual.ials_head import fit_ials_cold_head
from visrec.models.visual.typical import typical_candidate

# adam: mini-batch Adam steps through Lightning; sgd: BPR's per-sample SGD epoch (visrec/models/pairwise/sgd.py).
OPTIMIZERS = ("adam", "sgd")
# The unobserved weight α₀ of the squared loss the VBPR cold head is fitted on (iALS's default).
COLD_HEAD_UNOBSERVED_WEIGHT = 0.2


def _check_pairwise_options(options: dict) -> None:
    """Refuse option values that would train nonsense, naming the key (``model.<name>``)."""
    def bad(name, expected):
        return ValueError(f"model.{name} must be {expected}, got {options.get(name)!r}")

    def is_int(value):
        return isinstance(value, int) and not isinstance(value, bool)

    for name in ("k", "k2", "visual_pca_dim"):
        if name in options and not (is_int(options[name]) and options[name] >= 1):
            raise bad(name, "a positive integer")
    for name in ("lambda_w", "lambda_b", "lambda_e"):
        value = options.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
            raise bad(name, "a finite number >= 0")
    for name in ("learning_rate", "init_std"):
        value = options.get(name, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise bad(name, "a finite number > 0")
    steps = options.get("step_batch_size")
    if steps is not None and not (is_int(steps) and steps >= 1):
        raise bad("step_batch_size", "a positive number of triples per step (or null: one step per loader batch)")
    if "optimizer" in options and options["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"model.optimizer must be one of {OPTIMIZERS}, got {options.get('optimizer')!r}")
    if "cold_scoring" in options and options["cold_scoring"] not in COLD_SCORING:
        raise ValueError(f"model.cold_scoring must be one of {COLD_SCORING}, got {options.get('cold_scoring')!r}")
    threshold = options.get("positive_threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold)):
        raise bad("positive_threshold", "a finite rating (or null: every rating is an interaction)")


class _PairwiseTraining(RankingValidation):
    """Training shared by BPR and VBPR (the module docstring's loss, sampling and optimizers)."""

    DATA_KEYS = ("num_users", "num_items")
    TRAINING_BATCHES = "ratings"

    @classmethod
    def check_options(cls, options: dict) -> None:
        _check_pairwise_options(options)

    @classmethod
    def sparse_gradients_for(cls, options: dict) -> bool:
        return bool(options.get("sparse_gradients", True))

    def _positives(self, ratings: Interactions) -> Interactions:
        threshold = self.hparams.positive_threshold
        return ratings if threshold is None else ratings.subset(ratings.ratings >= threshold)

    def check_training_data(self, train: Interactions, val: Interactions | None = None) -> None:
        """Refuse data with no positive interaction or a single trained item (no negative to draw), and a
        validation part on which val/ndcg@10 cannot be computed; before training."""
        threshold = self.hparams.positive_threshold
        positives = self._positives(train)
        if len(positives) == 0:
            raise ValueError(f"model={self.MODEL_NAME}: no training interaction{'' if threshold is None else f' with a rating >= {threshold}'} "
                             "(lower model.positive_threshold, or check the data)")
        if int(self.net.known_items.sum()) < 2:
            raise ValueError(f"model={self.MODEL_NAME}: a pairwise loss needs at least 2 items with training interactions")
        self.check_ranking_validation(val)

    def on_fit_start(self) -> None:
        tensors = self.trainer.datamodule.tensors
        self.check_training_data(tensors["train"], tensors["val"])
        positives = self._positives(tensors["train"])
        if self.hparams.get("optimizer", "adam") == "adam":  # BPR's SGD epoch draws its own negatives (sgd.py)
            self._sampler = NegativeSampler(positives.users, positives.items, self.net.num_items, self.net.known_items.cpu())
        self._loss_sum, self._triples = 0.0, 0

    # ---- the loss ----------------------------------------------------------------------------------
    def _visual_terms(self, users, pos, neg):
        """(B,) θ_u·E(f̃_i − f̃_j) + β'·(f̃_i − f̃_j) and the penalty's visual rows; 0 for BPR."""
        return 0.0, 0.0, 0.0

    def pairwise_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """The module docstring's loss for (B,) users, positives and negatives (a sum over the B triples)."""
        hp, net = self.hparams, self.net
        gamma_u = net.user_factors(users)  # (B, k)
        gamma_i, gamma_j = net.item_factors(pos), net.item_factors(neg)  # (B, k)
        beta_i, beta_j = net.item_bias(pos).squeeze(-1), net.item_bias(neg).squeeze(-1)  # (B,)
        visual, visual_rows, visual_shared = self._visual_terms(users, pos, neg)
        x = beta_i - beta_j + (gamma_u * (gamma_i - gamma_j)).sum(-1) + visual  # (B,)
        penalty = (hp.lambda_w / 2 * (gamma_u.pow(2).sum() + gamma_i.pow(2).sum() + gamma_j.pow(2).sum() + visual_rows)
                   + hp.lambda_b / 2 * beta_i.pow(2).sum() + hp.lambda_b / 20 * beta_j.pow(2).sum()
                   + hp.get("lambda_e", 0.0) / 2 * visual_shared)
        return -F.logsigmoid(x).sum() + penalty

    # ---- one epoch ---------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        users, items, ratings = batch
        if self.hparams.positive_threshold is not None:
            keep = ratings >= self.hparams.positive_threshold  # (B,)
            users, items = users[keep], items[keep]
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        size = self.hparams.step_batch_size or max(len(users), 1)
        negatives, valid = self._sampler.sample(users)  # (B,), (B,)
        negatives, valid = negatives.to(users.device), valid.to(users.device)
        for u, i, j, ok in zip(users.split(size), items.split(size), negatives.split(size), valid.split(size)):
            u, i, j = u[ok], i[ok], j[ok]
            if len(u) == 0:
                continue
            loss = self.pairwise_loss(u, i, j)
            for optimizer in optimizers:
                optimizer.zero_grad()
            self.manual_backward(loss)
            for optimizer in optimizers:
                optimizer.step()
            self._loss_sum += float(loss.detach())
            self._triples += len(u)
        return None

    def on_train_epoch_end(self) -> None:
        """Log train/loss (per triple) and stop with DivergedError on a non-finite loss or weights."""
        loss = self._loss_sum / max(self._triples, 1)
        self._loss_sum, self._triples = 0.0, 0
        self.log("train/loss", loss, prog_bar=True, sync_dist=False)
        finite = math.isfinite(loss) and all(bool(torch.isfinite(p).all()) for p in self.parameters())
        if not finite:
            raise DivergedError(f"model={self.MODEL_NAME} diverged in epoch {self.current_epoch}: train/loss {loss} "
                                f"(model.learning_rate = {self.hparams.learning_rate}): lower it, or raise model.lambda_w")

    def _tables(self) -> list:
        return [self.net.user_factors.weight, self.net.item_factors.weight, self.net.item_bias.weight]

    def _dense(self) -> list:
        return []

    def configure_optimizers(self):
        lr = self.hparams.learning_rate
        if not self.hparams.sparse_gradients:
            return torch.optim.Adam(self._tables() + self._dense(), lr=lr)
        optimizers = [torch.optim.SparseAdam(self._tables(), lr=lr)]
        if self._dense():
            optimizers.append(torch.optim.Adam(self._dense(), lr=lr))
        return optimizers


class BPR(_PairwiseTraining, BPRScoring, FactorModel):
    """BPR under the model contract (``model=bpr``): s_ui = β_i + γ_u·γ_i, pairwise loss (module docstring).
    ``optimizer=sgd`` (default): LearnBPR's per-sample SGD, one compiled epoch per training step
    (:mod:`visrec.models.pairwise.sgd`; single process, ``step_batch_size`` unused); ``adam``: Adam
    mini-batches on sparse tables (DDP)."""

    MODEL_NAME = "bpr"

    def __init__(self, num_users: int, num_items: int, k: int = 64, init_std: float = 0.1, learning_rate: float = 0.01,
                 lambda_w: float = 0.01, lambda_b: float = 0.01, step_batch_size: int | None = None,
                 positive_threshold: float | None = None, val_relevance_threshold: float = 4.0,
                 sparse_gradients: bool = True, optimizer: str = "sgd", monitor: str = f"val/ndcg@{RANKING_K}",
                 monitor_mode: str = "max"):
        self.check_options(dict(k=k, init_std=init_std, learning_rate=learning_rate, lambda_w=lambda_w, lambda_b=lambda_b,
                                step_batch_size=step_batch_size, positive_threshold=positive_threshold, optimizer=optimizer))
        super().__init__(num_users, num_items, k, init_std=init_std, sparse_gradients=sparse_gradients and optimizer == "adam")
        self.save_hyperparameters()
        self.automatic_optimization = False
        if optimizer == "sgd":  # one compiled epoch per step: the datamodule serves every row as one batch
            self.TRAINING_BATCHES = "whole"
            from visrec.models.pairwise.sgd import load_kernel

            load_kernel()  # compiled, or loaded from numba's cache, before training starts

    @classmethod
    def uses_image_features(cls, options: dict) -> bool:
        return False

    @classmethod
    def sparse_gradients_for(cls, options: dict) -> bool:
        return options.get("optimizer", "sgd") == "adam" and bool(options.get("sparse_gradients", True))

    @classmethod
    def single_process_reason(cls, options: dict) -> str | None:
        if options.get("optimizer", "sgd") == "sgd":
            return "model.optimizer=sgd (per-sample SGD) trains in a single process (use model.optimizer=adam under DDP)"
        return None

    def setup(self, stage: str) -> None:
        reason = self.single_process_reason(dict(self.hparams))
        if reason and self.trainer is not None and self.trainer.world_size > 1:  # built directly, not through the pipeline
            raise ValueError(reason)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.hparams.optimizer == "sgd":
            positives = self._positives(self.trainer.datamodule.tensors["train"])
            order = torch.argsort(positives.users.cpu() * self.net.num_items + positives.items.cpu())
            users, items = positives.users.cpu()[order], positives.items.cpu()[order]
            from visrec.models.pairwise.sgd import prepare_triples

            counts = torch.bincount(users, minlength=self.net.num_users)
            indptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]).numpy()  # (U + 1,)
            candidates = torch.nonzero(self.net.known_items.cpu()).squeeze(1).long().numpy()  # (M,)
            self._triples_table = prepare_triples(indptr, items.long().numpy(), candidates, self.net.num_items)

    def training_step(self, batch, batch_idx):
        if self.hparams.optimizer == "adam":
            return super().training_step(batch, batch_idx)
        if batch_idx > 0:  # one batch per epoch ("whole")
            return None
        loss = self.optimizers().step()  # ClosedFormStep: one compiled SGD epoch
        self._loss_sum += loss
        self._triples += 1
        return None

    @torch.no_grad()
    def _sgd_epoch(self) -> float:
        from visrec.models.pairwise.sgd import bpr_sgd_epoch

        hp, net = self.hparams, self.net
        tables = [net.user_factors.weight, net.item_factors.weight, net.item_bias.weight]
        arrays = [t.detach().cpu().numpy() for t in tables]  # views of CPU tables: updated in place
        seed = int(torch.randint(2**31 - 1, (1,)))  # from the seeded torch stream: runs are reproducible
        loss, _ = bpr_sgd_epoch(arrays[0], arrays[1], arrays[2].reshape(-1), self._triples_table, hp.learning_rate,
                                hp.lambda_w, hp.lambda_b, seed)
        for table, array in zip(tables, arrays):
            if table.device.type != "cpu":
                table.copy_(torch.from_numpy(array))
        return float(loss)

    def configure_optimizers(self):
        if self.hparams.optimizer == "sgd":
            return ClosedFormStep(self.net.parameters(), self._sgd_epoch)
        return super().configure_optimizers()


class VBPR(_PairwiseTraining, VBPRScoring, FactorModel):
    """VBPR under the model contract (``model=vbpr``): s_ui = β_i + γ_u·γ_i + θ_u·(E f̃_i) + β'·f̃_i over the
    frozen image features, pairwise loss (module docstring); cold items scored from their picture."""

    MODEL_NAME = "vbpr"
    DATA_KEYS = ("num_users", "num_items", "feature_dim")

    def __init__(self, num_users: int, num_items: int, k: int = 32, k2: int = 32, init_std: float = 0.1,
                 feature_dim: int = 0, visual_pca_dim: int = 8, learning_rate: float = 0.005, lambda_w: float = 0.01,
                 lambda_b: float = 0.01, lambda_e: float = 0.0, step_batch_size: int | None = None,
                 positive_threshold: float | None = None, val_relevance_threshold: float = 4.0,
                 sparse_gradients: bool = True, cold_scoring: str = "visual", monitor: str = f"val/ndcg@{RANKING_K}",
                 monitor_mode: str = "max"):
        self.check_options(dict(k=k, k2=k2, init_std=init_std, visual_pca_dim=visual_pca_dim, learning_rate=learning_rate,
                                lambda_w=lambda_w, lambda_b=lambda_b, lambda_e=lambda_e, step_batch_size=step_batch_size,
                                positive_threshold=positive_threshold, cold_scoring=cold_scoring))
        super().__init__(num_users, num_items, k, k2, init_std=init_std, feature_dim=feature_dim,
                         visual_pca_dim=visual_pca_dim, sparse_gradients=sparse_gradients, cold_scoring=cold_scoring)
        self.save_hyperparameters()
        self.automatic_optimization = False

    @classmethod
    def uses_image_features(cls, options: dict) -> bool:
        return True

    def _visual_terms(self, users, pos, neg):
        theta_u = self.user_visual(users)  # (B, k2)
        diff = self.visual.features[pos] - self.visual.features[neg]  # (B, P): f̃_i − f̃_j
        E, b = self.visual.projection.weight, self.visual.bias_projection.weight  # (k2, P), (1, P)
        visual = (theta_u * (diff @ E.T)).sum(-1) + (diff @ b.T).squeeze(-1)  # (B,)
        return visual, theta_u.pow(2).sum(), E.pow(2).sum() + b.pow(2).sum()

    def _tables(self) -> list:
        return super()._tables() + [self.user_visual.weight]

    def _dense(self) -> list:
        return [self.visual.projection.weight, self.visual.bias_projection.weight]

    @torch.no_grad()
    def finish_training(self, train: Interactions) -> dict:
        """Set the cold head (:mod:`visrec.models.pairwise.scoring`): the typical candidate item as its intercept,
        and (``cold_scoring=head``) (H, h) fitted in closed form with item-fold CV, or (``visual``) VBPR's own
        E, β'. The pipeline then stores the weights in the tested checkpoint. Returns the head's metrics."""
        positives = self._positives(train)
        net, visual = self.net, self.visual
        known, known_users = net.known_items, net.known_users
        items, bias = self.trained_item_representation()  # (N, K'), (N,)
        users = torch.cat([net.user_factors.weight, self.user_visual.weight], 1) * known_users[:, None]  # (U, K')
        candidate, candidate_bias = typical_candidate(users, items, bias, known, positives.users, positives.items)
        intercept = torch.cat([candidate, candidate.new_tensor([candidate_bias])])  # (K' + 1,)
        self.weights_changed = True
        E, b = visual.projection.weight, visual.bias_projection.weight  # (k2, P), (1, P)
        if self.cold_scoring == "visual":  # the paper's rule: the visual part as trained
            self.cold_intercept.copy_(intercept)
            self.cold_projection.copy_(torch.cat([E.new_zeros(net.item_factors.weight.shape[1], E.shape[1]), E, b]))
            return {}
        rows = (known & visual.has_image).cpu()  # (N,)
        self.cold_intercept.copy_(intercept)
        self.cold_projection.zero_()
        if not bool(rows.any()):
            print("VBPR cold head not fitted: no training item has a picture; cold items get the typical candidate item")
            return {"cold_head/components": 0}
        augmented = torch.cat([users, known_users[:, None].float()], 1).cpu()  # (U, K' + 1): [γ_u | θ_u | 1]
        typical_item = torch.cat([items[known].mean(0), bias[known].mean()[None]]).cpu()  # (K' + 1,) the scale's reference
        csr = CSR.from_pairs(positives.users.cpu(), positives.items.cpu(), torch.ones(len(positives)), net.num_users, net.num_items)
        fit = fit_ials_cold_head(csr, augmented, visual.features.cpu(), rows, COLD_HEAD_UNOBSERVED_WEIGHT, typical_item,
                                 intercept.cpu())
        self.cold_intercept.copy_(fit.vector_intercept.to(self.cold_intercept.device))
        self.cold_projection.copy_(fit.projection.to(self.cold_projection.device))
        head = "picture off (every cold item is the typical candidate)" if fit.factor_penalty is None else \
            f"{fit.components} components, λ {fit.factor_penalty:g}, scale {fit.scale:.3g}"
        print(f"VBPR cold head (closed form on {fit.items} training items as if cold): {head}; item-fold CV loss "
              f"{fit.cv_loss:.1f} (picture off {fit.cv_loss_intercept_only:.1f})")
        return {"cold_head/components": fit.components, "cold_head/cv_loss_rms": fit.cv_rmse,
                "cold_head/cv_loss_rms_intercept_only": fit.cv_rmse_intercept_only}
