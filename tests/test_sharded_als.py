"""iALS and explicit ALS on two CPU processes (trainer=ddp_cpu, gloo): each process solves its own users and
items, the solved rows are gathered, and the factors equal the single-process run's; the run checkpoints,
resumes, evaluates and exports like a single-process one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from visrec.models.ials.sharding import local_table, row_slice
from visrec.models.ials.solver import CSR

from conftest import REPO, TINY_GENERATOR


def test_slices_cover_every_row_once_and_local_tables_hold_only_their_rows():
    for rows, world in ((10, 3), (7, 2), (1, 2), (0, 2)):
        slices = [row_slice(rows, r, world) for r in range(world)]
        assert slices[0][0] == 0 and slices[-1][1] == rows and all(a[1] == b[0] for a, b in zip(slices, slices[1:]))
    g = torch.Generator().manual_seed(0)
    pairs = torch.unique(torch.randint(0, 9 * 6, (30,), generator=g))
    rows, cols = pairs // 6, pairs % 6
    weights = torch.rand(len(pairs), generator=g)
    full = CSR.from_pairs(rows, cols, weights, 9, 6)
    parts = [local_table(rows, cols, weights, 9, 6, r, 2) for r in range(2)]
    assert sum(len(p.indices) for p in parts) == len(full.indices)
    torch.testing.assert_close(torch.cat([p.indices for p in parts]), full.indices)
    torch.testing.assert_close(torch.cat([p.weights for p in parts]), full.weights)
    assert [p.num_rows for p in parts] == [4, 5]


def _train(tmp_path: Path, name: str, model: list[str], extra: list[str]) -> Path:
    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    out = tmp_path / name
    done = subprocess.run([sys.executable, str(REPO / "train.py"), *model, "trainer.max_epochs=3", *extra, "trainer.enable_progress_bar=false",
                           "logger=none", "callbacks.early_stopping.patience=10", *tiny, f"paths.data_dir={tmp_path / 'data'}",
                           f"paths.output_dir={out}", f"hydra.run.dir={out}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _tables(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("net.") and k.endswith(".weight")}


@pytest.mark.parametrize("model", [["model=ials", "model.k=4"], ["model=ials", "model.k=4", "model.solver=cg"],
                                   ["model=als", "model.k=4"]], ids=["ials", "ials-cg", "als"])
def test_two_processes_give_the_single_process_factors_and_the_run_resumes_evaluates_and_exports(tmp_path, model):
    single = _train(tmp_path, "single", model, ["trainer=cpu", "export=false"])
    ddp = _train(tmp_path, "ddp", model, ["trainer=ddp_cpu", "trainer.devices=2", "export=true"])
    one, two = _tables(single), _tables(ddp)
    assert one.keys() == two.keys() and one
    for name in one:
        scale = one[name].abs().max().clamp(min=1e-6)
        assert float((one[name] - two[name]).abs().max() / scale) < 1e-4, name
    metrics = json.loads((ddp / "metrics.json").read_text())
    single_metrics = json.loads((single / "metrics.json").read_text())
    monitored = "val/ndcg@10_best" if model[0] == "model=ials" else "val/rmse_best"
    assert metrics[monitored] == pytest.approx(single_metrics[monitored], rel=1e-4, abs=1e-6)
    assert (ddp / "export" / "manifest.json").exists() and any((ddp / "eval").glob("*/metrics.json"))
    # Resume the two-process run for one more epoch from its last checkpoint.
    _train(tmp_path, "ddp", model, ["trainer=ddp_cpu", "trainer.devices=2", "export=true", f"resume_dir={ddp}", "trainer.max_epochs=4"])
    assert json.loads((ddp / "metrics.json").read_text())["epochs"] == 4
