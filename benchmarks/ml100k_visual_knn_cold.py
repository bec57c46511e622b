"""Cold-item ranking of the content-based ``model=visual_knn`` on MovieLens-100K (``data/split=cold_item``),
with the permuted-features control, over several seeds (each seed draws its own held-out items).

    .venv/bin/python benchmarks/ml100k_visual_knn_cold.py [--root ../shared/datasets/ml-100k] [--seeds 0 1 2]

For each seed, runs of ``data=movielens_100k model=visual_knn`` on the cold-item split (the held-out items
and all their ratings are the test part; ``data.split.warm_test_ratio=0``), the bundled backbone:
    similarity_sum            top-N by Σ s_ij over the user's training items (``model.ranking``'s default)
    rating                    top-N by the predicted rating r̂_uj (``model.ranking=rating``)
    ..., permuted features    the same with ``features.permute_seed=0`` (the feature rows dealt to the
                              wrong items: a gain that survives it does not come from the pictures).
Reported: the evaluator's ``cold_items`` segment (candidates = all items without training ratings,
relevance = rating >= 4), NDCG@10 and Recall@10, the cold-item RMSE, and the exact expected metrics of a
uniformly random order of the cold candidates (``random order``; see benchmarks/ml100k_ials_cold.py).
"""
from __future__ import annotations

import statistics

from ml100k_ials_cold import cold_args, cold_run, run_variants  # same folder: one train + report, the floor

PERMUTED = "features.permute_seed=0"
VARIANTS = {"similarity_sum": [], "similarity_sum, permuted features": [PERMUTED],
            "rating": ["model.ranking=rating"], "rating, permuted features": ["model.ranking=rating", PERMUTED]}
# Acceptance (issue 18): the default ranking beats its permuted-features control on every seed.
PRIOR, CONTROL = "similarity_sum", "similarity_sum, permuted features"


def cold_metrics(overrides: list[str], out_dir: str) -> dict:
    metrics, out = cold_run(overrides, out_dir)
    out["rmse"] = metrics.get("test/rmse_cold")
    return out


def main() -> None:
    args = cold_args(__doc__)
    rows = run_variants(lambda seed: ["data=movielens_100k", f"data.root={args.root}", "model=visual_knn",
                                      "data/split=cold_item", "data.split.warm_test_ratio=0", f"seed={seed}"],
                        VARIANTS, cold_metrics, args.seeds)
    for floor in rows["random order (floor)"]:
        floor["rmse"] = None  # a random order has no rating predictions
    print(f"\nML-100K cold-item split, model=visual_knn, cold_items segment (seeds {args.seeds})")
    print(f"{'variant':<44}" + "".join(f"{f'seed {s}':>10}" for s in args.seeds) + f"{'mean':>10}{'sd':>10}")
    for metric in ("ndcg", "recall", "rmse"):
        for name, values in rows.items():
            cells = [v[metric] for v in values]
            if any(c is None for c in cells):
                continue
            label = f"{name} {metric}" + ("@10" if metric != "rmse" else "")
            sd = statistics.stdev(cells) if len(cells) > 1 else 0.0
            print(f"{label:<44}" + "".join(f"{c:>10.4f}" for c in cells) + f"{statistics.mean(cells):>10.4f}{sd:>10.4f}")
    for prior, control in ((PRIOR, CONTROL), ("rating", "rating, permuted features")):
        wins = sum(r["ndcg"] > p["ndcg"] for r, p in zip(rows[prior], rows[control]))
        print(f"{prior} beats its permuted control on cold-item NDCG@10 in {wins} of {len(args.seeds)} seeds")


if __name__ == "__main__":
    main()
