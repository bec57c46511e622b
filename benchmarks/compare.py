"""The paper table: every model beside the baselines and Surprise, on the same folds, mean ± sd.

    .venv/bin/python benchmarks/compare.py [--root ../shared/datasets/ml-100k] [--folds 1 2 3 4 5]
        [--models popularity bias_only user_knn user_knn_basic user_knn_baseline biased_mf biased_mf_visual ials] [--surprise SVD KNNBaseline ...]
        [--out compare-runs] [--extra OVERRIDE ...]

For ML-100K's official folds (``data.fold``), each visrec model is one Hydra multirun of ``train.py``
over the folds (``-m ... data.fold=1,2,3,4,5``), summarized by visrec's own sweep summary
(:mod:`visrec.pipeline.cross_validation`: ``cv_summary.json``); popularity is the evaluator's baseline
of the first sweep (a ranking-only scorer: no RMSE). Then, when ``scikit-surprise`` is installed (the
``bench`` extra), each named Surprise algorithm is fitted on each fold's exact training rows (the
``split.parquet`` that visrec wrote for that fold: train and validation parts, since visrec's models
also see the validation part through early stopping) and tested on its test rows:

* RMSE / MAE over the warm test ratings (user and item in training; predictions clipped to [1, 5] as
  Surprise does), the ratings visrec's ``test/rmse`` covers;
* for ``SVD`` (a factor model with ``pu``/``qi``/``bu``/``bi``), the ranking
  metrics from visrec's evaluator on the same protocol (all items not in the user's training ratings
  ranked; relevant = test rating ≥ 4); other Surprise algorithms get rating metrics only (scoring
  943 x 1,682 pairs one Python call at a time is not a fair use of them).

Columns: RMSE, MAE (warm test ratings) and P/R/F1/NDCG@10 (warm users, ``model/warm/*``: see the
README's metric definitions), each mean ± sample sd over the folds (Surprise's own ``cross_validate``
prints the population sd, smaller by √((n−1)/n)).

With ``--reference MODEL`` (one of ``--models``), every other visrec row gets the p-values of paired tests
over users against it (Wilcoxon signed-rank and paired t-test on warm NDCG@10 and F1@10; users paired within
a fold, pooled over the folds: :mod:`visrec.evaluation.significance`), from the evaluator's
``per_user.parquet`` of each job. Surprise and popularity rows have no per-user values here and get none.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
# Each visrec row: the Hydra overrides of its multirun (plus data.fold=... and --extra).
MODELS = {
    # Closed-form baselines fit every training row (no validation carve-out), as Surprise does.
    "bias_only": ["data=movielens_100k", "model=bias_only", "data.val_ratio=0", "callbacks=none"],
    "user_knn": ["data=movielens_100k", "model=user_knn", "data.val_ratio=0", "callbacks=none"],  # = KNNWithMeans
    "user_knn_basic": ["data=movielens_100k", "model=user_knn", "model.variant=basic", "data.val_ratio=0",
                       "callbacks=none"],  # = KNNBasic (cosine)
    "user_knn_baseline": ["data=movielens_100k", "model=user_knn", "model.variant=baseline",
                          "model.similarity=pearson_baseline", "model.shrinkage=100", "data.val_ratio=0",
                          "callbacks=none"],  # = KNNBaseline (pearson_baseline, shrinkage 100)
    "visual_knn": ["data=movielens_100k", "model=visual_knn"],
    "biased_mf": ["experiment=ml100k_u1", "model.visual_mode=none"],
    "biased_mf_visual": ["experiment=ml100k_u1", "model.visual_mode=reg"],
    "ials": ["experiment=ml100k_u1_ials"],
}
# Surprise rows: algorithm -> constructor options. KNNWithMeans with cosine, k 40, min_k 1 is visrec's
# user_knn defaults (KNNBasic: user_knn_basic; KNNBaseline: user_knn_baseline); BaselineOnly's defaults
# (ALS, reg_i 10, reg_u 15, 10 epochs) are bias_only's.
SURPRISE = {
    "BaselineOnly": {"verbose": False},
    "KNNBasic": {"sim_options": {"name": "cosine", "user_based": True}, "verbose": False},
    "KNNWithMeans": {"sim_options": {"name": "cosine", "user_based": True}, "verbose": False},
    "KNNBaseline": {"sim_options": {"name": "pearson_baseline", "user_based": True}, "verbose": False},
    "SVD": {"random_state": 0},
}
COLUMNS = {"RMSE": "test/rmse", "MAE": "test/mae", "P@10": "model/warm/precision@10", "R@10": "model/warm/recall@10",
           "F1@10": "model/warm/f1@10", "NDCG@10": "model/warm/ndcg@10"}


def run_sweep(name: str, overrides: list[str], folds: list[str], out: Path, extra: list[str]) -> Path:
    """One multirun of train.py over the folds; returns its sweep directory."""
    log_dir = out / name
    command = [sys.executable, str(REPO / "train.py"), "-m", *overrides, f"data.fold={','.join(folds)}", "logger=none",
               "trainer.enable_progress_bar=false", f"paths.log_dir={log_dir}", f"paths.data_dir={out / 'data'}", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{name}: train.py -m failed:\n{done.stderr[-3000:]}")
    (summary,) = sorted(log_dir.rglob("cv_summary.json"))[-1:]
    print(f"  {name}: {len(folds)} folds in {time.perf_counter() - started:.0f} s ({summary.parent})", flush=True)
    return summary.parent


def visrec_rows(sweep: Path) -> tuple[dict, dict]:
    """(model's metrics, popularity's metrics) of a sweep's single group: name -> list of per-fold values."""
    (group,) = json.loads((sweep / "cv_summary.json").read_text())["groups"]
    model = {col: group["metrics"][key]["values"] for col, key in COLUMNS.items() if key in group["metrics"]}
    popularity = {col: group["metrics"][key.replace("model/", "popularity/")]["values"] for col, key in COLUMNS.items()
                  if key.startswith("model/") and key.replace("model/", "popularity/") in group["metrics"]}
    return model, popularity


