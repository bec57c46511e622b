"""Row-sharded ALS sweeps over torch.distributed (the DDP half of iALS and explicit ALS; torch only).

Each of W processes owns a contiguous slice of the users and a contiguous slice of the items
(:func:`row_slice`: rows [⌊R·r/W⌋, ⌊R·(r+1)/W⌋) of process r). It holds the interactions of its own
rows only, twice: its users' rows (user-major, for the user half-sweep) and its items' columns
(item-major, for the item half-sweep) — :func:`local_table`. In a half-sweep it solves its own rows
with the other side's full table fixed, then the solved rows are exchanged (:func:`gather_rows`: one
all-gather of a (⌈R/W⌉, K) block per process), so every process ends the half-sweep with the same full
table, and the Gramian α₀ QᵀQ each process forms from it is the one a single process forms. Each row's
system is the single-process system, so the result equals the single-process sweep up to float
summation order. The factor tables are replicated (what sharding them would take is in the README:
"Experiments: W&B, sweeps, resume, scaling out"). With W = 1 nothing is exchanged.

Process group: whatever torch.distributed was initialised with (Lightning's DDP strategy: gloo on CPUs,
NCCL on GPUs; tensors are moved to ``device`` for the collective).
"""
from __future__ import annotations

import torch

from visrec.data.partition import row_slice
from visrec.models.ials.solver import CSR

__all__ = ["rank_and_world", "row_slice", "local_table", "gather_rows", "sum_over_processes"]


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised default process group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def local_table(rows: torch.Tensor, cols: torch.Tensor, weights: torch.Tensor, num_rows: int, num_cols: int,
                rank: int, world: int) -> CSR:
    """The CSR of the (nnz,) pairs whose row this process owns, rows renumbered from its slice's start:
    (stop − start) rows over ``num_cols`` columns. Pairs must be unique."""
    if world == 1:  # every pair is this process's: no copy through a mask
        return CSR.from_pairs(rows, cols, weights, num_rows, num_cols)
    start, stop = row_slice(num_rows, rank, world)
    mine = (rows >= start) & (rows < stop)  # (nnz,)
    return CSR.from_pairs(rows[mine] - start, cols[mine], weights[mine], stop - start, num_cols)


def gather_rows(local: torch.Tensor, num_rows: int, world: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The full (num_rows, K) table from every process's solved slice ``local`` (its rows of
    :func:`row_slice`), in row order; ``local`` itself when ``world`` is 1. Returns a CPU tensor."""
    if world == 1:
        return local
    width = -(-num_rows // world)  # ⌈R / W⌉: every block padded to it (all_gather needs equal shapes)
    padded = torch.zeros(width, *local.shape[1:], dtype=local.dtype, device=device)
    padded[:len(local)] = local.to(device)
    blocks = [torch.empty_like(padded) for _ in range(world)]
    torch.distributed.all_gather(blocks, padded)
    parts = [block[:stop - start] for block, (start, stop) in
             zip(blocks, (row_slice(num_rows, r, world) for r in range(world)))]
    return torch.cat(parts).cpu()


def sum_over_processes(value: float, world: int, device: torch.device | str = "cpu") -> float:
    """Σ of a float over the processes (one all-reduce); ``value`` when ``world`` is 1."""
    if world == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(total)
    return float(total)

