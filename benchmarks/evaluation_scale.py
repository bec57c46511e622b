"""Evaluator at scale: 100,000 users x 50,000 items, K = 100, within a 4 GB memory budget.

    .venv/bin/python benchmarks/evaluation_scale.py [--users 100000] [--items 50000] [--k 100] [--ties expected|index]

Random factors (64 dims) and random interactions (20 training and 5 test items per user, ratings
1..5) stand in for a trained model: the evaluator's cost does not depend on what the numbers mean.
Prints wall time, users/s and the process's peak resident memory (ru_maxrss), which includes the
interpreter, torch and the data (about 0.3 GB of it before the evaluation starts).
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from visrec.evaluation import FactorScorer, Interactions, evaluate
from visrec.evaluation.ranking import DEFAULT_BATCH_ELEMENTS

GIB = 1024**3


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def random_interactions(num_users: int, num_items: int, per_user: int, generator: torch.Generator) -> tuple[Interactions, Interactions]:
    """``per_user`` distinct items per user: base_u + j * stride_u (mod N), distinct while stride_u * per_user < N."""
    base = torch.randint(num_items, (num_users, 1), generator=generator)  # (U, 1)
    stride = torch.randint(1, max(2, num_items // per_user), (num_users, 1), generator=generator)  # (U, 1)
    items = (base + torch.arange(per_user) * stride) % num_items  # (U, per_user)
    users = torch.arange(num_users)[:, None].expand(-1, per_user)  # (U, per_user)
    ratings = torch.randint(1, 6, (num_users, per_user), generator=generator).float()
    test_cols = per_user // 5
    part = lambda cols: Interactions(users[:, cols].reshape(-1), items[:, cols].reshape(-1), ratings[:, cols].reshape(-1))
    return part(slice(test_cols, None)), part(slice(0, test_cols))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--max-batch-elements", type=int, default=DEFAULT_BATCH_ELEMENTS)
    parser.add_argument("--budget-gib", type=float, default=4.0)
    parser.add_argument("--ties", choices=["expected", "index"], default="expected", help="the evaluator's tie rule")
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    train, test = random_interactions(args.users, args.items, 25, generator)
    scorer = FactorScorer(
        user_factors=torch.randn(args.users, args.factors, generator=generator) * 0.1,
        user_bias=torch.randn(args.users, generator=generator) * 0.1,
        item_factors=torch.randn(args.items, args.factors, generator=generator) * 0.1,
        item_bias=torch.randn(args.items, generator=generator) * 0.1,
        global_mean=3.5,
    )
    before = peak_rss_bytes()
    started = time.perf_counter()
    report = evaluate([scorer], train, test, args.users, args.items, ks=[args.k], max_batch_elements=args.max_batch_elements,
                      ties=args.ties)
    seconds = time.perf_counter() - started
    peak = peak_rss_bytes()
    warm = report.results["model"]["warm"]
    users = warm["users_evaluated"]
    batch = max(1, args.max_batch_elements // args.items)
    print(f"{args.users} users x {args.items} items, K={args.k}, {args.factors} factors, {torch.get_num_threads()} threads, "
          f"{batch} users per batch")
    print(f"  users ranked            {users}")
    print(f"  wall time               {seconds:.1f} s (ranking {warm['ranking_seconds']:.1f} s)")
    print(f"  users/s                 {users / seconds:,.0f} (ranking only: {users / warm['ranking_seconds']:,.0f})")
    print(f"  peak RSS                {peak / GIB:.2f} GiB (before evaluation: {before / GIB:.2f} GiB)")
    print(f"  within {args.budget_gib:g} GiB budget   {'yes' if peak <= args.budget_gib * GIB else 'NO'}")
    print(f"  precision@{args.k} (random factors, for the record) {warm[f'precision@{args.k}']:.5f}")


if __name__ == "__main__":
    main()
