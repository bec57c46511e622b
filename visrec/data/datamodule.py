"""The LightningDataModule: read a source, split it, index it, serve (user, item, rating) batches."""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from visrec.data.errors import DataError
from visrec.data.idmap import IdMap
from visrec.data.readers import RatingsSource
from visrec.data.splits import Split
from visrec.interactions import Interactions
from visrec.utils.atomic import atomic_path

log = logging.getLogger(__name__)

PARTS = ("train", "val", "test")


class _Rows(Dataset):
    """Indexing with a tensor of row numbers returns a whole batch, so there is no per-row collation."""

    def __init__(self, data: Interactions):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, rows):
        rows = torch.as_tensor(rows)
        return self.data.users[rows], self.data.items[rows], self.data.ratings[rows]


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class RowBatches(Sampler):
    """Batches of row numbers (tensors). With ``shuffle``, the order is a permutation drawn from
    (seed, epoch) — not from the global RNG — so a run resumed from a checkpoint sees exactly the
    batches an uninterrupted run would (Lightning calls :meth:`set_epoch` every epoch).

    Under torch.distributed each process takes every world-th row of the order. For training
    (``shuffle``) the order is padded by wrapping around to a multiple of the world size, so every
    process runs the same number of steps (as ``DistributedSampler`` does); evaluation is not padded,
    so no rating is counted twice (the metric sums are gathered across processes).
    """

    def __init__(self, num_rows: int, batch_size: int, shuffle: bool, seed: int = 0):
        self.num_rows, self.batch_size, self.shuffle, self.seed = int(num_rows), int(batch_size), bool(shuffle), int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rows(self) -> torch.Tensor:
        rank, world = _rank_and_world()
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_rows, generator=generator)
            padding = (-self.num_rows) % world
            order = torch.cat([order, order[:padding]])
        else:
            order = torch.arange(self.num_rows)
        return order[rank::world]

    def __iter__(self):
        # A generator: the order is drawn at the first batch, not when the iterator is created —
        # Lightning creates the training iterator before it calls set_epoch on a resumed run.
        yield from self._rows().split(self.batch_size)

    def __len__(self) -> int:
        return -(-len(self._rows()) // self.batch_size)


class RatingsDataModule(pl.LightningDataModule):
    """Splits a ratings source into train / validation / test and serves index tensors.

    Indices: every user and item of the source's catalogs gets one (sorted raw ids), so items with no
    training ratings (cold items) still have an index and, when present, an image.
    Validation is carved from the training rows (``val_ratio``; 0 disables it) for early stopping.
    """

    def __init__(
        self,
        source: RatingsSource,
        split: Split,
        val_ratio: float = 0.05,
        batch_size: int = 1024,
        eval_batch_size: int = 65536,
        num_workers: int = 0,
        seed: int = 0,
        min_user_ratings: int = 0,
        min_item_ratings: int = 0,
    ):
        super().__init__()
        self.source = source
        self.split = split
        self.val_ratio = float(val_ratio)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.min_user_ratings = int(min_user_ratings)
        self.min_item_ratings = int(min_item_ratings)
        self.frames: dict[str, pd.DataFrame] = {}
        self.tensors: dict[str, Interactions] = {}

    # ---- set-up ---------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.tensors:  # idempotent: Lightning calls setup once per stage
            return
        table = self.source.load()
        ratings = self._filter(table.ratings)
        self.user_map = IdMap.from_values(np.concatenate([table.users, ratings["user"].to_numpy()]), name="user")
        self.item_map = IdMap.from_values(table.items, name="item")
        self.source_description = table.source
        self.rating_range = table.rating_range or (float(ratings["rating"].min()), float(ratings["rating"].max()))

        test = self.split.test_mask(ratings)
        train_frame, test_frame = ratings[~test].reset_index(drop=True), ratings[test].reset_index(drop=True)
        val = np.zeros(len(train_frame), dtype=bool)
        if self.val_ratio > 0:
            val = self.split.validation_mask(train_frame, self.val_ratio, self.seed)
        self.frames = {"train": train_frame[~val], "val": train_frame[val], "test": test_frame}
        for part in ("train", "test"):
            if len(self.frames[part]) == 0:
                raise DataError(None, f"the {part} set is empty after splitting {table.source} with {self.split.describe()}")
        self.frames = {k: v.reset_index(drop=True) for k, v in self.frames.items()}
        self.tensors = {part: self._to_tensors(frame) for part, frame in self.frames.items()}

        self.image_paths = [table.image_paths.get(raw) for raw in self.item_map.raw_ids]
        train = self.tensors["train"]
        self.item_train_counts = torch.bincount(train.items, minlength=self.num_items)  # (N,)
        self.user_train_counts = torch.bincount(train.users, minlength=self.num_users)  # (U,)
        log.info(
            "data %s, split %s: %d users, %d items, train/val/test = %d/%d/%d ratings",
            table.source, self.split.describe(), self.num_users, self.num_items,
            len(self.tensors["train"]), len(self.tensors["val"]), len(self.tensors["test"]),
        )

    def _filter(self, ratings: pd.DataFrame) -> pd.DataFrame:
        """Drop users / items with fewer ratings than the configured minimums (one pass)."""
        before = len(ratings)
        if self.min_user_ratings > 1:
            ratings = ratings[ratings.groupby("user")["user"].transform("size") >= self.min_user_ratings]
        if self.min_item_ratings > 1:
            ratings = ratings[ratings.groupby("item")["item"].transform("size") >= self.min_item_ratings]
        if len(ratings) == 0:
            raise DataError(
                None,
                f"no ratings left after filtering (min_user_ratings={self.min_user_ratings}, "
                f"min_item_ratings={self.min_item_ratings}; {before} before)",
            )
        return ratings.reset_index(drop=True)

    def _to_tensors(self, frame: pd.DataFrame) -> Interactions:
        return Interactions(
            users=torch.from_numpy(self.user_map.to_index(frame["user"].to_numpy())),
            items=torch.from_numpy(self.item_map.to_index(frame["item"].to_numpy())),
            ratings=torch.from_numpy(np.array(frame["rating"], dtype=np.float32)),
        )

    def with_validation_in_train(self) -> "RatingsDataModule":
        """A copy whose training part is train + val and whose validation part is empty (same maps, same
        test part): the data of a refit on all training ratings after early stopping chose the epochs."""
        merged = copy.copy(self)
        train = Interactions.concat(self.tensors["train"], self.tensors["val"])
        merged.frames = {**self.frames, "train": pd.concat([self.frames["train"], self.frames["val"]], ignore_index=True),
                         "val": self.frames["val"].iloc[:0]}
        merged.tensors = {**self.tensors, "train": train, "val": Interactions.empty()}
        merged.item_train_counts = torch.bincount(train.items, minlength=self.num_items)  # (N,)
        merged.user_train_counts = torch.bincount(train.users, minlength=self.num_users)  # (U,)
        return merged

    # ---- sizes ----------------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return len(self.user_map)

    @property
    def num_items(self) -> int:
        return len(self.item_map)

    @property
    def global_mean(self) -> float:
        return float(self.tensors["train"].ratings.mean())

    # ---- loaders --------------------------------------------------------------------------------
    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        rows = _Rows(self.tensors[part])
        batch = self.batch_size if shuffle else self.eval_batch_size
        return DataLoader(
            rows,
            sampler=RowBatches(len(rows), batch, shuffle=shuffle, seed=self.seed),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False) if len(self.tensors["val"]) else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Write ``user_map.parquet``, ``item_map.parquet``, ``item_images.parquet`` (item, image_path;
        null when the item has none) and ``split.parquet`` (user, item, rating, part), all with raw ids."""
        folder = Path(folder)
        self.user_map.save(folder / "user_map.parquet")
        self.item_map.save(folder / "item_map.parquet")
        images = pd.DataFrame({"item": self.item_map.raw_ids,
                               "image_path": pd.array([None if p is None else os.path.abspath(p) for p in self.image_paths], dtype="string")})
        with atomic_path(folder / "item_images.parquet") as tmp:
            images.to_parquet(tmp, index=False)
        split = pd.concat(
            [self.frames[p][["user", "item", "rating"]].assign(part=p) for p in PARTS], ignore_index=True
        )
        with atomic_path(folder / "split.parquet") as tmp:
            split.to_parquet(tmp, index=False)


# ---- factories used by the Hydra data configs (flat arguments: data.root, data.fold, ...) -------------
def movielens_100k(root: str, split: Split, fold: str | int = 1, images: str | None = "posters", duplicates: str = "last", **datamodule_args) -> RatingsDataModule:
    """MovieLens-100K from ``root`` (see :class:`~visrec.data.readers.MovieLens100K`)."""
    from visrec.data.readers import MovieLens100K

    return RatingsDataModule(MovieLens100K(root, fold=fold, images=images, duplicates=duplicates), split, **datamodule_args)


def ratings_table(path: str, split: Split, source_args: dict | None = None, **datamodule_args) -> RatingsDataModule:
    """Any CSV / Parquet ratings table; ``source_args`` are :class:`~visrec.data.readers.RatingsFile`'s arguments."""
    from visrec.data.readers import RatingsFile

    return RatingsDataModule(RatingsFile(path, **dict(source_args or {})), split, **datamodule_args)


def synthetic(root: str, split: Split, generator: dict | None = None, **datamodule_args) -> RatingsDataModule:
    """The embedded synthetic dataset, generated under ``root`` on first use; ``generator`` holds
    :class:`~visrec.data.synthetic.SyntheticParams` fields."""
    from visrec.data.synthetic import SyntheticSource

    return RatingsDataModule(SyntheticSource(root, **dict(generator or {})), split, **datamodule_args)
