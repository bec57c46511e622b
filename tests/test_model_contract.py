"""The contract every registered model keeps (one parametrized suite, as timm and implicit test all their
models): built from a config on tiny data, trained a few epochs, its checkpoint restored by evaluate.py
with the same scores, exported, the bundle loaded with numpy only and used to recommend."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf, open_dict

from visrec.evaluation import FactorScorer
from visrec.models.contract import RecommenderModel
from visrec.pipeline.evaluation import load_model, load_run_data, resolve_checkpoint
from visrec.pipeline.training import train

from conftest import CONF, compose_train

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
PREFERENCE_MODELS = ("bpr", "ials", "vbpr")  # scores that are not ratings: no RMSE, a "preference" bundle


def test_every_model_config_is_covered():
    assert MODELS == ["als", "bias_only", "biased_mf", "bpr", "hybrid", "ials", "user_knn", "vbpr", "visual_knn"]  # a new model must join this suite


def exportable(name: str) -> bool:
    return get_class(yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())["_target_"]).exportable


def shrunk_overrides(name: str) -> list[str]:
    """A model's config made small for the suite: no image prior, K = 4, where the model has those keys."""
    keys = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
    shrunk = [o for key, o in (("visual_mode", "model.visual_mode=none"), ("k", "model.k=4"), ("k2", "model.k2=4")) if key in keys]
    if get_class(keys["_target_"]).uses_image_features({}):  # a model that always reads pictures (VBPR): random features
        shrunk.append("features=random")
    return shrunk


