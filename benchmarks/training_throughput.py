"""Training throughput of biased MF at scale, side by side in one run: visrec's real training path,
a bare PyTorch loop doing the same updates, LIBMF and `implicit`'s ALS.

    .venv/bin/python benchmarks/training_throughput.py [--ratings 1000000 5000000 20000000]
        [--ratings-per-user 20] [--items 100000] [--k 64] [--epochs 2] [--batch 1024] [--threads 2]
        [--optimizer sparse_adam|adagrad|sgd] [--lr LR] [--loader-batch N] [--engines visrec bare libmf implicit]

The README's figures: ``--ratings 1e6 5e6 2e7 --threads 2 --optimizer sgd --lr 20 --loader-batch 65536``
(the settings of ``experiment=large_scale``).

For each size, a problem is drawn by :mod:`visrec.data.synthetic_large` (seed 0, β = 1.5) with
``ratings / ratings-per-user`` users (20M ratings: 1M users) and 100k items, split at random 90/10
into train.parquet and test.parquet (string ids, as a user's table). Each engine then runs in its own
process (so its peak RSS is its own), with ``--threads`` threads for torch / OpenMP / BLAS and for
LIBMF and implicit:

* ``visrec``: ``train.py``'s own function (Hydra config -> datamodule -> RatingModule -> Trainer) with
  ``data=ratings_table data/split=predefined`` (train.parquet, test path test.parquet),
  ``data.val_ratio=0 callbacks=none logger=none evaluate=false``, ``model=biased_mf
  model.visual_mode=none model.scheduler=null``, ``trainer.max_epochs=E``, ``data.batch_size=B``,
  ``model.optimizer`` = ``--optimizer`` at ``--lr`` (default SparseAdam at 0.005, the model's default),
  and the model's L2 defaults (0.1 / 0.01 with reg_exponent 0.5). With ``--loader-batch N`` the loader
  batches hold N ratings and the model steps once per B of them (``model.step_batch_size=B``). Seconds are
  the run's ``fit_seconds`` (``trainer.fit``: every epoch and Lightning's own overhead, not reading
  the data); the test RMSE is the run's ``test/rmse``.
* ``bare``: the same model, objective, initialization, batches and optimizer as ``visrec`` written as
  a plain PyTorch loop over integer tensors (no Lightning, no data module).
* ``libmf``: LIBMF's parallel SGD (PyPI ``libmf``; Chin et al. 2015), k = K, ``nr_iters = E``, L2 0.05
  on P and Q, its default learning rate 0.1; it has no bias terms, so it fits r − μ and μ is added back.
* ``implicit``: ``implicit``'s ALS (Hu, Koren & Volinsky 2008) on the ratings as confidences, K factors,
  E iterations: an implicit-feedback model, so it has no rating RMSE; its cost per epoch is the point.

Test RMSE for every engine: over test ratings whose user and item have training ratings, predictions
clipped to [1, 5] (visrec's warm ``test/rmse``). ``ratings/s`` = training ratings x epochs / seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("visrec", "bare", "libmf", "implicit")
# The biased_mf defaults (conf/model/biased_mf.yaml) that the bare loop reproduces.
REG_FACTORS, REG_BIAS, REG_EXPONENT, INIT_STD = 0.1, 0.01, 0.5, 0.1
LIBMF_L2 = 0.05
# --optimizer -> (torch class, default lr). All three take the sparse gradients of nn.Embedding(sparse=True).
OPTIMIZERS = {"sparse_adam": ("SparseAdam", 0.005), "adagrad": ("Adagrad", 0.05), "sgd": ("SGD", 1.0)}


def optimizer_name_and_lr(args) -> tuple[str, float]:
    name, lr = OPTIMIZERS[args.optimizer]
    return name, (lr if args.lr is None else args.lr)


# ---- the problem -------------------------------------------------------------------------------
def make_problem(num_ratings: int, ratings_per_user: int, num_items: int, folder: Path) -> dict:
    """Draw a problem and write train.parquet / test.parquet (user, item, rating) into ``folder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from visrec.data.synthetic_large import LargeParams, _ids, sample

    params = LargeParams(num_users=max(1, num_ratings // ratings_per_user), num_items=num_items, num_ratings=num_ratings,
                         choice_strength=1.5, seed=0)
    data = sample(params)
    test = np.random.default_rng(1).random(len(data.users)) < 0.1  # (R,) bool
    user_ids, item_ids = _ids("u", params.num_users), _ids("i", num_items)
    for name, rows in (("train", ~test), ("test", test)):
        pq.write_table(pa.table({"user": user_ids[data.users[rows]], "item": item_ids[data.items[rows]],
                                 "rating": data.ratings[rows].astype(np.float32)}), folder / f"{name}.parquet")
    return {"users": params.num_users, "items": num_items, "train": int((~test).sum()), "test": int(test.sum())}


def read_codes(folder: Path):
    """Integer codes of the train / test tables: (users, items, ratings) each, test ids mapped through train's
    maps (-1 = not in train)."""
    import pandas as pd

    train, test = (pd.read_parquet(folder / f"{name}.parquet") for name in ("train", "test"))
    out = {}
    user_codes, user_ids = pd.factorize(train["user"])
    item_codes, item_ids = pd.factorize(train["item"])
    out["train"] = (user_codes, item_codes, train["rating"].to_numpy(np.float32))
    out["test"] = (pd.Index(user_ids).get_indexer(test["user"]), pd.Index(item_ids).get_indexer(test["item"]),
                   test["rating"].to_numpy(np.float32))
    return out, len(user_ids), len(item_ids)


def warm_rmse(predict, test) -> float:
    users, items, ratings = test
    warm = (users >= 0) & (items >= 0)
    pred = np.clip(predict(users[warm], items[warm]), 1.0, 5.0)
    return float(np.sqrt(np.mean((pred - ratings[warm]) ** 2)))


# ---- engines (each in its own process) ---------------------------------------------------------
def run_visrec(folder: Path, args) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from visrec.pipeline.training import train

    name, lr = optimizer_name_and_lr(args)
    overrides = [
        "data=ratings_table", "data/split=predefined", f"data.path={folder / 'train.parquet'}",
        f"data.source_args.test_path={folder / 'test.parquet'}", "data.source_args.rating_min=1",
        "data.source_args.rating_max=5", "data.val_ratio=0", f"data.batch_size={args.loader_batch or args.batch}",
        "model=biased_mf", "model.visual_mode=none", "model.scheduler=null", f"model.k={args.k}",
        f"model.optimizer._target_=torch.optim.{name}", f"model.optimizer.lr={lr}",
        *([f"model.step_batch_size={args.batch}"] if args.loader_batch else []),
        f"trainer.max_epochs={args.epochs}", "callbacks=none", "logger=none", "evaluate=false", "seed=0",
        *args.visrec_overrides,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder / "visrec-run")
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False
    metrics = train(cfg)
    return {"seconds": metrics["fit_seconds"], "epochs": metrics["epochs"], "test_rmse": metrics.get("test/rmse")}


def run_bare(folder: Path, args) -> dict:
    import torch
    from torch import nn

    data, num_users, num_items = read_codes(folder)
    users, items, ratings = (torch.from_numpy(np.asarray(a)) for a in data["train"])
    mu = float(ratings.double().mean())
    torch.manual_seed(0)
    tables = [nn.Embedding(num_users, args.k, sparse=True), nn.Embedding(num_items, args.k, sparse=True),
              nn.Embedding(num_users, 1, sparse=True), nn.Embedding(num_items, 1, sparse=True)]
    for table in tables[:2]:
        nn.init.normal_(table.weight, std=INIT_STD)
    for table in tables[2:]:
        nn.init.zeros_(table.weight)
    P, Q, BU, BI = tables

    def weight(codes, n):  # (n / mean n)^-α, the frequency-aware L2 weights
        counts = torch.bincount(codes, minlength=n).float().clamp(min=1)
        return (counts / counts.mean()).pow(-REG_EXPONENT)

    w_user, w_item = weight(users, num_users), weight(items, num_items)
    name, lr = optimizer_name_and_lr(args)
    optimizer = getattr(torch.optim, name)([t.weight for t in tables], lr=lr)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(ratings), generator=torch.Generator().manual_seed(epoch))
        for rows in order.split(args.batch):
            u, i, r = users[rows], items[rows], ratings[rows]
            p, q, b_u, b_i = P(u), Q(i), BU(u).squeeze(-1), BI(i).squeeze(-1)
            pred = mu + b_u + b_i + (p * q).sum(-1)
            wu, wi = w_user[u], w_item[i]
            loss = ((pred - r).pow(2).mean() + REG_FACTORS * (wu * p.pow(2).sum(-1) + wi * q.pow(2).sum(-1)).mean()
                    + REG_BIAS * (wu * b_u.pow(2) + wi * b_i.pow(2)).mean())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - started

    def predict(u, i):
        u, i = torch.from_numpy(u), torch.from_numpy(i)
        with torch.no_grad():
            return (mu + BU.weight[u, 0] + BI.weight[i, 0] + (P.weight[u] * Q.weight[i]).sum(-1)).numpy()

    return {"seconds": seconds, "epochs": args.epochs, "test_rmse": warm_rmse(predict, data["test"])}


