"""LightningModule that trains iALS (implicit-feedback weighted MSE over all user-item cells).

Model: s_ui = p_u · q_i, a preference score (not a rating). Data: every training rating is an
interaction, or only those >= ``positive_threshold``; its confidence is w_ui = 1 + ``alpha`` · r_ui
(Hu et al. 2008's linear confidence; ``alpha = 0``: every interaction weighs 1). Objective and solver:
:mod:`visrec.models.ials.solver` (exact ALS with the Gramian trick, frequency-scaled L2 with exponent
``reg_exponent``, unobserved weight ``unobserved_weight``; Rendle et al. 2022). ``solver``: ``cholesky``
solves each least-squares system exactly (O(|S| K² + (U+N) K³) per epoch); ``cg`` takes ``cg_steps``
warm-started conjugate-gradient steps (O(|S| K) per step; Takács et al. 2011, as ``implicit`` does).

One epoch = one sweep (all users, then all items) = one ``training_step``: the model declares
``TRAINING_BATCHES = "whole"``, so the datamodule serves every training row as one batch per epoch
(``data.batch_size`` does not apply), and checkpoints, resume, loggers and W&B work as for any LightningModule. Validation logs ``val/ndcg@10``, ``val/recall@10``,
``val/precision@10`` on the validation part, computed by the evaluator's own code
(:func:`visrec.evaluation.evaluate`; relevant = validation rating >= ``val_relevance_threshold``,
candidates = warm items minus the user's training items). ``test`` logs the same at K=10 on the test part.

Visual prior, ``visual_mode``:
    reg   each item with an image is pulled toward E f̃_i + e with weight ``reg_visual`` · λ_i in its
          least-squares solve, and (E, e) are refit after every item half-sweep by ridge regression
          (penalty ``reg_projection``) of the trained items' vectors on their whitened image features.
    head  training is exactly that of ``none`` (the images never touch the item vectors); after
          training, :meth:`IALSModule.fit_cold_head` fits (E, e) in closed form for what they are used
          for: the all-cells iALS loss of training items as if they were cold, given the trained user
          vectors, with the number of components and the ridge penalty chosen by item-fold
          cross-validation (:mod:`visrec.models.visual.ials_head`; called by :meth:`IALSModule.finish_training`).
    offset visual iALS: q_i = E f̃_i + v_i with the item penalty on the offset, λ_i ‖v_i‖² = λ_i ‖q_i − E f̃_i‖²,
          in place of plain iALS's λ_i ‖q_i‖² (the same λ_i; items without a picture keep λ_i ‖q_i‖²), and
          λ_E ‖E‖² (``offset_penalty``: a number, or ``auto``). The item vector of collaborative topic regression (Wang & Blei,
          KDD 2011: v_j = θ_j + ε_j) and of regression-based latent factors (Agarwal & Chen, KDD 2009), with
          the picture's projection in place of topics / attributes. Each sweep solves users, then items
          (the prior mean moves the right-hand side only), then E in closed form: with Q fixed the joint
          objective in E is the weighted ridge regression Σ_i λ_i ‖q_i − E f̃_i‖² + λ_E ‖E‖² (exact block
          coordinate descent on the joint loss, the same minimisers as solving E against iALS's loss
          with v fixed). No intercept: with pictures that say nothing E → 0 and the model is plain iALS.
          An item with few interactions borrows from its picture; a popular one keeps what its interactions
          say (its data term outweighs λ_i). After training, the cold-item head is fitted as in ``head``
          (``offset_cold_scoring=head``, default) or cold items keep the joint E f̃_i
          (``offset_cold_scoring=projection``).
Items without interactions but with an image are scored with q_i = E f̃_i + e (cold start); others with
a zero vector. Under DDP (``trainer=ddp_cpu`` / ``ddp``) each process solves its own slice of users and
items and the solved rows are all-gathered (:mod:`visrec.models.ials.sharding`): the same factors as one
process, to float tolerance. Modes reg and offset refit E from every item each sweep: single process.
"""
from __future__ import annotations

import math

import torch

