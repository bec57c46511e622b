"""Top-K on the embedded synthetic dataset by choice strength β: the default job's split and protocol
(``data/split=random``, relevance = test rating >= 4, protocol ``all``), one table, mean ± sd over seeds.

    .venv/bin/python benchmarks/synthetic_ranking.py [--betas 0 0.5 1 2] [--seeds 0 1 2] [--models ials ials_reg biased_mf]

For every β (``data.generator.choice_strength``, see visrec/data/synthetic.py) and seed s (``seed=s``
and ``data.generator.seed=s``: a fresh dataset and split per seed), trains with train.py's code:

- iALS: ``model=ials`` with conf/model/ials.yaml's defaults (the default job's model);
- iALS + visual prior: the same with ``model.visual_mode=reg``;
- biased MF: ``model=biased_mf`` with its defaults (``visual_mode=reg``);

and reads P/R/F1/NDCG@10 (segment ``warm``: the whole test set of this split) from each run's evaluator report
(``<run dir>/eval/*/metrics.json``); popularity is the evaluator's baseline in the same runs (one
split per seed, so every run of a seed reports the same popularity figures — checked). Also printed
per β: the rating distribution of the generated data (mean, share of ratings >= 4), and the
MovieLens-100K reference figures used to calibrate the default β (conf/data/synthetic.yaml).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from visrec.data.synthetic import SyntheticParams, ensure_generated
from visrec.pipeline.training import train

REPO = Path(__file__).resolve().parents[1]
METRICS = ("precision@10", "recall@10", "f1@10", "ndcg@10")
SEGMENT = "warm"  # the random split has only warm users and items (keys: model/warm/f1@10, ...)
MODELS = {
    "ials": ("iALS", ["model=ials"]),
    "ials_reg": ("iALS + visual prior", ["model=ials", "model.visual_mode=reg"]),
    "biased_mf": ("biased MF", ["model=biased_mf"]),
}
# MovieLens-100K fold u1, the same protocol (README / benchmarks/ml100k_ials.py); all 100k ratings:
# mean 3.53, share >= 4 0.554.
ML100K = {"iALS": {"f1@10": 0.225, "ndcg@10": 0.44}, "popularity": {"f1@10": 0.120, "ndcg@10": 0.245}}


def eval_metrics(out_dir: str) -> dict:
    files = sorted(Path(out_dir, "eval").glob("*/metrics.json"))
    if len(files) != 1:
        raise RuntimeError(f"expected one evaluator report under {out_dir}/eval, found {files}")
    return json.loads(files[0].read_text())["metrics"]


def pick(metrics: dict, scorer: str) -> dict:
    return {m: metrics[f"{scorer}/{SEGMENT}/{m}"] for m in METRICS}


def compose_run(beta: float, seed: int, overrides: list[str], args):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"data.generator.choice_strength={beta}", f"seed={seed}",
                                           f"data.generator.seed={seed}", f"paths.data_dir={args.data_dir}", "logger=none",
                                           "trainer.enable_progress_bar=false", "features.progress=false", *args.extra])


def run(beta: float, seed: int, overrides: list[str], args) -> dict:
    """Train one configuration; its evaluator report's flat metrics."""
    cfg = compose_run(beta, seed, overrides, args)
    with tempfile.TemporaryDirectory() as tmp, open_dict(cfg):
        cfg.paths.output_dir = tmp
        train(cfg)
        return eval_metrics(tmp)


def generator_config(args) -> dict:
    return dict(compose_run(0.0, 0, [], args).data.generator)


