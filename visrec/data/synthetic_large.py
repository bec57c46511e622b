"""A large-problem synthetic generator: the model of :mod:`visrec.data.synthetic`, sampled at scale.

    python -m visrec.data.synthetic_large --users 1000000 --items 100000 --ratings 20000000 --out DIR \
        [--beta 1.5] [--seed 0] [--format parquet|csv|both] [--images M]

makes 1M users x 100k items x 20M ratings in about half a minute (``benchmarks/synthetic_large.py``
times sampling and writing separately).

Same ground truth as :mod:`visrec.data.synthetic` (see its docstring), with the same constants:
    a_i ∈ {0,1}^(S+C+T)    one-hot shape, colour and texture of item i              (N, A), A = 15
    q_i = A a_i / √3 + σ_q ε_i,  b_i = w · a_i + 0.1 ε                               (N, K), (N,)
    p_u ~ N(0, I/K), b_u ~ N(0, 0.3²)                                                (U, K), (U,)
    log_pop_i = −γ log rank_i  (Zipf over a random ranking of the items)             (N,)
    k_u ~ clip(⌊LogNormal(μ_k, 0.8)⌋, 5, N) ratings of user u                        (U,)
    π_ui ∝ exp(log_pop_i + β a_ui),  a_ui = (x_ui − mean_j x_uj) / sd_j x_uj,  x_ui = b_i + s p_u·q_i
    r_ui = clip(round(μ + b_u + x_ui − c + σ_r ε), 1, 5),  μ = 3.6, s = 1.2, ratings 1..5 (stars)
where user u rates k_u distinct items drawn without replacement from π_u (the choice model of Marlin
& Zemel 2009, "Collaborative prediction and ranking with non-random missing data", RecSys: which items
a user rates depends on how much they like them, missing not at random), c recentres the picks' taste
to the mean over all pairs exactly as synthetic.py does for β > 0, and timestamps are sorted integers
in [1.6e9, 1.6e9 + 1e7) seconds, assigned in row order (rows are shuffled). Differences on purpose:
  * the number of ratings is a target, ``num_ratings``: μ_k is solved (deterministically, on a grid
    of normal quantiles) so that E[k_u] = num_ratings / num_users; the realized total is within a
    fraction of a percent for many users (synthetic.py sets μ_k = log(mean) − 0.32, which ignores the
    floor and the clip at 5);
  * ids are zero-padded to the width of the largest (``u0999999``), so they sort as numbers;
  * pictures are off by default (``num_images=0``; drawing 100k PNGs with PIL would take longer than
    everything else together): items.csv keeps its ``image`` column, empty. ``num_images=M`` draws the
    pictures of items 0..M−1 (each missing with probability ``missing_image_ratio``), from a random
    stream of their own, so the ratings do not depend on M.

What is sampled differently: the choice. synthetic.py's exact sampler is a Gumbel top-k over all N
items for every user (keys log π_ui + Gumbel, a (1024, N) block at a time): O(U·N) work, 10¹¹ keys
(~3 hours) at this size. Here each user draws a pool of i.i.d. candidates from a proposal close to
π_u, thins it, and picks k_u of the distinct survivors by a Gumbel top-k that corrects for the rest
(sampling-importance-resampling without replacement), in O(Σ_u C_u) work plus two sorts:
  * proposal: items of one look (one of the 96 shape x colour x texture classes) share the class
    part of their taste, x_ui = x̄_uc + ρ_ui with x̄_uc = b̄_c + s p_u·q̄_c (popularity-weighted class
    means) and a small residual ρ_ui = (b_i − b̄_c) + s p_u·(q_i − q̄_c) (sd ≈ 0.2 against a spread of
    x ≈ 1.3). User u's C_u candidates fall in the classes as a multinomial with P_u(c) ∝ Pop_c
    exp(β'_u x̄_uc) (Pop_c = Σ_{i∈c} pop_i, β'_u = β / sd_j x_uj; an (n, 96) matrix per chunk of n
    users), and each is an item of its class by popularity (a Walker alias table per class, O(1) a
    draw). (Systematic sampling of the classes, cheaper, was tried and rejected: it over-represents
    the head items, 19.5% of picks in the top 1% vs 18.1% for the exact sampler.)
  * correction: π_ui / proposal_u(i) ∝ w_ui = exp(β'_u ρ_ui). First thinning: a candidate is kept
    with probability min(1, w/W_u), W_u = exp(sd of β'_u ρ_u·), which keeps ~80% and makes the kept
    ones i.i.d. from π_u up to the few weights above the cap; then the key max(1, w/W_u) / E, E ~
    Exp(1) (the top-k of w/E is the Gumbel top-k of log w) carries the excess. An item drawn m times
    keeps its largest key, the same in law as a key log m + log w + Gumbel. The k_u largest keys
    among the distinct candidates are the picks. Weights in the keys alone fade when k_u is a large
    share of the pool (taking the whole pool would ignore them): with keys only, the within-look part
    of the picks' affinity was 0.023 vs 0.039 for the exact sampler; with thinning 0.034.
  * pool size: C_u = ⌈f·k_u / τ_u⌉ + 4, f = ``pool_factor`` (2 by default), τ_u the expected share
    kept by thinning (:func:`thinning_rate`).
As f → ∞ the picks are distributed exactly as synthetic.py's Gumbel top-k over all items (for β = 0,
"first k_u distinct of i.i.d. popularity draws" is exactly successive sampling without replacement).
At f = 2, on the same ground truth (2,000 users x 1,500 items, 40k ratings; tests/test_synthetic_large.py),
pool vs exact: β = 0: mean a_ui of the picks 0.012 vs 0.013, share in the user's top quarter 0.250 vs
0.251, share in the 1% most popular items 0.187 vs 0.186; β = 1.5: 1.141 vs 1.152, 0.716 vs 0.722,
0.136 vs 0.136; β = 3: 1.663 vs 1.678, 0.933 vs 0.937, 0.088 vs 0.084. So the approximation is a
slightly weaker selection (about 1% of the picks' mean affinity at β = 1.5), growing with β.
A proposal of popularity alone would need ~exp(β²)-fold larger pools for the same quality. Users whose
pool has fewer than k_u distinct survivors (small catalogues, very heavy users, large β) get the exact
Gumbel top-k over all items instead (22 of 1M users at the default size), so every user has exactly
k_u ratings. The mean and sd of x_u· over the catalogue are exact (from the items' means and
covariance of (b, q)), not estimated. Users are processed in chunks (≤ 2^16 users and ≈ 4M
candidates), all numpy, no per-user Python loop; duplicates and the per-user top-k are two sorts of
packed 64-bit keys (user, item, key) and (user, key, item).

Everything is a pure function of the parameters (including ``pool_factor``) and the seed: the same
parameters give the same bytes (on one machine and library build; numpy's SIMD exp/log may round
differently on other CPUs, as for synthetic.py).

Files (read by :class:`~visrec.data.readers.RatingsFile`, the same format as synthetic.py):
``ratings.parquet`` and/or ``ratings.csv`` (user, item, rating, timestamp; string ids), ``items.csv``
(item, image, shape, colour, texture), ``images/<item>.png`` (if any), ``truth.npz`` (the ground
truth arrays as synthetic.py writes them, plus ``log_pop`` and ``counts``; no pickle) and
``params.json``. The folder is written under a temporary name beside it and renamed when complete.
Train on it with::

    python train.py data=ratings_table data.path=DIR/ratings.parquet data.source_args.items_path=DIR/items.csv \
        data.source_args.image_col=image data.source_args.timestamp_col=timestamp

(RatingsFile checks the ratings against ``items_path`` once per distinct item, so the catalog costs
little at millions of ratings.)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from visrec.data.synthetic import COLOURS, FACTOR_SCALE, RATING_MEAN, SHAPES, TEXTURES, _attributes, _one_hot, affinity, draw_item

FORMAT_VERSION = 1
COUNT_SIGMA = 0.8  # sd of log k_u, as in synthetic.py
MIN_COUNT = 5  # every user rates at least this many items, as in synthetic.py
CHUNK_USERS_BITS = 16  # at most 2^16 users per chunk (their local index is packed into 16 bits)
CHUNK_CANDIDATES = 4_000_000  # and about this many candidates per chunk (memory: ~ 40 bytes each)
POOL_EXTRA = 4  # C_u = ⌈f·k_u⌉ + 4: a margin for the duplicates of light users
EXACT_BLOCK = 1024
THIN_CAP = 1.0  # thinning cap W_u = exp(THIN_CAP · sd of the log-weights): keeps ~80% of the candidates  # users per block of the exact fallback (a (1024, N) key matrix)
FORMATS = ("parquet", "csv", "both")


@dataclass(frozen=True)
class LargeParams:
    """Parameters of a large synthetic problem (counts; β in units of each user's spread of taste;
    image_size in pixels). The defaults are the issue's 1M users x 100k items x 20M ratings, K = 8,
    and synthetic.py's constants (conf/data/synthetic.yaml's β = 1.5)."""

    num_users: int = 1_000_000
    num_items: int = 100_000
    num_ratings: int = 20_000_000  # target; the realized total is within a fraction of a percent
    k: int = 8
    popularity_exponent: float = 0.8
    item_noise: float = 0.15
    rating_noise: float = 0.4
    choice_strength: float = 1.5  # β, as conf/data/synthetic.yaml
    pool_factor: float = 2.0  # f: candidates per rating in a user's pool (module docstring)
    num_images: int = 0  # pictures for items 0..num_images-1 only; 0: none
    missing_image_ratio: float = 0.02
    image_size: int = 64
    seed: int = 0

    def __post_init__(self):
        for name in ("num_users", "num_items", "num_ratings", "k", "num_images", "image_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("popularity_exponent", "item_noise", "rating_noise", "choice_strength", "pool_factor", "missing_image_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        U, N, R = self.num_users, self.num_items, self.num_ratings
        if U < 1 or N < MIN_COUNT or self.k < 1:
            raise ValueError(f"need num_users >= 1, num_items >= {MIN_COUNT} and k >= 1 (got {U}, {N}, {self.k})")
        if not MIN_COUNT * U < R < N * U:
            raise ValueError(f"num_ratings must lie between {MIN_COUNT} per user and all pairs: {MIN_COUNT * U} < {R} < {N * U}")
        if self.pool_factor < 1:
            raise ValueError(f"pool_factor must be >= 1, got {self.pool_factor}")
        if N >= 2 ** 30:
            raise ValueError("num_items must be < 2^30")
        if self.num_images > N:
            raise ValueError(f"num_images ({self.num_images}) > num_items ({N})")

    def fields(self) -> dict:
        return asdict(self)


def count_location(mean: float, num_items: int, sigma: float = COUNT_SIGMA, grid: int = 8192) -> float:
    """μ_k such that E[clip(⌊exp(μ_k + σ Z)⌋, 5, N)] = ``mean`` (Z ~ N(0, 1); the expectation on a
    grid of ``grid`` normal quantiles, bisection). Deterministic: no random draws."""
    normal = NormalDist()
    z = np.array([normal.inv_cdf((j + 0.5) / grid) for j in range(grid)])
    lo, hi = -5.0, np.log(num_items) + 5 * sigma
    for _ in range(60):
        mid = (lo + hi) / 2
        value = np.clip(np.floor(np.exp(mid + sigma * z)), MIN_COUNT, num_items).mean()
        lo, hi = (mid, hi) if value < mean else (lo, mid)
    return (lo + hi) / 2


def thinning_rate(sd: np.ndarray, cap: float) -> np.ndarray:
    """(U,) share of candidates that thinning keeps, E[min(1, exp(X − a))] for log-weights X ~ N(0, sd²)
    and a = cap·sd: e^{sd²/2 − a} Φ((a − sd²)/sd) + 1 − Φ(a/sd). Sizes the pools (an approximation:
    the log-weights are close to normal); the sampler is exact in the limit whatever it returns."""
    from scipy.special import ndtr

    sd = np.maximum(sd, 1e-9)
    a = cap * sd
    return np.exp(sd ** 2 / 2 - a) * ndtr((a - sd ** 2) / sd) + 1 - ndtr(a / sd)


def alias_tables(weights: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias tables of the segments ``[starts[c], starts[c] + sizes[c])`` of ``weights``
    (each segment its own distribution). Returns accept (n,) float64 and alias (n,) int64 (global
    positions): a draw from segment c is j = starts[c] + ⌊u·n_c⌋, kept if frac(u·n_c) < accept[j],
    else alias[j]. O(n) Python steps (0.1 s for 100k items)."""
    accept = np.ones(len(weights))
    alias = np.arange(len(weights))
    for start, size in zip(starts.tolist(), sizes.tolist()):
        if size == 0:
            continue
        scaled = (weights[start:start + size] * (size / weights[start:start + size].sum())).tolist()
        small = [j for j, v in enumerate(scaled) if v < 1.0]
        large = [j for j, v in enumerate(scaled) if v >= 1.0]
        while small and large:
            s, g = small.pop(), large[-1]
            accept[start + s], alias[start + s] = scaled[s], start + g
            scaled[g] -= 1.0 - scaled[s]
            if scaled[g] < 1.0:
                small.append(large.pop())
        # what is left has probability 1 up to rounding: accept always (the default)
    return accept, alias


