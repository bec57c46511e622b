"""visrec BPR / VBPR beside Cornac's BPR / VBPR on the same MovieLens-100K split, features and settings.

    .venv/bin/python benchmarks/pairwise_cornac.py --task vbpr_cold [--root ../shared/datasets/ml-100k] [--seeds 0]
    .venv/bin/python benchmarks/pairwise_cornac.py --task vbpr_u1
    .venv/bin/python benchmarks/pairwise_cornac.py --task bpr_u1

Tasks (the issue's protocol; relevance = rating >= 4, protocol ``all``, visrec's evaluator for both libraries):
    vbpr_cold  ``data/split=cold_item data.split.warm_test_ratio=0 seed=S``: the test part is the held-out
               items; the evaluator's ``cold_items`` segment (candidates: every item without training
               interactions). Cornac VBPR scores a cold item with γ_i = 0, β_i = 0 (its paper's rule) from
               the same backbone features.
    vbpr_u1    the official u1 fold, warm segment.
    bpr_u1     the official u1 fold, warm segment, BPR.
Both libraries fit on visrec's training part of the split (its validation carve-out is left out of Cornac's
fit too), for the same number of epochs with the same k, k2, learning rate and penalties (Cornac's names:
lambda_w, lambda_b, lambda_e). visrec keeps the epoch with the best ``val/ndcg@10`` (early stopping is
off: it runs every epoch); Cornac's last epoch is tested. Reported: NDCG@10 and Recall@10 of the segment,
and seconds per epoch (visrec: fit_seconds / epochs, validation after every epoch included, and "train s/epoch"
from a second run of the same training without validation, test or evaluator; Cornac: fit seconds / epochs,
which has no validation).
Cornac's BPR is per-sample SGD in Cython (no batches; ``learning_rate`` is its SGD step), Cornac's VBPR Adam on
mini-batches of ``batch_size`` (visrec's ``model.step_batch_size``); visrec's BPR and VBPR step Adam on
mini-batches of ``batch_size``. Cornac comes with the ``bench`` extra (pip install -e '.[bench]').
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from visrec.evaluation import evaluate
from visrec.evaluation.scorers import FactorScorer
from visrec.interactions import Interactions
from visrec.pipeline.config import instantiate_node
from visrec.pipeline.setup import extract_features
from visrec.pipeline.training import train

REPO = Path(__file__).resolve().parents[1]
TASKS = {
    "vbpr_cold": dict(model="vbpr", segment="cold_items", split=["data/split=cold_item", "data.split.warm_test_ratio=0"],
                      settings=dict(k=10, k2=20, learning_rate=0.005, lambda_w=0.01, lambda_b=0.01, lambda_e=0.0, epochs=20, batch_size=100)),
    "vbpr_u1": dict(model="vbpr", segment="warm", split=["data.fold=1"],
                    settings=dict(k=10, k2=20, learning_rate=0.005, lambda_w=0.01, lambda_b=0.01, lambda_e=0.0, epochs=20, batch_size=100)),
    "bpr_u1": dict(model="bpr", segment="warm", split=["data.fold=1"],
                   settings=dict(k=50, learning_rate=0.01, lambda_w=0.01, lambda_b=0.01, epochs=200, batch_size=100)),
}


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[*overrides, "logger=none", "trainer.enable_progress_bar=false"])


def visrec_run(base: list[str], model: str, settings: dict, segment: str, out_dir: str, extra: list[str],
               timing_only: bool = False) -> dict:
    s = settings
    overrides = [*base, f"model={model}", f"model.k={s['k']}", f"model.learning_rate={s['learning_rate']}",
                 f"model.lambda_w={s['lambda_w']}", f"model.lambda_b={s['lambda_b']}", f"model.step_batch_size={s['batch_size']}",
                 f"trainer.max_epochs={s['epochs']}", f"callbacks.early_stopping.patience={s['epochs'] + 1}", *extra]
    if model == "vbpr":
        overrides += [f"model.k2={s['k2']}", f"model.lambda_e={s['lambda_e']}"]
    cfg = compose_cfg(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = out_dir
    if timing_only:  # the same training without validation, test or evaluator: seconds per training epoch
        with open_dict(cfg):
            cfg.callbacks, cfg.test, cfg.evaluate = None, False, False
            cfg.trainer.limit_val_batches = 0
            cfg.trainer.enable_checkpointing = False  # Cornac writes no checkpoints either
        metrics = train(cfg)
        return {"train s/epoch": metrics["fit_seconds"] / max(metrics["epochs"], 1)}
    metrics = train(cfg)
    (report,) = Path(out_dir, "eval").glob("*/metrics.json")
    evaluated = json.loads(report.read_text())["metrics"]
    out = {name: evaluated.get(f"model/{segment}/{name}@10") for name in ("ndcg", "recall")}
    out["s/epoch"] = metrics["fit_seconds"] / max(metrics["epochs"], 1)  # validation after every epoch included
    return out


def split_data(base: list[str]):
    """The split visrec trains on (its datamodule), its catalog's image paths and features."""
    cfg = compose_cfg([*base, "model=vbpr"])
    datamodule = instantiate_node(cfg.data)
    datamodule.setup("fit")
    features = extract_features(cfg, datamodule.image_paths, list(datamodule.item_map.raw_ids), announce=False)
    return datamodule, features


