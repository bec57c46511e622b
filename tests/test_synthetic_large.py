"""The large-problem generator (visrec.data.synthetic_large): sizes, no duplicates, determinism,
atomic writes, the files read by RatingsFile (and trained on), and the same choice model as
synthetic.py's exact sampler."""
import json

import numpy as np
import pandas as pd
import pytest

from visrec.data.readers import RatingsFile
from visrec.data.synthetic import affinity
from visrec.data.synthetic_large import COUNT_SIGMA, LargeParams, _choose_exact, count_location, generate, main, sample

SMALL = {"num_users": 3000, "num_items": 400, "num_ratings": 60_000, "seed": 4}


def _read(folder, name="ratings.parquet"):
    return RatingsFile(folder / name, timestamp_col="timestamp", rating_min=1, rating_max=5, items_path=folder / "items.csv",
                       image_col="image", duplicates="error", config_prefix=None).load()


def test_sizes_no_duplicates_and_the_generic_reader(tmp_path):
    folder = tmp_path / "big"
    generate(LargeParams(**SMALL), folder, fmt="both")
    for name in ("ratings.parquet", "ratings.csv"):
        table = _read(folder, name)  # duplicates="error": raises on a repeated (user, item)
        ratings = table.ratings
        assert len(table.items) == SMALL["num_items"] and len(table.users) == SMALL["num_users"]
        assert abs(len(ratings) / SMALL["num_ratings"] - 1) < 0.03, len(ratings)
        assert not ratings.duplicated(["user", "item"]).any()
        assert set(ratings["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
        assert table.image_paths == {}  # pictures are off by default: an empty image column
    truth = np.load(folder / "truth.npz")
    per_user = pd.read_parquet(folder / "ratings.parquet")["user"].value_counts()
    assert (per_user.sort_index().to_numpy() == truth["counts"]).all()  # exactly k_u ratings per user
    assert truth["user_factors"].shape == (SMALL["num_users"], 8) and truth["item_factors"].shape == (SMALL["num_items"], 8)
    info = json.loads((folder / "params.json").read_text())
    assert info["realized_ratings"] == per_user.sum() and info["generator"] == "synthetic_large"


def test_count_location_hits_the_mean_number_of_ratings():
    """E[clip(⌊LogNormal(μ, 0.8)⌋, 5, N)] = R / U (synthetic.py's μ = log(mean) − 0.32 is 1.6% low)."""
    z = np.random.default_rng(0).normal(size=2_000_000)
    for mean, n in ((20.0, 100_000), (12.0, 400)):
        draws = np.clip(np.floor(np.exp(count_location(mean, n) + COUNT_SIGMA * z)), 5, n)
        assert abs(draws.mean() / mean - 1) < 0.004, (mean, draws.mean())


def test_same_seed_same_bytes_and_atomic(tmp_path):
    params = LargeParams(**SMALL, num_images=5, image_size=8)
    a, b = tmp_path / "a", tmp_path / "b"
    generate(params, a, fmt="both")
    generate(params, b, fmt="both")
    for name in ("ratings.parquet", "ratings.csv", "items.csv", "truth.npz", "images/i00000.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    other = tmp_path / "c"
    generate(LargeParams(**{**SMALL, "seed": 5}), other, fmt="csv")
    assert (other / "ratings.csv").read_bytes() != (a / "ratings.csv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temporary leftovers
    stamp = (a / "ratings.csv").stat().st_mtime_ns
    assert generate(params, a)["reused"] and (a / "ratings.csv").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError):
        generate(LargeParams(**{**SMALL, "seed": 9}), a)
    # Pictures for the first num_images items only; the ratings do not depend on them.
    items = pd.read_csv(a / "items.csv", keep_default_na=False)
    assert (items["image"][5:] == "").all() and (items["image"][:5] != "").sum() >= 4
    generate(LargeParams(**SMALL), tmp_path / "d", fmt="csv")
    assert (tmp_path / "d" / "ratings.csv").read_bytes() == (a / "ratings.csv").read_bytes()


def _pick_stats(model, users, items):
    """Mean standardized affinity a_ui of the picks, their share in each user's top quarter, the mean
    of the within-look part of a_ui (what only the importance weights correct for), and the share of
    picks among the 1% most popular items."""
    z = affinity(model.user_factors, model.item_factors, model.item_bias)
    top = z >= np.quantile(z, 0.75, axis=1, keepdims=True)
    residual = (model.res_b[items] + (model.res_qT[:, items].T * model.user_factors[users]).sum(1)) / model.x_sd[users]
    head = np.argsort(np.argsort(-model.log_pop)) < len(model.log_pop) // 100
    return {"z": z[users, items].mean(), "top": top[users, items].mean(), "residual": residual.mean(), "head": head[items].mean()}


def test_the_choice_model_matches_the_exact_sampler():
    """β > 0: users pick items they like (as synthetic.py); and the pool sampler's picks have the
    statistics of synthetic.py's exact Gumbel top-k over all items, on the same ground truth."""
    base = {"num_users": 2000, "num_items": 1500, "num_ratings": 40_000, "seed": 3}
    results = {}
    for beta in (0.0, 1.5):
        data = sample(LargeParams(**base, choice_strength=beta))
        stats = _pick_stats(data.model, data.users, data.items)
        users, items = _choose_exact(data.model, data.params, np.random.default_rng(99), np.arange(base["num_users"]))
        exact = _pick_stats(data.model, users, items)
        results[beta] = stats, exact, data.ratings.mean()
        # ~40,000 picks: sd of a mean z ≈ 0.005, of a share ≈ 0.002 (more with users' correlation).
        assert abs(stats["z"] - exact["z"]) < 0.04, (beta, stats, exact)
        assert abs(stats["top"] - exact["top"]) < 0.02, (beta, stats, exact)
        assert abs(stats["residual"] - exact["residual"]) < 0.012, (beta, stats, exact)
        assert abs(stats["head"] - exact["head"]) < 0.01, (beta, stats, exact)
    (blind, _, blind_rating), (choosy, choosy_exact, choosy_rating) = results[0.0], results[1.5]
    assert abs(blind["z"]) < 0.1 and abs(blind["top"] - 0.25) < 0.04, blind
    assert choosy["z"] > blind["z"] + 0.6 and choosy["top"] > blind["top"] + 0.3, (choosy, blind)
    assert choosy_exact["residual"] > 0.02  # the within-look part of taste matters at β = 1.5 ...
    assert choosy["residual"] > 0.02  # ... and the importance weights reproduce it
    # The picks' taste is recentred as in synthetic.py: selection does not lift every rating.
    assert abs(choosy_rating - blind_rating) < 0.15, (choosy_rating, blind_rating)


@pytest.mark.parametrize("bad", [{"num_ratings": 10}, {"num_ratings": 10**9}, {"choice_strength": -1.0},
                                 {"pool_factor": 0.5}, {"num_images": 10_000}, {"num_users": True}])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        LargeParams(**{**SMALL, **bad})


def test_cli_output_trains_with_ratings_table(tmp_path, capsys):
    from visrec.pipeline.training import train

    from conftest import compose_train

    folder = tmp_path / "cli"
    main(["--users", "300", "--items", "60", "--ratings", "4000", "--out", str(folder), "--beta", "1.5", "--seed", "1"])
    assert "ratings" in capsys.readouterr().out and (folder / "ratings.parquet").is_file()
    metrics = train(compose_train([
        "data=ratings_table", f"data.path={folder / 'ratings.parquet'}", f"data.source_args.items_path={folder / 'items.csv'}",
        "data.source_args.image_col=image", "data.source_args.timestamp_col=timestamp", "data.source_args.rating_min=1",
        "data.source_args.rating_max=5", "callbacks=none", "model.scheduler=null", "model.visual_mode=none",
        "trainer.max_epochs=1", "evaluate=false"], tmp_path))
    assert metrics["epochs"] == 1


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import visrec.data.synthetic_large as large

    def broken(data, folder, fmt):
        folder.mkdir(parents=True)
        (folder / "ratings.parquet").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(large, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        generate(LargeParams(**SMALL), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary one


def test_same_ground_truth_as_synthetic_py(tmp_path):
    """Same seed and sizes: the same items, looks, factors, biases and popularity as synthetic.py
    (only the counts, calibrated, and the sampler of the choice differ)."""
    from visrec.data.synthetic import SyntheticParams, ensure_generated

    small = ensure_generated(tmp_path, SyntheticParams(num_users=60, num_items=40, image_size=8, seed=2))
    generate(LargeParams(num_users=60, num_items=40, num_ratings=900, seed=2), tmp_path / "large")
    a, b = np.load(small / "truth.npz"), np.load(tmp_path / "large" / "truth.npz")
    for name in ("item_ids", "user_ids", "item_factors", "item_bias", "user_factors", "user_bias", "attributes"):
        assert np.array_equal(a[name], b[name]), name
    looks = ["item", "shape", "colour", "texture"]
    assert pd.read_csv(small / "items.csv")[looks].equals(pd.read_csv(tmp_path / "large" / "items.csv")[looks])