class _Model:
    """The ground truth (same draws, in the same order, as synthetic.py's ``generate`` up to the
    counts), and the per-class quantities of the proposal."""

    def __init__(self, params: LargeParams, rng: np.random.Generator):
        U, N, K = params.num_users, params.num_items, params.k
        self.shape, self.colour, self.texture = _attributes(rng, N)
        self.attrs = _one_hot(self.shape, self.colour, self.texture)  # (N, A)
        A = rng.normal(size=(K, self.attrs.shape[1]))  # (K, A)
        self.item_factors = self.attrs @ A.T / np.sqrt(3.0) + params.item_noise * rng.normal(size=(N, K))  # (N, K)
        self.item_bias = self.attrs @ rng.normal(scale=0.35, size=self.attrs.shape[1]) + 0.1 * rng.normal(size=N)  # (N,)
        self.user_factors = rng.normal(scale=1.0 / np.sqrt(K), size=(U, K))  # (U, K)
        self.user_bias = rng.normal(scale=0.3, size=U)  # (U,)
        rank = rng.permutation(N) + 1
        self.log_pop = -params.popularity_exponent * np.log(rank)  # (N,)
        mu = count_location(params.num_ratings / U, N)
        self.counts = np.clip(rng.lognormal(mu, COUNT_SIGMA, size=U), MIN_COUNT, N).astype(np.int64)  # (U,) k_u

        # Exact per-user mean and sd over the catalogue of x_u· = b + s q p_u (population moments).
        s = FACTOR_SCALE
        bq = np.concatenate([self.item_bias[:, None], s * self.item_factors], axis=1)  # (N, 1+K)
        self.bq_mean = bq.mean(0)
        cov = np.cov(bq, rowvar=False, bias=True)  # (1+K, 1+K)
        ext = np.concatenate([np.ones((U, 1)), self.user_factors], axis=1)  # (U, 1+K): x = ext · bq
        var = ((ext @ cov) * ext).sum(1)
        self.x_sd = np.sqrt(np.maximum(var, 0.0))  # (U,)
        self.beta_u = params.choice_strength / np.maximum(self.x_sd, 1e-12)  # (U,) β'_u = β / sd_u

        # Classes (looks) and the popularity-weighted class means of b and q.
        self.num_classes = len(SHAPES) * len(COLOURS) * len(TEXTURES)
        cls = (self.shape * len(COLOURS) + self.colour) * len(TEXTURES) + self.texture  # (N,)
        pop = np.exp(self.log_pop - self.log_pop.max())  # (N,) unnormalized popularity
        class_pop = np.bincount(cls, weights=pop, minlength=self.num_classes)  # (C,)
        safe = np.maximum(class_pop, 1e-300)
        class_b = np.bincount(cls, weights=pop * self.item_bias, minlength=self.num_classes) / safe  # (C,)
        class_q = np.stack([np.bincount(cls, weights=pop * self.item_factors[:, j], minlength=self.num_classes)
                            for j in range(K)], axis=1) / safe[:, None]  # (C, K)
        self.class_bq = np.concatenate([class_b[None, :], class_q.T], axis=0)  # (1+K, C)
        self.class_b_max = np.abs(class_b).max()  # bounds of |x̄_uc| given |p_u|
        self.class_q_max = np.linalg.norm(class_q, axis=1).max()
        with np.errstate(divide="ignore"):
            self.class_log_pop = np.log(class_pop / class_pop.max())  # (C,) -inf for an empty class
        # Residual taste per item, transposed for column-wise gathers (float32: only used in weights).
        self.res_b = (self.item_bias - class_b[cls]).astype(np.float32)  # (N,)
        self.res_qT = np.ascontiguousarray((s * (self.item_factors - class_q[cls])).T.astype(np.float32))  # (K, N)
        # Thinning: sd of the log-weight β'_u ρ_u· under the proposal (popularity-weighted within looks),
        # the cap β'_u ρ* = THIN_CAP sd above which weights stay in the keys, and the acceptance rate.
        res = np.concatenate([self.res_b[:, None], self.res_qT.T], axis=1).astype(np.float64)  # (N, 1+K)
        res_cov = (res * (pop / pop.sum())[:, None]).T @ res  # (1+K, 1+K), residual means are 0 per look
        logw_sd = self.beta_u * np.sqrt(np.maximum(((ext @ res_cov) * ext).sum(1), 0.0))  # (U,)
        self.log_cap = THIN_CAP * logw_sd  # (U,)
        self.accept_rate = thinning_rate(logw_sd, THIN_CAP)  # (U,)
        # Items sorted by class; alias tables for "an item of class c by popularity".
        self.by_class = np.argsort(cls, kind="stable").astype(np.int32)  # (N,)
        self.class_size = np.bincount(cls, minlength=self.num_classes).astype(np.int32)  # (C,)
        self.class_start = np.concatenate([[0], np.cumsum(self.class_size)[:-1]]).astype(np.int32)  # (C,)
        self.accept, alias = alias_tables(pop[self.by_class], self.class_start, self.class_size)
        self.alias = alias.astype(np.int32)
        self.cls = cls


