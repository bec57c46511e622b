import hashlib

import numpy as np
import pandas as pd
import pytest
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


# sha256 of ratings.csv written by the generator before it had a choice model (commit f9238f1), and
# the folder names it used: β = 0 must reproduce that data byte for byte and reuse those folders.
OLD_RATINGS = {
    "tiny": (TINY_GENERATOR, "synthetic-62b3530f4dbb", "7db14023bdd9b588a9208ee9bd684d3ef8d94b762ea34b623b1fad936ee5a481"),
    "seed3": ({"num_users": 50, "num_items": 30, "mean_ratings_per_user": 10.0, "image_size": 8, "seed": 3},
              "synthetic-1477a994fc50", "329a651eeee9639791296fbc85ea80b6f00a9c70fc924786515fb4a8b708bf8d"),
}


@pytest.mark.parametrize("case", list(OLD_RATINGS))
def test_choice_strength_zero_is_the_original_generator(tmp_path, case):
    generator, name, sha = OLD_RATINGS[case]
    folder = ensure_generated(tmp_path, SyntheticParams(**generator, choice_strength=0.0))
    assert folder.name == name
    assert hashlib.sha256((folder / "ratings.csv").read_bytes()).hexdigest() == sha


def _picked_affinity(folder):
    """Standardized true affinity (b_i + 1.2 p_u·q_i, z-scored over items per user) of every
    (user, item) pair, and a mask of the pairs the user rated."""
    truth = np.load(folder / "truth.npz")
    x = truth["item_bias"][None, :] + 1.2 * truth["user_factors"] @ truth["item_factors"].T
    z = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    ratings = pd.read_csv(folder / "ratings.csv")
    users = ratings["user"].str[1:].astype(int).to_numpy()
    items = ratings["item"].str[1:].astype(int).to_numpy()
    picked = np.zeros_like(z, dtype=bool)
    picked[users, items] = True
    return z, picked


def test_choice_strength_makes_users_pick_what_they_like(tmp_path):
    base = {"num_users": 300, "num_items": 120, "mean_ratings_per_user": 20.0, "image_size": 8, "seed": 5}
    results = {}
    for beta in (0.0, 1.0):
        folder = ensure_generated(tmp_path, SyntheticParams(**base, choice_strength=beta))
        z, picked = _picked_affinity(folder)
        top_quarter = z >= np.quantile(z, 0.75, axis=1, keepdims=True)  # each user's best-liked 25% of items
        results[beta] = {"mean z": z[picked].mean(), "top share": top_quarter[picked].mean(), "folder": folder,
                         "mean rating": pd.read_csv(folder / "ratings.csv")["rating"].mean()}
    blind, choosy = results[0.0], results[1.0]
    # β = 0: picks ignore taste (mean affinity of picks ≈ 0, a quarter of them in the top quarter);
    # β = 1: users pick items they like (sd of a pick's z ≈ 1, ~6,000 picks: the margins are > 10 sd).
    assert abs(blind["mean z"]) < 0.1 and abs(blind["top share"] - 0.25) < 0.04, blind
    assert choosy["mean z"] > blind["mean z"] + 0.4, (choosy, blind)
    assert choosy["top share"] > blind["top share"] + 0.15, (choosy, blind)
    # The picks' taste is recentred: selection shows in who rates what, not in every rating drifting up.
    assert abs(choosy["mean rating"] - blind["mean rating"]) < 0.15, (choosy["mean rating"], blind["mean rating"])
    # Same number of ratings and no extra random draws: the items and pictures are identical.
    for name in ("items.csv", "truth.npz", "images/i00000.png"):
        assert (blind["folder"] / name).read_bytes() == (choosy["folder"] / name).read_bytes(), name
    assert len(pd.read_csv(blind["folder"] / "ratings.csv")) == len(pd.read_csv(choosy["folder"] / "ratings.csv"))
    assert blind["folder"] != choosy["folder"]


@pytest.mark.parametrize("beta", [-0.5, float("nan"), float("inf"), "strong", True])
def test_choice_strength_must_be_a_finite_non_negative_number(beta):
    with pytest.raises(ValueError, match="choice_strength"):
        SyntheticParams(choice_strength=beta)


def test_choice_strength_one_and_one_point_zero_are_the_same_dataset():
    assert SyntheticParams(choice_strength=1).digest() == SyntheticParams(choice_strength=1.0).digest()
    assert SyntheticParams(choice_strength=1.0).digest() != SyntheticParams().digest()
