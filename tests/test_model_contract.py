"""The contract every registered model keeps (one parametrized suite, as timm and implicit test all their
models): built from a config on tiny data, trained a few epochs, its checkpoint restored by evaluate.py
with the same scores, exported, the bundle loaded with numpy only and used to recommend."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from visrec.pipeline.evaluation import load_model, load_run_data, resolve_checkpoint
from visrec.pipeline.training import train

from conftest import CONF, compose_train

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def test_every_model_config_is_covered():
    assert MODELS == ["biased_mf", "ials"]  # a new model must join this suite


@pytest.fixture(scope="module", params=MODELS)
def trained(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    metrics = train(compose_train([f"model={request.param}", "model.visual_mode=none", "model.k=4", "trainer.max_epochs=3",
                                   "logger=none", "export=true"], tmp))
    return request.param, tmp / "run", metrics


def test_checkpoint_round_trip_gives_the_same_scores(trained):
    _, run, _ = trained
    data = load_run_data(run)
    model = load_model(data, resolve_checkpoint(run, "tested"))
    again = load_model(data, resolve_checkpoint(run, "tested"))
    users, items = torch.arange(5), torch.arange(5)
    torch.testing.assert_close(model.predict_ratings(users, items), again.predict_ratings(users, items))
    tables = model.effective_factors()
    assert all(torch.isfinite(t).all() for t in tables.values() if torch.is_tensor(t))


def test_metrics_are_finite_and_name_the_monitored_best(trained):
    name, _, metrics = trained
    monitor = "val/ndcg@10" if name == "ials" else "val/rmse"
    assert f"{monitor}_best" in metrics
    assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))


def test_bundle_serves_with_numpy_only(trained):
    _, run, _ = trained
    code = (f"import sys; from visrec.serving import Recommender; rec = Recommender.load({str(run / 'export')!r}); "
            "ids, scores = rec.recommend([rec.user_ids[0]], k=3); assert ids.shape == (1, 3); "
            "assert 'torch' not in sys.modules and 'pytorch_lightning' not in sys.modules; print(rec.score_kind)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ("preference" if trained[0] == "ials" else "rating")
