"""Entry points import only what they use: the evaluator's and export's modules do not import timm (it is
imported when a backbone is built, i.e. only for a model with an image prior), wandb or Lightning; evaluating
and exporting a run of a built-in model import no Lightning at all (its checkpoint loads into the model's
torch-only scoring half, :mod:`visrec.models.registry`; the run's per-epoch CSV log is left alone)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from hydra.utils import get_class, instantiate

from visrec.models.registry import LEGACY_TARGETS, SCORING_CLASSES
from visrec.pipeline.evaluation import load_model, load_model_and_features, load_run_data, resolve_checkpoint
from visrec.pipeline.training import train

from conftest import CONF, REPO, compose_train

LIGHTNING = ("lightning", "pytorch_lightning", "lightning_fabric", "torchmetrics")


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_evaluation_and_export_modules_import_no_timm_wandb_or_lightning():
    code = ("import sys, visrec.pipeline.evaluation, visrec.pipeline.exporting, visrec.export, visrec.export.__main__, "
            f"visrec.data, visrec.models.scoring, visrec.models.registry; print(sorted(m for m in ('timm', 'wandb', *{LIGHTNING}) if m in sys.modules))")
    assert run_python(code).strip() == "[]"


def test_every_model_config_has_a_registered_scoring_half():
    for path in sorted((CONF / "model").glob("*.yaml")):
        target = yaml.safe_load(path.read_text())["_target_"]
        assert target in SCORING_CLASSES, f"{path.name}: {target} has no scoring half in visrec.models.registry.SCORING_CLASSES"
    for target, scoring in SCORING_CLASSES.items():  # a legacy full path is checked through the path it moved to
        assert issubclass(get_class(LEGACY_TARGETS.get(target, target)), scoring), target
    for legacy, current in LEGACY_TARGETS.items():
        assert legacy in SCORING_CLASSES and SCORING_CLASSES[legacy] is SCORING_CLASSES[current], legacy


@pytest.fixture(scope="module", params=["biased_mf_visual", "ials"])
def run(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    overrides = (["model=biased_mf", "model.visual_mode=reg", "features=random", "data/split=cold_item"] if request.param == "biased_mf_visual"
                 else ["model=ials", "model.visual_mode=none"])
    train(compose_train([*overrides, "model.k=4", "trainer.max_epochs=2", "logger=csv"], tmp))
    return tmp / "run"


def test_evaluate_py_and_the_export_module_import_no_lightning(run, tmp_path):
    per_epoch = (run / "metrics_per_epoch.csv").read_bytes()
    code = (f"import runpy, sys\n"
            f"sys.argv = ['evaluate.py', 'run_dir={run}', 'exclude_train=positives']\n"
            f"runpy.run_path('evaluate.py', run_name='__main__')\n"
            f"sys.argv = ['visrec.export', '{run}', '--out', '{tmp_path / 'bundle'}']\n"
            f"runpy.run_module('visrec.export', run_name='__main__', alter_sys=True)\n"
            f"print(sorted(m for m in {LIGHTNING} if m in sys.modules))\n")
    imported = run_python(code).strip().splitlines()[-1]
    assert imported == "[]", f"evaluate.py / python -m visrec.export imported {imported}"
    assert (run / "eval" / "best_test_positives" / "metrics.json").is_file() and (tmp_path / "bundle" / "manifest.json").is_file()
    assert (run / "metrics_per_epoch.csv").read_bytes() == per_epoch and not (run / "csv").exists()  # left alone


def test_the_scoring_half_scores_and_bundles_as_the_lightning_model(run):
    data = load_run_data(run)
    ckpt = resolve_checkpoint(run, "tested")
    light, features = load_model_and_features(data, ckpt)
    full = instantiate(data.config.model)  # the LightningModule, as training built it
    full.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    if features is not None:
        full.attach_features(features.features, features.has_image, fit=False)
    assert type(light) is not type(full) and isinstance(full, type(light))
    (arrays, scalars), (expected_arrays, expected_scalars) = light.bundle_arrays(), full.bundle_arrays()
    assert scalars == expected_scalars and arrays.keys() == expected_arrays.keys()
    for name, array in arrays.items():
        np.testing.assert_array_equal(array, expected_arrays[name], err_msg=name)
    users, items = data.parts["test"].users, data.parts["test"].items
    torch.testing.assert_close(light.predict_ratings(users, items), full.predict_ratings(users, items))
    assert light.predicts_ratings == full.predicts_ratings and load_model(data, ckpt).has_image_prior == (features is not None)
