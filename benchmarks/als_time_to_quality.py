"""Time to quality for explicit ratings at scale, side by side in one run: visrec's explicit ALS (``model=als``),
visrec's SGD biased MF (``experiment=large_scale``) and LIBMF on the same split; then explicit ALS (or iALS)
on one process and on two (``trainer=ddp_cpu``).

    .venv/bin/python benchmarks/als_time_to_quality.py [--ratings 20000000] [--items 100000] [--k 64]
        [--epochs 6] [--threads 2] [--als-k 16] [--als-overrides model.reg_factors=0.05 ...] [--libmf-eta 0.4] [--libmf-l2 0.05] [--libmf-k 8]
        [--problem-dir DIR]
        [--engines als sgd libmf als_1proc als_2proc]

Problem: :func:`benchmarks.training_throughput.make_problem` (``visrec.data.synthetic_large``, seed 0, 20 ratings
per user: 20M ratings = 1M users x 100k items, split 90/10 at random). Each engine runs in its own process
with ``--threads`` threads (torch, OpenMP, LIBMF's ``nr_threads``).

* ``als``: ``model=als model.solver=cg`` (3 warm-started CG steps per half-sweep), K = ``--als-k`` (default ``--k``), the model's
  default penalties unless ``--als-overrides`` says otherwise; one epoch = one sweep.
* ``sgd``: ``experiment=large_scale`` (sparse SGD, lr 20 per 1,024-rating step inside 65,536-rating loader
  batches), K = ``--k``.
* ``libmf``: LIBMF's parallel SGD (PyPI ``libmf``), K = ``--libmf-k``, L2 ``--libmf-l2``, learning rate ``--libmf-eta``
  (defaults: the fastest to the target among η 0.01–0.5 (0.5 diverges), K 8–64, L2 0.05–5 on this problem,
  README "Time to quality"; 0 for ``--libmf-k``: ``--k``); it has no
  biases, so it fits r − μ. Its Python binding reports no per-iteration error, so it is fitted afresh for
  1, 2, ..., E iterations and each fit is timed.
* ``libmf_baseline``: the same on r − μ − b_u − b_i, the biases from 10 ALS epochs of the baseline predictor
  (Koren 2010; Surprise's defaults λ_u 15, λ_i 10; visrec's ``bias_als``), whose seconds are added to LIBMF's.

After every epoch of a visrec engine its warm test RMSE (predictions clipped to [1, 5], over test ratings whose
user and item have training ratings) is computed with the clock stopped; the time axis is ``trainer.fit``'s
time from its ``on_fit_start`` on: the model's own data structures (ALS's user- and item-major tables, built
in the model's ``on_fit_start``) count, as LIBMF's conversion of its input counts inside its ``fit``; the data
module's reading and splitting, done once for every engine, do not. The target is the RMSE ``sgd`` reaches after 2 epochs (the issue's definition);
"time to target" is the first epoch's cumulative training time at or below it.

``als_1proc`` / ``als_2proc``: the same ALS for the same epochs with ``trainer=cpu`` and ``trainer=ddp_cpu
trainer.devices=2`` (gloo; each process with ``--threads / 2`` threads, so both use the same cores): fit wall
seconds (under DDP these include starting the second process, which runs the command again and reads its rows
of rank 0's partition before it joins; rank 0 writing the partition comes before the fit and is printed), the
cumulative seconds from ``on_fit_start`` after each epoch (rank 0; the processes are running by then), and the
peak RSS of each process (:func:`peak_rss_gib`) at the end of its set-up and at the end of training.
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
import pytorch_lightning as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from training_throughput import LIBMF_L2, libmf_predictor, make_problem, read_codes, warm_rmse  # noqa: E402

ENGINES = ("als", "sgd", "libmf", "libmf_baseline", "als_1proc", "als_2proc")


def peak_rss_gib() -> float:
    """This process's peak resident memory in GiB: Linux's VmHWM (the high-water mark of this process's own
    memory; ``ru_maxrss`` is not, since Linux carries it across fork and exec, so a DDP process started by
    Lightning's launcher would report rank 0's size at the launch), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class TestRMSEClock(pl.Callback):
    """After each training epoch: cumulative training seconds and warm test RMSE (clock stopped while it is
    computed), appended as JSON lines to ``out``; at the end, this process's peak RSS in ``out``.rss<rank>."""

    def __init__(self, out: str, measure: bool = True):
        self.out, self.measure = Path(out), measure
        self.evaluating = 0.0

    def on_fit_start(self, trainer, pl_module):  # before the module's on_fit_start: its data tables count
        self.started = time.perf_counter()
        self.peak_before_fit = peak_rss_gib()  # set-up: data, split, model

    @torch.no_grad()
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        elapsed = time.perf_counter() - self.started - self.evaluating
        if not self.measure:  # the clock only (als_1proc / als_2proc)
            with open(self.out, "a") as handle:
                handle.write(json.dumps({"epoch": trainer.current_epoch + 1, "seconds": elapsed, "rmse": None}) + "\n")
            return
        began = time.perf_counter()
        test = trainer.datamodule.tensors["test"]
        warm = pl_module.net.known_users[test.users] & pl_module.net.known_items[test.items]
        scorer = pl_module.scorer()
        users, items, ratings = test.users[warm], test.items[warm], test.ratings[warm]
        sse = sum(float((scorer.predict(u, i) - r).double().pow(2).sum())
                  for u, i, r in zip(users.split(1 << 20), items.split(1 << 20), ratings.split(1 << 20)))
        rmse = (sse / max(len(ratings), 1)) ** 0.5
        self.evaluating += time.perf_counter() - began
        with open(self.out, "a") as handle:
            handle.write(json.dumps({"epoch": trainer.current_epoch + 1, "seconds": elapsed, "rmse": rmse}) + "\n")

    def on_train_end(self, trainer, pl_module):
        peak = peak_rss_gib()
        Path(f"{self.out}.rss{trainer.global_rank}").write_text(json.dumps({"rank": trainer.global_rank, "peak_rss_gib": peak,
                                                                           "set_up_peak_rss_gib": self.peak_before_fit}))


