"""The LightningDataModule: read a source, split it, index it, serve (user, item, rating) batches."""
from __future__ import annotations

import copy
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from visrec.data import partition
from visrec.data.errors import DataError
from visrec.data.idmap import IdMap
from visrec.data.partition import PARTS, rows_of
from visrec.data.readers import RatingsSource
from visrec.data.splits import Split
from visrec.data.table import take_rows
from visrec.interactions import Interactions
from visrec.utils.atomic import atomic_path

log = logging.getLogger(__name__)



def _validation_remedies(split: Split) -> str:
    other = "another data/split" + (" (e.g. data/split=random)" if split.name != "random" else "")
    return (f"Raise data.val_ratio, choose {other}, or turn validation off with data.val_ratio=0 callbacks=none "
            f"(and model.scheduler=null with model=biased_mf; no early stopping, no plateau schedule; the last epoch is tested)")


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
    so no rating is counted twice (the metric sums are gathered across processes). With ``split_by_rank``
    false every process takes all rows: the rows are already this process's own (a partitioned part); with
    none it still gets one empty batch, so it runs the loop and joins the other processes' gathers (Lightning
    would skip a loop with no batch, and they would wait for it).
    """

    def __init__(self, num_rows: int, batch_size: int, shuffle: bool, seed: int = 0, split_by_rank: bool = True):
        self.num_rows, self.batch_size, self.shuffle, self.seed = int(num_rows), int(batch_size), bool(shuffle), int(seed)
        self.split_by_rank = bool(split_by_rank)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rows(self) -> torch.Tensor:
        rank, world = _rank_and_world() if self.split_by_rank else (0, 1)
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
        if self.num_rows == 0 and not self.split_by_rank:
            yield torch.zeros(0, dtype=torch.int64)
            return
        yield from self._rows().split(self.batch_size)

    def __len__(self) -> int:
        # The same count as len(self._rows()) without drawing the permutation (Lightning asks often).
        if self.num_rows == 0 and not self.split_by_rank:
            return 1
        rank, world = _rank_and_world() if self.split_by_rank else (0, 1)
        total = self.num_rows + ((-self.num_rows) % world if self.shuffle else 0)
        rows = len(range(rank, total, world))
        return -(-rows // self.batch_size)


def _int_option(value, key: str, minimum: int) -> int:
    """An integer option >= ``minimum``, or a DataError naming its config key."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        number = int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise DataError(None, f"{key} must be an integer >= {minimum}, got {value!r}")
    if number < minimum:
        raise DataError(None, f"{key} must be an integer >= {minimum}, got {value!r}")
    return number


def _relative(path: str, folder: Path) -> str | None:
    """``path`` relative to ``folder`` (None when there is no relative path, e.g. another drive)."""
    try:
        return os.path.relpath(path, os.path.abspath(folder))
    except ValueError:
        return None


