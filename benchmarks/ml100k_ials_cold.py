"""Cold-item ranking of iALS's visual prior on MovieLens-100K (``data/split=cold_item``), with the
permuted-features control, over several seeds (each seed draws its own held-out items).

    .venv/bin/python benchmarks/ml100k_ials_cold.py [--root ../shared/datasets/ml-100k] [--seeds 0 1 2]

For each seed, runs of ``experiment=ml100k_u1_ials`` on the cold-item split (the held-out items and all
their ratings are the test part; ``data.split.warm_test_ratio=0``: no warm part, as the README figures were measured):
    none                     cold items have no vector: all their scores tie (see "floors" below);
    reg                      item vectors pulled toward E f̃_i + e in training, (E, e) by ridge on the
                             trained item vectors; cold items scored with q_i = E f̃_i + e;
    head                     training as none; (E, e) fitted after training on iALS's own loss of the
                             training items as if cold, components and penalty by item-fold CV on the
                             training part (visrec/models/visual/ials_head.py);
    ..., permuted features   the same with ``features.permute_seed=1`` (the same feature rows dealt to
                             the wrong items: a gain that survives it does not come from the pictures).
Reported: the evaluator's ``cold_items`` segment (candidates = all items without training interactions,
relevance = rating >= 4), NDCG@10 and Recall@10.

Floors. With ``none`` every cold item scores 0 (up to the sign of zero), so its "ranking" is the order
in which the top-K routine returns tied items: the same ten items for every user (coverage@10 =
10 / cold items). That is an artefact, not a model — a different tie order gives a different number.
The evaluator's popularity baseline is no better a floor here: cold items have no training counts, so
it is a tie broken by lower item index (another artefact: NDCG@10 0.0247 against none's 0.0642 on
seed 0, same ten-item coverage). The honest floor is a uniformly random order of the
cold candidates, whose expected metrics are exact (``random order`` row, computed from the split):
per user with n candidates and r relevant items, E[DCG@K] = (r/n) Σ_{k ≤ min(K, n)} 1/log2(k+1) and
E[hits@K] = r·min(K, n)/n, divided by the ideal DCG and r as the evaluator does, then averaged over users.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from visrec.evaluation.segments import build_segments
from visrec.interactions import Interactions
from visrec.pipeline.config import instantiate_node
from visrec.pipeline.training import train

REPO = Path(__file__).resolve().parents[1]
PERMUTED = "features.permute_seed=1"
VARIANTS = {"none": ["model.visual_mode=none"],
            "reg": ["model.visual_mode=reg"], "reg, permuted features": ["model.visual_mode=reg", PERMUTED],
            "head": ["model.visual_mode=head"], "head, permuted features": ["model.visual_mode=head", PERMUTED]}
# Acceptance: the visual prior (mode head) beats its permuted-features control on every seed.
PRIOR, CONTROL = "head", "head, permuted features"


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[*overrides, "logger=none", "trainer.enable_progress_bar=false"])


def cold_run(overrides: list[str], out_dir: str) -> tuple[dict, dict]:
    """One train() run in ``out_dir``: (its returned metrics, the evaluator's cold_items NDCG@10 and Recall@10)."""
    cfg = compose_cfg(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = out_dir
    metrics = train(cfg)
    (report,) = Path(out_dir, "eval").glob("*/metrics.json")
    evaluated = json.loads(report.read_text())["metrics"]
    return metrics, {name: evaluated.get(f"model/cold_items/{name}@10") for name in ("ndcg", "recall")}


def cold_metrics(overrides: list[str], out_dir: str) -> dict:
    metrics, out = cold_run(overrides, out_dir)
    out["head"] = {k: metrics[k] for k in metrics if k.startswith("cold_head/")}
    return out


def split_segments(overrides: list[str], activity_edges=()) -> tuple:
    """(datamodule, the evaluator's segments of its test part), built as train.py's evaluator builds them."""
    cfg = compose_cfg(overrides)
    datamodule = instantiate_node(cfg.data)
    datamodule.setup("fit")
    parts = datamodule.tensors
    seen = Interactions.concat(parts["train"], parts["val"])
    known_items = torch.bincount(parts["train"].items, minlength=datamodule.num_items) > 0
    known_users = torch.bincount(parts["train"].users, minlength=datamodule.num_users) > 0
    segments = build_segments(seen, parts["test"], datamodule.num_users, datamodule.num_items, cfg.eval.relevance_threshold,
                              cfg.eval.exclude_train, known_users, known_items, activity_edges=activity_edges)
    return datamodule, segments


def random_order_expectation(task, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Per ranked user of ``task`` (E,), the exact expected NDCG@k and Recall@k of a uniformly random order of
    the user's candidates (see module doc): (ndcg (E,), recall (E,)) float64."""
    n = int(task.candidates.sum()) - task.excluded.counts().double()  # (E,) candidates per user
    r = task.relevant.counts().double()  # (E,) relevant items per user
    cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), (1.0 / torch.log2(torch.arange(2, k + 2).double())).cumsum(0)])
    shown = n.clamp(max=k)
    return (r / n) * cumulative[shown.long()] / cumulative[r.clamp(max=k).long()], shown / n


