import numpy as np
import pandas as pd
from PIL import Image

from visrec.data.synthetic import SyntheticParams, SyntheticSource, ensure_generated

from conftest import TINY_GENERATOR


def test_generated_files_are_read_by_the_generic_reader(tmp_path):
    table = SyntheticSource(tmp_path, **TINY_GENERATOR).load()
    ratings = table.ratings
    assert set(ratings["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len(table.items) == TINY_GENERATOR["num_items"]
    assert not ratings.duplicated(["user", "item"]).any()
    path = next(iter(table.image_paths.values()))
    assert Image.open(path).size == (16, 16)


def test_deterministic_by_seed_and_reused(tmp_path):
    params = SyntheticParams(**TINY_GENERATOR)
    first = ensure_generated(tmp_path / "a", params)
    second = ensure_generated(tmp_path / "b", params)
    assert (first / "ratings.csv").read_bytes() == (second / "ratings.csv").read_bytes()
    stamp = (first / "ratings.csv").stat().st_mtime_ns
    assert ensure_generated(tmp_path / "a", params) == first
    assert (first / "ratings.csv").stat().st_mtime_ns == stamp  # reused, not rewritten
    other = ensure_generated(tmp_path / "a", SyntheticParams(**{**TINY_GENERATOR, "seed": 1}))
    assert (other / "ratings.csv").read_bytes() != (first / "ratings.csv").read_bytes()
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_ground_truth_depends_on_looks_and_popularity_is_long_tailed(tmp_path):
    folder = ensure_generated(tmp_path, SyntheticParams(num_users=300, num_items=200))
    truth = np.load(folder / "truth.npz")
    attrs, factors = truth["attributes"], truth["item_factors"]
    # Least squares from attributes explains most of the item-vector variance.
    coef, *_ = np.linalg.lstsq(attrs, factors, rcond=None)
    explained = 1 - ((factors - attrs @ coef) ** 2).sum() / ((factors - factors.mean(0)) ** 2).sum()
    assert explained > 0.7
    counts = pd.read_csv(folder / "ratings.csv")["item"].value_counts().to_numpy()
    assert counts[: len(counts) // 10].sum() > 0.25 * counts.sum()  # top 10% of items get > 25% of ratings
    assert (~truth["has_image"]).sum() >= 1  # some items have no picture, as in real catalogs
