"""Serving throughput: ``Recommender.recommend`` for 10,000 users over a 100,000-item catalog,
exact numpy vs FAISS (flat = exact, IVF and HNSW = approximate), on this machine.

    .venv/bin/python benchmarks/serving_throughput.py [--users 10000] [--items 100000] [--k 10]

The bundle holds random factors (64 dims; item vectors scattered around 200 centres by default, or
i.i.d. Gaussian with --clusters 0, the worst case for IVF) and 20 seen items per user, written with the real
export code and loaded through the real, checksum-verifying loader. Recall@k of an approximate index
= share of the exact top-k it returns. Index build time is reported separately from query time.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd

from visrec.data.idmap import IdMap
from visrec.export.bundle import write_bundle
from visrec.serving import Recommender


def random_bundle(path, num_users: int, num_items: int, factors: int, seen_per_user: int, clusters: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    if clusters:  # item vectors around a few hundred centres, as trained factors tend to be
        centres = rng.normal(0, 0.3, (clusters, factors))
        item_factors = centres[rng.integers(0, clusters, num_items)] + rng.normal(0, 0.1, (num_items, factors))
    else:
        item_factors = rng.normal(0, 0.3, (num_items, factors))
    seen_items = rng.integers(0, num_items, size=(num_users, seen_per_user))
    seen_items.sort(axis=1)
    arrays = {
        "user_factors": rng.normal(0, 0.3, (num_users, factors)).astype(np.float32),
        "user_bias": rng.normal(0, 0.1, num_users).astype(np.float32),
        "item_factors": item_factors.astype(np.float32),
        "item_bias": rng.normal(0, 0.3, num_items).astype(np.float32),
        "known_users": np.ones(num_users, dtype=bool),
        "known_items": np.ones(num_items, dtype=bool),
        "seen_indptr": np.arange(0, num_users * seen_per_user + 1, seen_per_user, dtype=np.int64),
        "seen_items": seen_items.reshape(-1).astype(np.int64),
    }
    manifest = {"global_mean": 3.5, "rating_range": [1.0, 5.0], "num_users": num_users, "num_items": num_items, "k": factors}
    write_bundle(path, arrays, IdMap(pd.RangeIndex(num_users)), IdMap(pd.RangeIndex(num_items)), manifest)


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=200, help="item vectors around this many centres (0: i.i.d. Gaussian)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        random_bundle(f"{tmp}/bundle", args.users, args.items, args.factors, 20, args.clusters)
        rec, load_s = timed(lambda: Recommender.load(f"{tmp}/bundle"))
        users = rec.user_ids
        (exact, _), exact_s = timed(lambda: rec.recommend(users, k=args.k))
        rows = [("numpy exact", 0.0, exact_s, 1.0)]
        try:
            from visrec.serving.faiss_index import FaissIndex
        except ImportError:
            FaissIndex = None
        if FaissIndex is not None:
            nlist = int(4 * np.sqrt(args.items))
            for label, options in (("faiss flat (exact)", {"kind": "flat"}),
                                   (f"faiss ivf nlist={nlist} nprobe=8", {"kind": "ivf", "nprobe": 8}),
                                   (f"faiss ivf nlist={nlist} nprobe=32", {"kind": "ivf", "nprobe": 32}),
                                   ("faiss hnsw M=32 ef=128", {"kind": "hnsw", "ef_search": 128})):
                try:
                    index, build_s = timed(lambda: FaissIndex(rec, **options))
                except ImportError:
                    break
                rec.index = index
                (ids, _), query_s = timed(lambda: rec.recommend(users, k=args.k))
                rec.index = None
                recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(ids.tolist(), exact.tolist())])
                rows.append((label, build_s, query_s, recall))
    print(f"recommend: {args.users} users x {args.items} items, k={args.k}, {args.factors} factors, "
          f"{'i.i.d. item vectors' if not args.clusters else f'item vectors around {args.clusters} centres'}, exclude_seen "
          f"(bundle load + checksum verify {load_s:.2f} s)")
    print(f"{'method':<34}{'build s':>9}{'query s':>9}{'users/s':>10}{'recall@k':>10}")
    for label, build_s, query_s, recall in rows:
        print(f"{label:<34}{build_s:>9.2f}{query_s:>9.2f}{args.users / query_s:>10,.0f}{recall:>10.4f}")
    if len(rows) == 1:
        print("FAISS is not installed (pip install faiss-cpu): exact numpy only.")


if __name__ == "__main__":
    main()