def random_order_floor(overrides: list[str], k: int = 10) -> dict:
    """Expected NDCG@k and Recall@k of the cold_items segment under a uniformly random order (see module doc)."""
    _, segments = split_segments(overrides)
    ndcg, recall = random_order_expectation(segments["cold_items"].task, k)
    return {"ndcg": float(ndcg.mean()), "recall": float(recall.mean())}


def cold_args(doc: str) -> argparse.Namespace:
    """The cold-split benchmarks' command line: --root (ML-100K folder), --seeds."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "datasets" / "ml-100k"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    return parser.parse_args()


def run_variants(base_of_seed, variants: dict, measure, seeds: list[int]) -> dict:
    """Per seed, the random-order floor and ``measure(overrides, out_dir)`` of each variant: name -> [per seed]."""
    rows = {"random order (floor)": [], **{name: [] for name in variants}}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            base = base_of_seed(seed)
            rows["random order (floor)"].append(random_order_floor(base))
            for name, overrides in variants.items():
                rows[name].append(measure([*base, *overrides], f"{tmp}/{seed}_{name.replace(' ', '_').replace(',', '')}"))
                print(f"  seed {seed} {name}: {rows[name][-1]}", flush=True)
    return rows


def main() -> None:
    args = cold_args(__doc__)
    rows = run_variants(lambda seed: ["experiment=ml100k_u1_ials", f"data.root={args.root}", "data/split=cold_item",
                                      "data.split.warm_test_ratio=0", f"seed={seed}"], VARIANTS, cold_metrics, args.seeds)
    print(f"\nML-100K cold-item split, iALS, cold_items segment (seeds {args.seeds})")
    print(f"{'variant':<36}" + "".join(f"{f'seed {s}':>12}" for s in args.seeds) + f"{'mean':>10}")
    for metric in ("ndcg", "recall"):
        for name, values in rows.items():
            cells = [v[metric] for v in values]
            print(f"{name + f' {metric}@10':<36}" + "".join(f"{c:>12.4f}" for c in cells) + f"{statistics.mean(cells):>10.4f}")
    print("\n(none: every cold item scores 0, a tie: the same ten items for every user — an artefact, not a floor.)")
    for name in ("head", "head, permuted features"):
        for seed, values in zip(args.seeds, rows[name]):
            print(f"{name}, seed {seed}: {values['head']}")
    for prior, control in (("reg", "reg, permuted features"), (PRIOR, CONTROL)):
        wins = sum(r["ndcg"] > p["ndcg"] for r, p in zip(rows[prior], rows[control]))
        print(f"{prior} beats its permuted control on NDCG@10 in {wins} of {len(args.seeds)} seeds")


if __name__ == "__main__":
    main()
