"""iALS and explicit ALS on two CPU processes (trainer=ddp_cpu, gloo): each process solves its own users and
items, the solved rows are gathered, and the factors equal the single-process run's; the run checkpoints,
resumes, evaluates and exports like a single-process one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from visrec.data import partition
from visrec.data.errors import DataError
from visrec.interactions import Interactions
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
                                   ["model=als", "model.k=4"],
                                   ["model=als", "model.k=4", "model.visual_mode=head", "features=random", "data/split=cold_item"]],
                         ids=["ials", "ials-cg", "als", "als-head"])
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
    # Test metrics too: each process tests only its own users' ratings (all of them), and with the cold-item head
    # rank 0 fits it on every row and the other process receives it (test/rmse_cold would differ otherwise).
    tested = [k for k in single_metrics if k.startswith("test/")]
    assert tested and (("test/rmse_cold" in tested) == ("model.visual_mode=head" in model))
    for key in tested:
        assert metrics[key] == pytest.approx(single_metrics[key], rel=1e-4, abs=1e-6), key
    # Process 1 read only its rows from rank 0's partition (not the source), and the partition is gone after training.
    log = (ddp / "train_ddp_process_1.log").read_text()
    assert "process 1 of 2: read its rows from" in log and "users, " not in log.split("read its rows")[0]
    assert not (ddp / "partitions").exists()
    assert (ddp / "export" / "manifest.json").exists() and any((ddp / "eval").glob("*/metrics.json"))
    # Resume the two-process run for one more epoch from its last checkpoint.
    _train(tmp_path, "ddp", model, ["trainer=ddp_cpu", "trainer.devices=2", "export=true", f"resume_dir={ddp}", "trainer.max_epochs=4"])
    assert json.loads((ddp / "metrics.json").read_text())["epochs"] == 4


def _parts(U: int = 9, N: int = 7, seed: int = 0) -> dict[str, Interactions]:
    g = torch.Generator().manual_seed(seed)
    cells = torch.randperm(U * N, generator=g)[:40]  # distinct (user, item) cells
    ratings = torch.randint(1, 6, (40,), generator=g).float()
    data = Interactions(cells // N, cells % N, ratings)
    return {"train": data.subset(slice(0, 28)), "val": data.subset(slice(28, 33)), "test": data.subset(slice(33, 40))}


def test_each_process_reads_exactly_the_rows_its_slices_need(tmp_path):
    U, N, world = 9, 7, 3
    parts = _parts(U, N)
    counts_u, counts_i = torch.bincount(parts["train"].users, minlength=U), torch.bincount(parts["train"].items, minlength=N)
    partition.write(tmp_path, world, parts, counts_u, counts_i, {"global_mean": 3.0})
    assert sorted(p.name for p in (tmp_path / "partitions").iterdir()) == [
        "meta.json", "rows_1_of_3.parquet", "rows_2_of_3.parquet", "train_counts_items.parquet", "train_counts_users.parquet"]
    for rank in (1, 2):
        got = partition.read(tmp_path, rank, world, wait_s=0)
        (u0, u1), (i0, i1) = row_slice(U, rank, world), row_slice(N, rank, world)
        for name, data in parts.items():
            mine = (data.users >= u0) & (data.users < u1)
            if name == "train":
                mine |= (data.items >= i0) & (data.items < i1)
            for field in ("users", "items", "ratings"):  # the same rows, in the split's order
                assert torch.equal(getattr(got.parts[name], field), getattr(data, field)[mine]), (rank, name, field)
        assert torch.equal(got.user_train_counts, counts_u) and torch.equal(got.item_train_counts, counts_i)
        # Its user- and item-major tables are the ones built from the whole training part.
        train, whole = got.parts["train"], parts["train"]
        for rows, cols, n_rows, n_cols in (("users", "items", U, N), ("items", "users", N, U)):
            mine = local_table(getattr(train, rows), getattr(train, cols), train.ratings, n_rows, n_cols, rank, world)
            full = local_table(getattr(whole, rows), getattr(whole, cols), whole.ratings, n_rows, n_cols, rank, world)
            assert torch.equal(mine.indptr, full.indptr) and torch.equal(mine.indices, full.indices)
            assert torch.equal(mine.weights, full.weights)
    # Validation and test rows: each rating in exactly one process's part (rank 0 keeps its own users').
    for name in ("val", "test"):
        total = sum(len(partition.read(tmp_path, r, world, wait_s=0).parts[name]) for r in (1, 2))
        u1 = row_slice(U, 0, world)[1]
        assert total + int((parts[name].users < u1).sum()) == len(parts[name])


def test_a_partition_from_another_launch_or_a_damaged_one_is_not_read(tmp_path, monkeypatch):
    U, N = 9, 7
    parts = _parts(U, N)
    counts = torch.bincount(parts["train"].users, minlength=U), torch.bincount(parts["train"].items, minlength=N)
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    partition.write(tmp_path, 2, parts, *counts, {})
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # a later job of the same run: waits for its own rank 0, then says so
    with pytest.raises(DataError, match="waited 0 s for rank 0"):
        partition.read(tmp_path, 1, 2, wait_s=0)
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    with pytest.raises(DataError, match="waited"):  # another world size
        partition.read(tmp_path, 1, 3, wait_s=0)
    assert len(partition.read(tmp_path, 1, 2, wait_s=0).parts["train"]) > 0
    monkeypatch.delenv("SLURM_JOB_ID")  # Lightning's launcher: rank 0 wrote it before this process started, no waiting
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    with pytest.raises(DataError, match="found no partition for 2 processes"):
        partition.read(tmp_path, 1, 2, wait_s=1e9)
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = tmp_path / "partitions" / "rows_1_of_2.parquet"
    table = pq.read_table(shard)
    users = table.column("user").to_numpy().copy()
    users[0] = U  # outside the catalog
    pq.write_table(table.set_column(0, "user", pa.array(users)), shard)
    with pytest.raises(DataError, match="rows_1_of_2.parquet.*outside"):
        partition.read(tmp_path, 1, 2, wait_s=0)
    pq.write_table(table.drop(["part"]), shard)
    with pytest.raises(DataError, match="expected columns"):
        partition.read(tmp_path, 1, 2, wait_s=0)
    partition.remove(tmp_path)
    assert not (tmp_path / "partitions").exists()


def test_the_launchers_environment_gives_the_rank_before_any_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert partition.launched_process() is None  # Lightning's first process, or a single-process run
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert partition.launched_process() == (3, 4)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert partition.launched_process(num_nodes=2) == (3, 4)  # Lightning's launcher: node 1, local process 1
    monkeypatch.setenv("RANK", "2")
    assert partition.launched_process(num_nodes=2) == (2, 4)  # torchrun


def test_an_external_launch_names_one_run_folder_for_all_its_processes(monkeypatch):
    """torchrun / an srun step of several tasks: every process derives the same run-folder name from the launch;
    one process, Lightning's launcher or a one-task step keep the timestamp (None here)."""
    for name in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert partition.external_launch_name() is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "ab/12")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert partition.external_launch_name() is None  # torchrun with one process: nothing to agree on
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert partition.external_launch_name() == "torchrun-ab_12"  # no path separator from a user's --rdzv-id
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert partition.external_launch_name() is None  # the batch script itself, not an srun step
    monkeypatch.setenv("SLURM_STEP_ID", "3")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert partition.external_launch_name() is None  # a one-task step
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert partition.external_launch_name() == "slurm-77.3"


