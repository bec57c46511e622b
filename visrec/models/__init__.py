"""Models: plain nn.Modules (torch only) and the LightningModule that trains them."""
from visrec.models.biased_mf import BiasedMF
from visrec.models.rating_module import RatingModule

__all__ = ["BiasedMF", "RatingModule"]