@pytest.fixture(scope="module", params=MODELS)
def trained(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    metrics = train(compose_train([f"model={request.param}", *shrunk_overrides(request.param), "trainer.max_epochs=3",
                                   "logger=none", f"export={str(exportable(request.param)).lower()}"], tmp))
    return request.param, tmp / "run", metrics


def test_checkpoint_round_trip_gives_the_same_scores(trained):
    _, run, _ = trained
    data = load_run_data(run)
    model = load_model(data, resolve_checkpoint(run, "tested"))
    again = load_model(data, resolve_checkpoint(run, "tested"))
    users, items = torch.arange(5), torch.arange(5)
    scorer, scorer_again = model.scorer(), again.scorer()
    torch.testing.assert_close(scorer.score_users(users), scorer_again.score_users(users))
    assert torch.isfinite(scorer.score_users(users)).all()
    if model.predicts_ratings:
        torch.testing.assert_close(scorer.predict(users, items), scorer_again.predict(users, items))


def test_metrics_are_finite_and_name_the_monitored_best(trained):
    name, _, metrics = trained
    monitor = "val/ndcg@10" if name in PREFERENCE_MODELS else "val/rmse"
    assert f"{monitor}_best" in metrics
    assert all(np.isfinite(v) for v in metrics.values() if isinstance(v, float))


def test_bundle_serves_with_numpy_only(trained):
    _, run, _ = trained
    if not exportable(trained[0]):
        pytest.skip(f"{trained[0]} has no factor tables: export refuses it (test_a_model_without_factors_is_not_exported)")
    code = (f"import sys; from visrec.serving import Recommender; rec = Recommender.load({str(run / 'export')!r}); "
            "ids, scores = rec.recommend([rec.user_ids[0]], k=3); assert ids.shape == (1, 3); "
            "assert 'torch' not in sys.modules and 'pytorch_lightning' not in sys.modules; print(rec.score_kind)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ("preference" if trained[0] in PREFERENCE_MODELS else "rating")


# ---- a third model, written against the contract only -------------------------------------------------
class BiasOnly(RecommenderModel):
    """r̂_ui = μ + b_u + b_i trained by Adam on observed ratings: the smallest model that keeps the contract.
    Nothing in the pipeline was changed for it: one class (here) and one config node (below)."""

    VALIDATION_METRICS = ("val/rmse",)
    DATA_KEYS = ("num_users", "num_items", "global_mean")

    def __init__(self, num_users: int, num_items: int, global_mean: float, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.user_bias = torch.nn.Parameter(torch.zeros(num_users))  # (U,)
        self.item_bias = torch.nn.Parameter(torch.zeros(num_items))  # (N,)
        self.register_buffer("user_counts", torch.zeros(num_users))
        self.register_buffer("item_counts", torch.zeros(num_items))
        self._sse = self._n = 0.0

    def set_train_counts(self, user_counts, item_counts):
        self.user_counts.copy_(user_counts)
        self.item_counts.copy_(item_counts)

    known_users = property(lambda self: self.user_counts > 0)
    known_items = property(lambda self: self.item_counts > 0)
    item_train_counts = property(lambda self: self.item_counts)

    def tables(self):
        U, N = len(self.user_bias), len(self.item_bias)
        return {"user_factors": torch.zeros(U, 1), "user_bias": (self.user_bias * self.known_users).detach().clone(),
                "item_factors": torch.zeros(N, 1), "item_bias": (self.item_bias * self.known_items).detach().clone(),
                "global_mean": float(self.hparams.global_mean)}

    def scorer(self, name="model"):
        return FactorScorer(**self.tables(), name=name)

    def bundle_arrays(self):
        arrays = {k: v.numpy().astype(np.float32) for k, v in self.tables().items() if k != "global_mean"}
        arrays.update(known_users=self.known_users.numpy(), known_items=self.known_items.numpy())
        return arrays, {"global_mean": self.hparams.global_mean, "rating_range": None, "score": "rating", "model_kind": "BiasOnly"}

    def training_step(self, batch, batch_idx):
        users, items, ratings = batch
        loss = (self.hparams.global_mean + self.user_bias[users] + self.item_bias[items] - ratings).pow(2).mean()
        self.log("train/loss", loss, on_epoch=True, on_step=False, batch_size=len(ratings))
        return loss

    def validation_step(self, batch, batch_idx):
        users, items, ratings = batch
        err = self.scorer().predict(users, items) - ratings
        self._sse, self._n = self._sse + float(err.pow(2).sum()), self._n + len(err)

    def _log_rmse(self, stage):
        if self._n:
            self.log(f"{stage}/rmse", (self._sse / self._n) ** 0.5)
        self._sse = self._n = 0.0

    def on_validation_epoch_end(self):
        self._log_rmse("val")

    test_step = validation_step

    def on_test_epoch_end(self):
        self._log_rmse("test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def test_a_third_model_needs_no_pipeline_change(tmp_path):
    cfg = compose_train(["logger=none", "trainer.max_epochs=3", "export=true", "model.visual_mode=none"], tmp_path)
    with open_dict(cfg):  # what conf/model/bias_only.yaml would hold
        cfg.model = OmegaConf.create({"_target_": f"{__name__}.BiasOnly", "num_users": "???", "num_items": "???",
                                      "global_mean": "???", "lr": 0.05})
    metrics = train(cfg)
    run = tmp_path / "run"
    assert np.isfinite(metrics["test/rmse"]) and np.isfinite(metrics["val/rmse_best"])
    report = json.loads(next((run / "eval").glob("*/metrics.json")).read_text())["metrics"]
    assert report["model/warm/ndcg@10"] is not None and report["model/warm/rmse"] is not None
    data = load_run_data(run)
    model = load_model(data, resolve_checkpoint(run, "tested"))  # evaluate.py's loader
    assert isinstance(model, BiasOnly) and bool(model.known_items.any())
    code = (f"from visrec.serving import Recommender; rec = Recommender.load({str(run / 'export')!r}); "
            "ids, _ = rec.recommend([rec.user_ids[0]], k=3); print(ids.shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "(1, 3)", done.stderr[-2000:]


def test_a_class_outside_the_contract_is_refused_naming_the_key(tmp_path):
    cfg = compose_train(["logger=none"], tmp_path)
    with open_dict(cfg):
        cfg.model = OmegaConf.create({"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 1})
    with pytest.raises(ValueError, match=r"model._target_='torch.nn.Linear' is not a visrec model"):
        train(cfg)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_ials_gets_one_whole_batch_per_epoch(tmp_path):
    from visrec.pipeline.setup import build_model

    cfg = compose_train(["model=ials", "model.visual_mode=none", "data.batch_size=7", "logger=none"], tmp_path)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    assert len(datamodule.train_dataloader()) > 1  # rating batches of 7 before a model declares otherwise
    build_model(cfg, datamodule)
    (batch,) = list(datamodule.train_dataloader())
    assert len(batch[0]) == len(datamodule.tensors["train"])


def test_the_evaluator_says_when_a_model_has_no_rating_metrics(trained):
    name, run, _ = trained
    (report,) = (run / "eval").glob("*/report.txt")
    text = report.read_text()
    assert ("No RMSE/MAE for model, popularity" in text) == (name in PREFERENCE_MODELS)
    assert ("model: RMSE" in text) == (name not in PREFERENCE_MODELS)


def test_an_unknown_user_gets_a_meaningful_fallback(trained):
    from visrec.serving import Recommender

    name, run, _ = trained
    if not exportable(name):
        pytest.skip(f"{name} cannot be exported (no bundle to serve)")
    rec = Recommender.load(run / "export")
    ids, scores = rec.recommend(["nobody"], k=5, on_unknown="fallback")
    items = rec.item_index(list(ids[0]))
    if name in PREFERENCE_MODELS:  # p_u·q_i has no user: the most popular items, by training interactions
        order = np.lexsort((np.arange(len(rec.item_popularity)), -rec.item_popularity))
        expected = [i for i in order if rec.scorable_items[i]][:5]
        assert list(items) == expected and np.allclose(scores[0], rec.item_popularity[expected])
        assert rec.score("nobody", list(ids[0][:1]), on_unknown="fallback")[0] == rec.item_popularity[items[0]]
    else:  # a user without ratings: μ + b_i
        assert np.allclose(scores[0], rec.global_mean + rec.item_bias[items], atol=1e-5)


def test_a_model_without_factors_is_not_exported(trained, tmp_path):
    """export=true is refused at set-up, before anything is written, naming the key; the export module
    refuses the trained run's checkpoint with a clear message (not a NotImplementedError)."""
    from visrec.export import ExportError
    from visrec.pipeline.exporting import export_run

    name, run, _ = trained
    if exportable(name):
        pytest.skip(f"{name} exports factor tables")
    cfg = compose_train([f"model={name}", "export=true", "logger=none"], tmp_path)
    with pytest.raises(ValueError, match=r"export=true.*cannot be exported.*set export=false"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ExportError, match="cannot be exported"):
        export_run(run, out_dir=tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
