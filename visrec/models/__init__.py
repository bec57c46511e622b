"""Models: plain nn.Modules (torch only) and the LightningModules that train them.

``RatingModule``: biased MF on observed ratings (``model=biased_mf``). ``IALSModule``: implicit-feedback
weighted MSE over all cells, exact ALS (``model=ials``). Their scoring halves (:mod:`visrec.models.scoring`)
are torch only; the names below are imported on first use, so importing a torch-only module of this
package does not import Lightning."""
from importlib import import_module

_MODULES = {"BiasedMF": "visrec.models.biased_mf", "IALSModule": "visrec.models.ials_module",
            "RatingModule": "visrec.models.rating_module"}

__all__ = ["BiasedMF", "IALSModule", "RatingModule"]


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(import_module(_MODULES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_MODULES])