def libmf_predictor(model):
    """predict(u (n,), i (n,)) -> (n,) p_u·q_i from a fitted ``libmf.mf.MF``'s own tables (LIBMF's mf_predict for
    known ids). The binding's ``MF.predict`` (PyPI libmf 0.9.2) returns wrong values: on a rank-2 matrix that
    LIBMF fits to training RMSE 0.15 (its own log), ``predict`` on the training pairs gave 1.79 against a
    standard deviation of 1.39; the tables read here give 0.145."""
    import ctypes

    tables = model.model
    floats = ctypes.POINTER(ctypes.c_float)
    P = np.ctypeslib.as_array(ctypes.cast(tables.P, floats), shape=(tables.m * tables.k,)).reshape(tables.m, tables.k).copy()
    Q = np.ctypeslib.as_array(ctypes.cast(tables.Q, floats), shape=(tables.n * tables.k,)).reshape(tables.n, tables.k).copy()

    def predict(u, i):
        u, i = np.asarray(u, np.int64), np.asarray(i, np.int64)
        out = np.full(len(u), float(tables.b), np.float32)  # ids LIBMF never saw: its b, as mf_predict does
        known = (u < tables.m) & (i < tables.n)
        out[known] = (P[u[known]] * Q[i[known]]).sum(1)
        return out

    return predict