def cornac_scorer(model: str, settings: dict, datamodule, features, seed: int) -> tuple[FactorScorer, float]:
    """Fit Cornac's model on visrec's training part; (a visrec scorer over its factor tables, fit seconds)."""
    import cornac
    from cornac.data import Dataset, ImageModality

    parts = datamodule.tensors
    train_part, U, N = parts["train"], datamodule.num_users, datamodule.num_items
    triples = list(zip(train_part.users.tolist(), train_part.items.tolist(), train_part.ratings.tolist()))
    dataset = Dataset.from_uir([(str(u), str(i), float(r)) for u, i, r in triples], seed=seed)
    users = torch.tensor([int(raw) for raw in dataset.uid_map])  # Cornac's index -> visrec's
    items = torch.tensor([int(raw) for raw in dataset.iid_map])
    s = settings
    if model == "vbpr":
        raw = features.features.numpy().astype(np.float32)  # (N, D) the backbone's features, as visrec reads them
        modality = ImageModality(features=raw[items.numpy()], ids=[str(i) for i in items.tolist()], normalized=False)
        modality.build(id_map=dataset.iid_map)
        dataset.add_modalities(item_image=modality)
        recommender = cornac.models.VBPR(k=s["k"], k2=s["k2"], n_epochs=s["epochs"], batch_size=s["batch_size"],
                                         learning_rate=s["learning_rate"], lambda_w=s["lambda_w"], lambda_b=s["lambda_b"],
                                         lambda_e=s["lambda_e"], use_gpu=False, verbose=False, seed=seed)
    else:
        recommender = cornac.models.BPR(k=s["k"], max_iter=s["epochs"], learning_rate=s["learning_rate"],
                                        lambda_reg=s["lambda_w"], seed=seed, verbose=False)
    started = time.perf_counter()
    recommender.fit(dataset)
    seconds = time.perf_counter() - started
    if model == "vbpr":
        F = torch.from_numpy(features.features.numpy().astype(np.float32)) * features.has_image[:, None]  # (N, D)
        gamma_u, theta_u = torch.from_numpy(recommender.gamma_user), torch.from_numpy(recommender.theta_user)
        P = torch.zeros(U, s["k"] + s["k2"])
        P[users] = torch.cat([gamma_u, theta_u], 1).float()
        gamma = torch.zeros(N, s["k"])
        gamma[items] = torch.from_numpy(recommender.gamma_item).float()
        beta = torch.zeros(N)
        beta[items] = torch.from_numpy(np.asarray(recommender.beta_item)).float().reshape(-1)
        E, b = torch.from_numpy(recommender.emb_matrix).float(), torch.from_numpy(recommender.beta_prime).float()  # (D, k2), (D, 1)
        Q = torch.cat([gamma, F @ E], 1)  # cold items: γ_i = 0, visual part from the picture
        bias = beta + (F @ b).squeeze(-1)
    else:
        P = torch.zeros(U, s["k"])
        P[users] = torch.from_numpy(recommender.u_factors).float()
        Q = torch.zeros(N, s["k"])
        Q[items] = torch.from_numpy(recommender.i_factors).float()
        bias = torch.zeros(N)
        bias[items] = torch.from_numpy(np.asarray(recommender.i_biases)).float().reshape(-1)
    return FactorScorer(P, torch.zeros(U), Q, bias, 0.0, name="model", predicts_ratings=False), seconds


