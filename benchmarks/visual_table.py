"""The visual paper table: every model that uses the posters beside the non-visual ones, MovieLens-100K,
cold-item split with its warm part, several seeds, mean ± sd, paired p-values against plain iALS.

    .venv/bin/python benchmarks/visual_table.py [--root ../shared/datasets/ml-100k] [--seeds 0 1 2 3 4]
        [--pooling final|stages] [--ties expected|index] [--rows NAME ...] [--no-cornac] [--out table.json]
        [--work-dir DIR]

Each (seed, row)'s per-user values are kept in ``--work-dir`` (``<ties>/<pooling>/seed<S>/<row>.parquet``) as soon as
they are measured, and a rerun with the same directory skips what is there: a long table survives an
interruption, and rows can be added to it later.

Split: ``data=movielens_100k data/split=cold_item seed=S`` — 20 % of the items held out with all their ratings
(the ``cold_items`` segment: candidates = every item without training interactions), and 10 % of each user's
ratings of the other items (``warm``: candidates = every trained item minus the user's training items; and its
long-tail segment ``warm_items_1-5``: items with 1–5 training interactions, ranked among themselves). Relevant =
rating >= 4. Each seed draws its own held-out items.

Rows (all scored by visrec's evaluator on the same split and the same image features):
    popularity              the evaluator's baseline (training counts; cold items all tie)
    random order            the exact expected metrics of a uniformly random order of each user's candidates
    iALS                    ``experiment=ml100k_u1_ials`` (cold items: zero vectors, a tie: under ``--ties expected``,
                            the default, that is the random floor; under ``index`` the item-id order, an artefact)
    iALS + head             ``model.visual_mode=head``: cold items from the picture, warm training untouched
    visual iALS             ``model.visual_mode=offset``: q_i = E f̃_i + v_i in training, cold head after it
    BPR, VBPR               ``model=bpr`` / ``model=vbpr`` at the settings of Cornac's side (below)
    Cornac BPR, Cornac VBPR Cornac 3 (``bench`` extra) fitted on visrec's training part with the same settings
                            and features (benchmarks/pairwise_cornac.py), its factor tables scored by visrec
    visual_knn              ``model=visual_knn`` (item kNN over picture similarity)
    ..., permuted           the same with ``features.permute_seed=1``: every item gets another item's features;
                            a gain that survives it does not come from the pictures
Columns: NDCG@10 and Recall@10 per segment, mean ± sample sd over the seeds (each seed's segment mean), and
the Wilcoxon signed-rank p-value of NDCG@10 against iALS over (seed, user) pairs
(:mod:`visrec.evaluation.significance`; the random row's per-user values are its exact expectations).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import open_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ml100k_ials_cold import random_order_expectation, split_segments  # noqa: E402
from pairwise_cornac import TASKS, compose_cfg, cornac_scorer, split_data  # noqa: E402

from visrec.evaluation import evaluate  # noqa: E402
from visrec.evaluation.significance import compare_per_user  # noqa: E402
from visrec.interactions import Interactions  # noqa: E402
from visrec.pipeline.training import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PERMUTED = "features.permute_seed=1"
SEGMENTS = ("warm", "warm_items_1-5", "cold_items")
REFERENCE = "iALS"


def pairwise_overrides(model: str) -> list[str]:
    """visrec's BPR / VBPR at the settings Cornac's rows use (benchmarks/pairwise_cornac.py's tasks)."""
    s = TASKS["vbpr_cold" if model == "vbpr" else "bpr_u1"]["settings"]
    out = [f"model={model}", f"model.k={s['k']}", f"model.learning_rate={s['learning_rate']}", f"model.lambda_w={s['lambda_w']}",
           f"model.lambda_b={s['lambda_b']}", f"model.step_batch_size={s['batch_size']}", f"trainer.max_epochs={s['epochs']}",
           f"callbacks.early_stopping.patience={s['epochs'] + 1}"]
    # 200 epochs of BPR: validated every 10th (the best of those is tested), not every one.
    return out + ([f"model.k2={s['k2']}", f"model.lambda_e={s['lambda_e']}"] if model == "vbpr" else
                  ["trainer.check_val_every_n_epoch=10"])


IALS = ["experiment=ml100k_u1_ials"]
ROWS = {
    "iALS": ("visrec", [*IALS, "model.visual_mode=none"]),
    "iALS + head": ("visrec", [*IALS, "model.visual_mode=head"]),
    "iALS + head, permuted": ("visrec", [*IALS, "model.visual_mode=head", PERMUTED]),
    "visual iALS": ("visrec", [*IALS, "model.visual_mode=offset"]),
    "visual iALS, permuted": ("visrec", [*IALS, "model.visual_mode=offset", PERMUTED]),
    "BPR": ("visrec", pairwise_overrides("bpr")),
    "VBPR": ("visrec", pairwise_overrides("vbpr")),
    "VBPR, permuted": ("visrec", [*pairwise_overrides("vbpr"), PERMUTED]),
    "Cornac BPR": ("cornac", ["bpr"]),
    "Cornac VBPR": ("cornac", ["vbpr"]),
    "Cornac VBPR, permuted": ("cornac", ["vbpr", PERMUTED]),
    "visual_knn": ("visrec", ["model=visual_knn"]),
    "visual_knn, permuted": ("visrec", ["model=visual_knn", PERMUTED]),
}


def visrec_row(base: list[str], overrides: list[str], out_dir: str, ties: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and evaluate one row: (model's per-user rows, popularity's per-user rows)."""
    cfg = compose_cfg([*base, *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = out_dir
        cfg.eval.ks = [10]
        cfg.eval.ties = ties
    train(cfg)
    (per_user,) = Path(out_dir, "eval").glob("*/per_user.parquet")
    rows = pd.read_parquet(per_user)
    return rows[rows.scorer == "model"], rows[rows.scorer == "popularity"]


def cornac_row(base: list[str], spec: list[str], seed: int, ties: str) -> pd.DataFrame:
    """Cornac's BPR / VBPR on visrec's training part, scored by visrec's evaluator (per-user rows)."""
    model, *extra = spec
    datamodule, features = split_data([*base, *extra])
    settings = TASKS["vbpr_cold" if model == "vbpr" else "bpr_u1"]["settings"]
    scorer, _ = cornac_scorer(model, settings, datamodule, features, seed)
    parts, U, N = datamodule.tensors, datamodule.num_users, datamodule.num_items
    seen = Interactions.concat(parts["train"], parts["val"])
    known_items = torch.bincount(parts["train"].items, minlength=N) > 0
    known_users = torch.bincount(parts["train"].users, minlength=U) > 0
    report = evaluate([scorer], seen, parts["test"], U, N, ks=[10], known_users=known_users, known_items=known_items,
                      activity_edges=[5, 20], ties=ties)
    return pd.DataFrame(report.per_user_rows(list(datamodule.user_map.raw_ids)))


def random_rows(base: list[str], k: int = 10) -> pd.DataFrame:
    """Per user and segment, the exact expected NDCG@k and Recall@k of a uniformly random order of the user's
    candidates (benchmarks/ml100k_ials_cold.py's :func:`random_order_expectation`)."""
    datamodule, segments = split_segments([*base, "model=ials"], activity_edges=[5, 20])
    raw_users = list(datamodule.user_map.raw_ids)
    frames = []
    for name in SEGMENTS:
        task = segments[name].task
        ndcg, recall = random_order_expectation(task, k)
        frames.append(pd.DataFrame({"scorer": "random", "segment": name, "user": [raw_users[u] for u in task.users.tolist()],
                                    "ndcg@10": ndcg.numpy(), "recall@10": recall.numpy()}))
    return pd.concat(frames, ignore_index=True)


def table(per_user: dict[str, list[pd.DataFrame]], seeds: list[int]) -> tuple[str, dict]:
    """Markdown table and its numbers: per row and segment, mean ± sd over seeds, p against iALS."""
    pooled = {name: pd.concat([f.assign(fold=str(seed), user=f["user"].astype(str)) for seed, f in zip(seeds, frames)], ignore_index=True)
              for name, frames in per_user.items()}
    header = ["model"] + [f"{seg} {m}" for seg in SEGMENTS for m in ("NDCG@10", "R@10", "p")]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    numbers = {}
    for name, frames in per_user.items():
        tests = compare_per_user(pooled[REFERENCE], pooled[name], ["ndcg@10"]) if name != REFERENCE else {}
        cells, numbers[name] = [], {}
        for seg in SEGMENTS:
            for metric in ("ndcg@10", "recall@10"):
                values = [float(f.loc[f.segment == seg, metric].mean()) for f in frames]
                numbers[name][f"{seg}/{metric}"] = values
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.4f} ± {sd:.4f}")
            test = tests.get(f"{seg}/ndcg@10")
            p = None if test is None else test["p_wilcoxon"]
            numbers[name][f"{seg}/p_wilcoxon"] = p
            cells.append("—" if p is None else f"{p:.2g}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    users = pooled[REFERENCE].groupby("segment").size()
    lines.append("\n(user, seed) pairs tested, pooled over the seeds: " + ", ".join(f"{seg} {int(users.get(seg, 0))}" for seg in SEGMENTS))
    return "\n".join(lines), numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "datasets" / "ml-100k"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--pooling", choices=["final", "stages"], default="final", help="features.backbone.pooling")
    parser.add_argument("--ties", choices=["expected", "index"], default="expected",
                        help="the evaluator's rule for tied scores (eval.ties)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--no-cornac", action="store_true")
    parser.add_argument("--data-dir", default=str(REPO / "data"), help="paths.data_dir (the image-feature cache)")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    parser.add_argument("--work-dir", type=Path, default=REPO / "outputs" / "visual_table",
                        help="per-(seed, row) per-user values, reused by a rerun")
    args = parser.parse_args()
    rows = [r for r in args.rows if not (args.no_cornac and ROWS[r][0] == "cornac")]
    if REFERENCE not in rows:
        rows.insert(0, REFERENCE)
    per_user: dict[str, list[pd.DataFrame]] = {"popularity": [], "random order": [], **{r: [] for r in rows}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            base = ["data=movielens_100k", f"data.root={args.root}", "data/split=cold_item", f"seed={seed}",
                    f"features.backbone.pooling={args.pooling}", f"paths.data_dir={args.data_dir}"]
            kept = args.work_dir / args.ties / args.pooling / f"seed{seed}"
            kept.mkdir(parents=True, exist_ok=True)
            for name in ["random order", *rows]:
                stored = kept / f"{name.replace(' ', '_').replace(',', '').replace('+', 'plus')}.parquet"
                popularity_file = kept / "popularity.parquet"
                if stored.is_file() and (name != REFERENCE or popularity_file.is_file()):
                    per_user[name].append(pd.read_parquet(stored))
                    if name == REFERENCE:
                        per_user["popularity"].append(pd.read_parquet(popularity_file))
                    continue
                kind, spec = ROWS.get(name, ("random", []))
                if kind == "random":
                    frame = random_rows(base)
                elif kind == "cornac":
                    frame = cornac_row(base, spec, seed, args.ties)
                else:
                    frame, popularity = visrec_row(base, spec, f"{tmp}/{seed}_{name.replace(' ', '_')}", args.ties)
                    if name == REFERENCE:
                        popularity.to_parquet(popularity_file, index=False)
                        per_user["popularity"].append(popularity)
                frame = frame[frame.scorer != "popularity"] if "scorer" in frame else frame
                frame = frame[[c for c in frame.columns if c in ("scorer", "segment", "user", "ndcg@10", "recall@10")]]
                frame = frame.assign(user=frame["user"].astype(str))
                frame.to_parquet(stored, index=False)
                per_user[name].append(frame)
                print(f"  seed {seed} {name}: " + ", ".join(f"{seg} {frame.loc[frame.segment == seg, 'ndcg@10'].mean():.4f}"
                                                             for seg in SEGMENTS) + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    text, numbers = table(per_user, args.seeds)
    print(f"\nML-100K cold-item split with its warm part, seeds {args.seeds}, features.backbone.pooling={args.pooling}, ties={args.ties}; "
          f"mean ± sd over seeds; p: Wilcoxon signed-rank of NDCG@10 against {REFERENCE} over (seed, user) pairs\n")
    print(text)
    if args.out:
        args.out.write_text(json.dumps({"seeds": args.seeds, "pooling": args.pooling, "ties": args.ties, "rows": numbers}, indent=1))


if __name__ == "__main__":
    main()