def visrec_overrides(engine: str, folder: Path, args) -> list[str]:
    data = ["data=ratings_table", "data/split=predefined", f"data.path={folder / 'train.parquet'}",
            f"data.source_args.test_path={folder / 'test.parquet'}", "data.source_args.rating_min=1",
            "data.source_args.rating_max=5", "data.val_ratio=0", "callbacks=none", "logger=none", "evaluate=false",
            "test=false", "seed=0", f"trainer.max_epochs={args.epochs}", "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false", "+trainer.enable_checkpointing=false", f"model.k={args.k}"]
    if engine == "sgd":
        return [*data, "experiment=large_scale", "model.scheduler=null"]
    if args.als_k:
        data = [o for o in data if not o.startswith("model.k=")] + [f"model.k={args.als_k}"]
    als = [*data, "model=als", "model.solver=cg", *args.als_overrides]
    return [*als, "trainer=ddp_cpu", "trainer.devices=2"] if engine == "als_2proc" else [*als, "trainer=cpu"]


def run_visrec(engine: str, folder: Path, args) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from visrec.pipeline.training import train

    from visrec.data.partition import launched_process

    out = folder / f"{engine}.jsonl"
    if launched_process() is None:  # rank 0 (Lightning's launcher runs this again for rank 1, which must not clean up)
        # This engine's scratch from an earlier run of the benchmark on the same --problem-dir: a fresh run each time.
        shutil.rmtree(folder / f"{engine}-run", ignore_errors=True)
        for stale in [out, *folder.glob(f"{engine}.jsonl.rss*")]:
            stale.unlink(missing_ok=True)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=visrec_overrides(engine, folder, args))
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder / f"{engine}-run")
        cfg.callbacks = {"clock": {"_target_": "__main__.TestRMSEClock", "out": str(out),
                                   "measure": engine in ("als", "sgd")}}
    metrics = train(cfg)
    curve = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    peaks = [json.loads(p.read_text()) for p in sorted(folder.glob(f"{engine}.jsonl.rss*"))]
    return {"fit_seconds": metrics["fit_seconds"], "curve": curve, "peaks": peaks}


def run_libmf(folder: Path, args, baseline: bool = False) -> dict:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the binding prints where it found its .so
        from libmf import mf
    data, num_users, num_items = read_codes(folder)
    users, items, ratings = data["train"]
    mu = float(ratings.astype(np.float64).mean())
    b_u, b_i = np.zeros(num_users, np.float32), np.zeros(num_items, np.float32)
    baseline_seconds = 0.0
    if baseline:  # biases first (10 ALS epochs of the baseline predictor, Surprise's defaults), LIBMF on what is left
        from visrec.models.factor.bias_als import als_biases

        started = time.perf_counter()
        bu, bi = als_biases(torch.from_numpy(users.astype(np.int64)), torch.from_numpy(items.astype(np.int64)),
                            torch.from_numpy(ratings), num_users, num_items, mu, 15.0, 10.0, torch.zeros(num_users), 10)
        b_u, b_i = bu.float().numpy(), bi.float().numpy()
        baseline_seconds = time.perf_counter() - started
    matrix = np.stack([users, items, ratings - mu - b_u[users] - b_i[items]], axis=1).astype(np.float32)  # (R, 3)
    curve = []
    for iterations in range(1, args.epochs + 1):
        model = mf.MF(fun=mf.P_L2_MFR, k=args.libmf_k or args.k, nr_threads=args.threads, nr_bins=max(26, 2 * args.threads + 1),
                      nr_iters=iterations, lambda_p1=0.0, lambda_q1=0.0, lambda_p2=args.libmf_l2, lambda_q2=args.libmf_l2,
                      eta=args.libmf_eta, quiet=True)
        started = time.perf_counter()
        model.fit(matrix)
        seconds = time.perf_counter() - started + baseline_seconds
        tables = libmf_predictor(model)  # not the binding's MF.predict, which is wrong (training_throughput.py)
        rmse = warm_rmse(lambda u, i: mu + b_u[u] + b_i[i] + tables(u, i), data["test"])
        curve.append({"epoch": iterations, "seconds": seconds, "rmse": rmse})
    peak = peak_rss_gib()
    return {"fit_seconds": curve[-1]["seconds"], "curve": curve, "peaks": [{"rank": 0, "peak_rss_gib": peak}]}


