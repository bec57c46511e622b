"""Paired significance tests over users: is model B's per-user metric different from reference A's?

Two models evaluated on the same test users give, per user, one value each (e.g. NDCG@10). The unit of the
test is the (fold or seed, user) pair: per-user values of matched folds are pooled, as Elliot's statistical
tests do over users (Anelli et al., "Elliot", SIGIR 2021) and as Sakai ("Statistical Reform in Information
Retrieval?", SIGIR Forum 2014) recommends over averaging first. Both tests come from scipy:

* **paired t-test** (``scipy.stats.ttest_rel``) on the differences d = candidate − reference;
* **Wilcoxon signed-rank** (``scipy.stats.wilcoxon``, ``zero_method="wilcox"``: users whose two values tie are
  left out, the usual choice; NDCG@10 ties at 0 for the many users neither model hits).

Effect sizes beside the p-values: Cohen's d_z = mean(d) / sd(d) (the paired t-test's standardized effect;
Lakens 2013) and the matched-pairs rank-biserial correlation r = (W⁺ − W⁻) / (W⁺ + W⁻) ∈ [−1, 1] (Kerby 2014),
the Wilcoxon test's. No correction for multiple comparisons is applied: a table of many metrics × segments × groups
should be read with that in mind (or Bonferroni: multiply p by the number of tests).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

KEYS = ("fold", "segment", "user")


def paired_test(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Paired t-test and Wilcoxon signed-rank test of ``candidate`` (n,) against ``reference`` (n,), the same
    users in the same order. Returns n, both means, mean_difference (candidate − reference), p_ttest,
    p_wilcoxon (two-sided), effect_size (Cohen's d_z) and rank_biserial. p-values are 1.0 when every
    difference is 0 and None when n < 2. Raises ValueError when the shapes differ or a value is not finite."""
    from scipy import stats

    reference, candidate = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 1:
        raise ValueError(f"paired values must be two (n,) arrays of one length, got {reference.shape} and {candidate.shape}")
    if not (np.isfinite(reference).all() and np.isfinite(candidate).all()):
        raise ValueError("paired values must be finite")
    n = len(reference)
    diff = candidate - reference  # (n,)
    out = {"n": n, "mean_reference": float(reference.mean()) if n else None,
           "mean_candidate": float(candidate.mean()) if n else None,
           "mean_difference": float(diff.mean()) if n else None,
           "p_ttest": None, "p_wilcoxon": None, "effect_size": None, "rank_biserial": None}
    if n < 2:
        return out
    nonzero = diff[diff != 0]
    if len(nonzero) == 0:
        return {**out, "p_ttest": 1.0, "p_wilcoxon": 1.0, "effect_size": 0.0, "rank_biserial": 0.0}
    sd = float(diff.std(ddof=1))
    constant = sd <= 1e-12 * max(abs(float(diff.mean())), 1.0)  # one difference for every user (rounding aside)
    out["effect_size"] = math.copysign(math.inf, float(diff.mean())) if constant else float(diff.mean() / sd)
    out["p_ttest"] = 0.0 if constant else float(stats.ttest_rel(candidate, reference).pvalue)
    out["p_wilcoxon"] = float(stats.wilcoxon(nonzero, zero_method="wilcox").pvalue)
    ranks = stats.rankdata(np.abs(nonzero))  # (m,) average ranks of |d| over the non-tied users
    positive, negative = ranks[nonzero > 0].sum(), ranks[nonzero < 0].sum()
    out["rank_biserial"] = float((positive - negative) / (positive + negative))
    return out


def compare_per_user(reference: pd.DataFrame, candidate: pd.DataFrame, metrics: list[str] | tuple[str, ...]) -> dict[str, dict]:
    """Paired tests of ``candidate`` against ``reference`` per segment and metric, pooled over folds.

    Both frames hold one row per (fold, segment, user) (the fold: any label naming the matched fold or seed)
    and one column per metric (per_user.parquet's columns). Rows are paired on (fold, segment, user) — users a
    segment ranked in both; unmatched rows are left out (``n`` says how many pairs were tested). Returns
    ``{"<segment>/<metric>": paired_test(...) }`` for each segment both frames have and each of ``metrics``
    both frames have."""
    shared = [m for m in metrics if m in reference.columns and m in candidate.columns]
    joined = reference[[*KEYS, *shared]].merge(candidate[[*KEYS, *shared]], on=list(KEYS), suffixes=("_ref", "_cand"))
    out = {}
    for segment, rows in joined.groupby("segment", sort=True):
        for metric in shared:
            out[f"{segment}/{metric}"] = paired_test(rows[f"{metric}_ref"].to_numpy(), rows[f"{metric}_cand"].to_numpy())
    return out
