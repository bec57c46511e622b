"""Seconds to generate a large synthetic problem with :mod:`visrec.data.synthetic_large`: sampling
(the ground truth and the choice model, in memory) and writing (ratings.parquet and/or ratings.csv
via pyarrow, items.csv, truth.npz) timed separately, on one process.

    .venv/bin/python benchmarks/synthetic_large.py [--users 1000000] [--items 100000] [--ratings 20000000]
        [--beta 1.5] [--format parquet|csv|both] [--read] [--out DIR]

``--read`` also times :class:`~visrec.data.readers.RatingsFile` loading the Parquet table (what
``data=ratings_table`` does first; ``benchmarks/ingestion.py`` compares that path with plain pandas).
The folder is a temporary one unless ``--out`` is given.
Prints wall seconds and this process's CPU seconds (the two differ when the machine is shared).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from visrec.data.synthetic_large import FORMATS, LargeParams, sample, write


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--ratings", type=int, default=20_000_000)
    ap.add_argument("--beta", type=float, default=1.5)
    ap.add_argument("--format", choices=FORMATS, default="both")
    ap.add_argument("--read", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    params = LargeParams(num_users=args.users, num_items=args.items, num_ratings=args.ratings, choice_strength=args.beta)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="synthetic-large-"))
    folder = root / "data"
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        data = sample(params)
        s_wall, s_cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"sampling: {len(data.users):,} ratings ({args.users:,} users x {args.items:,} items, target {args.ratings:,}; "
              f"{data.num_exact} users by the exact fallback): {s_wall:.1f} s wall, {s_cpu:.1f} s CPU")
        wall, cpu = time.perf_counter(), time.process_time()
        write(data, folder, args.format)
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.0f} MiB" for p in sorted(folder.iterdir()) if p.is_file())
        print(f"writing ({args.format}): {time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU ({sizes})")
        if args.read and (folder / "ratings.parquet").is_file():
            from visrec.data.readers import RatingsFile

            wall = time.perf_counter()
            table = RatingsFile(folder / "ratings.parquet", timestamp_col="timestamp", rating_min=1, rating_max=5,
                                ).load()
            print(f"RatingsFile reads ratings.parquet: {len(table.ratings):,} ratings in {time.perf_counter() - wall:.1f} s")
    finally:
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
