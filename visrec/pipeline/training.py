"""``train(cfg)``: build data, model, trainer from a composed Hydra config; fit; test; write results.

A run directory (``cfg.paths.output_dir``) ends up holding:
    config.yaml          the resolved config, data-derived sizes filled in
    user_map.parquet, item_map.parquet, split.parquet   the exact data the run saw
    checkpoints/best.ckpt, checkpoints/last.ckpt, checkpoints/refit.ckpt (refit=true)
    metrics.json         final metrics (test metrics of the tested checkpoint: refit.ckpt with refit=true,
                         else best.ckpt), wall times, and the split's counts (``split/val_warm``, ...:
                         :meth:`~visrec.data.datamodule.RatingsDataModule.split_counts`)
"""
from __future__ import annotations

import inspect
import logging
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from visrec.data.datamodule import RatingsDataModule
from visrec.data.partition import launched_process
from visrec.data.partition import remove as remove_partitions
from visrec.data.errors import DataError
from visrec.interactions import Interactions
from visrec.models.rating_metrics import COUNT_METRICS
from visrec.features import ItemFeatures
from visrec.pipeline.checkpointing import LastEpochMetrics, recorded_epoch_metrics
from visrec.pipeline.config import instantiate_node, refused_options_as_option_errors
from visrec.pipeline.setup import _instantiate_all, build_model, item_features, load_weights, model_class, model_options, store_weights
from visrec.pipeline.refit import LearningRateHistory, best_epoch_count, refit
from visrec.utils.atomic import write_json_atomic, write_text_atomic
from visrec.utils.report import format_table

log = logging.getLogger(__name__)


class RunFolderInUse(DataError):
    """The run folder already holds another run: refused before anything is written, and nothing is written
    into that folder (not even a multirun job's ``failed.json``: the folder belongs to the earlier run)."""

    leaves_folder_alone = True


# Keys a resumed run may set differently from the run it continues: where things are (`paths.*`, and any key
# named *dir, *dirpath, *path or *root: a moved folder or data), how long to train, and what is logged or
# reported after training. Anything else would continue the saved weights on other data or other settings.
RESUME_MAY_CHANGE = ("paths.", "trainer.max_epochs", "trainer.max_steps", "trainer.enable_progress_bar",
                     "trainer.enable_model_summary", "logger", "evaluate", "test", "export", "eval.", "task_name")


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def check_resume_matches(cfg: DictConfig, resume_dir: Path) -> None:
    """Refuse a resume whose settings differ from the run's ``config.yaml`` (other than
    :data:`RESUME_MAY_CHANGE`), naming each key with both values, before anything is read or written: a resumed
    run with another seed or split would continue the saved weights on a split whose test part they were partly
    trained on. Runs without a ``config.yaml`` (older versions) are not checked."""
    import yaml

    saved_file = resume_dir / "config.yaml"
    if not saved_file.is_file():
        return
    try:
        saved = _flatten(yaml.safe_load(saved_file.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise DataError(saved_file, f"cannot resume {resume_dir}: its saved configuration is unreadable: {error}") from error
    now = _flatten(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))

    def may_change(key: str) -> bool:
        if key.rsplit(".", 1)[-1].endswith(("dir", "dirpath", "path", "root")):  # where a file or folder is
            return True
        return any(key == allowed or (allowed.endswith(".") and key.startswith(allowed)) or key.startswith(allowed + ".")
                   for allowed in RESUME_MAY_CHANGE)

    differ = [key for key in sorted(set(saved) | set(now)) if not may_change(key)
              and now.get(key, "<unset>") != "???" and saved.get(key, "<unset>") != now.get(key, "<unset>")]
    if differ:
        listed = "; ".join(f"{key}: run {saved.get(key, '<unset>')!r}, now {now.get(key, '<unset>')!r}" for key in differ[:6])
        more = f" (and {len(differ) - 6} more)" if len(differ) > 6 else ""
        raise DataError(saved_file, f"cannot resume {resume_dir} with other settings than it was trained with: {listed}{more}. "
                                    "A resume continues the same training (it may change only where files are, "
                                    "trainer.max_epochs, logging and reporting): drop those overrides, or train a new run")


def check_run_folder_free(cfg: DictConfig, out_dir: Path) -> None:
    """Refuse to train a new run into a folder where one trained (its ``metrics.json`` or a checkpoint):
    Lightning would write ``best-v1.ckpt`` beside the earlier ``best.ckpt``, and ``evaluate.py`` and export of
    that folder would then read the earlier run's weights. Checked by rank 0 only (the other DDP processes
    start after it has written into the folder). A relaunched sweep is refused before any job starts
    (:meth:`visrec.pipeline.cross_validation.SweepSummary.on_multirun_start`)."""
    from visrec.pipeline.run_folder import held_run_files, reuse_advice

    if cfg.get("resume_dir") or _launcher_rank() != 0:
        return
    held = held_run_files(out_dir)
    if held:
        raise RunFolderInUse(out_dir, f"already holds a run ({held[0].relative_to(out_dir)}{' and more' if len(held) > 1 else ''}): "
                                      "training a new one into it would mix two runs' checkpoints and reports: "
                                      f"{reuse_advice(out_dir)} (hydra.run.dir=...)")


def _launcher_rank() -> int:
    """This process's rank as the launcher's environment gives it (Lightning's rank_zero_only; 0 when none)."""
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0)


