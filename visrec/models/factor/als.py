"""Biased MF trained by alternating least squares on the observed ratings (``model=als``).

Model: r̂_ui = μ + b_u + b_i + p_u·q_i, the scores of :class:`~visrec.models.factor.scoring.RatingScoring`
(so evaluation, export, serving and the cold-start ``head`` are those of ``model=biased_mf``). Objective
(explicit ALS with biases and weighted-λ regularization: Zhou, Wilkinson, Schreiber & Pan 2008, "Large-scale
parallel collaborative filtering for the Netflix prize"; Koren, Bell & Volinsky 2009; Spark MLlib's ALS):

    L = Σ_{(u,i,r) ∈ R} (r − r̂_ui)²  +  Σ_u n_u^ν (λ_f ‖p_u‖² + λ_b b_u²)  +  Σ_i n_i^ν (λ_f ‖q_i‖² + λ_b b_i²)

over the training ratings R only (no unobserved cells), n_u, n_i the rows' training ratings, ν =
``reg_exponent`` (1: ALS-WR's λ·n, Spark's scaling; 0: plain L2), λ_f = ``reg_factors``, λ_b = ``reg_bias``.
With the item side fixed, [p_u, b_u] solves one (K+1)×(K+1) least-squares system per user, with the
features z_i = [q_i, 1] and targets r − μ − b_i; then items the same way with [p_u, 1] and r − μ − b_u.
The systems are those of iALS with no all-cells term and targets in place of 1, so the same batched
solves do it (:func:`visrec.models.ials.solver.solve_rows`: ``solver=cholesky``, exact, O(|R| K² +
(U+N) K³) per sweep; :func:`~visrec.models.ials.solver.solve_rows_cg`: ``solver=cg``, ``cg_steps``
warm-started conjugate-gradient steps, O(|R| K) each, for large K or catalogs). Every half-sweep is an
exact (or CG-approximate) minimisation, so with ``cholesky`` L never rises.

One epoch = one sweep (users, then items) = one ``training_step`` over the whole training part
(``TRAINING_BATCHES = "whole"``), so checkpoints, resume, validation (``val/rmse``), early stopping, W&B
and refit are those of any model; with ``epoch_unit=half_sweep`` one epoch is one half (users in even epochs,
items in odd ones), so early stopping can also pick a point after a user half-sweep. ``train/loss`` is L / |R|, ``train/mse`` the training MSE.
Visual modes: ``none`` and ``head`` (the closed-form cold-start head of biased MF, fitted after training);
the modes that pull q_i toward the picture during training (init, reg) are gradient-trained and refused.
Under DDP (``trainer=ddp_cpu`` / ``ddp``) each process solves its own users and items and the solved rows
are all-gathered (:mod:`visrec.models.ials.sharding`): the single-process factors, to float tolerance.
"""
from __future__ import annotations

import math

import torch

from visrec.interactions import Interactions
from visrec.models.closed_form import ClosedFormStep
from visrec.models.factor.module import TRAIN_PARTS, RatingModule
from visrec.models.ials.cg_kernel import observed_sse
from visrec.models.ials.sharding import gather_rows, local_table, rank_and_world, row_slice, sum_over_processes
from visrec.models.ials.solver import CSR, solve_rows, solve_rows_cg

SOLVERS = ("cholesky", "cg")
EPOCH_UNITS = ("sweep", "half_sweep")
INITS = ("sketch", "random")
ALS_VISUAL_MODES = ("none", "head")


