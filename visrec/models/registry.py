"""The scoring half of each built-in model, by the ``_target_`` a run's config names it with (torch only:
nothing here imports Lightning). ``evaluate.py`` and ``python -m visrec.export`` load a built-in model's
checkpoint into its scoring half (:func:`build_scoring`), so they never import Lightning; any other model
loads into its own class (its ``_target_``).

This is the one module that imports every family's scoring half; no family module imports it.
"""
from __future__ import annotations

import inspect

from visrec.models.factor.scoring import BaselineScoring, RatingScoring
from visrec.models.hybrid.scoring import HybridScoring
from visrec.models.ials.scoring import IALSScoring
from visrec.models.knn.user_scoring import UserKNNScoring
from visrec.models.knn.visual_scoring import VisualKNNScoring
from visrec.models.pairwise.scoring import BPRScoring, VBPRScoring
from visrec.models.scoring import ScoringModel

# A built-in model's full-path ``_target_`` before the models were grouped into families (visrec/models/
# was flat) -> its path now: configs of runs made then name these, and evaluate.py / export still load them.
LEGACY_TARGETS: dict[str, str] = {
    "visrec.models.rating_module.RatingModule": "visrec.models.factor.module.RatingModule",
    "visrec.models.ials_module.IALSModule": "visrec.models.ials.module.IALSModule",
    "visrec.models.baseline_only.BaselineOnly": "visrec.models.factor.baseline_only.BaselineOnly",
    "visrec.models.user_knn_module.UserKNN": "visrec.models.knn.user_module.UserKNN",
    "visrec.models.visual_knn_module.VisualKNN": "visrec.models.knn.visual_module.VisualKNN",
    "visrec.models.hybrid_module.Hybrid": "visrec.models.hybrid.module.Hybrid",
}

# The scoring half of each built-in model, by the ``_target_``s a run's config may name it with: the public
# name (``visrec.models.X``), the full path and the legacy full path (tests/test_imports.py checks each
# target is a subclass of its scoring half).
SCORING_CLASSES: dict[str, type[ScoringModel]] = {
    "visrec.models.RatingModule": RatingScoring, "visrec.models.factor.module.RatingModule": RatingScoring,
    "visrec.models.ExplicitALS": RatingScoring, "visrec.models.factor.als.ExplicitALS": RatingScoring,
    "visrec.models.IALSModule": IALSScoring, "visrec.models.ials.module.IALSModule": IALSScoring,
    "visrec.models.BaselineOnly": BaselineScoring, "visrec.models.factor.baseline_only.BaselineOnly": BaselineScoring,
    "visrec.models.UserKNN": UserKNNScoring, "visrec.models.knn.user_module.UserKNN": UserKNNScoring,
    "visrec.models.VisualKNN": VisualKNNScoring, "visrec.models.knn.visual_module.VisualKNN": VisualKNNScoring,
    "visrec.models.Hybrid": HybridScoring, "visrec.models.hybrid.module.Hybrid": HybridScoring,
    "visrec.models.BPR": BPRScoring, "visrec.models.pairwise.module.BPR": BPRScoring,
    "visrec.models.VBPR": VBPRScoring, "visrec.models.pairwise.module.VBPR": VBPRScoring,
}
SCORING_CLASSES.update({legacy: SCORING_CLASSES[current] for legacy, current in LEGACY_TARGETS.items()})


def build_scoring(target: str | None, options: dict) -> ScoringModel | None:
    """The scoring half of the built-in model ``target`` names, built from the ``options`` its ``__init__``
    takes (the others configure training), untrained: a checkpoint's ``state_dict`` loads into it. None
    when ``target`` is not a built-in model."""
    cls = SCORING_CLASSES.get(target)
    if cls is None:
        return None
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{key: value for key, value in options.items() if key in accepted})
