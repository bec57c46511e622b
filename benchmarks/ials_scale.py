"""Seconds per iALS epoch (one full ALS sweep: users, then items) on a large synthetic interaction
matrix, visrec's exact solver next to the ``implicit`` library's ALS on the same matrix, same K and
thread count, in one run.

    .venv/bin/python benchmarks/ials_scale.py [--users 100000] [--items 20000] [--nnz 5000000] [--k 64] [--epochs 2]
        [--solvers cholesky cg]

(At 1M users x 100k items x 20M interactions use ``--solvers cg``: the exact solver's table of outer products
of the user vectors, 1M x K² floats, is 16 GiB at K = 64.)

The matrix: ``nnz`` distinct (user, item) pairs, items drawn with Zipf-like popularity (exponent 1),
users uniformly; every interaction has weight 1. visrec: :func:`visrec.models.ials.solver.solve_rows`
for both halves (exact Cholesky solves, the Gramian trick), and ``solve_rows_cg`` (3 warm-started
conjugate-gradient steps per half, as ``model.solver=cg``). implicit: ``implicit.cpu.als.
AlternatingLeastSquares`` (conjugate gradient, its default; one ``iterations`` = one sweep), timed
over ``epochs`` sweeps after one warm-up sweep. Skips implicit when it is not installed (``bench``
extra).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from visrec.models.ials.solver import CSR, frequency_scaled_penalty, solve_rows, solve_rows_cg


def synthetic_pairs(users: int, items: int, nnz: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1)
    popularity /= popularity.sum()
    draws = int(nnz * 1.3)
    keys = np.unique(rng.integers(0, users, draws, dtype=np.int64) * items + rng.choice(items, draws, p=popularity))
    keys = rng.permutation(keys)[:nnz]
    return keys // items, keys % items


def visrec_epoch_seconds(rows: np.ndarray, cols: np.ndarray, users: int, items: int, k: int, epochs: int, solver: str) -> float:
    by_user = CSR.from_pairs(torch.from_numpy(rows), torch.from_numpy(cols), torch.ones(len(rows)), users, items)
    by_item = by_user.transpose()
    alpha0, reg = 0.2, 0.05
    user_pen = frequency_scaled_penalty(by_user.counts(), reg, alpha0, items, 1.0)
    item_pen = frequency_scaled_penalty(by_item.counts(), reg, alpha0, users, 1.0)
    q, p = torch.randn(items, k) * 0.1, torch.randn(users, k) * 0.1
    times = []
    for _ in range(epochs + 1):  # the first is a warm-up
        started = time.perf_counter()
        if solver == "cholesky":
            p = solve_rows(by_user, q, user_pen, alpha0)
            q = solve_rows(by_item, p, item_pen, alpha0)
        else:  # 3 conjugate-gradient steps per half, warm-started (implicit's default)
            p = solve_rows_cg(by_user, q, user_pen, alpha0, p, 3)
            q = solve_rows_cg(by_item, p, item_pen, alpha0, q, 3)
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def implicit_epoch_seconds(rows: np.ndarray, cols: np.ndarray, users: int, items: int, k: int, epochs: int) -> float | None:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from scipy.sparse import csr_matrix
    except ImportError:
        return None
    matrix = csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(users, items))
    AlternatingLeastSquares(factors=k, iterations=1, random_state=0).fit(matrix, show_progress=False)  # warm-up
    model = AlternatingLeastSquares(factors=k, iterations=epochs, random_state=0)
    started = time.perf_counter()
    model.fit(matrix, show_progress=False)
    return (time.perf_counter() - started) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--nnz", type=int, default=5_000_000)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--solvers", nargs="+", choices=["cholesky", "cg"], default=["cholesky", "cg"])
    args = parser.parse_args()
    rows, cols = synthetic_pairs(args.users, args.items, args.nnz)
    print(f"{args.users} users x {args.items} items, {len(rows)} interactions, K={args.k}, {torch.get_num_threads()} torch threads")
    seconds = {}
    for solver in args.solvers:
        seconds[solver] = visrec_epoch_seconds(rows, cols, args.users, args.items, args.k, args.epochs, solver)
        label = "cholesky (exact)" if solver == "cholesky" else "cg (3 steps)    "
        print(f"visrec iALS, solver={label}: {seconds[solver]:8.2f} s per epoch", flush=True)
    theirs = implicit_epoch_seconds(rows, cols, args.users, args.items, args.k, args.epochs)
    if theirs is None:
        print("implicit is not installed (pip install -e '.[bench]'): no side-by-side")
        return
    ratios = ", ".join(f"{solver} / implicit = {value / theirs:.2f}x" for solver, value in seconds.items())
    print(f"implicit ALS (conjugate gradient):    {theirs:8.2f} s per epoch   ({ratios})")


if __name__ == "__main__":
    main()
