"""``evaluate_run(cfg)``: rebuild a training run's model and exact split from its directory, evaluate it
against a popularity baseline, and write the report next to the run.

Reads from the run directory (written by :func:`visrec.pipeline.training.train`):
    config.yaml, user_map.parquet, item_map.parquet, split.parquet, item_images.parquet (visual models),
    checkpoints/best.ckpt or last.ckpt (or any checkpoint path)
Writes ``<run_dir>/eval/<checkpoint>_<protocol>/``: metrics.json, metrics.csv, report.txt (atomically).

Imports no Lightning (nor does export, which loads models here): a built-in model's checkpoint loads into
its torch-only scoring half (:mod:`visrec.models.registry`), and the run's per-epoch CSV log is not touched.
Another model (its own class) or another logger imports what it needs.
"""
from __future__ import annotations

import logging
import math
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from visrec.data.errors import DataError
from visrec.data.idmap import IdMap
from visrec.evaluation import EvaluationReport, Interactions, PopularityScorer, evaluate
from visrec.evaluation.ranking import DEFAULT_BATCH_ELEMENTS
from visrec.features import ItemFeatures
from visrec.features.cache import FeatureCache
from visrec.features.images import image_file_exists
from visrec.models.divergence import check_finite_model
from visrec.models.registry import build_scoring
from visrec.models.scoring import ScoringModel
from visrec.pipeline.run_folder import PROTOCOL_VARIANT
from visrec.pipeline.setup import extract_features, model_class, model_options
from visrec.utils.atomic import atomic_dir, strict_json_text, writing
from visrec.utils.parquet import read_parquet_frame

log = logging.getLogger(__name__)

SPLIT_COLUMNS = ("user", "item", "rating", "part")


@dataclass
class RunData:
    """A run's saved data, in index space."""

    config: DictConfig
    user_map: IdMap
    item_map: IdMap
    parts: dict[str, Interactions]  # train, val, test
    image_paths: list  # (N,) path or None
    # (N,) sha256 of the picture each item's training features came from (None: no picture used); None for a
    # run written before visrec recorded them (nothing to check against)
    image_digests: list | None = None
    run_dir: Path | None = None


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(path, f"missing: {what}. Is {path.parent} a run directory written by train.py?")
    return path


