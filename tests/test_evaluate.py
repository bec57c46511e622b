"""evaluate.py's pipeline: rebuild a run from its directory, evaluate, write; bad run directories."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from visrec.data.datamodule import movielens_100k
from visrec.data.errors import DataError
from visrec.data.splits import PredefinedSplit
from visrec.evaluation import PopularityScorer, evaluate
from visrec.pipeline.evaluation import evaluate_run, load_model, load_run_data, model_scorer, resolve_checkpoint
from visrec.pipeline.training import train

from conftest import CONF, compose_train


def compose_evaluate(run_dir, overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="evaluate", overrides=[f"run_dir={run_dir}", *overrides])


@pytest.fixture(scope="module")
def visual_cold_run(tmp_path_factory):
    """A trained run with the visual prior on a cold-item split (random tiny backbone)."""
    tmp = tmp_path_factory.mktemp("visual")
    cfg = compose_train(["data/split=cold_item", "features=random", "model.visual_mode=init+reg", "trainer.max_epochs=4"], tmp)
    train(cfg)
    return tmp / "run"


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plain")
    train(compose_train(["model.visual_mode=none", "trainer.max_epochs=4"], tmp))
    return tmp / "run"


def test_training_writes_the_default_evaluation(plain_run):
    saved = json.loads((plain_run / "eval" / "best_test_all" / "metrics.json").read_text())
    assert saved["protocol"]["exclude_train"] == "all" and saved["protocol"]["ks"] == [5, 10, 20]
    assert "model/warm/ndcg@10" in saved["metrics"] and "popularity/warm/ndcg@10" in saved["metrics"]


def test_evaluate_run_reproduces_training_time_evaluation(plain_run):
    report = evaluate_run(compose_evaluate(plain_run, ["log_to_run_logger=false"]))
    saved = json.loads((plain_run / "eval" / "best_test_all" / "metrics.json").read_text())["metrics"]
    flat = report.flat()
    for key, value in saved.items():
        if not key.endswith("ranking_seconds"):
            assert flat[key] == pytest.approx(value, abs=1e-9), key
    rows = pd.read_csv(plain_run / "eval" / "best_test_all" / "metrics.csv")
    assert set(rows.columns) == {"scorer", "segment", "metric", "value", "protocol"}
    assert rows.protocol.str.contains("exclude_train=all").all()


def test_evaluate_run_positives_protocol_and_run_logger(plain_run):
    per_epoch = (plain_run / "metrics_per_epoch.csv").read_bytes()
    evaluate_run(compose_evaluate(plain_run, ["exclude_train=positives", "ks=[3]"]))
    out = plain_run / "eval" / "best_test_positives"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["protocol"]["exclude_train"] == "positives" and "model/warm/precision@3" in saved["metrics"]
    assert "exclude_train=positives" in (out / "report.txt").read_text()
    # The run's per-epoch CSV log (logger=csv) is left as training wrote it: no new file, no extra row.
    assert (plain_run / "metrics_per_epoch.csv").read_bytes() == per_epoch and not (plain_run / "csv").exists()


def test_scores_match_the_lightning_model_including_cold_items(visual_cold_run):
    data = load_run_data(visual_cold_run)
    model = load_model(data, resolve_checkpoint(visual_cold_run, "best"))
    test = data.parts["test"]
    cold = ~model.net.known_items[test.items]
    assert cold.any() and (~cold).any()  # the cold items and the split's warm part
    assert model.visual.has_image[test.items[cold]].any()  # visual cold items are really exercised
    scorer = model_scorer(model)
    with torch.no_grad():
        expected = model.predict_ratings(test.users, test.items)
        assert torch.allclose(scorer.predict(test.users, test.items), expected, atol=1e-5)
        full = scorer.score_users(test.users)  # (R, N)
        expected_raw = model.net.predict(test.users, test.items) + model._visual_cold_terms(test.users, test.items)
    assert torch.allclose(full[torch.arange(len(test.items)), test.items], expected_raw, atol=1e-5)
    report = evaluate_run(compose_evaluate(visual_cold_run))
    assert report.results["model"]["cold_items"]["users_evaluated"] > 0


# ---- bad run directories ------------------------------------------------------------------------------
def copy_run(run, tmp_path):
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


def test_missing_checkpoint_is_a_clear_error(plain_run, tmp_path):
    run = copy_run(plain_run, tmp_path)
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        ckpt.unlink()
    with pytest.raises(DataError, match=r"best\.ckpt: checkpoint not found .*none"):
        evaluate_run(compose_evaluate(run))
    with pytest.raises(DataError, match="run directory not found"):
        evaluate_run(compose_evaluate(tmp_path / "nowhere"))


def test_checkpoint_that_does_not_match_the_config(plain_run, tmp_path):
    run = copy_run(plain_run, tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["k"] = config["model"]["k"] + 1
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(DataError, match=r"best\.ckpt: does not match the run's config\.yaml"):
        evaluate_run(compose_evaluate(run))


def test_checkpoint_from_another_split(plain_run, visual_cold_run, tmp_path):
    run = copy_run(plain_run, tmp_path)
    data = load_run_data(run)
    split = pd.read_parquet(run / "split.parquet")
    split.loc[split.part == "train", "part"] = "val"  # same ids, but the model never trained on these rows
    split.loc[split.index[:1], "part"] = "train"
    split.to_parquet(run / "split.parquet", index=False)
    with pytest.raises(DataError, match="was not trained on this run's split"):
        load_model(load_run_data(run), resolve_checkpoint(run, "best"))
    assert len(data.parts["train"]) > 1


@pytest.mark.parametrize("null", [False, True], ids=["unknown-id", "null-id"])
def test_split_with_unknown_ids_names_file_row_and_field(plain_run, tmp_path, null):
    """A null id (code −1 of the dictionary-encoded read) is as absent as an unknown one, never the last id."""
    run = copy_run(plain_run, tmp_path)
    split = pd.read_parquet(run / "split.parquet")
    assert not pd.api.types.is_integer_dtype(split["item"])  # string ids: the dictionary-encoded read is tested
    split.loc[3, "item"] = None if null else "no-such-item"
    split.to_parquet(run / "split.parquet", index=False)
    with pytest.raises(DataError, match=r"split\.parquet, field 'item': 1 row\(s\) name item ids absent from item_map\.parquet, first at row 4"):
        evaluate_run(compose_evaluate(run))


# ---- the popularity baseline reproduces independently computed values on ML-100K u1 ----------------
@pytest.mark.ml100k
def test_popularity_reproduces_reference_values_on_ml100k_u1(ml100k):
    dm = movielens_100k(str(ml100k), PredefinedSplit(), fold=1, images=None, val_ratio=0)
    dm.setup()
    train_part, test_part = dm.tensors["train"], dm.tensors["test"]
    pop = PopularityScorer.from_interactions(train_part.items, dm.num_items)
    reference = {"all": (0.2136, 0.1180, 0.1203, 0.2451), "positives": (0.1842, 0.1075, 0.1072, 0.2162)}
    for protocol, values in reference.items():
        warm = evaluate([pop], train_part, test_part, dm.num_users, dm.num_items, ks=[10], exclude_train=protocol).results["popularity"]["warm"]
        assert warm["users_evaluated"] == 456
        got = (warm["precision@10"], warm["recall@10"], warm["f1@10"], warm["ndcg@10"])
        assert got == pytest.approx(values, abs=0.002), protocol


def test_evaluate_cli_reports_a_bad_run_directory_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    missing = tmp_path / "nowhere"
    done = subprocess.run([sys.executable, str(REPO / "evaluate.py"), f"run_dir={missing}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert f"{missing}: run directory not found" in done.stderr
    assert not missing.exists() and list(tmp_path.iterdir()) == []


def test_evaluate_py_without_a_run_says_how_to_call_it(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run([sys.executable, str(REPO / "evaluate.py")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "usage: python evaluate.py run_dir=" in done.stderr
    assert "Traceback" not in done.stderr and "MissingMandatoryValue" not in done.stderr


def test_evaluate_cli_reports_a_refused_option_in_one_line(tmp_path):
    """part=train is refused before anything is read: one line naming the key, exit 2, no traceback."""
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run([sys.executable, str(REPO / "evaluate.py"), f"run_dir={tmp_path / 'run'}", "part=train"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("evaluate.py: part must be test or val (the parts a trained model can be "
                                                    "scored on), got 'train'")