def surprise_fold(algorithm: str, split_file: Path) -> dict[str, float]:
    """Fit Surprise's ``algorithm`` (default parameters) on a visrec split's train + validation rows and
    score its test rows; ranking metrics through visrec's evaluator when the algorithm has factors."""
    import surprise
    import torch

    from visrec.evaluation import evaluate
    from visrec.evaluation.scorers import FactorScorer
    from visrec.interactions import Interactions

    split = pd.read_parquet(split_file)
    fit_rows, test = split[split["part"] != "test"], split[split["part"] == "test"]
    reader = surprise.Reader(rating_scale=(1, 5))
    trainset = surprise.Dataset.load_from_df(fit_rows[["user", "item", "rating"]], reader).build_full_trainset()
    algo = getattr(surprise, algorithm)(**SURPRISE[algorithm])
    algo.fit(trainset)
    users, items = set(fit_rows["user"]), set(fit_rows["item"])
    warm = test[test["user"].isin(users) & test["item"].isin(items)]
    pred = np.array([algo.predict(u, i).est for u, i in zip(warm["user"], warm["item"])])  # clipped to the scale
    err = pred - warm["rating"].to_numpy()
    out = {"RMSE": math.sqrt(float(np.mean(err ** 2))), "MAE": float(np.mean(np.abs(err)))}
    if hasattr(algo, "pu") and hasattr(algo, "bu"):
        # Surprise's inner ids -> dense indices over the fold's users / items (unknown users/items: zeros).
        user_index = pd.Index(sorted(split["user"].unique()))
        item_index = pd.Index(sorted(split["item"].unique()))
        U, N, K = len(user_index), len(item_index), algo.pu.shape[1]
        P, Q = torch.zeros(U, K), torch.zeros(N, K)
        bu, bi = torch.zeros(U), torch.zeros(N)
        raw_u = [trainset.to_raw_uid(i) for i in range(trainset.n_users)]
        raw_i = [trainset.to_raw_iid(i) for i in range(trainset.n_items)]
        ui, ii = user_index.get_indexer(raw_u), item_index.get_indexer(raw_i)
        P[ui], bu[ui] = torch.from_numpy(algo.pu).float(), torch.from_numpy(algo.bu).float()
        Q[ii], bi[ii] = torch.from_numpy(algo.qi).float(), torch.from_numpy(algo.bi).float()
        scorer = FactorScorer(P, bu, Q, bi, float(trainset.global_mean), rating_range=(1.0, 5.0), name="model")

        def part(rows: pd.DataFrame) -> Interactions:
            return Interactions(torch.from_numpy(user_index.get_indexer(rows["user"])).long(),
                                torch.from_numpy(item_index.get_indexer(rows["item"])).long(),
                                torch.tensor(rows["rating"].to_numpy(np.float32)))

        report = evaluate([scorer], part(fit_rows), part(test), U, N, ks=[10])
        warm_ranking = report.results["model"]["warm"]
        out.update({col: float(warm_ranking[key.split("/")[-1]]) for col, key in COLUMNS.items() if key.startswith("model/")})
    return out