def resume_settings(cfg: DictConfig) -> None:
    """``resume_dir=<run dir>``: continue that run — same directory, its ``last.ckpt``, its W&B run."""
    resume_dir = cfg.get("resume_dir")
    if not resume_dir:
        return
    resume_dir = Path(resume_dir)
    check_resume_matches(cfg, resume_dir)
    last = resume_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise DataError(last, f"cannot resume {resume_dir}: no last checkpoint (was it trained with callbacks=default?)")
    try:  # a truncated or corrupt file fails here, named, not inside Lightning after set-up
        torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - zip, unpickling and I/O errors alike
        raise DataError(last, f"cannot resume {resume_dir}: not a readable Lightning checkpoint (truncated or corrupt?): {error}") from error
    with open_dict(cfg):
        cfg.paths.output_dir = str(resume_dir)
        cfg.ckpt_path = str(last)


def make_loggers(cfg: DictConfig, out_dir: Path) -> list:
    """The configured loggers. A W&B logger gets the sweep's name as its group in a multirun, and
    the run id saved in the run directory when the run is resumed."""
    nodes = cfg.get("logger") or {}
    saved_id = out_dir / "wandb_run_id.txt"
    loggers = []
    for node in nodes.values():
        if node is None or "_target_" not in node:
            continue
        if node._target_.endswith("make_wandb_logger"):
            node = node.copy()
            with open_dict(node):
                if node.get("group") is None:
                    node.group = _sweep_name()
                if node.get("run_id") is None and saved_id.is_file():
                    node.run_id = saved_id.read_text().strip()
            logger = instantiate(node)
            write_text_atomic(saved_id, logger.experiment.id + "\n")
        else:
            logger = instantiate(node)
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        loggers.append(logger)
    return loggers


