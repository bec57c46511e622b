"""Models: plain nn.Modules and scoring halves (torch only) and the LightningModules that train them,
grouped by family.

Top level (shared by every family): :mod:`~visrec.models.contract` (the model contract:
``RecommenderModel``, ``DataSummary``, ``FactorModel``; Lightning), :mod:`~visrec.models.scoring` (its
torch-only scoring half: ``ScoringModel``, ``FactorScoring``), :mod:`~visrec.models.registry` (the scoring
half of each built-in model by ``_target_``, which ``evaluate.py`` and export load a checkpoint into) and
the training helpers :mod:`~visrec.models.divergence`, :mod:`~visrec.models.rating_metrics`,
:mod:`~visrec.models.closed_form`.

Families (each a sub-package; a ``*scoring`` module is torch only, a ``*module`` one is Lightning):

- :mod:`visrec.models.factor`: biased MF. ``BiasedMF`` (the nn.Module), ``RatingModule`` (trained on
  observed ratings, ``model=biased_mf``), ``ExplicitALS`` (the same model by alternating least squares,
  ``model=als``), ``BaselineOnly`` (μ + b_u + b_i by ALS, ``model=bias_only``).
- :mod:`visrec.models.ials`: ``IALSModule``, implicit-feedback weighted MSE over all cells, exact ALS
  (``model=ials``).
- :mod:`visrec.models.knn`: ``UserKNN`` (user-based KNNWithMeans, ``model=user_knn``) and ``VisualKNN``
  (item-based KNNWithMeans on image similarity, ``model=visual_knn``).
- :mod:`visrec.models.pairwise`: ``BPR`` and ``VBPR`` (``model=bpr``, ``model=vbpr``), pairwise ranking
  loss over sampled negatives; VBPR adds θ_u·E f̃_i + β'·f̃_i from the pictures.
- :mod:`visrec.models.hybrid`: ``Hybrid``, the blend of biased MF and visual kNN (``model=hybrid``).
- :mod:`visrec.models.visual`: the image side of the factor models (the visual prior and the closed-form
  cold-start heads).

The names below are imported on first use, so importing a torch-only module of this package does not
import Lightning. A new model goes in its family's folder (or a new one): a torch-only scoring half, its
LightningModule, one ``conf/model/<name>.yaml``, and a line in :mod:`~visrec.models.registry`."""
from visrec.utils.lazy import lazy_names

# Public name -> the module that defines it.
_MODULES = {"BaselineOnly": "visrec.models.factor.baseline_only", "BiasedMF": "visrec.models.factor.net",
            "RatingModule": "visrec.models.factor.module", "ExplicitALS": "visrec.models.factor.als",
            "IALSModule": "visrec.models.ials.module",
            "UserKNN": "visrec.models.knn.user_module", "VisualKNN": "visrec.models.knn.visual_module",
            "Hybrid": "visrec.models.hybrid.module",
            "BPR": "visrec.models.pairwise.module", "VBPR": "visrec.models.pairwise.module"}

__all__ = ["BPR", "BaselineOnly", "BiasedMF", "ExplicitALS", "Hybrid", "IALSModule", "RatingModule", "UserKNN", "VBPR", "VisualKNN"]

__getattr__, __dir__ = lazy_names(__name__, _MODULES)