class ExplicitALS(RatingModule):
    """Biased MF by ALS under the model contract (module docstring); ``model=als``."""

    MODEL_NAME = "als"
    TRAINING_BATCHES = "whole"
    PARTITIONED_DDP = True  # each process reads only its own rows (visrec.data.partition)
    single_process = False  # under DDP each process solves its own users and items (visrec.models.ials.sharding)

    def __init__(self, num_users: int, num_items: int, k: int = 64, init_std: float = 0.001, reg_factors: float = 0.05,
                 reg_bias: float = 0.05, reg_exponent: float = 1.0, global_mean: float = 0.0,
                 rating_min: float | None = None, rating_max: float | None = None, visual_mode: str = "none",
                 feature_dim: int = 0, visual_pca_dim: int = 64, solver: str = "cholesky", cg_steps: int = 3,
                 init: str = "sketch", epoch_unit: str = "sweep"):
        self.check_options(dict(k=k, init_std=init_std, reg_factors=reg_factors, reg_bias=reg_bias, reg_exponent=reg_exponent,
                                visual_mode=visual_mode, visual_pca_dim=visual_pca_dim, solver=solver, cg_steps=cg_steps,
                                init=init, epoch_unit=epoch_unit))
        super().__init__(num_users, num_items, k=k, init_std=init_std, reg_factors=reg_factors, reg_bias=reg_bias,
                         reg_exponent=reg_exponent, global_mean=global_mean, rating_min=rating_min, rating_max=rating_max,
                         visual_mode=visual_mode, feature_dim=feature_dim, visual_pca_dim=visual_pca_dim,
                         sparse_gradients=False)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net.requires_grad_(False)  # solved in closed form, never by an optimizer
        from visrec.models.ials import csr_kernel

        csr_kernel.load_kernel()  # the tables' build, compiled (or loaded from numba's cache) before training starts
        if solver == "cg":  # the CPU's compiled CG: loaded (or compiled) before training starts
            from visrec.models.ials.cg_kernel import load_kernel

            load_kernel()
        self._by_user: CSR | None = None  # users x items, the ratings − μ as weights (set in on_fit_start)
        self._by_item: CSR | None = None
        self._sketch_pending = False  # set by on_fit_start: the first sweep starts from sketch_start

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Refuse option values that would train nonsense, naming the key (``model.<name>``)."""
        def bad(name, expected):
            return ValueError(f"model.{name} must be {expected}, got {options.get(name)!r}")

        visual_mode = options.get("visual_mode", "none")
        if visual_mode not in ALS_VISUAL_MODES:
            raise ValueError(f"model.visual_mode must be one of {ALS_VISUAL_MODES} for model=als (the other modes pull "
                             f"the item vectors toward the pictures by gradient steps: use model=biased_mf), got {visual_mode!r}")
        super().check_options({**options, "reg_visual": 0.0, "reg_visual_bias": 0.0, "reg_projection": 0.0})
        for name in ("reg_factors", "reg_bias", "reg_exponent"):
            value = options.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
                raise bad(name, "a finite number >= 0")
        for name in ("reg_factors", "reg_bias"):
            if options.get(name, 0.05) == 0:
                raise ValueError(f"model.{name} must be > 0 for model=als, got {options[name]!r}: a user or item with fewer "
                                 "ratings than K + 1 has no unique least-squares solution without a penalty")
        if options.get("init", "sketch") not in INITS:
            raise ValueError(f"model.init must be one of {INITS}, got {options.get('init')!r}")
        if options.get("solver", "cholesky") not in SOLVERS:
            raise ValueError(f"model.solver must be one of {SOLVERS}, got {options.get('solver')!r}")
        if options.get("epoch_unit", "sweep") not in EPOCH_UNITS:
            raise ValueError(f"model.epoch_unit must be one of {EPOCH_UNITS} (what one epoch solves), got {options.get('epoch_unit')!r}")
        steps = options.get("cg_steps", 3)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise bad("cg_steps", "a positive number of conjugate-gradient steps")

    @classmethod
    def sparse_gradients_for(cls, options: dict) -> bool:
        return False

    def on_fit_start(self) -> None:
        train = self.trainer.datamodule.tensors["train"]
        self.prepare(train)
        # A resumed fit continues its checkpoint's tables; a fresh one (or a refit) starts from the sketch.
        self._sketch_pending = self.hparams.init == "sketch" and not self.trainer.ckpt_path

    def prepare(self, train: Interactions) -> None:
        """Build the user- and item-major tables of ``train``, holding r − μ (each half-sweep's targets subtract
        the other side's biases from them): this process's users' rows and items' columns only under DDP."""
        users, items = train.users.cpu().long(), train.items.cpu().long()
        residual = train.ratings.cpu().float() - float(self.net.global_mean)  # (R,) r − μ
        U, N = self.net.num_users, self.net.num_items
        self._rank, self._world = rank_and_world()
        self._by_user = local_table(users, items, residual, U, N, self._rank, self._world)  # (U_local, N)
        self._by_item = local_table(items, users, residual, N, U, self._rank, self._world)  # (N_local, U)
        self._unit = {side: CSR(table.indptr, table.indices, torch.ones_like(table.weights), table.num_cols)
                      for side, table in (("user", self._by_user), ("item", self._by_item))}  # weight 1: the solves' patterns

    # ---- training: one ALS sweep per epoch ---------------------------------------------------------
    def training_step(self, batch, batch_idx):
        if batch_idx > 0:  # one batch per epoch ("whole")
            return None
        self.optimizers().step()  # ClosedFormStep: one sweep
        return None

    def configure_optimizers(self):
        return ClosedFormStep(self.net.parameters(), self.sweep)

    def _penalties(self, counts: torch.Tensor) -> torch.Tensor:
        """(R, K + 1) diagonal penalties n^ν (λ_f, ..., λ_f, λ_b) of rows with ``counts`` (R,) ratings."""
        scale = counts.clamp(min=1).float().pow(self.reg_exponent)  # (R,); rows without ratings solve to 0
        K = self.net.item_factors.embedding_dim
        per_coordinate = torch.tensor([self.reg_factors] * K + [self.reg_bias])  # (K + 1,)
        return scale[:, None] * per_coordinate  # (R, K + 1)

    def _penalty_sum(self, counts: torch.Tensor, vectors: torch.Tensor, biases: torch.Tensor) -> float:
        """Σ_r n_r^ν (λ_f ‖x_r‖² + λ_b b_r²) over rows with ``counts`` (R,), ``vectors`` (R, K), ``biases`` (R,)."""
        scale = counts.clamp(min=1).float().pow(self.reg_exponent)  # (R,)
        return float((scale * (self.reg_factors * vectors.pow(2).sum(1) + self.reg_bias * biases.pow(2))).sum())

    def _solve(self, table: CSR, targets: torch.Tensor, offsets: torch.Tensor, fixed: torch.Tensor,
               start: torch.Tensor) -> torch.Tensor:
        """Rows' [x_r, b_r] against targets t_rc − o_c (``targets`` (nnz,) aligned with ``table``, ``offsets`` (C,))."""
        penalty = self._penalties(table.counts())
        if self.hparams.solver == "cholesky":
            return solve_rows(table, fixed, penalty, 0.0, targets=targets - offsets[table.indices])
        return solve_rows_cg(table, fixed, penalty, 0.0, start, self.hparams.cg_steps, targets=targets,
                             target_offsets=offsets)

    @torch.no_grad()
    def sweep(self) -> float:
        """Solve every user's [p_u, b_u], then every item's [q_i, b_i]; returns L / |R| (module docstring). With
        ``epoch_unit=half_sweep`` one half per epoch: users in even epochs (0, 2, ...), items in odd ones, so early
        stopping (and the refit) can end after either half."""
        net = self.net
        device = net.user_factors.weight.device
        P, Q = net.user_factors.weight.detach().cpu(), net.item_factors.weight.detach().cpu()  # (U, K), (N, K)
        b_u, b_i = net.user_bias.weight.detach().cpu()[:, 0], net.item_bias.weight.detach().cpu()[:, 0]  # (U,), (N,)
        U, N, world = len(P), len(Q), self._world
        (u0, u1), (i0, i1) = row_slice(U, self._rank, world), row_slice(N, self._rank, world)
        if self._sketch_pending:  # inside the first sweep, so its cost counts as training time
            start = self.sketch_start(U, N, Q.shape[1], device)
            if start is not None:
                Q, b_i = start, torch.zeros_like(b_i)
            self._sketch_pending = False
        half = self.current_epoch % 2 if self.hparams.epoch_unit == "half_sweep" else None  # 0 users, 1 items, None both
        if half in (None, 0):
            users = gather_rows(self._solve_side("user", b_i, Q, P[u0:u1], b_u[u0:u1]), U, world, device)  # (U, K + 1)
            P, b_u = users[:, :-1], users[:, -1]
        if half in (None, 1):
            items = gather_rows(self._solve_side("item", b_u, P, Q[i0:i1], b_i[i0:i1]), N, world, device)  # (N, K + 1)
            Q, b_i = items[:, :-1], items[:, -1]
        net.user_factors.weight.copy_(P.to(device))
        net.user_bias.weight.copy_(b_u[:, None].to(device))
        net.item_factors.weight.copy_(Q.to(device))
        net.item_bias.weight.copy_(b_i[:, None].to(device))
        return self._log_sweep(P, b_u, Q, b_i)

    def sketch_start(self, U: int, N: int, K: int, device) -> torch.Tensor | None:
        """(N, K) starting item vectors (None when K > min(U, N): the random start is kept): an orthonormal basis
        of the item space the ratings span, from one pass of the randomized range finder (Halko, Martinsson & Tropp 2011, algorithm 4.3 with one power iteration) on
        X = the (U, N) matrix of r − μ on the training cells (0 elsewhere): Y = Xᵀ (X Ω), Ω (N, K) Gaussian, Q₀ =
        orth(Y), scaled so its entries have standard deviation ``init_std``. The first user half-sweep then fits
        users to directions the data holds instead of random ones (at 20M ratings, test RMSE 0.887 after one sweep
        against 0.894 for a random start, where the factors only start to grow in the second: README, "Time to
        quality"). Two sparse-dense products, O(|R| K), and a QR of (N, K). Under DDP each process multiplies its
        own rows and the products are all-gathered, so every process starts from the same Q₀. Ω is drawn from
        the run's seed."""
        if K > min(U, N):  # no K-dimensional range to find: keep the random start
            return None
        generator = torch.Generator().manual_seed(torch.initial_seed())
        omega = torch.randn(N, K, generator=generator)  # (N, K)
        world, by_user, by_item = self._world, self._by_user, self._by_item
        users = gather_rows(torch.sparse.mm(by_user.block(0, by_user.num_rows), omega), U, world, device)  # (U, K) X Ω
        items = gather_rows(torch.sparse.mm(by_item.block(0, by_item.num_rows), users), N, world, device)  # (N, K) Xᵀ X Ω
        basis, _ = torch.linalg.qr(items)  # (N, K) orthonormal columns
        return basis * (self.hparams.init_std / basis.std().clamp(min=1e-12))

    def _solve_side(self, side: str, other_bias: torch.Tensor, other: torch.Tensor, own: torch.Tensor,
                    own_bias: torch.Tensor) -> torch.Tensor:
        """[x_r, b_r] (R, K + 1) of every row of this process's ``side`` ("user" / "item") table, the other
        side's vectors ``other`` (C, K) and biases (C,) fixed: features [y_c, 1], targets (r − μ) − b_c; warm
        start [own, own_bias] for CG."""
        table = self._by_user if side == "user" else self._by_item
        features = torch.cat([other, torch.ones(len(other), 1)], 1)  # (C, K + 1)
        # targets (r − μ) − b_c: the table holds r − μ, the solvers subtract b_c cell by cell
        return self._solve(self._unit[side], table.weights, other_bias, features, torch.cat([own, own_bias[:, None]], 1))

    def _log_sweep(self, P: torch.Tensor, b_u: torch.Tensor, Q: torch.Tensor, b_i: torch.Tensor) -> float:
        """Add this sweep's train/loss (L / |R|) and train/mse to the epoch sums; returns L / |R|. Under DDP
        each process sums its own users' ratings and its own rows' penalties, then the sums are added up."""
        table, world = self._by_user, self._world
        (u0, u1), (i0, i1) = row_slice(len(P), self._rank, world), row_slice(len(Q), self._rank, world)
        count = len(table.indices)
        sse = observed_sse(table.indptr.numpy(), table.indices.numpy(), table.weights.numpy(),
                           P[u0:u1].contiguous().numpy(), b_u[u0:u1].contiguous().numpy(), Q.contiguous().numpy(),
                           b_i.contiguous().numpy(), torch.get_num_threads())  # Σ ((r − μ) − (r̂ − μ))² over own users
        l2 = self._penalty_sum(table.counts(), P[u0:u1], b_u[u0:u1]) + self._penalty_sum(self._by_item.counts(), Q[i0:i1], b_i[i0:i1])
        device = self.net.user_factors.weight.device
        sse, l2 = sum_over_processes(sse, world, device), sum_over_processes(l2, world, device)
        count = max(int(sum_over_processes(float(count), world, device)), 1)
        loss, mse = (sse + l2) / count, sse / count
        parts = {name: torch.tensor(0.0) for name in TRAIN_PARTS}
        parts.update(loss=torch.tensor(loss), mse=torch.tensor(mse))
        self._add_train_sums(parts, 1)
        return loss
