"""Top-K on MovieLens-100K fold u1 (relevance = test rating >= 4, protocol ``all``), one run, one table:
biased MF, iALS, iALS + visual prior, popularity and — when the ``bench`` extra is installed — the
``implicit`` library's ALS, all scored by visrec's evaluator on the same split, with fit seconds.

    .venv/bin/python benchmarks/ml100k_ials.py [--root ../shared/datasets/ml-100k]

- biased MF: ``experiment=ml100k_u1`` (a rating model; its top-K is shown for contrast).
- iALS: ``experiment=ml100k_u1_ials`` (hyperparameters chosen on u1.base's validation carve-out).
- iALS + visual prior: the same with ``model.visual_mode=reg`` and the bundled backbone's poster
  features (extracted once, then cached under data/feature_cache).
- implicit ALS: ``implicit.cpu.als.AlternatingLeastSquares`` (factors 32, regularization 1, the dataset
  README's reference setting; 15 iterations) fitted on the same training part (train + validation of
  the visrec run, every rating an interaction), its factors scored by visrec's evaluator.
Fit seconds are each model's training wall time (visrec: Lightning fit incl. per-epoch validation).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from visrec.evaluation import FactorScorer, PopularityScorer, evaluate
from visrec.interactions import Interactions
from visrec.pipeline.evaluation import load_model, load_run_data, model_scorer, resolve_checkpoint
from visrec.pipeline.training import train

REPO = Path(__file__).resolve().parents[1]
METRICS = ("precision", "recall", "f1", "ndcg", "map")
KS = (10, 20)


def run(overrides: list[str], out_dir: str) -> tuple[object, float]:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "logger=none", "trainer.enable_progress_bar=false", "evaluate=false"])
    with open_dict(cfg):
        cfg.paths.output_dir = out_dir
    metrics = train(cfg)
    data = load_run_data(out_dir)
    model = load_model(data, resolve_checkpoint(out_dir, "tested"), cfg.features.cache_dir)
    return (data, model), float(metrics["fit_seconds"])


def implicit_als(seen: Interactions, num_users: int, num_items: int) -> tuple[FactorScorer, float] | None:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from scipy.sparse import csr_matrix
    except ImportError:
        return None
    user_items = csr_matrix((np.ones(len(seen), dtype=np.float32), (seen.users.numpy(), seen.items.numpy())),
                            shape=(num_users, num_items))
    model = AlternatingLeastSquares(factors=32, regularization=1.0, iterations=15, random_state=0)
    started = time.perf_counter()
    model.fit(user_items, show_progress=False)
    seconds = time.perf_counter() - started
    zeros_u, zeros_i = torch.zeros(num_users), torch.zeros(num_items)
    scorer = FactorScorer(torch.from_numpy(np.asarray(model.user_factors)), zeros_u, torch.from_numpy(np.asarray(model.item_factors)),
                          zeros_i, 0.0, name="implicit ALS", predicts_ratings=False)
    return scorer, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "datasets" / "ml-100k"))
    args = parser.parse_args()
    data_args = [f"data.root={args.root}"]
    runs = {
        "biased MF": ["experiment=ml100k_u1", "model.visual_mode=none"],
        "iALS": ["experiment=ml100k_u1_ials"],
        "iALS + visual prior": ["experiment=ml100k_u1_ials", "model.visual_mode=reg"],
    }
    rows, fit_seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in runs.items():
            (data, model), fit_seconds[name] = run([*overrides, *data_args], f"{tmp}/{name.replace(' ', '_')}")
            seen = Interactions.concat(data.parts["train"], data.parts["val"])
            U, N = len(data.user_map), len(data.item_map)
            report = evaluate([model_scorer(model, name)], seen, data.parts["test"], U, N, ks=KS,
                              known_users=model.net.known_users, known_items=model.net.known_items)
            rows[name] = report.results[name]["warm"]
        popularity = PopularityScorer.from_interactions(seen.items, N)
        rows["popularity"] = evaluate([popularity], seen, data.parts["test"], U, N, ks=KS).results["popularity"]["warm"]
        fit_seconds["popularity"] = 0.0
        reference = implicit_als(seen, U, N)
        if reference is not None:
            scorer, fit_seconds["implicit ALS"] = reference
            rows["implicit ALS"] = evaluate([scorer], seen, data.parts["test"], U, N, ks=KS).results["implicit ALS"]["warm"]

    header = f"{'model':<22}" + "".join(f"{f'{m}@{k}':>13}" for k in KS for m in METRICS) + f"{'fit s':>9}"
    print(f"\nMovieLens-100K u1, relevance = rating >= 4, protocol all (warm segment, {rows['iALS']['users_evaluated']} users)")
    print(header)
    for name, values in rows.items():
        print(f"{name:<22}" + "".join(f"{values[f'{m}@{k}']:>13.4f}" for k in KS for m in METRICS) + f"{fit_seconds[name]:>9.2f}")
    if reference is None:
        print("\nimplicit is not installed: no side-by-side ALS (pip install -e '.[bench]').")


if __name__ == "__main__":
    main()
