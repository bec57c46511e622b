"""Models: plain nn.Modules (torch only) and the LightningModules that train them.

``RatingModule``: biased MF on observed ratings (``model=biased_mf``). ``IALSModule``: implicit-feedback
weighted MSE over all cells, exact ALS (``model=ials``)."""
from visrec.models.biased_mf import BiasedMF
from visrec.models.ials_module import IALSModule
from visrec.models.rating_module import RatingModule

__all__ = ["BiasedMF", "IALSModule", "RatingModule"]
