"""Seconds, rows/s and peak memory to ingest a ratings table: plain pandas vs visrec's real reader path.

    .venv/bin/python benchmarks/ingestion.py [--rows 10000000] [--seed 0] [--format csv|parquet|both] [--repeat 1]
        [--wait-quiet] [--out DIR]

Generates (seeded) one N-row table -- user, item, rating, timestamp; string ids such as
``user_0123456`` and ``B00A7F3C21``, half-star ratings, Unix timestamps, about N/10 users and N/100
items with long-tailed popularity, so about 0.3% of rows repeat a (user, item) pair -- and writes it as ``ratings.csv``
(unquoted, as pandas and visrec's generators write it) and ``ratings.parquet`` in a temporary folder.
Then, for each format, in a fresh child process each (so peak RSS is that step's own):

  pandas   ``pd.read_csv`` / ``pd.read_parquet`` of the file, then ``pd.factorize`` of both id columns:
           the least any reader that ends with integer ids must do.
  visrec   what ``data=ratings_table`` does: the real ``conf/train.yaml`` composed with
           ``data=ratings_table data.path=<file> data.source_args.timestamp_col=timestamp`` (before the
           clock), then ``instantiate`` of ``cfg.data`` and ``datamodule.setup("fit")`` -- reading, validation,
           duplicates (policy ``last``), the id maps, the default random split and the index tensors.
           The ``load`` line is the reader's share of it: ``source.load()``, the validated table with
           user / item indices and the sorted raw ids of the id maps, before the split.

Prints seconds (wall), the ratio visrec / pandas, CPU seconds (all threads), rows/s, each child's peak RSS (ru_maxrss) and, in
brackets, its RSS once its imports were done (torch and Lightning weigh in on visrec's side). With
``--repeat N`` each reader runs N times, alternating, and the fastest run is reported (on a shared
machine the slow runs measure the neighbours); every run is listed with the share of it in which some
task waited for a CPU (Linux PSI). ``--wait-quiet`` starts each run once the CPUs are quiet.
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

REPO = Path(__file__).resolve().parents[1]


def generate(rows: int, folder: Path, seed: int = 0) -> dict[str, Path]:
    """Write ``ratings.csv`` and ``ratings.parquet`` (the same N rows) into ``folder``; returns their paths."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    num_users, num_items = max(1, rows // 10), max(1, rows // 100)
    user_names = pa.array([f"user_{k:07d}" for k in range(num_users)])
    letters = np.frombuffer(b"0123456789ABCDEF", dtype="S1")
    item_names = pa.array(["B00" + b"".join(letters[rng.integers(0, 16, 7)]).decode() for _ in range(num_items)])
    item_names = pa.array([f"{name}{k}" for k, name in enumerate(item_names.to_pylist())])  # distinct
    users = rng.integers(0, num_users, rows)  # (R,)
    items = rng.permutation(num_items)[(rng.random(rows) ** 3 * num_items).astype(np.int64)]  # (R,) long-tailed popularity
    table = pa.table({
        "user": user_names.take(pa.array(users)),
        "item": item_names.take(pa.array(items)),
        "rating": pa.array(rng.integers(1, 11, rows) / 2.0),  # 0.5 .. 5.0
        "timestamp": pa.array(1_400_000_000 + rng.integers(0, 300_000_000, rows)),
    })
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / "ratings.csv", "parquet": folder / "ratings.parquet"}
    pcsv.write_csv(table, paths["csv"], write_options=pcsv.WriteOptions(quoting_style="none"))
    pq.write_table(table, paths["parquet"])
    return paths


def run_pandas(path: Path) -> dict:
    import pandas as pd

    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    users, user_ids = pd.factorize(frame["user"])
    items, item_ids = pd.factorize(frame["item"])
    return {"rows": len(frame), "users": len(user_ids), "items": len(item_ids)}