def _sweep_name() -> str | None:
    """The multirun's sweep directory name (jobs of one sweep share it), or None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).name


def check_options(cfg: DictConfig) -> None:
    """Refuse trainer and model settings that train nothing or nonsense, before anything is read or
    written (the model class checks its own options: ``check_options`` of the model contract)."""
    cls = model_class(cfg)
    _check_number_options(cls, model_options(cfg))
    cls.check_options(model_options(cfg))
    monitor, mode = cfg.get("monitor"), cfg.get("monitor_mode")
    if monitor is not None and monitor not in cls.VALIDATION_METRICS:
        raise ValueError(f"monitor={monitor} is not a metric {cls.__name__} logs during validation; choose one of {list(cls.VALIDATION_METRICS)}")
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"monitor_mode must be min or max, got {mode!r}")
    if OmegaConf.select(cfg, "paths.data_dir", default=None, throw_on_missing=False) == "":
        raise ValueError("paths.data_dir is empty: name a folder (an empty path would write into the current directory)")
    if OmegaConf.select(cfg, "data.path", default=None, throw_on_missing=False) == "":
        raise ValueError("data.path is empty: name the ratings file (data.path=<file>)")
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be a whole number from 0 to 4294967295 (numpy's and Lightning's seed range), got {seed!r}")
    check_trainer_options(cfg)
    strategy = str(cfg.trainer.get("strategy") or "")
    reason = cls.single_process_reason(model_options(cfg))
    if reason and ("ddp" in strategy or int(cfg.trainer.get("num_nodes") or 1) > 1):
        raise ValueError(f"{reason}; trainer.strategy={strategy or None}, "
                         f"trainer.num_nodes={cfg.trainer.get('num_nodes', 1)} would run several: use trainer=cpu or trainer=gpu")
    accelerator = str(cfg.trainer.get("accelerator") or "")
    on_gpus = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpus and ("ddp" in strategy or int(cfg.trainer.get("num_nodes") or 1) > 1) and cls.sparse_gradients_for(model_options(cfg)):
        raise ValueError(f"model.sparse_gradients=true gives the embedding tables sparse gradients, which DDP on GPUs "
                         f"(NCCL, trainer.strategy={strategy or None}) cannot all-reduce: set model.sparse_gradients=false "
                         f"model.optimizer._target_=torch.optim.Adam, or train on one GPU (trainer=gpu)")
    if cfg.get("test") and cfg.get("evaluate"):
        _eval_protocol(cfg.get("eval"))
    if cfg.get("export") and not cls.exportable:
        raise ValueError(f"export=true, but {cls.__name__} (model._target_={cfg.model._target_}) cannot be exported: a serving "
                         "bundle holds factor tables and this model has none (a bundle format for it is not built); set export=false")
    processes = configured_processes(cfg.trainer)
    if cfg.get("refit") and processes is not None and processes > 1:  # known from the config: before anything is read
        raise ValueError(f"refit=true runs in a single process; this trainer has {processes} (trainer.devices="
                         f"{cfg.trainer.get('devices')}, trainer.num_nodes={cfg.trainer.get('num_nodes', 1)}): use trainer=cpu "
                         "or trainer=gpu, or refit=false")


def configured_processes(trainer_cfg: DictConfig) -> int | None:
    """The number of training processes ``trainer.devices`` × ``trainer.num_nodes`` ask for, when the config says it
    (an integer, a list of device ids or a digit string); None for ``auto`` / -1 (Lightning decides when it is built)."""
    devices, nodes = trainer_cfg.get("devices"), trainer_cfg.get("num_nodes") or 1
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        devices = len(devices)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1 or isinstance(nodes, bool) or not isinstance(nodes, int):
        return None
    return devices * nodes


def check_validation_needs(cfg: DictConfig, datamodule: RatingsDataModule) -> None:
    """With no validation part (``data.val_ratio=0``), nothing may watch a ``val/*`` metric: refuse at
    set-up, naming the keys, instead of failing inside Lightning after the first epoch."""
    if datamodule.part_size("val") > 0:
        return
    watchers = [f"callbacks.{name}.monitor ({node.monitor})" for name, node in (cfg.get("callbacks") or {}).items()
                if node is not None and str(node.get("monitor") or "").startswith("val/")]
    if cfg.model.get("scheduler") is not None and str(cfg.model.get("scheduler_monitor") or "").startswith("val/"):
        watchers.append(f"model.scheduler_monitor ({cfg.model.scheduler_monitor})")
    if watchers:
        off = "callbacks=none" + (" model.scheduler=null" if any(w.startswith("model.") for w in watchers) else "")
        raise ValueError(f"there is no validation part (data.val_ratio={cfg.data.get('val_ratio')}), but {', '.join(watchers)} "
                         f"watch validation metrics: set data.val_ratio > 0, or train without them ({off})")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_number_options(cls: type, options: dict) -> None:
    """Refuse a non-number (``model.reg_bias=abc``, ``=true``) for a model option whose constructor
    default is a number, naming ``model.<key>``, before the model's own range checks compare it
    (null stays allowed: some options take it)."""
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        value = options.get(name)
        if _is_number(parameter.default) and value is not None and not _is_number(value):
            raise ValueError(f"model.{name} must be a number (the default is {parameter.default!r}), got {value!r}")


def check_trainer_options(cfg: DictConfig) -> None:
    """Refuse trainer settings that train nothing, before anything is read or written."""
    max_epochs = cfg.trainer.get("max_epochs")
    if max_epochs is not None and not (_is_number(max_epochs) and float(max_epochs).is_integer()):
        raise ValueError(f"trainer.max_epochs must be a whole number of epochs (or -1 with trainer.max_steps), got {max_epochs!r}")
    if max_epochs is not None and max_epochs != -1 and max_epochs < 1:
        raise ValueError(f"trainer.max_epochs must be >= 1 (or -1 with trainer.max_steps), got {max_epochs}: "
                         "a run with no training epoch has no result to test, evaluate or export")


def train(cfg: DictConfig) -> dict:
    """Fit the configured model; return the final metrics (also written to ``metrics.json``).

    Raises :class:`~visrec.data.DataError` (bad input) and :class:`~visrec.pipeline.config.OptionError` (a
    ``ValueError``: an option out of range, named by its config key) before training, and
    :class:`~visrec.models.divergence.DivergedError` when training produces non-finite weights."""
    # Set-up: everything is checked and built before training; an option refused here is one line (train.py).
    with refused_options_as_option_errors():
        check_options(cfg)
        check_run_folder_free(cfg, Path(cfg.paths.output_dir))
        resume_settings(cfg)
        out_dir = Path(cfg.paths.output_dir)  # made once the data and model are built (an option refused first leaves none)
        pl.seed_everything(cfg.seed, workers=True)

        datamodule: RatingsDataModule = instantiate_node(cfg.data)
        # Lightning's "ddp" runs this function in every process (its launcher, SLURM, torchrun); other strategies
        # (ddp_spawn, ...) start their processes inside the fit from rank 0's objects: no partition there.
        partitioned = model_class(cfg).PARTITIONED_DDP and str(cfg.trainer.get("strategy") or "") == "ddp"
        launched = launched_process(int(cfg.trainer.get("num_nodes") or 1)) if partitioned else None
        reads_partition = launched is not None and launched[0] > 0 and launched[1] > 1
        if reads_partition:  # rank >= 1 of a DDP run of ALS / iALS: only its own rows, written by rank 0
            datamodule.setup_partition(out_dir, *launched)
        else:
            datamodule.setup("fit")  # refuses a validation part with no warm rating, with the counts
        split_counts = datamodule.split_counts()
        if not reads_partition and _launcher_rank() == 0:  # once per run, not once per DDP process
            print(f"Split {datamodule.split.describe()}: {datamodule.counts_line(split_counts)}")
        check_validation_needs(cfg, datamodule)
        features = item_features(cfg, datamodule.image_paths, list(datamodule.item_map.raw_ids))
        # Seeded again: building a backbone to extract features draws from the global generator (and a cached run
        # builds none), so without this the initial weights would depend on whether pictures were read.
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        model = build_model(cfg, datamodule, features)
        out_dir.mkdir(parents=True, exist_ok=True)
        if features is not None:
            write_json_atomic(out_dir / "features_report.json", {"backbone_key": features.backbone_key, **vars(features.report)})
        if not reads_partition:  # a process holding only its own rows writes none of the run's data files
            write_text_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
            datamodule.save(out_dir, image_digests=None if features is None else features.digests)
        if not cfg.get("refit"):  # nothing merges the frames any more: training holds the tensors only
            datamodule.release_frames()

        loggers = make_loggers(cfg, out_dir)
        callbacks = _instantiate_all(cfg.get("callbacks"))
        lr_history = LearningRateHistory()
        from visrec.pipeline.strategies import CheckpointWriteIO, ClosedFormDDPStrategy

        # A failed checkpoint write: one line naming the file (unless the config brings its own plugins).
        trainer_options = {} if cfg.trainer.get("plugins") else {"plugins": [CheckpointWriteIO()]}
        if str(cfg.trainer.get("strategy") or "") == "ddp" and not any(p.requires_grad for p in model.parameters()):
            trainer_options["strategy"] = ClosedFormDDPStrategy()  # closed-form sweeps: no DistributedDataParallel wrapper
        trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks + [lr_history, LastEpochMetrics()], logger=loggers or False,
                                          **trainer_options)
        if trainer.world_size > 1 and model.single_process:  # before any process is launched
            raise ValueError(f"{type(model).__name__} trains in a single process; trainer={cfg.trainer.get('strategy', 'this trainer')} "
                             f"would run {trainer.world_size}: use trainer=cpu or trainer=gpu")
        if cfg.get("refit"):
            _check_refit_possible(trainer, datamodule)
        partition_run = partitioned and trainer.world_size > 1
        if partition_run:  # these models all-reduce their val/ and test/ sums themselves (and train/loss)
            warnings.filterwarnings("ignore", message=r".*sync_dist=True.*when logging on epoch level in distributed setting")
        if reads_partition and launched != (trainer.global_rank, trainer.world_size):
            raise RuntimeError(f"this process read the rows of process {launched[0]} of {launched[1]} (from its launcher's "
                               f"environment), but Lightning made it process {trainer.global_rank} of {trainer.world_size}")
        if partition_run and not reads_partition:
            if trainer.global_rank == 0:
                started = time.perf_counter()
                folder = datamodule.write_partitions(out_dir, trainer.world_size)
                print(f"Partitioned for {trainer.world_size} processes in {time.perf_counter() - started:.1f} s: {folder} "
                      "(each other process reads only its rows; removed when training ends)")
            else:  # a process that read the whole split itself (nothing in its environment said its rank)
                datamodule.row_owner = (trainer.global_rank, trainer.world_size)
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.perf_counter() - started
    if partition_run and trainer.is_global_zero:  # every process read its rows before it joined the fit
        remove_partitions(out_dir)

    metrics: dict = {"fit_seconds": round(fit_seconds, 3), "epochs": trainer.current_epoch,
                     **{f"split/{key}": value for key, value in split_counts.items()}}
    if cfg.get("ckpt_path"):  # resumed: a run resumed after its last epoch trains nothing and logs nothing
        metrics.update({k: _metric_value(k, v) for k, v in recorded_epoch_metrics(trainer).items()})
    metrics.update({k: _metric_value(k, v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))})
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.monitor and checkpoint.best_model_path:
        # Test the best model by the monitored metric, not the last epoch's.
        load_weights(model, checkpoint.best_model_path)
        metrics["best_checkpoint"] = checkpoint.best_model_path
        metrics[f"{checkpoint.monitor}_best"] = float(checkpoint.best_model_score)
    tested_checkpoint = metrics.get("best_checkpoint")
    if cfg.get("refit"):
        epochs = best_epoch_count(metrics["best_checkpoint"])
        tested_checkpoint = str(out_dir / "checkpoints" / "refit.ckpt")
        model, trainer, datamodule, refit_seconds = refit(cfg, datamodule, features, epochs, lr_history.rates, Path(tested_checkpoint))
        metrics.update({"refit/epochs": epochs, "refit/fit_seconds": round(refit_seconds, 3)})
        print(f"Refit on train + val ({len(datamodule.tensors['train'])} ratings) for the {epochs} epochs validation chose: "
              f"{refit_seconds:.1f} s; tested: {tested_checkpoint}")
    metrics["tested_checkpoint"] = tested_checkpoint
    # Closed-form steps after training, if any. In a partitioned run only rank 0 holds every training row, so
    # only it takes them; Lightning's DDP test set-up gives the other processes rank 0's module states.
    if not partition_run or trainer.is_global_zero:
        metrics.update(model.finish_training(datamodule.tensors["train"]))
    if model.weights_changed and tested_checkpoint and trainer.is_global_zero:
        store_weights(model, tested_checkpoint)
    if cfg.get("test"):
        (results,) = trainer.test(model, datamodule=datamodule, verbose=False)
        metrics.update({k: _metric_value(k, v) for k, v in results.items()})
    if not trainer.is_global_zero:  # other DDP processes stop here; rank 0 writes and reports
        return metrics
    write_json_atomic(out_dir / "metrics.json", metrics)
    report = bundle = None
    if cfg.get("test") and cfg.get("evaluate"):
        report = _evaluate_after_training(model, datamodule, out_dir, tested_checkpoint, cfg.get("eval"))
        metrics.update({f"eval/{key}": value for key, value in report.flat().items()})
    if cfg.get("export"):
        bundle = _export_after_training(cfg, model, datamodule, features, out_dir, metrics)
    if report is not None:
        from visrec.tracking.results import log_run_results

        log_run_results(loggers, report, model.scorer(), model.item_vectors(), Interactions.concat(datamodule.tensors["train"], datamodule.tensors["val"]),
                        datamodule.image_paths, datamodule.user_map.raw_ids, bundle, None if features is None else features.has_image)
    _finish_wandb(loggers)
    print(format_table(
        f"Results — {type(model).__name__} ({cfg.model._target_}), {datamodule.source_description}, split {datamodule.split.describe()}",
        [(k, metrics[k]) for k in ("test/rmse", "test/mae", "test/ratings", "test/rmse_cold", "test/mae_cold", "test/ratings_cold",
                                    "test/ndcg@10", "test/recall@10", "test/precision@10",
                                    f"{cfg.get('monitor') or 'val/rmse'}_best", "epochs", "fit_seconds", "refit/epochs", "refit/fit_seconds") if k in metrics],
    ))
    print(f"Run directory: {out_dir}")
    return metrics


def _metric_value(name: str, value) -> int | float:
    """A logged metric as a number for metrics.json and the results table: counts as int, the rest float."""
    return int(round(float(value))) if name.rsplit("/", 1)[-1] in COUNT_METRICS else float(value)


def _check_refit_possible(trainer: pl.Trainer, datamodule: RatingsDataModule) -> None:
    """``refit=true`` is refused before training when it could not run (not after an hour of fitting)."""
    if trainer.world_size > 1:
        raise ValueError(f"refit=true runs in a single process; this trainer has {trainer.world_size} (use trainer=cpu or trainer=gpu)")
    if len(datamodule.tensors["val"]) == 0:
        raise ValueError("refit=true needs a validation carve-out to choose the epochs (data.val_ratio > 0)")
    checkpoint = trainer.checkpoint_callback
    if checkpoint is None or not checkpoint.monitor:
        raise ValueError("refit=true needs the best checkpoint of a validated run (callbacks.model_checkpoint watching `monitor`, e.g. callbacks=default)")


def _eval_protocol(eval_cfg: DictConfig | None) -> dict:
    """``cfg.eval`` checked (:func:`visrec.pipeline.evaluation.checked_protocol`, keys named ``eval.<name>``)."""
    from visrec.pipeline.evaluation import checked_protocol

    return checked_protocol(eval_cfg or {}, "eval.")


def _evaluate_after_training(model: pl.LightningModule, datamodule: RatingsDataModule, out_dir: Path, checkpoint: str | None,
                             eval_cfg: DictConfig | None = None):
    """The evaluator on the test part with the protocol of ``cfg.eval`` (evaluate.py's defaults)."""
    from visrec.pipeline.evaluation import run_evaluation, write_report

    model.eval()
    protocol = _eval_protocol(eval_cfg)
    report = run_evaluation(model, datamodule.tensors, datamodule.num_users, datamodule.num_items, ks=protocol["ks"],
                            threshold=protocol["threshold"], exclude_train=protocol["exclude_train"], baselines=protocol["baselines"],
                            activity_edges=protocol["activity_edges"], ties=protocol["ties"])
    stem = Path(checkpoint).stem if checkpoint else "final"
    write_report(report, out_dir / "eval" / f"{stem}_test_{protocol['exclude_train']}", {"checkpoint": checkpoint, "part": "test"},
                 user_ids=list(datamodule.user_map.raw_ids))
    print(report.format())
    return report


def _export_after_training(cfg: DictConfig, model: pl.LightningModule, datamodule: RatingsDataModule,
                           features: ItemFeatures | None, out_dir: Path, metrics: dict) -> None:
    """A serving bundle of the tested model in ``<run dir>/export`` (see :mod:`visrec.export`)."""
    from visrec.export import export_model

    seen = Interactions.concat(datamodule.tensors["train"], datamodule.tensors["val"])
    path = export_model(model, datamodule.user_map, datamodule.item_map, seen, out_dir / "export",
                        model_config=OmegaConf.to_container(cfg.model, resolve=True), metrics=metrics,
                        backbone=None if features is None else features.backbone)
    print(f"Serving bundle: {path}")
    return path


def _finish_wandb(loggers: list) -> None:
    """Finish every W&B run this job opened (a sweep's next job must start a new run, not log into this one)."""
    from visrec.tracking.results import wandb_loggers
    from visrec.tracking.wandb_logger import finish_wandb_run

    for logger in wandb_loggers(loggers):
        finish_wandb_run(logger.experiment)
