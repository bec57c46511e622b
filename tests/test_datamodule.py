import numpy as np
import torch

from visrec.data import ColdItemSplit, IdMap, MovieLens100K, PredefinedSplit, RatingsDataModule
from visrec.data.synthetic import SyntheticSource

from conftest import TINY_GENERATOR


def test_parts_are_disjoint_and_batches_are_tensors(tmp_path):
    dm = RatingsDataModule(SyntheticSource(tmp_path, **TINY_GENERATOR), ColdItemSplit(0.25, seed=3, warm_test_ratio=0), val_ratio=0.1, batch_size=64)
    dm.setup()
    train, val, test = (dm.tensors[p] for p in ("train", "val", "test"))
    pairs = [set(zip(t.users.tolist(), t.items.tolist())) for t in (train, val, test)]
    assert not (pairs[0] & pairs[1]) and not (pairs[0] & pairs[2]) and not (pairs[1] & pairs[2])
    assert (dm.item_train_counts[test.items] == 0).all()  # cold items: no training ratings
    users, items, ratings = next(iter(dm.train_dataloader()))
    assert users.dtype == torch.int64 and ratings.dtype == torch.float32 and len(users) == 64
    assert dm.num_items == TINY_GENERATOR["num_items"] and len(dm.image_paths) == dm.num_items
    dm.save(tmp_path / "run")
    assert IdMap.load(tmp_path / "run" / "item_map.parquet") == dm.item_map


def test_movielens_fold_u1(ml100k):
    dm = RatingsDataModule(MovieLens100K(ml100k, fold=1), PredefinedSplit(), val_ratio=0.05, seed=0)
    dm.setup()
    assert (dm.num_users, dm.num_items) == (943, 1682)
    assert len(dm.tensors["test"]) == 20000
    assert len(dm.tensors["train"]) + len(dm.tensors["val"]) == 80000
    assert len(dm.tensors["val"]) == 4000
    assert sum(p is not None and p.exists() for p in dm.image_paths) == 1650
    assert dm.rating_range == (1.0, 5.0)
    assert np.isclose(dm.global_mean, dm.tensors["train"].ratings.mean().item())


def test_released_frames_keep_the_tensors_and_refuse_what_needs_the_frames(tmp_path):
    """After the run's files are written and no refit will merge the parts, train() drops the pandas frames (a
    second copy of the ratings during training); the tensors stay, and save / the refit merge refuse by name."""
    import pytest

    dm = RatingsDataModule(SyntheticSource(tmp_path / "data", **TINY_GENERATOR), ColdItemSplit(0.25, seed=3), val_ratio=0.1)
    dm.setup("fit")
    sizes = {part: len(data) for part, data in dm.tensors.items()}
    dm.release_frames()
    assert dm.frames == {} and {part: len(data) for part, data in dm.tensors.items()} == sizes
    with pytest.raises(RuntimeError, match="the run's split files need the parts' frames"):
        dm.save(tmp_path)
    with pytest.raises(RuntimeError, match="a refit on train \\+ val need"):
        dm.with_validation_in_train()


def test_split_file_holds_every_rating_with_its_raw_ids_and_part(tmp_path):
    """split.parquet (written dictionary-encoded, without the Arrow schema) reads back as plain id columns: one
    row per rating, the raw ids of the id maps, the rating and the part, parts in train, val, test order."""
    import pandas as pd

    dm = RatingsDataModule(SyntheticSource(tmp_path / "data", **TINY_GENERATOR), ColdItemSplit(0.25, seed=3), val_ratio=0.1)
    dm.setup("fit")
    dm.save(tmp_path)
    split = pd.read_parquet(tmp_path / "split.parquet")
    assert list(split.columns) == ["user", "item", "rating", "part"]
    assert not any(isinstance(split[c].dtype, pd.CategoricalDtype) for c in split.columns)
    expected = pd.concat([pd.DataFrame({"user": dm.user_map.to_raw(dm.frames[p]["user"].to_numpy()),
                                        "item": dm.item_map.to_raw(dm.frames[p]["item"].to_numpy()),
                                        "rating": dm.frames[p]["rating"].to_numpy(), "part": p})
                          for p in ("train", "val", "test")], ignore_index=True)
    assert sorted(split["part"].unique()) == ["test", "train", "val"]
    assert split.astype(object).equals(expected.astype(object))