def _chunks(pool: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive user ranges of at most 2^16 users and about CHUNK_CANDIDATES candidates."""
    bounds, start, U = [], 0, len(pool)
    cum = np.cumsum(pool)
    while start < U:
        base = cum[start - 1] if start else 0
        stop = int(np.searchsorted(cum, base + CHUNK_CANDIDATES, side="right"))
        stop = min(max(stop, start + 1), start + (1 << CHUNK_USERS_BITS), U)
        bounds.append((start, stop))
        start = stop
    return bounds


def _choose_chunk(m: _Model, params: LargeParams, rng: np.random.Generator, start: int, stop: int,
                  pool: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Picks of users [start, stop): (users (R_c,) int64, items (R_c,) int64) and the users whose
    pool had fewer distinct items than their count (for the exact fallback)."""
    n_users, N, C = stop - start, params.num_items, m.num_classes
    users = np.arange(start, stop)
    pool_c = pool[start:stop]  # (n,)
    # 1. How many of user u's C_u candidates fall in each class c: multinomial over
    #    P_u(c) ∝ Pop_c exp(β'_u x̄_uc), i.e. the class counts of C_u i.i.d. draws. (Systematic sampling,
    #    cheaper, over-represents head items: each class gets its expected share, and the chance that a
    #    class's popular item is in the pool is concave in the share.) The logits are one (n, 1+K) @
    #    (1+K, C) product, [β'_u, β'_u s p_u] @ [b̄_c; q̄_c], less a per-user Cauchy-Schwarz bound on
    #    the largest, so exp cannot overflow.
    beta = m.beta_u[start:stop, None]  # (n, 1)
    ext = np.concatenate([beta, beta * FACTOR_SCALE * m.user_factors[start:stop]], axis=1)  # (n, 1+K)
    bound = m.beta_u[start:stop] * (m.class_b_max + FACTOR_SCALE * np.linalg.norm(m.user_factors[start:stop], axis=1) * m.class_q_max)
    prob = ext @ m.class_bq  # (n, C) β'_u x̄_uc
    prob += m.class_log_pop
    prob -= bound[:, None]
    np.exp(prob, out=prob)
    prob /= prob.sum(axis=1, keepdims=True)
    per_class = rng.multinomial(pool_c, prob).ravel()  # (n·C,) candidates per (user, class), row-major
    cand_user = np.repeat(np.arange(n_users, dtype=np.int32), pool_c)  # (M,) local user index
    # Class of each candidate (runs of per_class), by a cumulative sum of class steps at run starts.
    runs = np.flatnonzero(per_class)
    run_start = np.cumsum(per_class, dtype=np.int64)[runs] - per_class[runs]
    step = np.zeros(len(cand_user), dtype=np.int32)
    cls_of_run = (runs % C).astype(np.int32)
    step[run_start] = np.diff(cls_of_run, prepend=np.int32(0))
    cand_class = np.cumsum(step, dtype=np.int32)  # (M,)
    # 2. An item of the class by popularity (alias method, one uniform per draw).
    size = m.class_size[cand_class]
    scaled = rng.random(len(cand_class)) * size
    j = np.minimum(scaled.astype(np.int32), size - 1)
    pos = m.class_start[cand_class] + j
    pos = np.where(scaled - j < m.accept[pos], pos, m.alias[pos])
    item = m.by_class[pos]  # (M,) int32
    # 3. Key w/E, w = exp(β'_u ρ_ui) (float32; positive, so its bit pattern sorts like its value).
    rho = m.res_b[item]  # (M,) float32 residual taste ρ_ui
    ufT = np.ascontiguousarray(m.user_factors[start:stop].T, dtype=np.float32)  # (K, n)
    for k in range(params.k):
        rho += m.res_qT[k][item] * ufT[k][cand_user]
    logw = rho * m.beta_u[start:stop].astype(np.float32)[cand_user]
    logw -= m.log_cap[start:stop].astype(np.float32)[cand_user]  # log(w / W_u)
    # Thinning: keep a candidate with probability min(1, w/W_u) (so the kept ones are i.i.d. draws from
    # proposal·min(1, w/W_u), i.e. from π_u except for the few weights above the cap), and give it the key
    # weight max(1, w/W_u) (the rest): together w/W_u ∝ w, the same target; most of the correction is
    # done by thinning, which, unlike the keys, does not fade when k_u is a large share of the pool.
    with np.errstate(divide="ignore"):  # log 0 = -inf: kept
        kept = np.log(rng.random(len(item), dtype=np.float32)) < logw
    item, cand_user, logw = item[kept], cand_user[kept], np.maximum(logw[kept], 0)
    with np.errstate(divide="ignore"):  # E = 0 (float32): key +inf, still a valid bit pattern
        key = np.exp(logw) / rng.standard_exponential(len(item), dtype=np.float32)
    key_bits = key.view(np.uint32).astype(np.uint64)  # 31 bits (sign 0)
    item_bits = max(1, int(N - 1).bit_length())
    kb = 64 - CHUNK_USERS_BITS - item_bits
    if kb < 31:  # very large catalogues: coarser keys (ties broken by item index)
        key_bits >>= np.uint64(31 - kb)
    kb = min(kb, 31)
    ku, ki, ib = np.uint64(kb + item_bits), np.uint64(kb), np.uint64(item_bits)
    mask_key, mask_item = np.uint64((1 << kb) - 1), np.uint64((1 << item_bits) - 1)
    # 4. Distinct (user, item): sort by (user, item, key); the last of each run has the largest key.
    packed = cand_user.astype(np.uint64)
    packed <<= ku
    part = item.astype(np.uint64)
    part <<= ki
    packed |= part
    packed |= key_bits
    del part, key_bits, key, logw, rho
    packed.sort()
    pair = packed >> ki
    last = np.empty(len(packed), dtype=bool)
    np.not_equal(pair[:-1], pair[1:], out=last[:-1])
    last[-1] = True
    packed = packed[last]
    # 5. Per-user top-k: repack as (user, key, item), sort; the last k_u of each user's run.
    item_part = packed >> ki
    item_part &= mask_item
    key_part = packed & mask_key
    key_part <<= ib
    packed >>= ku
    packed <<= ku
    packed |= key_part
    packed |= item_part
    del item_part, key_part
    packed.sort()
    u_loc = (packed >> ku).astype(np.int64)
    distinct = np.bincount(u_loc, minlength=n_users)  # (n,) distinct candidates per user
    want = m.counts[start:stop]  # (n,) k_u
    short = distinct < want
    keep = np.where(short, 0, want)  # the last k_u of each user's run (none for a short user)
    runs = np.empty(2 * n_users, dtype=np.int64)
    runs[0::2], runs[1::2] = distinct - keep, keep
    take = np.repeat(np.tile(np.array([False, True]), n_users), runs)
    picked_items = (packed[take] & mask_item).astype(np.int64)
    return u_loc[take] + start, picked_items, users[short]


def _choose_exact(m: _Model, params: LargeParams, rng: np.random.Generator, who: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """synthetic.py's exact sampler for users ``who``: Gumbel top-k over all items."""
    users, items = [], []
    for b in range(0, len(who), EXACT_BLOCK):
        block = who[b:b + EXACT_BLOCK]
        keys = m.log_pop[None, :] + rng.gumbel(size=(len(block), params.num_items))
        if params.choice_strength:
            keys += params.choice_strength * affinity(m.user_factors[block], m.item_factors, m.item_bias)
        order = np.argsort(-keys, axis=1)
        take = np.arange(params.num_items)[None, :] < m.counts[block, None]
        users.append(np.broadcast_to(block[:, None], order.shape)[take])
        items.append(order[take])
    if not users:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(users).astype(np.int64), np.concatenate(items).astype(np.int64)


@dataclass
class Generated:
    """The sampled dataset in memory (indices, not ids). Row order is the file's."""
    params: LargeParams
    model: _Model
    users: np.ndarray  # (R,) int64 user index
    items: np.ndarray  # (R,) int64 item index
    ratings: np.ndarray  # (R,) int8 stars 1..5
    timestamps: np.ndarray  # (R,) int64 seconds
    num_exact: int  # users sampled by the exact fallback


def sample(params: LargeParams) -> Generated:
    """Draw the ground truth and the ratings (no files)."""
    rng = np.random.default_rng(params.seed)
    m = _Model(params, rng)
    pool = np.ceil(params.pool_factor * m.counts / m.accept_rate).astype(np.int64) + POOL_EXTRA  # (U,) C_u
    users, items, short = [], [], []
    for start, stop in _chunks(pool):
        u, i, s = _choose_chunk(m, params, rng, start, stop, pool)
        users.append(u)
        items.append(i)
        short.append(s)
    short = np.concatenate(short)
    u, i = _choose_exact(m, params, rng, short)
    users = np.concatenate([*users, u]).astype(np.int32)  # (R,)
    items = np.concatenate([*items, i]).astype(np.int32)  # (R,)
    # Taste of the picks x_ui = b_i + s p_u·q_i: the dot product in float32 (column gathers, 2M rows at a
    # time; 3x faster than float64 here, and 1e-7 relative error is far below the rating noise), then
    # recentred in float64 as synthetic.py does.
    ifT = np.ascontiguousarray(m.item_factors.T, dtype=np.float32)  # (K, N)
    ufT = np.ascontiguousarray(m.user_factors.T, dtype=np.float32)  # (K, U)
    taste = np.empty(len(users))
    for a in range(0, len(users), 1 << 21):
        part_u, part_i = users[a:a + (1 << 21)], items[a:a + (1 << 21)]
        dot = np.zeros(len(part_u), dtype=np.float32)
        for k in range(params.k):
            dot += ifT[k][part_i] * ufT[k][part_u]
        taste[a:a + len(part_u)] = m.item_bias[part_i] + FACTOR_SCALE * dot.astype(np.float64)
    if params.choice_strength:
        taste -= taste.mean() - (m.item_bias.mean() + FACTOR_SCALE * m.user_factors.mean(0) @ m.item_factors.mean(0))
    score = RATING_MEAN + m.user_bias[users] + taste + params.rating_noise * rng.normal(size=len(users))
    ratings = np.clip(np.rint(score), 1, 5).astype(np.int8)
    timestamps = 1_600_000_000 + np.sort(rng.integers(0, 10_000_000, size=len(users)))
    shuffle = rng.permutation(len(users))
    return Generated(params, m, users[shuffle], items[shuffle], ratings[shuffle], timestamps, len(short))


def _ids(prefix: str, n: int) -> np.ndarray:
    width = max(5, len(str(n - 1)))
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), width))


