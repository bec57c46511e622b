"""Data layer: readers, id maps, splits, the synthetic visual dataset and the LightningDataModule.

The names below are imported on first use, so importing ``visrec.data.errors`` or ``visrec.data.idmap``
(what the evaluator and export use) does not import Lightning (``visrec.data.datamodule`` does)."""
from visrec.utils.lazy import lazy_names

_MODULES = {
    "ColdItemSplit": "visrec.data.splits", "DataError": "visrec.data.errors", "IdMap": "visrec.data.idmap",
    "MovieLens100K": "visrec.data.readers", "PerUserSplit": "visrec.data.splits", "PredefinedSplit": "visrec.data.splits",
    "RandomSplit": "visrec.data.splits", "RatingsDataModule": "visrec.data.datamodule", "RatingsFile": "visrec.data.readers",
    "PerUserTemporalSplit": "visrec.data.splits", "TemporalSplit": "visrec.data.splits", "KFoldSplit": "visrec.data.splits",
}

__all__ = sorted(_MODULES)

__getattr__, __dir__ = lazy_names(__name__, _MODULES)