def run_libmf(folder: Path, args) -> dict:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the binding prints where it found its .so
        from libmf import mf
    data, _, _ = read_codes(folder)
    users, items, ratings = data["train"]
    mu = float(ratings.astype(np.float64).mean())  # LIBMF has no biases: it fits r - μ, μ added back
    matrix = np.stack([users, items, ratings - mu], axis=1).astype(np.float32)  # (R, 3); ids < 2^24 are exact
    model = mf.MF(fun=mf.P_L2_MFR, k=args.k, nr_threads=args.threads, nr_bins=max(26, 2 * args.threads + 1),
                  nr_iters=args.epochs, lambda_p1=0.0, lambda_q1=0.0, lambda_p2=LIBMF_L2, lambda_q2=LIBMF_L2,
                  eta=0.1, quiet=True)
    started = time.perf_counter()
    model.fit(matrix)
    seconds = time.perf_counter() - started

    tables = libmf_predictor(model)
    return {"seconds": seconds, "epochs": args.epochs, "test_rmse": warm_rmse(lambda u, i: mu + tables(u, i), data["test"])}


def run_implicit(folder: Path, args) -> dict:
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    data, num_users, num_items = read_codes(folder)
    users, items, ratings = data["train"]
    user_items = sp.csr_matrix((ratings, (users, items)), shape=(num_users, num_items), dtype=np.float32)
    model = AlternatingLeastSquares(factors=args.k, iterations=args.epochs, regularization=0.05,
                                    num_threads=args.threads, calculate_training_loss=False, random_state=0)
    started = time.perf_counter()
    model.fit(user_items, show_progress=False)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "epochs": args.epochs, "test_rmse": None}


