"""Models: plain nn.Modules (torch only) and the LightningModules that train them.

``RatingModule``: biased MF on observed ratings (``model=biased_mf``). ``IALSModule``: implicit-feedback
weighted MSE over all cells, exact ALS (``model=ials``). ``BaselineOnly``: μ + b_u + b_i by ALS (``model=bias_only``).
``UserKNN``: user-based KNNWithMeans (``model=user_knn``). ``VisualKNN``: item-based KNNWithMeans on image
similarity (``model=visual_knn``). ``Hybrid``: their blend (``model=hybrid``). Their scoring halves (:mod:`visrec.models.scoring`)
are torch only; the names below are imported on first use, so importing a torch-only module of this
package does not import Lightning."""
from visrec.utils.lazy import lazy_names

_MODULES = {"BaselineOnly": "visrec.models.baseline_only", "BiasedMF": "visrec.models.biased_mf", "IALSModule": "visrec.models.ials_module",
            "RatingModule": "visrec.models.rating_module",
            "UserKNN": "visrec.models.user_knn_module", "VisualKNN": "visrec.models.visual_knn_module",
            "Hybrid": "visrec.models.hybrid_module"}

__all__ = ["BaselineOnly", "BiasedMF", "Hybrid", "IALSModule", "RatingModule", "UserKNN", "VisualKNN"]

__getattr__, __dir__ = lazy_names(__name__, _MODULES)