from visrec.interactions import Interactions
from visrec.models.contract import FactorModel
from visrec.models.ranking_validation import RANKING_K, RankingValidation
from visrec.models.ials.scoring import IALSScoring
from visrec.models.ials.sharding import gather_rows, local_table, rank_and_world, row_slice, sum_over_processes
from visrec.models.ials.solver import CSR, frequency_scaled_penalty, solve_rows, solve_rows_cg, weighted_loss
from visrec.models.visual.ials_head import IALSColdHeadFit, fit_ials_cold_head
from visrec.models.visual.prior import AUTO
from visrec.models.visual.typical import typical_candidate

VISUAL_MODES = ("none", "reg", "head", "offset")
SOLVERS = ("cholesky", "cg")
OFFSET_COLD_SCORING = ("head", "projection")


# λ_E candidates of offset_penalty=auto, in units of tr(F̃ᵀΛF̃) / P (the data term's scale per direction).
OFFSET_PENALTY_GRID = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0, math.inf)


def ridge_leave_one_out(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                        grid: tuple[float, ...] = OFFSET_PENALTY_GRID) -> tuple[float, list]:
    """λ_E of the weighted ridge regression min Σ_i w_i ‖y_i − E x_i‖² + λ_E ‖E‖² (x (M, P), y (M, K), w (M,))
    that predicts left-out rows best: the exact leave-one-out error Σ_i w_i ‖r_i‖² / (1 − h_ii)² of each
    candidate (the hat-matrix identity for linear smoothers; Hastie, Tibshirani & Friedman, ESL eq. 7.52),
    λ_E = grid value × tr(XᵀWX) / P. ``inf``: E = 0, error Σ_i w_i ‖y_i‖². Returns (λ_E, [(λ_E, error)])."""
    xw = x * weight.sqrt()[:, None]  # (M, P)
    yw = y * weight.sqrt()[:, None]  # (M, K)
    gram = xw.T @ xw  # (P, P)
    unit = float(torch.trace(gram)) / x.shape[1]
    tried = []
    for factor in grid:
        if not math.isfinite(factor):
            tried.append((math.inf, float(yw.pow(2).sum())))
            continue
        penalty = factor * unit
        inverse = torch.linalg.inv(gram + penalty * torch.eye(x.shape[1], dtype=gram.dtype))  # (P, P)
        coef = inverse @ (xw.T @ yw)  # (P, K)
        leverage = ((xw @ inverse) * xw).sum(-1)  # (M,) h_ii
        residual = (yw - xw @ coef) / (1.0 - leverage).clamp(min=1e-6)[:, None]  # (M, K)
        tried.append((penalty, float(residual.pow(2).sum())))
    best = min(tried, key=lambda t: t[1])
    return best[0], tried


class ALSSweep(torch.optim.Optimizer):
    """The closed-form "optimizer" of iALS: ``step()`` runs one ALS sweep and returns the loss. Being an
    optimizer lets Lightning count steps (checkpointing keys on them), save and restore state and
    replay its (unused) learning rate like any other."""

    def __init__(self, params, sweep):
        super().__init__(params, {"lr": 1.0})
        self._sweep = sweep

    @torch.no_grad()
    def step(self, closure=None) -> float:
        if closure is not None:
            with torch.enable_grad():
                closure()  # Lightning's hooks around a step
        return self._sweep()