def cornac_run(model: str, settings: dict, datamodule, features, segment: str, seed: int) -> dict:
    """Cornac's model (:func:`cornac_scorer`) through visrec's evaluator on the split's test part."""
    scorer, seconds = cornac_scorer(model, settings, datamodule, features, seed)
    parts, s = datamodule.tensors, settings
    train_part, U, N = parts["train"], datamodule.num_users, datamodule.num_items
    seen = Interactions.concat(parts["train"], parts["val"])
    known_items = torch.bincount(train_part.items, minlength=N) > 0
    known_users = torch.bincount(train_part.users, minlength=U) > 0
    report = evaluate([scorer], seen, parts["test"], U, N, ks=[10], known_users=known_users, known_items=known_items)
    values = report.results["model"][segment]
    per_epoch = seconds / s["epochs"]
    return {"ndcg": values.get("ndcg@10"), "recall": values.get("recall@10"), "s/epoch": per_epoch, "train s/epoch": per_epoch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(TASKS), required=True)
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "datasets" / "ml-100k"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, help="override the task's epochs (both libraries)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override the task's settings for both libraries (k, k2, learning_rate, lambda_w, lambda_b, lambda_e, batch_size)")
    parser.add_argument("--no-cornac", action="store_true", help="visrec only")
    parser.add_argument("--visrec-overrides", nargs="*", default=[], help="extra overrides for visrec's run (e.g. model.visual_pca_dim=16)")
    args = parser.parse_args()
    task = TASKS[args.task]
    settings = dict(task["settings"], **({"epochs": args.epochs} if args.epochs else {}))
    for item in args.set:
        key, value = item.split("=", 1)
        if key not in settings:
            parser.error(f"--set {item}: {key} is not one of {sorted(settings)}")
        settings[key] = type(settings[key])(value)
    rows: dict[str, list[dict]] = {"visrec": [], "cornac": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            base = ["data=movielens_100k", f"data.root={args.root}", *task["split"], f"seed={seed}"]
            rows["visrec"].append(visrec_run(base, task["model"], settings, task["segment"], f"{tmp}/{seed}", args.visrec_overrides))
            rows["visrec"][-1].update(visrec_run(base, task["model"], settings, task["segment"], f"{tmp}/{seed}_timing",
                                                 args.visrec_overrides, timing_only=True))
            print(f"  seed {seed} visrec {task['model']}: {rows['visrec'][-1]}", flush=True)
            if not args.no_cornac:
                datamodule, features = split_data(base)
                rows["cornac"].append(cornac_run(task["model"], settings, datamodule, features, task["segment"], seed))
                print(f"  seed {seed} cornac {task['model']}: {rows['cornac'][-1]}", flush=True)
    print(f"\n{args.task}: {task['segment']} segment, settings {settings}, seeds {args.seeds}")
    print(f"{'library':<10}{'NDCG@10':>10}{'Recall@10':>11}{'s/epoch':>10}{'train s/epoch':>15}")
    for name, values in rows.items():
        if values:
            means = [statistics.mean(v[key] for v in values) for key in ("ndcg", "recall", "s/epoch", "train s/epoch")]
            print(f"{name:<10}{means[0]:>10.4f}{means[1]:>11.4f}{means[2]:>10.3f}{means[3]:>15.4f}")


if __name__ == "__main__":
    main()