def test_only_a_ddp_run_takes_the_launchs_folder_name(monkeypatch):
    """The default run folder (conf/hydra/default.yaml) under torchrun: a DDP trainer gets torchrun-<run id>; a
    single-process trainer keeps its timestamp (`srun -n 4 python train.py seed=...` runs four separate trainings)."""
    from hydra import compose, initialize_config_dir

    import visrec.pipeline.config  # noqa: F401 - registers the config's resolvers, as train.py's import does
    from conftest import CONF

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "r1")
    monkeypatch.setenv("WORLD_SIZE", "2")

    def run_dir(overrides: list[str]) -> str:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return str(compose(config_name="train", overrides=overrides, return_hydra_config=True).hydra.run.dir)

    assert run_dir(["trainer=ddp_cpu"]).endswith("/runs/torchrun-r1")
    assert run_dir(["trainer=multinode"]).endswith("/runs/torchrun-r1")
    assert "torchrun" not in run_dir(["trainer=cpu"]) and "torchrun" not in run_dir([])


def test_torchrun_runs_the_partitioned_ials_in_one_run_folder(tmp_path):
    """torchrun starts both processes itself, each composing the config: with the default (timestamped) run folder
    each stamped its own, and process 1 waited for rank 0's partition in the wrong folder. Now both use
    torchrun-<run id>: one folder, the run completes, and it equals the single-process run."""
    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    common = ["model=ials", "model.k=4", f"paths.log_dir={tmp_path / 'logs'}"]  # _train adds the rest
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(REPO / "train.py")]
    options = ["trainer.max_epochs=3", "trainer.enable_progress_bar=false", "logger=none", "callbacks.early_stopping.patience=10",
               *tiny, f"paths.data_dir={tmp_path / 'data'}"]  # as _train's
    # Output to a file (a worker holding a pipe would block reading it) and, on a timeout, SIGTERM to torchrun,
    # which stops its workers (they run in sessions of their own): a hung run fails the test and leaves nothing.
    log = tmp_path / "torchrun.log"
    with log.open("w") as out:
        process = subprocess.Popen([*launch, *common, *options, "trainer=ddp_cpu", "trainer.devices=2", "task_name=ddp"],
                                   cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"torchrun did not finish in 300 s: {log.read_text()[-3000:]}")
    assert process.returncode == 0, log.read_text()[-3000:]
    (run,) = (tmp_path / "logs" / "ddp" / "runs").iterdir()
    assert run.name.startswith("torchrun-") and (run / "metrics.json").is_file() and not (run / "partitions").exists()
    single = _train(tmp_path, "single", common, ["trainer=cpu"])
    ddp_metrics, single_metrics = (json.loads((r / "metrics.json").read_text()) for r in (run, single))
    assert ddp_metrics["epochs"] == single_metrics["epochs"] == 3
    for key in ("test/ndcg@10", "test/recall@10", "val/ndcg@10_best"):
        assert ddp_metrics[key] == pytest.approx(single_metrics[key], rel=1e-4), key


