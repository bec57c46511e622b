"""k-fold / multi-seed summaries of a Hydra multirun (visrec/pipeline/cross_validation.py): the real
multirun through train.py, and the grouping and statistics on hand-made sweep directories."""
from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from visrec.pipeline.cross_validation import main, read_sweep, summarize, write_summary

from conftest import REPO, TINY_GENERATOR
from wandb_offline import read_offline_run


def fake_job(sweep: Path, number: int, overrides: list[str], metrics: dict | None, report: dict | None = None) -> None:
    run = sweep / str(number)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps({"tested_checkpoint": f"{run}/checkpoints/best.ckpt", **metrics}))
    if report is not None:
        (run / "eval" / "best_test_all").mkdir(parents=True)
        (run / "eval" / "best_test_all" / "metrics.json").write_text(json.dumps({"metrics": report, "part": "test"}))


def test_jobs_are_grouped_by_their_overrides_minus_fold_and_seed(tmp_path):
    for n, (model, fold, rmse, ndcg) in enumerate([("biased_mf", 1, 0.91, 0.05), ("biased_mf", 2, 0.93, 0.07),
                                                   ("biased_mf", 3, 0.92, 0.06), ("ials", 1, 1.5, 0.20), ("ials", 2, 1.6, 0.22)]):
        fake_job(tmp_path, n, [f"model={model}", f"data.fold={fold}"], {"test/rmse": rmse, "epochs": 3, "note": "x"},
                 {"model/warm/ndcg@10": ndcg})
    fake_job(tmp_path, 5, ["model=ials", "data.fold=3"], None)  # failed job
    summary = summarize(read_sweep(tmp_path))
    assert [g["overrides"] for g in summary["groups"]] == [["model=biased_mf"], ["model=ials"]]
    mf, ials = summary["groups"]
    assert mf["jobs"] == [0, 1, 2] and mf["folds"] == ["data.fold=1", "data.fold=2", "data.fold=3"]
    assert mf["metrics"]["test/rmse"]["mean"] == pytest.approx(0.92)
    assert mf["metrics"]["test/rmse"]["sd"] == pytest.approx(statistics.stdev([0.91, 0.93, 0.92]))  # sample sd
    assert mf["metrics"]["model/warm/ndcg@10"]["values"] == [0.05, 0.07, 0.06]
    assert "note" not in mf["metrics"] and ials["metrics"]["test/rmse"]["n"] == 2
    assert summary["failed"] == [5]
    json_path, csv_path = write_summary(tmp_path, summary)
    assert json.loads(json_path.read_text()) == summary
    rows = list(csv.DictReader(csv_path.open()))
    row = next(r for r in rows if r["group"] == "model=biased_mf" and r["metric"] == "test/rmse")
    assert float(row["mean"]) == pytest.approx(0.92) and [float(row[f"fold_{i}"]) for i in range(3)] == [0.91, 0.93, 0.92]


def test_one_job_has_no_sd_and_a_non_sweep_directory_is_a_clear_error(tmp_path):
    fake_job(tmp_path / "s", 0, ["seed=1"], {"test/rmse": 1.0})
    (group,) = summarize(read_sweep(tmp_path / "s"))["groups"]
    assert group["metrics"]["test/rmse"]["sd"] is None and group["overrides"] == []
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="not a multirun's sweep directory"):
        main([str(tmp_path / "empty")])


def test_a_multirun_over_seeds_writes_mean_and_sd_and_one_wandb_summary_run(tmp_path):
    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    command = [sys.executable, str(REPO / "train.py"), "-m", "model=biased_mf", "seed=0,1,2", "logger=wandb",
               "logger.wandb.mode=offline", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
               "model.visual_mode=none", f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'logs'}", *tiny]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (summary_file,) = (tmp_path / "logs").rglob("cv_summary.json")
    sweep = summary_file.parent
    (group,) = json.loads(summary_file.read_text())["groups"]
    per_job = [json.loads((sweep / str(n) / "metrics.json").read_text())["test/rmse"] for n in range(3)]
    assert group["jobs"] == [0, 1, 2] and group["metrics"]["test/rmse"]["values"] == per_job
    assert group["metrics"]["test/rmse"]["sd"] == pytest.approx(statistics.stdev(per_job))
    assert "model/warm/ndcg@10" in group["metrics"] and "popularity/warm/ndcg@10" in group["metrics"]
    assert (sweep / "cv_summary.csv").is_file() and "test/rmse" in done.stdout
    runs = [read_offline_run(d) for d in sorted((tmp_path / "logs").rglob("offline-run-*"))]
    (cv,) = [r for r in runs if r.job_type == "cv_summary"]
    assert {r.group for r in runs} == {sweep.name}
    assert cv.summary["test/rmse/mean"] == pytest.approx(statistics.mean(per_job))


def test_a_failed_job_is_left_out_and_the_sweep_goes_on(tmp_path):
    """t3-multirun-failed-job (issue 29, kind 2): a DataError in the middle job (fold 7 of 5) and a ValueError
    from a model option: the other jobs run, the summary of the finished ones is written with the failures
    and their errors, and the multirun's exit status says that jobs failed."""
    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    command = [sys.executable, str(REPO / "train.py"), "-m", "model=biased_mf", "data/split=kfold", "data.split.fold=0,7,1",
               "model.k=4,-1", "logger=none", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "evaluate=false",
               "model.visual_mode=none", f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", *tiny]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    summary = json.loads((tmp_path / "sweep" / "cv_summary.json").read_text())
    (group,) = summary["groups"]  # model.k=4 on folds 0 and 1
    assert "model.k=4" in group["overrides"] and len(group["jobs"]) == 2
    assert len(summary["failed"]) == 4  # fold 7 with k=4, and every job with k=-1
    errors = {(f["overrides"][2], f["overrides"][3]): f["error"] for f in summary["failures"]}
    assert "data.split.fold" in errors[("data.split.fold=7", "model.k=4")]
    assert "model.k" in errors[("data.split.fold=1", "model.k=-1")]
    assert "4 of 6 jobs failed" in done.stderr
