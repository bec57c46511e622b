"""Data layer: readers, id maps, splits, the synthetic visual dataset and the LightningDataModule."""
from visrec.data.datamodule import RatingsDataModule
from visrec.data.errors import DataError
from visrec.data.idmap import IdMap
from visrec.data.readers import MovieLens100K, RatingsFile
from visrec.data.splits import ColdItemSplit, PerUserSplit, PredefinedSplit, RandomSplit, TemporalSplit

__all__ = [
    "ColdItemSplit", "DataError", "IdMap", "MovieLens100K", "PerUserSplit", "PredefinedSplit",
    "RandomSplit", "RatingsDataModule", "RatingsFile", "TemporalSplit",
]