class IALSModule(RankingValidation, IALSScoring, FactorModel):
    """iALS under the model contract (:mod:`visrec.models.contract`); ``model=ials``. Its submodules, tables
    and scores are :class:`~visrec.models.ials.scoring.IALSScoring` (torch only)."""

    MODEL_NAME = "ials"
    DATA_KEYS = ("num_users", "num_items", "feature_dim")
    # One sweep uses every interaction: the datamodule serves all training rows as one batch per epoch.
    TRAINING_BATCHES = "whole"
    # What validation logs: what ``monitor`` may name.
    VALIDATION_METRICS = (f"val/ndcg@{RANKING_K}", f"val/recall@{RANKING_K}", f"val/precision@{RANKING_K}")
    # Under DDP each process solves its own slice of users and items (visrec.models.ials.sharding);
    # the visual modes that refit E from every item each sweep (reg, offset) stay single-process.
    PARTITIONED_DDP = True  # each process reads only its own rows (visrec.data.partition)
    single_process = False

    def __init__(
        self,
        num_users: int,
        num_items: int,
        k: int = 64,
        init_std: float = 0.1,
        reg: float = 0.05,
        reg_exponent: float = 1.0,
        unobserved_weight: float = 0.2,
        alpha: float = 0.5,
        positive_threshold: float | None = None,
        val_relevance_threshold: float = 4.0,
        visual_mode: str = "none",
        feature_dim: int = 0,
        reg_visual: float = 1.0,
        reg_projection: float = 1.0,
        visual_pca_dim: int = 64,
        solver: str = "cholesky",
        cg_steps: int = 3,
        offset_cold_scoring: str = "head",
        offset_penalty: float | str = "auto",
        monitor: str = f"val/ndcg@{RANKING_K}",
        monitor_mode: str = "max",
    ):
        self.check_options(dict(k=k, init_std=init_std, reg=reg, reg_exponent=reg_exponent, unobserved_weight=unobserved_weight,
                                alpha=alpha, visual_mode=visual_mode, reg_visual=reg_visual, reg_projection=reg_projection,
                                visual_pca_dim=visual_pca_dim, solver=solver, cg_steps=cg_steps,
                                offset_cold_scoring=offset_cold_scoring, offset_penalty=offset_penalty))
        super().__init__(num_users, num_items, k, init_std=init_std, visual_mode=visual_mode, feature_dim=feature_dim,
                         visual_pca_dim=visual_pca_dim)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self._train: CSR | None = None  # users x items, set in on_fit_start
        self._train_by_item: CSR | None = None  # its transpose
        from visrec.models.ials import csr_kernel

        csr_kernel.load_kernel()  # the tables' build, compiled (or loaded from numba's cache) before training starts
        if solver == "cg":  # the CPU's compiled CG: loaded (or compiled) before training starts
            from visrec.models.ials.cg_kernel import load_kernel

            load_kernel()

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Refuse option values that would train nonsense, naming the key (``model.<name>``)."""
        def bad(name, expected):
            return ValueError(f"model.{name} must be {expected}, got {options.get(name)!r}")

        k = options.get("k", 64)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise bad("k", "a positive number of latent factors")
        for name in ("reg", "unobserved_weight", "alpha", "reg_projection", "reg_visual"):
            value = options.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
                raise bad(name, "a finite number >= 0")
        if not options.get("init_std", 0.1) > 0:
            raise bad("init_std", "> 0")
        if options.get("reg", 1.0) == 0 and options.get("unobserved_weight", 1.0) == 0:
            raise ValueError("model.reg and model.unobserved_weight are both 0: the least-squares systems have no unique solution")
        if options.get("solver", "cholesky") not in SOLVERS:
            raise ValueError(f"model.solver must be one of {SOLVERS}, got {options.get('solver')!r}")
        steps = options.get("cg_steps", 3)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise bad("cg_steps", "a positive number of conjugate-gradient steps")
        threshold = options.get("positive_threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold)):
            raise bad("positive_threshold", "a finite rating (or null: every rating is an interaction)")
        if options.get("visual_mode", "none") not in (*VISUAL_MODES, AUTO):
            raise ValueError(f"model.visual_mode must be one of {(*VISUAL_MODES, AUTO)} for model=ials, got {options.get('visual_mode')!r}")
        if options.get("offset_cold_scoring", "head") not in OFFSET_COLD_SCORING:
            raise ValueError(f"model.offset_cold_scoring must be one of {OFFSET_COLD_SCORING}, got {options.get('offset_cold_scoring')!r}")
        offset_penalty = options.get("offset_penalty", "auto")
        if offset_penalty != "auto" and (isinstance(offset_penalty, bool) or not isinstance(offset_penalty, (int, float))
                                         or not offset_penalty >= 0):
            raise bad("offset_penalty", "auto or a number >= 0 (λ_E; inf: no picture term)")
        pca = options.get("visual_pca_dim", 64)
        if options.get("visual_mode", "none") != "none" and (isinstance(pca, bool) or not isinstance(pca, int) or pca < 1):
            raise bad("visual_pca_dim", "a positive number of components")

    # ---- data -----------------------------------------------------------------------------------
    def interactions(self, ratings: Interactions) -> CSR:
        """(U x N) confidences of the interactions in ``ratings`` (rating >= positive_threshold, if set)."""
        threshold = self.hparams.positive_threshold
        kept = ratings if threshold is None else ratings.subset(ratings.ratings >= threshold)
        weights = 1.0 + self.hparams.alpha * kept.ratings.float()
        return CSR.from_pairs(kept.users.cpu(), kept.items.cpu(), weights.cpu(), self.net.num_users, self.net.num_items)

    @classmethod
    def single_process_reason(cls, options: dict) -> str | None:
        mode = options.get("visual_mode", "none")
        if mode in ("reg", "offset"):
            return (f"model=ials with model.visual_mode={mode} trains in a single process (E is refitted from every item's "
                    "vector each sweep); use visual_mode none or head under DDP")
        return None

    def setup(self, stage: str) -> None:
        reason = self.single_process_reason(dict(self.hparams))
        if reason and self.trainer is not None and self.trainer.world_size > 1:  # built directly, not through the pipeline
            raise ValueError(reason)

    def check_training_data(self, train: Interactions, val: Interactions | None = None) -> None:
        """Called by the pipeline when the model is built, before training: refuse data with no interaction,
        and a validation part (when there is one) with no relevant rating of a warm user and item — the
        early-stopping metric val/ndcg@10 could not be computed."""
        threshold = self.hparams.positive_threshold
        if len(train) == 0 or (threshold is not None and not bool((train.ratings >= threshold).any())):
            raise ValueError(f"model=ials: no training interaction{'' if threshold is None else f' with a rating >= {threshold}'} "
                             "(lower model.positive_threshold, or check the data)")
        self.check_ranking_validation(val)

    def on_fit_start(self) -> None:
        train = self.trainer.datamodule.tensors["train"]
        if getattr(self.trainer.datamodule, "holds_all_rows", True):  # else only its own rows: rank 0 checked them all
            self.check_training_data(train, self.trainer.datamodule.tensors["val"])
        self._rank, self._world = rank_and_world()
        if self._world == 1:
            self._train = self.interactions(train)
            self._train_by_item = self._train.transpose()
            return
        # DDP: this process's users' rows and items' columns only (visrec.models.ials.sharding).
        full = self.interactions(train)
        users = torch.repeat_interleave(torch.arange(full.num_rows), full.counts())  # (S,)
        U, N = self.net.num_users, self.net.num_items
        self._train = local_table(users, full.indices, full.weights, U, N, self._rank, self._world)
        self._train_by_item = local_table(full.indices, users, full.weights, N, U, self._rank, self._world)
        del full, users

    # ---- training: one ALS sweep per epoch ---------------------------------------------------------
    def training_step(self, batch, batch_idx):
        if batch_idx > 0:  # one batch per epoch ("whole"); a second would repeat the sweep
            return None
        loss = self.optimizers().step()  # ALSSweep.step: one sweep, counted by Lightning as one optimizer step
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=1)
        if not math.isfinite(loss):
            from visrec.models.divergence import DivergedError

            raise DivergedError(f"iALS diverged in epoch {self.current_epoch}: loss {loss}")
        return None

    @torch.no_grad()
    def sweep(self) -> float:
        """Solve all users with items fixed, then all items with users fixed; returns the loss L. Under DDP
        each process solves its own users and items, and the solved rows are gathered after each half."""
        hp, net = self.hparams, self.net
        csr, users_t = self._train, self._train_by_item  # users x items, items x users (this process's rows)
        alpha0, U, N = hp.unobserved_weight, net.num_users, net.num_items
        rank, world = getattr(self, "_rank", 0), getattr(self, "_world", 1)
        (u0, u1), (i0, i1) = row_slice(U, rank, world), row_slice(N, rank, world)
        user_penalty = frequency_scaled_penalty(csr.counts(), hp.reg, alpha0, N, hp.reg_exponent)  # (U_local,)
        item_penalty = frequency_scaled_penalty(users_t.counts(), hp.reg, alpha0, U, hp.reg_exponent)  # (N_local,)
        device = net.user_factors.weight.device
        items = net.item_factors.weight.detach().cpu()
        exact = hp.solver == "cholesky"
        if exact:
            users = solve_rows(csr, items, user_penalty, alpha0)  # (U_local, K)
        else:
            users = solve_rows_cg(csr, items, user_penalty, alpha0, net.user_factors.weight.detach().cpu()[u0:u1], hp.cg_steps)
        users = gather_rows(users, U, world, device)  # (U, K)
        prior_mean = prior_weight = None
        zero_mean_penalty = item_penalty  # (N,) λ_i of λ_i ‖q_i‖²
        if self.visual_mode in ("reg", "offset"):  # mode head: the images never touch training
            prior_mean = self.visual.item_vectors(torch.arange(N, device=self.visual.features.device)).cpu()  # (N, K)
            with_image = self.visual.has_image.cpu().float()  # (N,)
            if self.visual_mode == "reg":
                prior_weight = hp.reg_visual * item_penalty * with_image  # (N,) added to λ_i
            else:  # offset: λ_i ‖q_i − E f̃_i‖² replaces λ_i ‖q_i‖² for items with a picture
                prior_weight = item_penalty * with_image
                zero_mean_penalty = item_penalty * (1.0 - with_image)
        if exact:
            items = solve_rows(users_t, users, zero_mean_penalty, alpha0, prior_mean, prior_weight)  # (N_local, K)
        else:
            items = solve_rows_cg(users_t, users, zero_mean_penalty, alpha0, items[i0:i1], hp.cg_steps, prior_mean, prior_weight)
        items = gather_rows(items, N, world, device)  # (N, K)
        net.user_factors.weight.copy_(users.to(device))
        net.item_factors.weight.copy_(items.to(device))
        if world > 1:  # L: each process's observed cells and penalties, summed; the all-cells term from the full tables
            local = weighted_loss(csr, users[u0:u1], items, 0.0, user_penalty, torch.zeros(N)) + float(
                (item_penalty * items[i0:i1].pow(2).sum(-1)).sum())
            return sum_over_processes(local, world, device) + float(alpha0 * ((users.T @ users) * (items.T @ items)).sum())
        if self.visual_mode == "reg":
            self._fit_projection(items)
        if self.visual_mode == "offset":
            self._fit_offset_projection(items, item_penalty)
            offsets = items - self.visual.item_vectors(torch.arange(N, device=self.visual.features.device)).cpu()  # (N, K) v_i
            shrinkage = self.offset_penalty_used * float(self.visual.projection.weight.pow(2).sum()) if math.isfinite(
                self.offset_penalty_used) else 0.0  # λ_E ‖E‖² (E = 0 when no picture term was chosen)
            return weighted_loss(csr, users, items, alpha0, user_penalty, zero_mean_penalty) + float(
                (prior_weight * offsets.pow(2).sum(-1)).sum()) + shrinkage
        return weighted_loss(csr, users, items, alpha0, user_penalty, item_penalty)

    def _fit_offset_projection(self, items: torch.Tensor, item_penalty: torch.Tensor) -> None:
        """Mode offset: E = argmin Σ_i λ_i ‖q_i − E f̃_i‖² + λ_E ‖E‖² over trained items with a picture, given
        their vectors (M, K) and penalties λ_i (M,): (F̃ᵀ Λ F̃ + λ_E I) Eᵀ = F̃ᵀ Λ Q, a P×P solve. No intercept.
        λ_E = ``offset_penalty``, or with ``auto`` the value of a grid that predicts held-out items' vectors best
        (:func:`ridge_leave_one_out`); ``inf`` in the grid is E = 0 (plain iALS)."""
        rows = (self.net.known_items & self.visual.has_image).cpu()  # (N,)
        self.offset_penalty_used = math.inf  # E stays 0 without a trained item that has a picture
        if int(rows.sum()) == 0:
            return
        x = self.visual.features.cpu()[rows].double()  # (M, P)
        weight = item_penalty[rows].double()  # (M,)
        y = items[rows].double()  # (M, K)
        penalty = self.hparams.offset_penalty
        if penalty == "auto":
            penalty, _ = ridge_leave_one_out(x, y, weight)
        device = self.visual.features.device
        if not math.isfinite(float(penalty)):
            coef = torch.zeros(x.shape[1], y.shape[1])
        else:
            system = x.T @ (weight[:, None] * x) + (float(penalty) + 1e-9) * torch.eye(x.shape[1], dtype=torch.float64)
            coef = torch.linalg.solve(system, x.T @ (weight[:, None] * y)).float()  # (P, K)
        self.offset_penalty_used = float(penalty)
        self.visual.set_head(coef.T.contiguous().to(device), torch.zeros(coef.shape[1], device=device),
                             torch.zeros(x.shape[1], device=device), 0.0)

    def _fit_projection(self, items: torch.Tensor) -> None:
        """(E, e) = ridge regression of trained items' vectors (M, K) on their whitened features (M, P).

        The features are whitened on exactly these rows (f̃ᵀf̃ = (M − 1) I, mean 0), so the penalty
        ``reg_projection`` scales E by the same factor (M − 1) / (M − 1 + λ) in every direction: it sets
        how hard items are pulled, but cannot change how cold items rank (p_u · E f̃_i up to a positive
        factor). Mode ``head`` fits E for the cold ranking instead (:mod:`visrec.models.visual.ials_head`)."""
        rows = (self.net.known_items & self.visual.has_image).cpu()  # (N,)
        if int(rows.sum()) == 0:
            return
        x = self.visual.features.cpu()[rows]  # (M, P)
        x1 = torch.cat([x, torch.ones(len(x), 1)], 1)  # (M, P+1), last column: the intercept e
        penalty = torch.full((x1.shape[1],), float(self.hparams.reg_projection))
        penalty[-1] = 0.0  # the intercept is not shrunk
        coef = torch.linalg.solve(x1.T @ x1 + torch.diag(penalty) + 1e-6 * torch.eye(x1.shape[1]), x1.T @ items[rows])  # (P+1, K)
        self.visual.set_head(coef[:-1].T.contiguous().to(self.visual.features.device), coef[-1].to(self.visual.features.device),
                             torch.zeros(x.shape[1], device=self.visual.features.device), 0.0)

    @torch.no_grad()
    def fit_cold_head(self, train: Interactions, **options) -> IALSColdHeadFit:
        """Mode ``head``: fit (E, e) in closed form on the ``train`` interactions of items that have an
        image, given this model's user vectors (see :mod:`visrec.models.visual.ials_head`; ``options`` go to
        :func:`~visrec.models.visual.ials_head.fit_ials_cold_head`), and set them as the cold-item head."""
        if self.visual is None:
            raise ValueError("fit_cold_head needs a visual model (visual_mode != none)")
        visual = self.visual
        rows = (self.net.known_items & visual.has_image).cpu()  # (N,)
        net, csr = self.net, self.interactions(train)
        typical_item = net.item_factors.weight[net.known_items].mean(0)  # (K,) q̄: the scale's reference
        users = torch.repeat_interleave(torch.arange(csr.num_rows), csr.counts())  # (S,)
        candidate, _ = typical_candidate(net.user_factors.weight.cpu(), net.item_factors.weight.cpu(), None,
                                         net.known_items.cpu(), users, csr.indices)  # (K,) q_c: e
        fit = fit_ials_cold_head(csr, net.user_factors.weight, visual.features, rows, self.hparams.unobserved_weight,
                                 typical_item, candidate, **options)
        device = visual.features.device
        visual.set_head(fit.projection.to(device), fit.vector_intercept.to(device), torch.zeros(visual.features.shape[1], device=device), 0.0)
        return fit

    def finish_training(self, train: Interactions) -> dict:
        """Mode ``head`` (model contract): fit the cold-item head after training and report how it was
        chosen; the pipeline then stores the weights in the tested checkpoint. Other modes: nothing.
        With no training item that has an image the head stays zero (said, not an error)."""
        if self.visual_mode == "offset" and self.hparams.offset_cold_scoring == "projection":
            return {}
        if self.visual_mode not in ("head", "offset"):
            return {}
        if not bool((self.net.known_items & self.visual.has_image).any()):
            print("iALS cold-start head not fitted: no training item has an image; cold items keep a zero vector")
            return {"cold_head/components": 0}
        fit = self.fit_cold_head(train)
        print(fit.summary())
        self.weights_changed = True
        # Root of the held-out all-cells loss per (user, item) cell: a preference error, not a rating RMSE.
        return {"cold_head/components": fit.components, "cold_head/cv_loss_rms": fit.cv_rmse,
                "cold_head/cv_loss_rms_intercept_only": fit.cv_rmse_intercept_only}

    def configure_optimizers(self):
        return ALSSweep(self.net.parameters(), self.sweep)
