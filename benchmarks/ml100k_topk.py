"""Top-K evaluation on MovieLens-100K fold u1: the full evaluator table for biased MF and the
popularity baseline under both protocols, its compute time, and Cornac's evaluator side by side.

    .venv/bin/python benchmarks/ml100k_topk.py [--root ../shared/datasets/ml-100k] [--repeats 5]

1. Trains biased MF on u1 with the tuned experiment config (same code as train.py), then runs
   evaluate.py's pipeline on the run directory with exclude_train=all and exclude_train=positives.
2. Times the ranking part of the evaluation (score all items for every evaluated user, mask, top-K,
   metrics for K = 5, 10, 20) and, separately, top-K for all 943 users against all 1,682 items.
3. If Cornac is installed (``pip install cornac``), runs Cornac's own ``ranking_eval`` for MostPop on
   the same fold (threshold 4, exclude_unknowns) and prints its values and time next to ours.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from visrec.evaluation import evaluate
from visrec.evaluation.topk import top_k
from visrec.interactions import Interactions
from visrec.pipeline.evaluation import evaluate_run, load_model, load_run_data, model_scorer, resolve_checkpoint
from visrec.pipeline.training import train

REPO = Path(__file__).resolve().parents[1]


def compose_config(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(name, overrides=overrides)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cornac_most_pop(root: Path) -> dict | None:
    try:
        import cornac
        from cornac.eval_methods.base_method import ranking_eval
        from cornac.metrics import NDCG, FMeasure, Precision, Recall
    except ImportError:
        return None
    read = lambda name: [tuple(r) for r in pd.read_csv(root / name, sep="\t", header=None, usecols=[0, 1, 2]).astype(str).values]
    method = cornac.eval_methods.BaseMethod.from_splits(train_data=read("u1.base"), test_data=read("u1.test"),
                                                        exclude_unknowns=True, rating_threshold=4.0, verbose=False)
    model = cornac.models.MostPop()
    model.fit(method.train_set)
    metrics = [Precision(10), Recall(10), FMeasure(10), NDCG(10)]
    started = time.perf_counter()
    values, per_user = ranking_eval(model, metrics, method.train_set, method.test_set, rating_threshold=4.0, exclude_unknowns=True)
    seconds = time.perf_counter() - started
    return {"values": dict(zip(["precision@10", "recall@10", "f1@10", "ndcg@10"], values)), "seconds": seconds,
            "users": len(per_user[0]), "version": cornac.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "datasets" / "ml-100k"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config("train", ["experiment=ml100k_u1", "model.visual_mode=none", f"data.root={args.root}", "data.fold=1",
                                       "logger=none", "trainer.enable_progress_bar=false", "evaluate=false"])
        with open_dict(cfg):
            cfg.paths.output_dir = tmp
        train(cfg)
        reports = {}
        for protocol in ("all", "positives"):
            print(f"\n=== python evaluate.py run_dir=<u1 run> exclude_train={protocol}")
            reports[protocol] = evaluate_run(compose_config("evaluate", [f"run_dir={tmp}", f"exclude_train={protocol}", "log_to_run_logger=false"]))

        data = load_run_data(tmp)
        model = load_model(data, resolve_checkpoint(tmp, "best"))
        scorer = model_scorer(model)
        seen, test = Interactions.concat(data.parts["train"], data.parts["val"]), data.parts["test"]
        num_users, num_items = len(data.user_map), len(data.item_map)
        full = median_seconds(lambda: evaluate([scorer], seen, test, num_users, num_items), args.repeats)
        all_users = torch.arange(num_users)
        raw = median_seconds(lambda: top_k(scorer.score_users(all_users), 20), args.repeats)

    pop = reports["positives"].results["popularity"]["warm"]
    print(f"\nRanking compute on u1 (median of {args.repeats}, {torch.get_num_threads()} threads):")
    print(f"  evaluator, model, all segments and metrics at K=5,10,20 (incl. segment set-up): {full:.3f} s")
    print(f"  top-20 of all {num_users} users x {num_items} items (score + top-K only):          {raw:.3f} s")
    reference = cornac_most_pop(Path(args.root))
    if reference is None:
        print("\nCornac is not installed: no side-by-side comparison (pip install cornac).")
        return
    print(f"\nMostPop, protocol positives, K=10: visrec vs Cornac {reference['version']} ranking_eval")
    print(f"{'metric':>12} {'visrec':>8} {'cornac':>8}")
    for name, value in reference["values"].items():
        print(f"{name:>12} {pop[name]:>8.4f} {value:>8.4f}")
    print(f"{'users':>12} {pop['users_evaluated']:>8} {reference['users']:>8}")
    print(f"{'seconds':>12} {pop['ranking_seconds']:>8.3f} {reference['seconds']:>8.3f}")


if __name__ == "__main__":
    main()
