"""Paired tests over users (issue 28, part 2): visrec/evaluation/significance.py, and the sweep summary's
tests of every group against a reference group, per-user values paired within a fold and pooled over folds."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from visrec.evaluation.significance import compare_per_user, paired_test
from visrec.pipeline.cross_validation import main, read_sweep, summarize, write_summary

from conftest import REPO, TINY_GENERATOR
from test_cross_validation import fake_job


def test_paired_test_matches_scipy_and_the_effect_size_definitions():
    rng = np.random.default_rng(0)
    reference = rng.random(40)
    candidate = reference + rng.normal(0.05, 0.1, 40)
    candidate[:5] = reference[:5]  # ties: left out of Wilcoxon, kept in the t-test
    out = paired_test(reference, candidate)
    diff = candidate - reference
    assert out["n"] == 40 and out["mean_difference"] == pytest.approx(diff.mean())
    assert out["p_ttest"] == pytest.approx(stats.ttest_rel(candidate, reference).pvalue)
    assert out["p_wilcoxon"] == pytest.approx(stats.wilcoxon(diff[5:]).pvalue)
    assert out["effect_size"] == pytest.approx(diff.mean() / diff.std(ddof=1))
    ranks = stats.rankdata(np.abs(diff[5:]))
    w_plus, w_minus = ranks[diff[5:] > 0].sum(), ranks[diff[5:] < 0].sum()
    assert out["rank_biserial"] == pytest.approx((w_plus - w_minus) / (w_plus + w_minus))
    # A candidate better for every user: r = 1; swapping the roles flips the signs, not the p-values.
    flipped = paired_test(candidate, reference)
    assert flipped["p_wilcoxon"] == pytest.approx(out["p_wilcoxon"]) and flipped["effect_size"] == pytest.approx(-out["effect_size"])
    assert paired_test(reference, reference + 1.0)["rank_biserial"] == 1.0


def test_no_difference_and_too_few_users_give_defined_answers():
    same = paired_test(np.zeros(10), np.zeros(10))
    assert same["p_wilcoxon"] == 1.0 and same["p_ttest"] == 1.0 and same["effect_size"] == 0.0
    assert paired_test(np.ones(1), np.zeros(1))["p_wilcoxon"] is None
    with pytest.raises(ValueError, match="finite"):
        paired_test(np.array([0.1, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match="one length"):
        paired_test(np.zeros(3), np.zeros(2))


def per_user(users, values, segment="warm", scorer="model"):
    return pd.DataFrame({"scorer": scorer, "segment": segment, "user": users, "ndcg@10": values, "recall@10": values})


def test_pairs_are_made_within_a_fold_and_pooled_over_folds():
    ref = pd.concat([per_user(["a", "b", "c"], [0.1, 0.2, 0.3]).assign(fold="1"),
                     per_user(["a", "b", "c"], [0.5, 0.6, 0.7]).assign(fold="2")])
    # The candidate's rows in another order, user c missing in fold 2: 5 pairs, each +0.1.
    cand = pd.concat([per_user(["c", "a", "b"], [0.4, 0.2, 0.3]).assign(fold="1"),
                      per_user(["b", "a"], [0.7, 0.6]).assign(fold="2")])
    (test,) = [v for k, v in compare_per_user(ref, cand, ["ndcg@10"]).items()]
    assert test["n"] == 5 and test["mean_difference"] == pytest.approx(0.1)
    # Pairing across folds (ignoring the fold) would mix 0.1 with 0.5: the mean difference would not be 0.1.


def write_per_user(sweep, number: int, frame: pd.DataFrame) -> None:
    frame.to_parquet(sweep / str(number) / "eval" / "best_test_all" / "per_user.parquet", index=False)


def test_the_sweep_summary_tests_every_group_against_the_reference(tmp_path, capsys):
    rng = np.random.default_rng(1)
    users = [f"u{i}" for i in range(60)]
    base = {fold: rng.random(60) for fold in (1, 2)}
    shifts = {"ials": 0.0, "bpr": 0.08, "popularity": 0.0}  # bpr better for most users; popularity = noise
    number = 0
    expected = {}
    for model, shift in shifts.items():
        pooled = []
        for fold in (1, 2):
            noise = rng.normal(0, 0.02, 60) if model != "ials" else np.zeros(60)
            values = base[fold] + shift + noise
            pooled.append(values)
            fake_job(tmp_path, number, [f"model={model}", f"data.fold={fold}"], {"test/rmse": 1.0},
                     {"model/warm/ndcg@10": float(values.mean())})
            write_per_user(tmp_path, number, pd.concat([per_user(users, values), per_user(users, base[fold], scorer="popularity")]))
            number += 1
        expected[model] = np.concatenate(pooled)
    summary = summarize(read_sweep(tmp_path), reference="model=ials")
    groups = {g["overrides"][0]: g for g in summary["groups"]}
    assert summary["reference"] == "model=ials" and "significance" not in groups["model=ials"]
    bpr = groups["model=bpr"]["significance"]["tests"]["model/warm/ndcg@10"]
    assert bpr["n"] == 120 and bpr["p_wilcoxon"] < 1e-10 and bpr["effect_size"] > 1
    assert bpr["p_ttest"] == pytest.approx(stats.ttest_rel(expected["bpr"], expected["ials"]).pvalue)
    noise = groups["model=popularity"]["significance"]["tests"]["model/warm/ndcg@10"]
    assert noise["p_wilcoxon"] > 0.01
    json_path, csv_path = write_summary(tmp_path, summary)
    row = next(r for r in csv.DictReader(csv_path.open()) if r["group"] == "model=bpr" and r["metric"] == "model/warm/ndcg@10")
    assert float(row["p_wilcoxon"]) == pytest.approx(bpr["p_wilcoxon"]) and row["n_pairs"] == "120"
    # The command line: a reference that names no group is an error naming the groups.
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--reference", "model=vbpr"])
    assert "model=bpr" in capsys.readouterr().out
    main([str(tmp_path), "--reference", "model=ials"])
    assert "(p=" in capsys.readouterr().out
    assert json.loads(json_path.read_text())["groups"][1]["significance"]["reference"] == "model=ials"


def test_a_job_without_per_user_metrics_is_named(tmp_path):
    fake_job(tmp_path, 0, ["model=ials", "seed=0"], {"test/rmse": 1.0}, {"model/warm/ndcg@10": 0.1})
    fake_job(tmp_path, 1, ["model=bpr", "seed=0"], {"test/rmse": 1.0}, {"model/warm/ndcg@10": 0.1})
    with pytest.raises(ValueError, match="per_user.parquet"):
        summarize(read_sweep(tmp_path), reference="model=ials")


@pytest.mark.slow
def test_a_multirun_with_a_reference_writes_paired_tests(tmp_path):
    tiny = [f"data.generator.{k}={v}" for k, v in TINY_GENERATOR.items()]
    command = [sys.executable, str(REPO / "train.py"), "-m", "model=ials,bpr", "seed=0,1", "logger=none",
               "trainer.max_epochs=2", "trainer.enable_progress_bar=false", 'hydra.callbacks.cv_summary.reference="model=ials"',
               f"paths.data_dir={tmp_path / 'data'}", f"paths.log_dir={tmp_path / 'logs'}", *tiny]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (summary_file,) = (tmp_path / "logs").rglob("cv_summary.json")
    summary = json.loads(summary_file.read_text())
    assert "model=ials" in summary["reference"].split()
    (other,) = [g for g in summary["groups"] if "model=bpr" in g["overrides"]]
    test = other["significance"]["tests"]["model/warm/ndcg@10"]
    assert test["n"] > 0 and 0 <= test["p_wilcoxon"] <= 1 and "(p=" in done.stdout


def test_one_run_per_group_pairs_with_the_other_groups_run(tmp_path):
    """A multirun over models only (no fold or seed override): each group's single run pairs with the others'."""
    users = [f"u{i}" for i in range(30)]
    for number, (model, shift) in enumerate((("ials", 0.0), ("bpr", 0.1))):
        values = np.linspace(0, 0.5, 30) + shift
        fake_job(tmp_path, number, [f"model={model}"], {"test/rmse": 1.0}, {"model/warm/ndcg@10": float(values.mean())})
        write_per_user(tmp_path, number, per_user(users, values))
    summary = summarize(read_sweep(tmp_path), reference="model=ials")
    (bpr,) = [g for g in summary["groups"] if g["overrides"] == ["model=bpr"]]
    assert bpr["significance"]["tests"]["model/warm/ndcg@10"]["n"] == 30
