"""Export bundles from a run directory's checkpoint, or from a model at the end of training."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from visrec.export import export_model
from visrec.interactions import Interactions
from visrec.pipeline.evaluation import load_model_and_features, load_run_data, resolve_checkpoint


def export_run(run_dir: str | Path, ckpt: str = "tested", out_dir: str | Path | None = None,
               feature_cache_dir: str | Path | None = None) -> Path:
    """Bundle for ``<run_dir>``'s checkpoint (``tested``, ``best``, ``last``, ``refit`` or a path; see
    ``resolve_checkpoint``); default ``<run_dir>/export``. ``feature_cache_dir``: the feature cache to read
    (default: the one the run's config.yaml names), as ``evaluate.py feature_cache_dir=``."""
    run_dir = Path(run_dir)
    data = load_run_data(run_dir)
    ckpt_path = resolve_checkpoint(run_dir, ckpt)
    model, features = load_model_and_features(data, ckpt_path, None if feature_cache_dir is None else str(feature_cache_dir))
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    seen = Interactions.concat(data.parts["train"], data.parts["val"])
    return export_model(
        model, data.user_map, data.item_map, seen, out_dir or run_dir / "export",
        model_config=OmegaConf.to_container(data.config.model, resolve=True),
        metrics={**metrics, "checkpoint": str(ckpt_path)},
        backbone=None if features is None else features.backbone,
    )