def visrec_config(path: Path):
    """The real conf/train.yaml with ``data=ratings_table`` on ``path`` (composed before the clock starts:
    building a config is not reading data)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=["data=ratings_table", f"data.path={path}",
                                                       "data.source_args.timestamp_col=timestamp"])


def run_visrec(path: Path, cfg) -> dict:
    from visrec.pipeline.config import instantiate_node

    datamodule = instantiate_node(cfg.data)
    load, read = datamodule.source.load, {}

    def timed_load():  # the reader's share: the table in index space, before the split
        start = time.perf_counter()
        table = load()
        read["seconds"] = time.perf_counter() - start
        return table

    datamodule.source.load = timed_load
    datamodule.setup("fit")
    rows = sum(len(datamodule.tensors[part]) for part in ("train", "val", "test"))
    return {"rows": rows, "users": datamodule.num_users, "items": datamodule.num_items, "load_seconds": read["seconds"]}


def _current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def child(kind: str, path: Path) -> None:
    """One measurement, in this (fresh) process: prints a JSON line."""
    import pandas  # noqa: F401  imported before the clock starts in both cases
    import pyarrow  # noqa: F401

    if kind == "visrec":
        import hydra  # noqa: F401
        import torch  # noqa: F401

        import visrec.data.datamodule  # noqa: F401
        import visrec.pipeline.config  # noqa: F401
    cfg = visrec_config(path) if kind == "visrec" else None
    rss_before = _current_rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    result = run_pandas(path) if kind == "pandas" else run_visrec(path, cfg)
    result["seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = time.process_time() - cpu
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["start_rss_mib"] = rss_before
    print(json.dumps(result))


def _cpu_pressure() -> tuple[float, int] | None:
    """Linux PSI: (share of the last 10 s in which some task waited for a CPU, %; total stall, us)."""
    try:
        with open("/proc/pressure/cpu") as pressure:
            fields = dict(item.split("=") for item in pressure.readline().split()[1:])
        return float(fields["avg10"]), int(fields["total"])
    except (OSError, KeyError, ValueError):
        return None


def measure(kind: str, path: Path, wait_quiet: bool = False) -> dict:
    """One child run; with ``wait_quiet``, started once other processes leave the CPUs alone (PSI avg10
    < 2%, for at most 10 minutes). ``stall`` is the share of the run in which some task waited for a CPU."""
    if wait_quiet and _cpu_pressure() is not None:
        deadline = time.time() + 600
        while _cpu_pressure()[0] >= 2 and time.time() < deadline:
            time.sleep(5)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    before, start = _cpu_pressure(), time.time()
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(path)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {path} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    after = _cpu_pressure()
    result["stall"] = None if before is None else (after[1] - before[1]) / 1e6 / (time.time() - start)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=("csv", "parquet", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each reader, interleaved; the fastest is reported")
    ap.add_argument("--wait-quiet", action="store_true", help="start each run once the CPUs are quiet (Linux PSI)")
    ap.add_argument("--out", default=None, help="keep the generated files in this folder (default: a temporary one)")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="visrec-ingestion-"))
    try:
        start = time.perf_counter()
        paths = generate(args.rows, root, args.seed)
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.0f} MiB" for p in paths.values())
        print(f"generated {args.rows:,} rows (seed {args.seed}) in {time.perf_counter() - start:.1f} s: {sizes}")
        formats = ("csv", "parquet") if args.format == "both" else (args.format,)
        print(f"{'format':8} {'reader':7} {'seconds':>8} {'ratio':>6} {'CPU s':>6} {'rows/s':>12} {'peak RSS (after imports)':>24}  "
              f"result{'; every run (s)' if args.repeat > 1 else ''}")
        for fmt in formats:
            runs = {"pandas": [], "visrec": []}
            for _ in range(args.repeat):  # interleaved, so a busy spell on a shared machine hits both
                for kind in runs:
                    runs[kind].append(measure(kind, paths[fmt], args.wait_quiet))
            best = {kind: min(results, key=lambda r: r["seconds"]) for kind, results in runs.items()}
            for name, res in best.items():
                ratio = res["seconds"] / best["pandas"]["seconds"]
                every = "; " + ", ".join(f"{r['seconds']:.1f}" + (f" ({r['stall']:.0%} stalled)" if r["stall"] is not None else "")
                                         for r in runs[name]) if args.repeat > 1 else ""
                print(f"{fmt:8} {name:7} {res['seconds']:8.1f} {ratio:6.2f} {res['cpu_seconds']:6.1f} {args.rows / res['seconds']:12,.0f} "
                      f"{res['peak_rss_mib']:8.0f} MiB ({res['start_rss_mib']:5.0f} MiB)  {res['rows']:,} rows, "
                      f"{res['users']:,} users, {res['items']:,} items{every}")
            load = min(runs["visrec"], key=lambda r: r["load_seconds"])["load_seconds"]
            print(f"{fmt:8} {'  load':7} {load:8.1f} {load / best['pandas']['seconds']:6.2f} {'':6} {args.rows / load:12,.0f}  "
                  f"(of which source.load(): the table in index space, before the split)")
    finally:
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