def test_a_process_with_none_of_a_part_still_runs_its_loop_once():
    from visrec.data.datamodule import RowBatches

    # A partitioned part this process holds none of: one empty batch, so Lightning runs the loop and the process
    # joins the others' metric gathers (with no batch Lightning skips the loop and the others would wait for it).
    empty = RowBatches(0, 5, shuffle=False, split_by_rank=False)
    assert len(empty) == 1 and [len(b) for b in empty] == [0]
    assert [b.tolist() for b in RowBatches(7, 5, shuffle=False, split_by_rank=False)] == [[0, 1, 2, 3, 4], [5, 6]]
    assert len(RowBatches(0, 5, shuffle=False)) == 0  # a whole part with no rows: no loop (the same on every process)


def test_a_damaged_byte_in_a_shard_is_an_error_never_different_rows(tmp_path):
    U, N = 30, 20
    g = torch.Generator().manual_seed(1)
    cells = torch.randperm(U * N, generator=g)[:400]
    data = Interactions(cells // N, cells % N, torch.randint(1, 6, (400,), generator=g).float())
    parts = {"train": data.subset(slice(0, 300)), "val": data.subset(slice(300, 350)), "test": data.subset(slice(350, 400))}
    partition.write(tmp_path, 2, parts, torch.bincount(parts["train"].users, minlength=U),
                    torch.bincount(parts["train"].items, minlength=N), {})
    shard = tmp_path / "partitions" / "rows_1_of_2.parquet"
    good, reference = shard.read_bytes(), partition.read(tmp_path, 1, 2, wait_s=0).parts
    caught = 0
    for position in range(4, len(good) - 8, 13):  # page checksums (CRC32): without them most flips read as other rows
        damaged = bytearray(good)
        damaged[position] ^= 0xFF
        shard.write_bytes(bytes(damaged))
        try:
            got = partition.read(tmp_path, 1, 2, wait_s=0).parts
        except DataError:
            caught += 1
            continue
        for name in reference:  # read without an error: then the very same rows (a byte of metadata only)
            for field in ("users", "items", "ratings"):
                assert torch.equal(getattr(got[name], field), getattr(reference[name], field)), (position, name, field)
    assert caught > 0