def worker(engine: str, folder: Path, args) -> None:
    threads = max(1, args.threads // 2) if engine == "als_2proc" else args.threads
    torch.set_num_threads(threads)
    if engine.startswith("libmf"):
        result = run_libmf(folder, args, baseline=engine == "libmf_baseline")
    else:
        result = run_visrec(engine, folder, args)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        print("RESULT " + json.dumps(result), flush=True)


def time_to(curve: list[dict], target: float) -> float | None:
    for point in curve:
        if point["rmse"] <= target + 1e-12:
            return point["seconds"]
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", type=float, default=2e7)
    ap.add_argument("--ratings-per-user", type=int, default=20)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--libmf-eta", type=float, default=0.4)
    ap.add_argument("--libmf-l2", type=float, default=LIBMF_L2)
    ap.add_argument("--libmf-k", type=int, default=8, help="LIBMF's factor count (0: --k)")
    ap.add_argument("--problem-dir", help="keep the drawn problem here (and reuse it when it is there already)")
    ap.add_argument("--als-k", type=int, default=0, help="ALS's factor count (0: --k, which SGD's target run uses)")
    ap.add_argument("--als-overrides", nargs="*", default=[])
    ap.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    ap.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, Path(args.folder), args)

    folder = Path(args.problem_dir) if args.problem_dir else Path(tempfile.mkdtemp(prefix="time-to-quality-"))
    results = {}
    try:
        started = time.perf_counter()
        info_file = folder / "problem.json"
        if args.problem_dir and info_file.exists():
            info = json.loads(info_file.read_text())
        else:
            folder.mkdir(parents=True, exist_ok=True)
            info = make_problem(int(args.ratings), args.ratings_per_user, args.items, folder)
            info_file.write_text(json.dumps(info))
        print(f"problem: {info['train']:,} training ratings, {info['users']:,} users x {args.items:,} items "
              f"(drawn in {time.perf_counter() - started:.0f} s); K {args.k}, {args.epochs} epochs, {args.threads} threads",
              flush=True)
        for engine in args.engines:
            threads = str(max(1, args.threads // 2) if engine == "als_2proc" else args.threads)
            env = {**os.environ, **{v: threads for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
            command = [sys.executable, __file__, "--worker", engine, "--folder", str(folder), "--k", str(args.k),
                       "--epochs", str(args.epochs), "--threads", str(args.threads), "--libmf-eta", str(args.libmf_eta),
                       "--libmf-l2", str(args.libmf_l2), "--libmf-k", str(args.libmf_k),
                       "--als-k", str(args.als_k), "--als-overrides", *args.als_overrides]
            done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                print(f"{engine}: failed: {done.stderr.strip().splitlines()[-3:]}", flush=True)
                continue
            results[engine] = json.loads(lines[-1][7:])
            for line in done.stdout.splitlines():
                if line.startswith("Partitioned for"):  # rank 0 writing the other processes' rows (als_2proc)
                    print(f"{engine:>10}: {line}", flush=True)
            r = results[engine]
            curve = " ".join(f"{p['epoch']}:{p['seconds']:.2f}s" + ("" if p["rmse"] is None else f"/{p['rmse']:.4f}")
                             for p in r["curve"])
            peaks = ", ".join(f"rank {p['rank']} {p['peak_rss_gib']:.2f} GiB" + (
                f" ({p['set_up_peak_rss_gib']:.2f} GiB before the fit)" if "set_up_peak_rss_gib" in p else "") for p in r["peaks"])
            axis = ("iterations (seconds of a fresh fit / test RMSE)" if engine.startswith("libmf") else
                    "epochs (cumulative s / test RMSE)" if engine in ("als", "sgd") else "epochs (cumulative s)")
            print(f"{engine:>10}: fit {r['fit_seconds']:.2f} s; peak RSS {peaks}; {axis} {curve}", flush=True)
    finally:
        if not args.problem_dir:
            shutil.rmtree(folder, ignore_errors=True)
    sgd = results.get("sgd", {}).get("curve", [])
    if len(sgd) >= 2:
        target = sgd[1]["rmse"]
        print(f"\ntarget: test RMSE {target:.4f} (visrec SGD after 2 epochs)")
        for engine in ("als", "sgd", "libmf", "libmf_baseline"):
            if engine in results:
                reached = time_to(results[engine]["curve"], target)
                best = min(p["rmse"] for p in results[engine]["curve"])
                print(f"{engine:>10}: time to target {'not reached' if reached is None else f'{reached:.2f} s'}; "
                      f"best RMSE {best:.4f}")


if __name__ == "__main__":
    main()