def load_run_data(run_dir: str | Path) -> RunData:
    """Config, id maps and split of a run directory, with every id checked against the maps."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(run_dir, "run directory not found")
    config = OmegaConf.load(_require(run_dir / "config.yaml", "the run's resolved config"))
    user_map = IdMap.load(_require(run_dir / "user_map.parquet", "the user id map"), name="user")
    item_map = IdMap.load(_require(run_dir / "item_map.parquet", "the item id map"), name="item")
    split_path = _require(run_dir / "split.parquet", "the split")
    frame = read_parquet_frame(split_path, dictionary=["user", "item", "part"])  # ids looked up once per distinct value
    missing = [c for c in SPLIT_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(split_path, f"missing column(s) {missing}; expected {list(SPLIT_COLUMNS)}")
    indices = {}
    for field_name, id_map, map_file in (("user", user_map, "user_map.parquet"), ("item", item_map, "item_map.parquet")):
        idx = _lookup_column(frame[field_name], id_map)  # (R,) index, −1 where the id is absent (or null)
        if (idx < 0).any():
            row = int((idx < 0).argmax())
            raise DataError(split_path, f"{int((idx < 0).sum())} row(s) name {field_name} ids absent from {map_file}, "
                            f"first at row {row + 1} ({frame[field_name].iloc[row]!r})", field=field_name)
        indices[field_name] = torch.from_numpy(idx)
    ratings = torch.tensor(frame["rating"].to_numpy(dtype="float32"))
    parts = {}
    for part in ("train", "val", "test"):
        mask = torch.from_numpy((frame["part"] == part).to_numpy(dtype=bool, copy=True))
        parts[part] = Interactions(indices["user"][mask], indices["item"][mask], ratings[mask])
    unknown_parts = sorted(set(frame["part"].unique()) - {"train", "val", "test"})
    if unknown_parts:
        raise DataError(split_path, f"unknown part name(s) {unknown_parts}; expected train, val, test", field="part")
    image_paths: list = [None] * len(item_map)
    image_digests: list | None = None
    images_file = run_dir / "item_images.parquet"
    if images_file.exists():
        images = read_parquet_frame(images_file)
        rows = item_map.lookup(images["item"].to_numpy())
        from_run = images["image_path_from_run"] if "image_path_from_run" in images else [None] * len(images)
        for row, path, relative in zip(rows, images["image_path"], from_run):
            if row >= 0:
                image_paths[row] = _picture_path(run_dir, path, relative)
        if "image_sha256" in images:
            image_digests = [None] * len(item_map)
            for row, digest in zip(rows, images["image_sha256"]):
                if row >= 0 and not pd.isna(digest):
                    image_digests[row] = str(digest)
    return RunData(config, user_map, item_map, parts, image_paths, image_digests, run_dir)


def _picture_path(run_dir: Path, absolute, relative) -> str | None:
    """Where an item's picture is now: the path recorded relative to the run directory when a file is there
    (the project folder moved with its run), else the absolute path recorded at training (None: no picture)."""
    if not pd.isna(relative):
        moved = run_dir / str(relative)
        if image_file_exists(moved):
            return str(moved)
    return None if pd.isna(absolute) else str(absolute)


@contextmanager
def _usable_cache_dir(cache_dir: str):
    """``cache_dir`` when that folder exists; else a temporary folder, removed afterwards (said in one line)."""
    if Path(cache_dir).expanduser().is_dir():
        yield cache_dir
        return
    print(f"feature cache {cache_dir} not found (a run moved to another place or machine?): the pictures go through the "
          "CNN without a cache; evaluate.py feature_cache_dir=<folder> (export: --feature-cache-dir) names another")
    with tempfile.TemporaryDirectory(prefix="visrec-features-") as temporary:
        yield temporary


def match_training_pictures(data: RunData, features: ItemFeatures, cache_dir: str | Path) -> ItemFeatures:
    """The features the run was trained with, or a DataError.

    Items the run used no picture for stay imageless (a picture added since then is ignored, as the model never
    saw it). A picture that is missing now or whose content changed (its sha256 differs from
    ``item_images.parquet``'s ``image_sha256``) gets its training features back from the feature cache, which
    is keyed by content digest; when the cache no longer has them either, DataError naming item_images.parquet,
    how many pictures are missing or changed and a few of them — never features the checkpoint was not
    trained with. Runs that recorded no digests are returned as they are."""
    recorded = data.image_digests
    if recorded is None:
        return features
    now = features.digests or [None] * len(recorded)
    vectors, has_image = features.features.clone(), features.has_image.clone()  # (N, D), (N,)
    unused = torch.tensor([d is None for d in recorded])
    vectors[unused], has_image[unused] = 0.0, False
    differ = [i for i, digest in enumerate(recorded) if digest is not None and now[i] != digest]
    if differ:
        cache = FeatureCache(cache_dir, features.backbone_key, features.feature_dim)
        rows = {i: cache.get(recorded[i]) for i in differ}
        lost = [i for i in differ if rows[i] is None]
        if lost:
            missing = [i for i in lost if now[i] is None]
            changed = [i for i in lost if now[i] is not None]
            used = sum(d is not None for d in recorded)
            examples = ", ".join(f"{data.item_map.raw_ids[i]!r} ({data.image_paths[i]})" for i in lost[:3])
            images_file = None if data.run_dir is None else data.run_dir / "item_images.parquet"
            raise DataError(images_file, f"{len(missing)} of the {used} pictures the model was trained with are missing now and "
                            f"{len(changed)} changed (e.g. {examples}), and the feature cache ({cache.path}) no longer holds "
                            "their training features: this checkpoint would be scored with features it was never trained "
                            "with. Restore the pictures (item_images.parquet in the run directory records their paths and "
                            "sha256 digests) or the feature cache")
        for i in differ:
            vectors[i], has_image[i] = torch.from_numpy(rows[i]), True
        print(f"{len(differ)} of the run's pictures are missing or changed since training; their training features "
              f"were taken from the feature cache by content digest")
    return replace(features, features=vectors, has_image=has_image, digests=list(recorded))


def resolve_checkpoint(run_dir: str | Path, ckpt: str) -> Path:
    """``tested`` (what train.py tested: ``refit`` when the run has one, else ``best``), ``best`` / ``last`` /
    ``refit`` (in ``<run_dir>/checkpoints``) or a path."""
    run_dir = Path(run_dir)
    if ckpt == "tested":
        ckpt = "refit" if (run_dir / "checkpoints" / "refit.ckpt").is_file() else "best"
    path = run_dir / "checkpoints" / f"{ckpt}.ckpt" if ckpt in ("best", "last", "refit") else Path(ckpt)
    if not path.is_file():
        found = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt")) if (run_dir / "checkpoints").is_dir() else []
        raise DataError(path, f"checkpoint not found (checkpoints in {run_dir / 'checkpoints'}: {found or 'none'})")
    return path


def load_model(data: RunData, ckpt_path: Path, feature_cache_dir: str | None = None) -> ScoringModel:
    """The run's model with the checkpoint's weights (``weights_only=True``), checked against the split:
    a built-in model's scoring half (:mod:`visrec.models.registry`), or the class ``model._target_`` names."""
    return load_model_and_features(data, ckpt_path, feature_cache_dir)[0]


def new_model(cfg: DictConfig) -> ScoringModel:
    """The untrained model of a run's config that its checkpoint loads into: a built-in model's scoring
    half (no Lightning import), else an instance of the visrec model ``model._target_`` names."""
    model = build_scoring(cfg.model.get("_target_"), model_options(cfg))
    if model is None:
        model_class(cfg)  # a visrec model, or a ValueError naming model._target_
        model = instantiate(cfg.model)
    return model


def load_model_and_features(data: RunData, ckpt_path: Path, feature_cache_dir: str | None = None):
    """(model, ItemFeatures or None): :func:`load_model` plus the image features it was given (the run's
    features config; the cache in ``feature_cache_dir`` when given, else the one config.yaml names — when that
    folder does not exist, e.g. the run moved to another machine, the pictures go through the CNN without a
    cache and nothing is written outside the run)."""
    cfg = data.config
    model = new_model(cfg)
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        state = checkpoint["state_dict"]
    except Exception as error:  # not a checkpoint, truncated, or pickled objects
        raise DataError(ckpt_path, f"cannot be read as a Lightning checkpoint: {error}") from error
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise DataError(ckpt_path, f"does not match the run's config.yaml (model {cfg.model._target_}): {error}") from error
    train, val = data.parts["train"], data.parts["val"]
    trained_counts = model.item_train_counts  # (N,)
    counts = torch.bincount(train.items, minlength=len(trained_counts)).to(trained_counts.dtype)  # (N,)
    refit_counts = counts + torch.bincount(val.items, minlength=len(trained_counts)).to(counts.dtype)  # (N,) train + val
    model.trained_on_validation = len(val) > 0 and torch.equal(refit_counts, trained_counts)  # a refit model
    if not (torch.equal(counts, trained_counts) or model.trained_on_validation):
        raise DataError(ckpt_path, "was not trained on this run's split: its per-item training counts differ from split.parquet "
                        "(train, or train + val for a refit)")
    features = None
    if model.has_image_prior:
        with_features = cfg.copy()
        cache_dir = str(feature_cache_dir or with_features.features.cache_dir)
        with _usable_cache_dir(cache_dir) as usable:
            with open_dict(with_features):
                with_features.features.cache_dir = usable
            features = extract_features(with_features, data.image_paths, list(data.item_map.raw_ids), announce=False)
            features = match_training_pictures(data, features, usable)
        model.attach_features(features.features, features.has_image, fit=False)
    return model.eval(), features


# The warm items' activity (long-tail) segments by default: 1-5, 6-20 and 21+ training interactions.
DEFAULT_ACTIVITY_EDGES = (5, 20)


def checked_activity_edges(edges, key: str) -> list[int]:
    """``edges`` as a list of increasing positive integers; ValueError naming the config ``key`` otherwise."""
    from visrec.evaluation.segments import activity_buckets

    try:
        edges = _listed(edges, key, "a list of increasing positive integers (e.g. [5, 20]; [] for none)") if edges else []
        activity_buckets(edges)
    except ValueError:
        raise ValueError(f"{key} must be a list of increasing positive integers (interaction counts where the warm items' "
                         f"activity segments end, e.g. [5, 20]; [] for none), got {edges}") from None
    return edges


def _listed(value, key: str, expected: str) -> list:
    """``value`` (a list / tuple / Hydra ListConfig) as a list; ValueError naming ``key`` for a scalar or a string."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, ListConfig)):
        raise ValueError(f"{key} must be {expected}, got {value!r}")
    return list(value)


def checked_protocol(options, prefix: str = "") -> dict:
    """The evaluation protocol of ``options`` (a mapping: ks, relevance_threshold, exclude_train, baselines,
    activity_edges, ties; evaluate.py's defaults for keys it lacks), checked before anything is loaded or trained.
    Returns {"ks", "threshold", "exclude_train", "baselines", "activity_edges", "ties"}. Raises ValueError naming the
    key as the user sets it (``<prefix><name>``: ``eval.`` in train.py, none in evaluate.py)."""
    from visrec.evaluation import DEFAULT_KS
    from visrec.evaluation.segments import PROTOCOLS
    from visrec.evaluation.ties import TIE_RULES

    ks = _listed(options.get("ks", DEFAULT_KS), f"{prefix}ks", "a non-empty list of positive integers")
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"{prefix}ks must be a non-empty list of positive integers, got {ks}")
    threshold = options.get("relevance_threshold", 4.0)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ValueError(f"{prefix}relevance_threshold must be a finite number, got {threshold!r}")
    exclude_train = options.get("exclude_train", "all")
    if exclude_train not in PROTOCOLS:
        raise ValueError(f"{prefix}exclude_train must be one of {PROTOCOLS}, got {exclude_train!r}")
    baselines = _listed(options.get("baselines", ["popularity"]), f"{prefix}baselines", "a list of baseline names ([] for none)")
    unknown = [b for b in baselines if b != "popularity"]
    if unknown:
        raise ValueError(f"{prefix}baselines: unknown baseline(s) {unknown}; available: popularity")
    activity_edges = checked_activity_edges(options.get("activity_edges", DEFAULT_ACTIVITY_EDGES), f"{prefix}activity_edges")
    ties = options.get("ties", "expected")
    if ties not in TIE_RULES:
        raise ValueError(f"{prefix}ties must be one of {TIE_RULES} (expected: each metric averaged over a random order of "
                         f"tied items; index: ties ranked by lower item index), got {ties!r}")
    return {"ks": ks, "threshold": float(threshold), "exclude_train": exclude_train, "baselines": baselines,
            "activity_edges": activity_edges, "ties": ties}


def model_scorer(model: ScoringModel, name: str = "model"):
    """The model's evaluator scorer (model contract: ``scorer``)."""
    return model.scorer(name)


def run_evaluation(model: torch.nn.Module, parts: dict[str, Interactions], num_users: int, num_items: int,
                   ks, threshold: float, exclude_train: str, baselines=("popularity",),
                   max_batch_elements: int = DEFAULT_BATCH_ELEMENTS, part: str = "test",
                   activity_edges=(), ties: str = "expected") -> EvaluationReport:
    """The model and the baselines on one part of the split (training data = train + val); ``activity_edges``:
    the warm items' long-tail segments (:mod:`visrec.evaluation.segments`); ``ties``: how tied scores are ranked
    (:mod:`visrec.evaluation.ties`)."""
    check_finite_model(model, "evaluation")
    seen = Interactions.concat(parts["train"], parts["val"]) if part == "test" else parts["train"]
    scorers = [model_scorer(model)]
    for baseline in baselines:
        if baseline != "popularity":
            raise ValueError(f"unknown baseline {baseline!r}; available: popularity")
        scorers.append(PopularityScorer.from_interactions(seen.items, num_items))
    # Warm = what the model scores with its trained factors (its own known users / items), so the
    # evaluator's warm segment is exactly trainer.test's test/rmse set and the bundle's known items.
    report = evaluate(scorers, seen, parts[part], num_users, num_items, ks=ks, threshold=threshold,
                      exclude_train=exclude_train, max_batch_elements=max_batch_elements,
                      known_users=model.known_users, known_items=model.known_items, activity_edges=activity_edges,
                      ties=ties)
    report.protocol["baselines"] = list(baselines)  # part of the rules: a report without them is another report
    return report


def write_report(report: EvaluationReport, out_dir: Path, extra: dict | None = None, user_ids=None) -> None:
    """metrics.json (protocol + flat metrics), metrics.csv (one row per metric), report.txt and
    per_user.parquet (scorer, segment, user — the raw id when ``user_ids`` (U,) is given — and each ranking
    metric@K of every ranked user: what paired tests between models need).

    The folder is written whole or not at all (:func:`~visrec.utils.atomic.atomic_dir`): a file that cannot
    be written raises WriteError naming it, and ``out_dir`` (an earlier report, or none) stays as it was."""
    # A metric over an empty set (e.g. no rankable user in a segment) is NaN in the report: JSON null.
    metrics = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in report.flat().items()}
    metrics_text = strict_json_text(out_dir / "metrics.json", {"protocol": report.protocol, **(extra or {}), "metrics": metrics})
    with atomic_dir(out_dir, "report") as tmp:
        with writing(out_dir / "metrics.json"):
            (tmp / "metrics.json").write_text(metrics_text, encoding="utf-8")
        with writing(out_dir / "metrics.csv"):
            pd.DataFrame(report.rows()).to_csv(tmp / "metrics.csv", index=False)
        with writing(out_dir / "report.txt"):
            (tmp / "report.txt").write_text(report.format() + "\n", encoding="utf-8")
        with writing(out_dir / "per_user.parquet"):
            pd.DataFrame(report.per_user_rows(user_ids)).to_parquet(tmp / "per_user.parquet", index=False)


def _lookup_column(column: pd.Series, id_map: IdMap) -> np.ndarray:
    """(R,) indices of a split column's raw ids in ``id_map``, −1 for an id it lacks or a null; a Categorical
    column (string ids read dictionary-encoded) is looked up once per distinct id, then mapped by its codes."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return id_map.lookup(column.to_numpy())
    codes = column.cat.codes.to_numpy()  # (R,) −1 for null
    per_value = np.append(id_map.lookup(column.cat.categories.to_numpy()), -1)  # (D + 1,): the last for code −1
    return per_value[codes]


def report_folder(folder: Path, protocol: dict) -> Path:
    """Where a report of ``protocol`` goes: ``folder``, unless it holds a report of another protocol (the one
    written after training, say, and this evaluation asks for another relevance threshold or K): then
    ``<folder>_protocol-<8 hex digits of the protocol>``, so the earlier report is never replaced by numbers
    under other rules (the sweep summary reads only the folders without the suffix)."""
    import hashlib
    import json

    try:
        existing = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("protocol")
    except (OSError, ValueError, AttributeError):
        return folder
    if existing is None:
        return folder
    # Reports written before the protocol named its baselines, or its tie rule (then: index order).
    existing = {"baselines": ["popularity"], "ties": "index", **existing}
    if existing == json.loads(json.dumps(protocol)):
        return folder
    digest = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:8]
    return folder.with_name(f"{folder.name}{PROTOCOL_VARIANT}{digest}")


def evaluate_run(cfg: DictConfig) -> EvaluationReport:
    """Entry point of ``evaluate.py`` (see ``conf/evaluate.yaml``). Raises :class:`~visrec.data.DataError` (a
    run folder or file that cannot be evaluated) and :class:`~visrec.pipeline.config.OptionError` (an option
    refused, named by its key) before scoring."""
    from visrec.pipeline.config import refused_options_as_option_errors

    run_dir = Path(cfg.run_dir)
    with refused_options_as_option_errors():  # a refused option is one line in evaluate.py (OptionError)
        if cfg.part not in ("test", "val"):
            raise ValueError(f"part must be test or val (the parts a trained model can be scored on), got {cfg.part!r}")
        protocol = checked_protocol(cfg)  # before anything is loaded
        data = load_run_data(run_dir)
        ckpt_path = resolve_checkpoint(run_dir, cfg.ckpt)
        model = load_model(data, ckpt_path, cfg.get("feature_cache_dir"))
    if cfg.part == "val" and model.trained_on_validation:
        raise DataError(ckpt_path, "was refit on train + val, so part=val would score ratings it was trained on; evaluate part=test, "
                        "or ckpt=best for the validated model")
    report = run_evaluation(model, data.parts, len(data.user_map), len(data.item_map), ks=protocol["ks"],
                            threshold=protocol["threshold"], exclude_train=protocol["exclude_train"],
                            baselines=protocol["baselines"], max_batch_elements=int(cfg.max_batch_elements), part=cfg.part,
                            activity_edges=protocol["activity_edges"], ties=protocol["ties"])
    out_dir = report_folder(run_dir / "eval" / f"{ckpt_path.stem}_{cfg.part}_{cfg.exclude_train}", report.protocol)
    write_report(report, out_dir, {"checkpoint": str(ckpt_path), "part": cfg.part}, user_ids=list(data.user_map.raw_ids))
    if cfg.get("log_to_run_logger", True):
        log_to_loggers(data.config.get("logger"), report, run_dir)
    print(report.format())
    print(f"Written to {out_dir}")
    return report


# Loggers that keep one row per epoch; evaluate.py does not write to them (compared by name: no Lightning import).
PER_EPOCH_CSV_LOGGERS = ("visrec.tracking.epoch_csv.EpochCSVLogger", "pytorch_lightning.loggers.CSVLogger",
                         "lightning.pytorch.loggers.CSVLogger")


def log_to_loggers(logger_cfg: DictConfig | None, report: EvaluationReport, run_dir: Path | None = None) -> None:
    """Send the flat metrics (prefixed ``eval/``) to each logger configured for the run; a W&B logger
    continues the run's own W&B run (its id is in ``wandb_run_id.txt``). Per-epoch CSV logs (``logger=csv``;
    Lightning's CSVLogger in older runs) are left alone: an evaluation is no epoch, and its CSV is the report's
    own ``metrics.csv``."""
    for node in (logger_cfg or {}).values():
        if node is None or "_target_" not in node or node._target_ in PER_EPOCH_CSV_LOGGERS:
            continue
        saved_id = None if run_dir is None else run_dir / "wandb_run_id.txt"
        if node._target_.endswith("make_wandb_logger") and saved_id is not None and saved_id.is_file():
            node = node.copy()
            node.run_id = saved_id.read_text().strip()
        logger = instantiate(node)
        logger.log_metrics({f"eval/{k}": float(v) for k, v in report.flat().items()})
        logger.save()
        logger.finalize("success")
        if hasattr(logger, "experiment") and node._target_.endswith("make_wandb_logger"):
            from visrec.tracking.wandb_logger import finish_wandb_run

            finish_wandb_run(logger.experiment)