RUNNERS = {"visrec": run_visrec, "bare": run_bare, "libmf": run_libmf, "implicit": run_implicit}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = RUNNERS[args.worker](Path(args.folder), args)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(result), flush=True)


# ---- the side-by-side run ------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ratings", type=float, nargs="+", default=[1e6, 5e6, 2e7])
    ap.add_argument("--ratings-per-user", type=int, default=20)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="sparse_adam",
                    help="the optimizer of visrec and the bare loop (default lr: sparse_adam 0.005, adagrad 0.05, sgd 1.0)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--loader-batch", type=int, default=None,
                    help="visrec only: loader batches of this size, one optimizer step per --batch ratings of each "
                         "(model.step_batch_size), so Lightning's per-batch overhead is paid less often")
    ap.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    ap.add_argument("--visrec-overrides", nargs="*", default=[], help="extra Hydra overrides for the visrec run")
    ap.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    env = {**os.environ, **{v: str(args.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    name, lr = optimizer_name_and_lr(args)
    print(f"K={args.k}, {args.epochs} epochs, batch {args.batch} (visrec loader batch {args.loader_batch or args.batch}), "
          f"torch.optim.{name} lr {lr}, {args.threads} threads per engine "
          f"(torch.set_num_threads, OMP/MKL/OpenBLAS, LIBMF nr_threads, implicit num_threads); {os.cpu_count()} CPUs")
    header = f"{'ratings':>10} {'users':>9} {'engine':>9} {'train':>11} {'s/epoch':>9} {'ratings/s':>11} {'peak RSS':>9} {'test RMSE':>9}"
    rows = [header]
    print(header, flush=True)
    for size in args.ratings:
        folder = Path(tempfile.mkdtemp(prefix="throughput-"))
        try:
            started = time.perf_counter()
            info = make_problem(int(size), args.ratings_per_user, args.items, folder)
            print(f"  (problem of {int(size):,} ratings drawn and written in {time.perf_counter() - started:.0f} s)", flush=True)
            for engine in args.engines:
                command = [sys.executable, __file__, "--worker", engine, "--folder", str(folder), "--k", str(args.k),
                           "--epochs", str(args.epochs), "--batch", str(args.batch), "--threads", str(args.threads),
                           "--optimizer", args.optimizer, *(["--lr", str(args.lr)] if args.lr is not None else []),
                           *(["--loader-batch", str(args.loader_batch)] if args.loader_batch else []),
                           "--visrec-overrides", *args.visrec_overrides]
                done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
                lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                if done.returncode or not lines:
                    line = f"{int(size):>10,} {info['users']:>9,} {engine:>9}  failed: {done.stderr.strip().splitlines()[-1:]}"
                else:
                    r = json.loads(lines[-1][7:])
                    rmse = "n/a" if r["test_rmse"] is None else f"{r['test_rmse']:.4f}"
                    line = (f"{int(size):>10,} {info['users']:>9,} {engine:>9} {info['train']:>11,} {r['seconds'] / r['epochs']:>9.2f} "
                            f"{info['train'] * r['epochs'] / r['seconds']:>11,.0f} {r['peak_rss_gib']:>7.2f} G {rmse:>9}")
                rows.append(line)
                print(line, flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    print("\n".join(["", "Summary:", *rows]))


if __name__ == "__main__":
    main()