def data_stats(beta: float, seed: int, data_dir: Path, generator: dict) -> dict:
    folder = ensure_generated(data_dir, SyntheticParams(**{**generator, "choice_strength": beta, "seed": seed}))
    ratings = pd.read_csv(folder / "ratings.csv")["rating"]
    return {"mean rating": ratings.mean(), "share >= 4": (ratings >= 4).mean()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--betas", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--data-dir", default=str(REPO / "data"), help="generated data and the feature cache")
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for every run")
    parser.add_argument("--results", default=None, help="JSON-lines file: each run's figures are appended; runs already "
                        "there (same β, seed, model, extra overrides) are not repeated")
    args = parser.parse_args()
    started = time.perf_counter()
    done = {}
    if args.results and Path(args.results).is_file():
        for line in Path(args.results).read_text().splitlines():
            r = json.loads(line)
            done[(r["beta"], r["seed"], r["run"], tuple(r["extra"]))] = r
    rows: dict[tuple[float, str], list[dict]] = {}
    stats: dict[float, list[dict]] = {}
    for beta in args.betas:
        for seed in args.seeds:
            popularity = None
            for key in args.models:
                name, overrides = MODELS[key]
                if (beta, seed, key, tuple(args.extra)) in done:
                    r = done[(beta, seed, key, tuple(args.extra))]
                    metrics = {f"{s}/{SEGMENT}/{m}": r[s][m] for s in ("model", "popularity") for m in METRICS}
                else:
                    metrics = run(beta, seed, overrides, args)
                    if args.results:
                        with open(args.results, "a") as f:
                            f.write(json.dumps({"beta": beta, "seed": seed, "run": key, "extra": args.extra,
                                                **{s: pick(metrics, s) for s in ("model", "popularity")}}) + "\n")
                rows.setdefault((beta, name), []).append(pick(metrics, "model"))
                pop = pick(metrics, "popularity")
                if popularity is None:
                    popularity = pop
                    rows.setdefault((beta, "popularity"), []).append(pop)
                elif any(abs(pop[m] - popularity[m]) > 1e-4 for m in METRICS):
                    raise RuntimeError(f"β={beta} seed={seed}: popularity differs between runs of one split: {pop} vs {popularity}")
            stats.setdefault(beta, []).append(data_stats(beta, seed, Path(args.data_dir), generator_config(args)))

    def cell(values: list[float]) -> str:
        sd = np.std(values, ddof=1) if len(values) > 1 else 0.0
        return f"{np.mean(values):.4f} ± {sd:.4f}"

    print(f"\nSynthetic data, split random, relevance = rating >= 4, protocol all (segment '{SEGMENT}'); "
          f"mean ± sd over seeds {args.seeds}; {time.perf_counter() - started:.0f} s")
    print(f"{'β':>4}  {'model':<22}" + "".join(f"{m:>18}" for m in METRICS) + f"{'F1 / pop':>10}{'NDCG / pop':>12}")
    for beta in args.betas:
        pop = {m: np.mean([r[m] for r in rows[(beta, "popularity")]]) for m in METRICS}
        names = [MODELS[key][0] for key in args.models] + ["popularity"]
        for name in names:
            values = rows[(beta, name)]
            mean = {m: np.mean([r[m] for r in values]) for m in METRICS}
            print(f"{beta:>4g}  {name:<22}" + "".join(f"{cell([r[m] for r in values]):>18}" for m in METRICS)
                  + f"{mean['f1@10'] / pop['f1@10']:>10.2f}{mean['ndcg@10'] / pop['ndcg@10']:>12.2f}")
        s = stats[beta]
        print(f"{'':>4}  data: mean rating {cell([x['mean rating'] for x in s])}, share >= 4 {cell([x['share >= 4'] for x in s])}")
    ials, pop = ML100K["iALS"], ML100K["popularity"]
    print(f"ML-100K u1 reference: iALS F1@10 {ials['f1@10']:.3f} NDCG@10 {ials['ndcg@10']:.3f}, popularity F1@10 "
          f"{pop['f1@10']:.3f} NDCG@10 {pop['ndcg@10']:.3f} (F1 / pop {ials['f1@10'] / pop['f1@10']:.2f}, NDCG / pop "
          f"{ials['ndcg@10'] / pop['ndcg@10']:.2f}); ratings: mean 3.53, share >= 4 0.554")


if __name__ == "__main__":
    main()