def write(data: Generated, folder: Path, fmt: str = "parquet") -> None:
    """Write ``data`` into ``folder`` (which must not exist yet)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    params, m = data.params, data.model
    N = params.num_items
    folder.mkdir(parents=True)
    item_ids, user_ids = _ids("i", N), _ids("u", params.num_users)
    table = pa.table({
        "user": pc.take(pa.array(user_ids), pa.array(data.users)),
        "item": pc.take(pa.array(item_ids), pa.array(data.items)),
        "rating": pa.array(data.ratings.astype(np.int64)),
        "timestamp": pa.array(data.timestamps),
    })
    if fmt in ("parquet", "both"):
        import pyarrow.parquet as pq
        pq.write_table(table, folder / "ratings.parquet")
    if fmt in ("csv", "both"):
        import pyarrow.csv as pcsv
        pcsv.write_csv(table, folder / "ratings.csv", write_options=pcsv.WriteOptions(quoting_style="none"))
    # Pictures of the first num_images items, from their own random stream.
    img_rng = np.random.default_rng([params.seed, 1])
    has_image = np.zeros(N, dtype=bool)
    M = params.num_images
    has_image[:M] = img_rng.random(M) >= params.missing_image_ratio
    image_col = np.full(N, "", dtype=object)
    if has_image.any():
        (folder / "images").mkdir()
    colours = list(COLOURS)
    for i in np.flatnonzero(has_image):
        name = f"images/{item_ids[i]}.png"
        image_col[i] = name
        draw_item(SHAPES[m.shape[i]], colours[m.colour[i]], TEXTURES[m.texture[i]], params.image_size, img_rng).save(folder / name)
    pd.DataFrame({
        "item": item_ids, "image": image_col, "shape": np.array(SHAPES)[m.shape],
        "colour": np.array(colours)[m.colour], "texture": np.array(TEXTURES)[m.texture],
    }).to_csv(folder / "items.csv", index=False)
    np.savez(folder / "truth.npz", item_ids=item_ids, user_ids=user_ids, item_factors=m.item_factors,
             item_bias=m.item_bias, user_factors=m.user_factors, user_bias=m.user_bias, attributes=m.attrs,
             has_image=has_image, log_pop=m.log_pop, counts=m.counts)
    info = {"format": FORMAT_VERSION, "generator": "synthetic_large", **params.fields(),
            "realized_ratings": int(len(data.users)), "exact_fallback_users": int(data.num_exact)}
    (folder / "params.json").write_text(json.dumps(info, indent=2))


def generate(params: LargeParams, out: str | Path, fmt: str = "parquet") -> dict:
    """Sample and write the dataset into ``out`` atomically (a temporary folder beside it, renamed
    when complete). ``out`` must not exist, unless it holds this very dataset (same params.json
    parameters): then it is kept. Returns the seconds spent sampling and writing."""
    out = Path(out).expanduser()
    if (out / "params.json").is_file():
        old = json.loads((out / "params.json").read_text())
        if {k: old.get(k) for k in params.fields()} == params.fields():
            return {"sample_s": 0.0, "write_s": 0.0, "reused": True}
    if out.exists():
        raise FileExistsError(f"{out} exists and does not hold this dataset")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = sample(params)
    sampled = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        write(data, tmp / "data", fmt)
        os.replace(tmp / "data", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"sample_s": sampled - started, "write_s": time.perf_counter() - sampled, "reused": False,
            "ratings": int(len(data.users)), "exact_fallback_users": int(data.num_exact)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m visrec.data.synthetic_large", description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=LargeParams.num_users)
    ap.add_argument("--items", type=int, default=LargeParams.num_items)
    ap.add_argument("--ratings", type=int, default=LargeParams.num_ratings)
    ap.add_argument("--out", required=True)
    ap.add_argument("--beta", type=float, default=LargeParams.choice_strength, help="choice strength β (0: popularity only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=LargeParams.k)
    ap.add_argument("--pool-factor", type=float, default=LargeParams.pool_factor)
    ap.add_argument("--images", type=int, default=0, help="draw pictures for the first M items (default 0: none)")
    ap.add_argument("--image-size", type=int, default=LargeParams.image_size)
    ap.add_argument("--format", choices=FORMATS, default="parquet", help="ratings.parquet, ratings.csv or both")
    args = ap.parse_args(argv)
    params = LargeParams(num_users=args.users, num_items=args.items, num_ratings=args.ratings, k=args.k,
                         choice_strength=args.beta, pool_factor=args.pool_factor, num_images=args.images,
                         image_size=args.image_size, seed=args.seed)
    result = generate(params, args.out, args.format)
    if result["reused"]:
        print(f"{args.out}: already holds this dataset")
    else:
        print(f"{args.out}: {result['ratings']:,} ratings ({params.num_users:,} users x {params.num_items:,} items, "
              f"{result['exact_fallback_users']} users by the exact fallback); "
              f"sampling {result['sample_s']:.1f} s, writing ({args.format}) {result['write_s']:.1f} s")


if __name__ == "__main__":
    main()