class RatingsDataModule(pl.LightningDataModule):
    """Splits a ratings source into train / validation / test and serves index tensors.

    Indices: every user and item of the source's catalogs gets one (sorted raw ids), so items with no
    training ratings (cold items) still have an index and, when present, an image.
    Validation is carved from the training rows (``val_ratio`` in [0, 1); 0 disables it) for early
    stopping. Options are checked when the module is made and the data when :meth:`setup` runs (before
    any training): an empty part, a validation part with no warm rating (user and item both with
    training ratings), or a predefined test pair that is also a training pair is a :class:`DataError`.
    Set-up logs the parts' sizes and their warm / cold-user / cold-item counts (:meth:`split_counts`).
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
        try:
            val = float(val_ratio)
        except (TypeError, ValueError):
            val = float("nan")
        if isinstance(val_ratio, bool) or not 0.0 <= val < 1.0:
            raise DataError(None, f"data.val_ratio must be a number in [0, 1) (the share of training ratings held out for "
                                  f"validation; 0 turns validation off), got {val_ratio!r}")
        self.val_ratio = val
        self.batch_size = _int_option(batch_size, "data.batch_size", 1)
        # What a training batch is (set by the pipeline from the model contract's TRAINING_BATCHES):
        # "ratings" = shuffled batches of data.batch_size rows; "whole" = every training row, once per epoch.
        self.train_batches = "ratings"
        self.eval_batch_size = _int_option(eval_batch_size, "data.eval_batch_size", 1)
        self.num_workers = _int_option(num_workers, "data.num_workers", 0)
        self.seed = _int_option(seed, "seed", 0)
        self.min_user_ratings = _int_option(min_user_ratings, "data.min_user_ratings", 0)
        self.min_item_ratings = _int_option(min_item_ratings, "data.min_item_ratings", 0)
        self.frames: dict[str, pd.DataFrame] = {}  # part -> user / item indices, rating (+ the column the split reads)
        self.tensors: dict[str, Interactions] = {}
        # DDP runs of models that solve row slices (visrec.data.partition): (rank, world) when validation and test
        # iterate only this process's users' ratings; holds_all_rows is False on a process that read only its rows.
        self.row_owner: tuple[int, int] | None = None
        self.holds_all_rows = True
        self._partition_meta: dict | None = None

    def _source_key(self, name: str) -> str | None:
        """The config key of a source option (``data.source_args.timestamp_col``), None if it has none."""
        option_key = getattr(self.source, "option_key", None)
        return option_key(name) if option_key is not None else None

    # ---- set-up ---------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.tensors:  # idempotent: Lightning calls setup once per stage
            return
        table = self.source.load()
        ratings = self._filter(table.indexed)  # user / item: indices into the sorted catalogs
        self.user_map = IdMap(table.users, name="user")
        self.item_map = IdMap(table.items, name="item")
        self.source_description = table.source
        self.rating_range = table.rating_range or (float(ratings["rating"].min()), float(ratings["rating"].max()))

        self._check_split_needs(ratings, table.source)
        test = self.split.test_mask(ratings)
        # The parts keep user, item, rating (and the column the split's validation may read): fewer bytes to copy.
        need = getattr(self.split, "needs_column", None)
        ratings = ratings[["user", "item", "rating"] + ([need] if need in ratings.columns else [])]
        train_frame, test_frame = take_rows(ratings, ~test), take_rows(ratings, test)
        for part, frame in (("train", train_frame), ("test", test_frame)):
            if len(frame) == 0:
                remedies = ["choose another data/split"]
                if hasattr(self.split, "test_ratio"):
                    remedies.insert(0, "change data.split.test_ratio")
                if self.min_user_ratings > 1 or self.min_item_ratings > 1:
                    remedies.append("lower data.min_user_ratings / data.min_item_ratings")
                raise DataError(None, f"the {part} set is empty after splitting {table.source} ({len(ratings)} ratings) with "
                                      f"{self.split.describe()}; {', or '.join(remedies)}")
        val = np.zeros(len(train_frame), dtype=bool)
        if self.val_ratio > 0:
            val = self.split.validation_mask(train_frame, self.val_ratio, self.seed)
            if not val.any():
                raise DataError(None, f"the validation set is empty: data.val_ratio={self.val_ratio:g} of {len(train_frame)} training "
                                      f"ratings rounds to 0 with {self.split.describe()}. {_validation_remedies(self.split)}")
            if val.all():
                raise DataError(None, f"data.val_ratio={self.val_ratio:g} leaves no training ratings (all {len(train_frame)} go to "
                                      f"validation); lower data.val_ratio")
        self.frames = {"train": take_rows(train_frame, ~val), "val": take_rows(train_frame, val), "test": test_frame}
        self.tensors = {part: self._to_tensors(frame) for part, frame in self.frames.items()}

        self.image_paths = [table.image_paths.get(raw) for raw in self.item_map.raw_ids]
        train = self.tensors["train"]
        self.item_train_counts = torch.bincount(train.items, minlength=self.num_items)  # (N,)
        self.user_train_counts = torch.bincount(train.users, minlength=self.num_users)  # (U,)
        counts = self.split_counts()
        warm = {part: counts[f"{part}_warm"] for part in ("val", "test")}
        if len(self.tensors["val"]) and warm["val"] == 0:
            keys = ", ".join(["data.val_ratio", *self.split.config_keys()])
            raise DataError(None, f"no validation rating is warm: 0 of {len(self.tensors['val'])} validation ratings have a user "
                                  f"and an item with training ratings (split {self.split.describe()}, data.val_ratio="
                                  f"{self.val_ratio:g}; {self.counts_line(counts)}), so the validation metrics that early "
                                  f"stopping and the best checkpoint watch (`monitor`: val/rmse, val/ndcg@10, ...) cannot be "
                                  f"computed. Keys that change the parts: {keys}. {_validation_remedies(self.split)}")
        if len(self.tensors["test"]) and warm["test"] == 0 and not self.split.cold_test:
            # Expected of a cold-item split; elsewhere legitimate but surprising (test/rmse will not exist): say so.
            log.warning("no test rating is warm (0 of %d have a user and an item with training ratings; split %s): "
                        "test/rmse and the evaluator's warm segment will be absent, only the cold metrics are reported "
                        "(keys that change the test part: %s)",
                        len(self.tensors["test"]), self.split.describe(), ", ".join(self.split.config_keys()) or "data/split")
        log.info(
            "data %s, split %s: %d users, %d items, train/val/test = %d/%d/%d ratings; warm (user and item with training "
            "ratings): val %d of %d, test %d of %d; %s",
            table.source, self.split.describe(), self.num_users, self.num_items,
            len(self.tensors["train"]), len(self.tensors["val"]), len(self.tensors["test"]),
            warm["val"], len(self.tensors["val"]), warm["test"], len(self.tensors["test"]), self.counts_line(counts),
        )

    def split_counts(self) -> dict[str, int]:
        """Ratings per part, and for val / test how many are warm (user and item both with training
        ratings), cold-user (user without training ratings) and cold-item (user with, item without) —
        the evaluator's segments (:mod:`visrec.evaluation.segments`). Keys: ``train``, ``val``,
        ``val_warm``, ``val_cold_users``, ``val_cold_items``, ``test``, ``test_warm``, ... (counts of ratings)."""
        if not self.holds_all_rows:  # the whole split's counts, as rank 0 computed them
            return dict(self._partition_meta["split_counts"])
        counts = {"train": len(self.tensors["train"])}
        for part in ("val", "test"):
            data = self.tensors[part]
            known_user = self.user_train_counts[data.users] > 0  # (R,)
            known_item = self.item_train_counts[data.items] > 0  # (R,)
            counts[part] = len(data)
            counts[f"{part}_warm"] = int((known_user & known_item).sum())
            counts[f"{part}_cold_users"] = int((~known_user).sum())
            counts[f"{part}_cold_items"] = int((known_user & ~known_item).sum())
        return counts

    def counts_line(self, counts: dict[str, int] | None = None) -> str:
        """One line of :meth:`split_counts`: ``train 76000; val 4000 = 3990 warm + 10 cold (0 cold-user, 10 cold-item); test ...``."""
        counts = counts or self.split_counts()
        parts = [f"train {counts['train']}"]
        for part in ("val", "test"):
            cold = counts[f"{part}_cold_users"] + counts[f"{part}_cold_items"]
            parts.append(f"{part} {counts[part]} = {counts[f'{part}_warm']} warm + {cold} cold "
                         f"({counts[f'{part}_cold_users']} cold-user, {counts[f'{part}_cold_items']} cold-item)")
        return "ratings: " + "; ".join(parts)

    def part_size(self, part: str) -> int:
        """Ratings in ``part`` of the whole split (also on a DDP process that holds only its own rows)."""
        if not self.holds_all_rows:
            return int(self._partition_meta["split_counts"][part])
        return len(self.tensors[part])

    def warm_count(self, part: str) -> int:
        """Ratings of ``part`` whose user and item both have training ratings (what val/rmse and test/rmse cover)."""
        if not self.holds_all_rows:
            return int(self._partition_meta["split_counts"][f"{part}_warm"])
        data = self.tensors[part]
        if len(data) == 0:
            return 0
        return int(((self.user_train_counts[data.users] > 0) & (self.item_train_counts[data.items] > 0)).sum())

    def _check_split_needs(self, ratings: pd.DataFrame, source: str) -> None:
        """A split that needs a column the data lacks is refused naming the option that provides it."""
        need = getattr(self.split, "needs_column", None)
        if need is None or need in ratings.columns:
            return
        option = {"timestamp": "timestamp_col", "is_test": "test_path"}.get(need)
        key = self._source_key(option) if option else None
        what = {"timestamp": "a timestamp column", "is_test": "a source with a predefined test set"}.get(need, f"a {need!r} column")
        provide = f"set {key}=<{'column name' if need == 'timestamp' else 'test table'}>, or " if key else ""
        raise DataError(source, f"data/split={self.split.name} needs {what}, which this data does not have; "
                                f"{provide}choose another split, e.g. data/split=random", field=need if need == "timestamp" else None)

    def _filter(self, ratings: pd.DataFrame) -> pd.DataFrame:
        """Drop users / items with fewer ratings than the configured minimums (users first, then items,
        one pass each, counting over index columns); what each filter dropped is logged."""
        before = len(ratings)
        dropped = []
        for col, minimum, key in (("user", self.min_user_ratings, "data.min_user_ratings"),
                                  ("item", self.min_item_ratings, "data.min_item_ratings")):
            if minimum > 1:
                counts = np.bincount(ratings[col].to_numpy())  # (U,) or (N,) ratings per index
                keep = counts[ratings[col].to_numpy()] >= minimum  # (R,)
                dropped.append(f"{key}={minimum} dropped {int((~keep).sum())} rating(s) of "
                               f"{int(((counts > 0) & (counts < minimum)).sum())} {col}(s)")
                ratings = ratings[keep]
        if len(ratings) == 0:
            raise DataError(None, f"no ratings left after filtering ({'; '.join(dropped)}; {before} before); lower "
                                  f"data.min_user_ratings / data.min_item_ratings")
        if dropped:
            log.info("filters: %s; %d of %d ratings kept", "; ".join(dropped), len(ratings), before)
        return ratings.reset_index(drop=True)

    def _to_tensors(self, frame: pd.DataFrame) -> Interactions:
        return Interactions(
            users=torch.from_numpy(np.array(frame["user"], dtype=np.int64)),  # (R,) already indices
            items=torch.from_numpy(np.array(frame["item"], dtype=np.int64)),
            ratings=torch.from_numpy(np.array(frame["rating"], dtype=np.float32)),
        )

    def with_validation_in_train(self) -> "RatingsDataModule":
        """A copy whose training part is train + val and whose validation part is empty (same maps, same
        test part): the data of a refit on all training ratings after early stopping chose the epochs."""
        self._require_all_rows("a refit on train + val")
        self._require_frames("a refit on train + val")
        merged = copy.copy(self)
        train = Interactions.concat(self.tensors["train"], self.tensors["val"])
        merged.frames = {**self.frames, "train": pd.concat([self.frames["train"], self.frames["val"]], ignore_index=True),
                         "val": self.frames["val"].iloc[:0]}
        merged.tensors = {**self.tensors, "train": train, "val": Interactions.empty()}
        merged.item_train_counts = torch.bincount(train.items, minlength=self.num_items)  # (N,)
        merged.user_train_counts = torch.bincount(train.users, minlength=self.num_users)  # (U,)
        return merged

    # ---- partitioned DDP runs (visrec.data.partition) ---------------------------------------------
    def write_partitions(self, run_dir: str | Path, world: int) -> Path:
        """Rank 0 of a DDP run whose model solves row slices: write each other process's rows (and what a model
        is built from) under ``<run_dir>/partitions/``, and iterate only rank 0's users in validation and test.
        Call after :meth:`save` (the readers take the id maps from the run folder)."""
        meta = {"global_mean": self.global_mean, "rating_range": list(self.rating_range) if self.rating_range else None,
                "source": str(self.source_description), "split_counts": self.split_counts(),
                "image_paths": [None if p is None else str(p) for p in self.image_paths]}
        folder = partition.write(run_dir, world, self.tensors, self.user_train_counts, self.item_train_counts, meta)
        self.row_owner = (0, world)
        return folder

    def setup_partition(self, run_dir: str | Path, rank: int, world: int, wait_s: float = 1800.0) -> None:
        """Rank ``rank`` ≥ 1 of ``world``: set up from rank 0's partition of ``run_dir`` instead of reading the
        source — the id maps, sizes and counts of the whole split, and this process's rows only (train: its
        users' and its items' ratings; val / test: its users'). :meth:`setup` then does nothing; :meth:`save`
        and :meth:`with_validation_in_train` refuse (they need every row). Raises :class:`DataError` (the
        partition's files, checked; or rank 0's files not coming within ``wait_s`` seconds)."""
        started = time.perf_counter()
        loaded = partition.read(run_dir, rank, world, wait_s)
        run_dir = Path(run_dir)
        try:
            self.user_map = IdMap.load(run_dir / "user_map.parquet", name="user")
            self.item_map = IdMap.load(run_dir / "item_map.parquet", name="item")
        except Exception as error:  # pyarrow's errors and the loader's ValueError: one error type here
            raise DataError(run_dir, f"rank 0's id maps (user_map.parquet, item_map.parquet) unreadable: {error}") from None
        meta = loaded.meta
        paths = meta.get("image_paths")
        if (len(self.user_map), len(self.item_map)) != (meta["num_users"], meta["num_items"]) or not (
                isinstance(paths, list) and len(paths) == meta["num_items"]):
            raise DataError(run_dir / partition.FOLDER / "meta.json", f"sizes do not match the run's id maps "
                                                                     f"({len(self.user_map)} users, {len(self.item_map)} items)")
        self.source_description = meta.get("source", str(run_dir))
        self.rating_range = tuple(meta["rating_range"]) if meta.get("rating_range") else None
        self.image_paths = paths
        self.tensors = loaded.parts
        self.frames = {}
        self.user_train_counts, self.item_train_counts = loaded.user_train_counts, loaded.item_train_counts
        self._partition_meta = meta
        self.holds_all_rows = False
        self.row_owner = (rank, world)
        log.info("process %d of %d: read its rows from %s in %.1f s: train %d, val %d, test %d ratings (the whole split: %s)",
                 rank, world, run_dir / partition.FOLDER, time.perf_counter() - started, *(len(loaded.parts[p]) for p in PARTS),
                 self.counts_line())

    def release_frames(self) -> None:
        """Drop the parts' pandas frames (a second copy of every rating next to the tensors) once the run's files
        are written and no refit will merge them: :meth:`save` and :meth:`with_validation_in_train` refuse after."""
        self.frames = {}
        self._frames_released = True

    def _require_frames(self, what: str) -> None:
        if getattr(self, "_frames_released", False):
            raise RuntimeError(f"{what} need the parts' frames, released after the run's files were written")

    def _require_all_rows(self, what: str) -> None:
        if not self.holds_all_rows:
            raise RuntimeError(f"{what} need every row of the split; this DDP process holds only its own "
                               f"(visrec.data.partition): only rank 0 may do this")

    # ---- sizes ----------------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return len(self.user_map)

    @property
    def num_items(self) -> int:
        return len(self.item_map)

    @property
    def global_mean(self) -> float:
        if not self.holds_all_rows:
            return float(self._partition_meta["global_mean"])
        return float(self.tensors["train"].ratings.mean())

    # ---- loaders --------------------------------------------------------------------------------
    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        data, own = self.tensors[part], part != "train" and self.row_owner is not None
        if own:  # validation / test of a partitioned run: this process's users' ratings, all of them
            data = data.subset(rows_of(data, self.num_users, self.num_items, *self.row_owner, by_item=False))
        rows = _Rows(data)
        batch = self.batch_size if shuffle else self.eval_batch_size
        if part == "train" and self.train_batches == "whole":  # one batch per epoch: every training row
            batch, shuffle = max(1, len(rows)), False
        return DataLoader(
            rows,
            sampler=RowBatches(len(rows), batch, shuffle=shuffle, seed=self.seed, split_by_rank=not own),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False) if self.part_size("val") else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, folder: str | Path, image_digests: list | None = None) -> None:
        """Write ``user_map.parquet``, ``item_map.parquet``, ``item_images.parquet`` and ``split.parquet`` (user,
        item, rating, part), all with raw ids. ``item_images.parquet``: item, image_path (absolute; null when the
        item has none), image_path_from_run (the same path relative to ``folder``, so a project folder that
        moves with its run and pictures still finds them) and, with ``image_digests`` (N,), image_sha256: the
        digest of the picture the run's features came from (null: the run used no picture for the item)."""
        self._require_all_rows("the run's split files")
        self._require_frames("the run's split files")
        folder = Path(folder)
        self.user_map.save(folder / "user_map.parquet")
        self.item_map.save(folder / "item_map.parquet")
        absolute = [None if p is None else os.path.abspath(p) for p in self.image_paths]
        images = pd.DataFrame({"item": self.item_map.raw_ids,
                               "image_path": pd.array(absolute, dtype="string"),
                               "image_path_from_run": pd.array([None if p is None else _relative(p, folder) for p in absolute],
                                                               dtype="string")})
        if image_digests is not None:
            images["image_sha256"] = pd.array(list(image_digests), dtype="string")
        with atomic_path(folder / "item_images.parquet") as tmp:
            images.to_parquet(tmp, index=False)
        with atomic_path(folder / "split.parquet") as tmp:
            self._write_split(tmp)

    def _write_split(self, path: Path) -> None:
        """split.parquet: user, item (raw ids), rating, part, one row per rating, the parts in PARTS order. The id
        and part columns go out dictionary-encoded (the row's code into the id map's raw ids), so no per-row
        id object is built (20M ratings: 18.2 → 7.1 s); without the Arrow schema in the file they read back as
        plain id columns, exactly what a pandas-written file gives."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        def column(name: str) -> np.ndarray:
            return np.concatenate([self.frames[p][name].to_numpy() for p in PARTS])  # (R,)

        def coded(codes: np.ndarray, values) -> pa.DictionaryArray:
            return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32 if len(values) < 2**31 else np.int64)),
                                                  pa.array(values))

        sizes = [len(self.frames[p]) for p in PARTS]
        table = pa.table({"user": coded(column("user"), self.user_map.raw_ids),
                          "item": coded(column("item"), self.item_map.raw_ids),
                          "rating": pa.array(column("rating")),
                          "part": coded(np.repeat(np.arange(len(PARTS)), sizes), list(PARTS))})
        pq.write_table(table, path, store_schema=False)


def _plain(options) -> dict:
    if options is None:
        return {}
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(options, resolve=True) if isinstance(options, DictConfig) else dict(options)


# ---- factories used by the Hydra data configs (flat arguments: data.root, data.fold, ...) -------------
def movielens_100k(root: str, split: Split, fold: str | int = 1, images: str | None = "posters", duplicates: str = "last", **datamodule_args) -> RatingsDataModule:
    """MovieLens-100K from ``root`` (see :class:`~visrec.data.readers.MovieLens100K`)."""
    from visrec.data.readers import MovieLens100K

    return RatingsDataModule(MovieLens100K(root, fold=fold, images=images, duplicates=duplicates), split, **datamodule_args)


def ratings_table(path: str, split: Split, source_args: dict | None = None, **datamodule_args) -> RatingsDataModule:
    """Any CSV / Parquet ratings table; ``source_args`` are :class:`~visrec.data.readers.RatingsFile`'s arguments."""
    from visrec.data.readers import RatingsFile

    return RatingsDataModule(RatingsFile(path, **_plain(source_args)), split, **datamodule_args)


def synthetic(root: str, split: Split, generator: dict | None = None, **datamodule_args) -> RatingsDataModule:
    """The embedded synthetic dataset, generated under ``root`` on first use; ``generator`` holds
    :class:`~visrec.data.synthetic.SyntheticParams` fields."""
    from visrec.data.synthetic import SyntheticSource

    return RatingsDataModule(SyntheticSource(root, **_plain(generator)), split, **datamodule_args)