def paired_columns(sweeps: dict[str, Path], reference: str) -> dict[str, dict[str, str]]:
    """Per visrec row but the reference: "p NDCG@10" / "p F1@10" cells (Wilcoxon p; paired t p) of paired tests
    over users against the ``reference`` row's sweep, warm segment, pooled over folds."""
    from visrec.evaluation.significance import compare_per_user
    from visrec.pipeline.cross_validation import FOLD_KEYS, per_user_rows, read_sweep

    ref = per_user_rows(read_sweep(sweeps[reference]), FOLD_KEYS)
    out = {}
    for name, sweep in sweeps.items():
        if name == reference:
            continue
        tests = compare_per_user(ref, per_user_rows(read_sweep(sweep), FOLD_KEYS), ["ndcg@10", "f1@10"])
        out[name] = {f"p {metric.upper()}": f"{t['p_wilcoxon']:.2g}; {t['p_ttest']:.2g}"
                     for metric, t in ((m, tests[f"warm/{m}"]) for m in ("ndcg@10", "f1@10")) if t["p_wilcoxon"] is not None}
    return out


def cell(values: list[float] | None) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "datasets" / "ml-100k"))
    parser.add_argument("--folds", nargs="+", default=["1", "2", "3", "4", "5"])
    parser.add_argument("--models", nargs="+", default=["popularity", "bias_only", "user_knn", "biased_mf", "biased_mf_visual"],
                        choices=["popularity", *MODELS])
    parser.add_argument("--surprise", nargs="*", default=list(SURPRISE), choices=list(SURPRISE))
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "compare")
    parser.add_argument("--extra", nargs="*", default=[], help="Hydra overrides added to every visrec sweep")
    parser.add_argument("--reference", default=None, choices=list(MODELS),
                        help="paired tests over users of every other visrec row against this one (p: Wilcoxon; paired t)")
    args = parser.parse_args()
    if args.reference is not None and args.reference not in args.models:
        raise SystemExit(f"--reference {args.reference} is not one of --models {args.models}")
    extra = [f"data.root={args.root}", *args.extra]
    rows: dict[str, dict] = {}
    sweeps: dict[str, Path] = {}
    first_sweep = None
    for name in [m for m in args.models if m != "popularity"]:
        sweep = sweeps[name] = run_sweep(name, MODELS[name], args.folds, args.out, extra)
        first_sweep = first_sweep or sweep
        rows[name], popularity = visrec_rows(sweep)
        if "popularity" in args.models and "popularity" not in rows:
            rows["popularity"] = popularity
    if args.surprise:
        try:
            import surprise  # noqa: F401
        except ImportError:
            print("  (scikit-surprise not installed: pip install -e '.[bench]'; Surprise rows skipped)")
            args.surprise = []
    if args.surprise and first_sweep is None:
        raise SystemExit("the Surprise rows use the folds of a visrec sweep: name at least one visrec model in --models")
    jobs = sorted((p for p in first_sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)) if args.surprise else []
    for algorithm in args.surprise:
        started = time.perf_counter()
        per_fold = [surprise_fold(algorithm, job / "split.parquet") for job in jobs]
        rows[f"Surprise {algorithm}"] = {col: [f[col] for f in per_fold] for col in COLUMNS if col in per_fold[0]}
        print(f"  Surprise {algorithm}: {len(jobs)} folds in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"\nML-100K folds {', '.join(args.folds)}: mean ± sd over folds (warm test ratings; ranking: warm users, "
          "all non-training items ranked, relevant = rating ≥ 4)\n")
    paired = paired_columns(sweeps, args.reference) if args.reference else {}
    extra_columns = [f"p NDCG@10 vs {args.reference}", f"p F1@10 vs {args.reference}"] if args.reference else []
    print("| model | " + " | ".join([*COLUMNS, *extra_columns]) + " |")
    print("| --- |" + " --- |" * (len(COLUMNS) + len(extra_columns)))
    for name, metrics in rows.items():
        p_cells = [paired.get(name, {}).get(key, "—") for key in ("p NDCG@10", "p F1@10")] if args.reference else []
        print(f"| {name} | " + " | ".join([*(cell(metrics.get(col)) for col in COLUMNS), *p_cells]) + " |")
    if args.reference:
        print(f"\np: Wilcoxon signed-rank; paired t-test, over (fold, user) pairs of the warm users, against {args.reference}")


if __name__ == "__main__":
    main()
