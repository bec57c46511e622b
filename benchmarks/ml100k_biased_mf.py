"""Biased MF on MovieLens-100K official folds: test RMSE / MAE and training wall time.

    .venv/bin/python benchmarks/ml100k_biased_mf.py [--root ../shared/datasets/ml-100k] [--folds 1 2 3 4 5]
        [--experiments ml100k_u1 ml100k_u1_sgd] [--seeds 0 1 2] [--variants "refit=false" "refit=true"]

Trains plain biased MF (model.visual_mode=none) with each tuned experiment config (conf/experiment/:
ml100k_u1 = Adam, ml100k_u1_sgd = small-batch SGD) through the same code as train.py, and prints one
row per experiment, fold and seed (with several seeds, also their mean and standard deviation: how
much of a difference between settings is the random initialization and order). Each ``--variants`` entry is
a space-separated list of extra Hydra overrides (\"\" = the experiment as configured), run side by side. References on fold u1: Cornac BiasedMF 0.918, Surprise SVD
defaults ~0.94 (as quoted in the project's issue tracker; not re-run here).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from visrec.pipeline.training import train

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "datasets" / "ml-100k"))
    parser.add_argument("--folds", nargs="+", default=["1"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--experiments", nargs="+", default=["ml100k_u1"])
    parser.add_argument("--variants", nargs="+", default=[""])
    args = parser.parse_args()
    rows = []
    runs = [(e + (f" {v}" if v else ""), e, v, f, s) for e in args.experiments for v in args.variants for f in args.folds for s in args.seeds]
    for name, experiment, variant, fold, seed in runs:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=[f"experiment={experiment}", "model.visual_mode=none", f"data.root={args.root}", f"data.fold={fold}",
                                              f"seed={seed}", "logger=none", "trainer.enable_progress_bar=false", *variant.split()])
        with tempfile.TemporaryDirectory() as tmp, open_dict(cfg):
            cfg.paths.output_dir = tmp
            started = time.perf_counter()
            metrics = train(cfg)
            total = time.perf_counter() - started
        fit_s = metrics["fit_seconds"] + metrics.get("refit/fit_seconds", 0.0)  # validated fit + refit
        rows.append((name, fold, seed, metrics["test/rmse"], metrics["test/mae"], metrics["epochs"], fit_s, total))
    width = max(14, *(len(r[0]) for r in rows))
    print("\nbiased MF on MovieLens-100K")
    print(f"{'experiment':<{width}} {'fold':>4} {'seed':>4} {'test RMSE':>10} {'test MAE':>9} {'epochs':>6} {'fit s':>7} {'total s':>8}")
    for experiment, fold, seed, rmse, mae, epochs, fit_s, total in rows:
        print(f"{experiment:<{width}} {'u' + fold:>4} {seed:>4} {rmse:>10.4f} {mae:>9.4f} {epochs:>6} {fit_s:>7.1f} {total:>8.1f}")
    for experiment in dict.fromkeys(r[0] for r in rows):
        for fold in args.folds if len(args.seeds) > 1 else []:
            rmse = [r[3] for r in rows if r[0] == experiment and r[1] == fold]
            print(f"{experiment:<{width}} {'u' + fold:>4} seeds {len(rmse)}: test RMSE mean {statistics.mean(rmse):.5f}, sd {statistics.stdev(rmse):.4f}")
        mine = [r for r in rows if r[0] == experiment]
        if len(args.folds) > 1:
            print(f"{experiment:<{width}} {'mean':>4} {'':>4} {sum(r[3] for r in mine) / len(mine):>10.4f} {sum(r[4] for r in mine) / len(mine):>9.4f}")


if __name__ == "__main__":
    main()
