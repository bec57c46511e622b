"""The model contract: what the pipeline, evaluator, export, serving, W&B and sweeps may use of a model.

A model is a ``pl.LightningModule`` subclass of :class:`RecommenderModel`, chosen with the config group
``model=<name>`` (``conf/model/<name>.yaml``, whose ``_target_`` names the class). Nothing outside
:mod:`visrec.models` reaches into a model's parts (its nets, priors or hyperparameters); it uses only:

Built from (class-level, before any data is read):
    ``check_options(options)``          refuse bad option values, naming the key (``model.<name>``)
    ``uses_image_features(options)``    whether the run must extract frozen CNN features
    ``DATA_KEYS`` / ``data_config(data)``  the config keys filled from the data (``???`` in the YAML):
                                        a subset of :class:`DataSummary`'s fields, each an ``__init__`` argument
    ``VALIDATION_METRICS``              what validation logs (what ``monitor`` may name)
    ``single_process``                  True: refused under DDP before processes are launched
    ``single_process_reason(options)``  the same for some option values only (BPR's per-sample SGD)
    ``PARTITIONED_DDP``                 True: under DDP each process needs only the ratings of its own user and
                                        item slices (``visrec.data.partition``) and validates / tests only its
                                        users' ratings; rank 0 alone runs ``finish_training`` (Lightning's DDP
                                        test set-up gives the others its module states) (ALS, iALS)
    ``sparse_gradients_for(options)``   whether training produces sparse gradients (DDP needs gloo then)
    ``TRAINING_BATCHES``                "ratings": shuffled batches of ``data.batch_size`` observed
                                        (user, item, rating) rows; "whole": one batch per epoch holding
                                        every training row (closed-form / alternating models)
Built for the data (instance):
    ``set_train_counts(user_counts (U,), item_counts (N,))``  zero = cold; saved in checkpoints
    ``check_training_data(train, val)``  the model's own data needs, raised as ValueError before training
    ``attach_features(features (N, D), has_image (N,), fit)``  the frozen features (no-op without a prior)
Trained: by Lightning (``trainer.fit``) — an optimizer loop, or closed-form steps inside
    ``training_step`` — then ``finish_training(train)`` for any closed-form step after training; it returns
    metrics, and ``weights_changed`` says whether the pipeline must store the weights again.
Scores: ``scorer(name)`` -> an evaluator :class:`~visrec.evaluation.scorers.Scorer` (a batch of users
    against all items, and (user, item) pairs when ``predicts_ratings``); ``known_users`` (U,) and
    ``known_items`` (N,) bool: who has trained parameters (the evaluator's "warm"); ``item_train_counts`` (N,).
Writes into a bundle: ``bundle_arrays()`` -> (arrays, manifest fields) of :mod:`visrec.export.bundle`'s format.

The scoring and bundle parts (with ``attach_features`` / ``has_image_prior``) are
:class:`~visrec.models.scoring.ScoringModel`, torch only; :class:`FactorModel` implements them (through
:class:`~visrec.models.scoring.FactorScoring`) for models whose scores are r̂_ui = μ + b_u + b_i + p_u·q_i
(biased MF, iALS). A built-in model's scoring half is a class of its own (``RatingScoring``,
``IALSScoring``, listed in :mod:`visrec.models.registry`) that its LightningModule inherits: ``evaluate.py``
and export load a checkpoint into it without importing Lightning; any other model is loaded into its own
class. A model of another form (kNN, EASE) implements ``scorer`` itself and trains and evaluates through
the pipeline unchanged; export and serving, though, read factor tables (:mod:`visrec.export.bundle`'s
format), so such a model needs a bundle format of its own before it can be exported (not built yet).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytorch_lightning as pl
import torch

from visrec.interactions import Interactions
from visrec.models.scoring import FactorScoring, ScoringModel


@dataclass(frozen=True)
class DataSummary:
    """What a model may be built from, taken from the data at set-up.

    ``rating_range``: (min, max) of the rating scale, or None; ``feature_dim``: D of the image
    features (0 when the run extracts none)."""

    num_users: int
    num_items: int
    global_mean: float
    rating_range: tuple[float, float] | None
    feature_dim: int

    def values(self) -> dict:
        low, high = self.rating_range if self.rating_range is not None else (None, None)
        return {"num_users": self.num_users, "num_items": self.num_items, "global_mean": self.global_mean,
                "rating_min": low, "rating_max": high, "feature_dim": self.feature_dim}


class RecommenderModel(ScoringModel, pl.LightningModule):
    """Base class of every visrec model (the contract in this module's docstring; the scoring part,
    :class:`~visrec.models.scoring.ScoringModel`, is inherited)."""

    # What validation logs: what ``monitor`` (and early stopping, the best checkpoint) may name.
    VALIDATION_METRICS: tuple[str, ...] = ()
    # Config keys filled from the data (names of DataSummary.values()); each is an __init__ argument.
    DATA_KEYS: tuple[str, ...] = ("num_users", "num_items")
    # True when the model cannot train under DDP (the pipeline refuses it before launching processes).
    single_process: bool = False
    # True when under DDP each process reads only its own users' and items' ratings (visrec.data.partition).
    PARTITIONED_DDP: bool = False
    # What one training batch is: "ratings" (mini-batches of rows) or "whole" (all rows, once per epoch).
    TRAINING_BATCHES: str = "ratings"

    # ---- built from -------------------------------------------------------------------------------
    @classmethod
    def check_options(cls, options: dict) -> None:
        """Raise ValueError naming ``model.<key>`` for an option value that would train nonsense."""

    @classmethod
    def uses_image_features(cls, options: dict) -> bool:
        """Whether a model with these options needs the catalog's frozen image features."""
        return False

    @classmethod
    def single_process_reason(cls, options: dict) -> str | None:
        """Why a model with these options cannot train under DDP (a message naming what to change), or None.
        The pipeline refuses DDP with it before any process is launched. Default: ``single_process``."""
        return f"{cls.__name__} trains in a single process" if cls.single_process else None

    @classmethod
    def sparse_gradients_for(cls, options: dict) -> bool:
        """Whether a model with these options trains with sparse gradients, which DDP can all-reduce only
        with the gloo backend (not NCCL): the pipeline refuses DDP on GPUs for it at set-up."""
        return False

    @classmethod
    def data_config(cls, data: DataSummary) -> dict:
        """The ``DATA_KEYS`` values for this data (written into the run's ``model`` config)."""
        values = data.values()
        accepted = inspect.signature(cls.__init__).parameters
        missing = [key for key in cls.DATA_KEYS if key not in accepted]
        if missing:
            raise TypeError(f"{cls.__name__}.DATA_KEYS names {missing}, which {cls.__name__}.__init__ does not take")
        return {key: values[key] for key in cls.DATA_KEYS}

    # ---- built for the data ----------------------------------------------------------------------------
    def set_train_counts(self, user_counts: torch.Tensor, item_counts: torch.Tensor) -> None:
        raise NotImplementedError

    def check_training_data(self, train: Interactions, val: Interactions | None = None) -> None:
        """Raise ValueError when ``train`` (and ``val``, the validation part) cannot train this model
        (called when the model is built, before anything is written or trained)."""

    # ---- trained ------------------------------------------------------------------------------------
    weights_changed: bool = False

    def finish_training(self, train: Interactions) -> dict:
        """Closed-form steps after ``trainer.fit`` (none by default). Returns metrics for ``metrics.json``;
        sets ``weights_changed`` when the weights differ from the saved checkpoint's."""
        return {}


class FactorModel(FactorScoring, RecommenderModel):
    """A model that scores r̂_ui = μ + b_u + b_i + p_u·q_i (:class:`~visrec.models.scoring.FactorScoring`).
    Subclasses hold a :class:`~visrec.models.factor.net.BiasedMF` as ``self.net``, an optional
    :class:`~visrec.models.visual.prior.VisualPrior` as ``self.visual``, ``self.rating_range`` and implement
    :meth:`effective_factors` (the tables with the cold fallbacks folded in)."""

    @classmethod
    def uses_image_features(cls, options: dict) -> bool:
        return options.get("visual_mode", "none") != "none"
