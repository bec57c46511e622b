"""Cold items scored from an uninformative picture stay on the trained items' scale (issue 27, kind of
../shared/bugcases/t3-head-cold-items-on-top): never-rated catalog items whose pictures carry no information
(features=random) do not take the top of the users' lists, for the preference models' closed-form heads (iALS
``visual_mode=head``, VBPR ``cold_scoring=head``); and the typical candidate item matches its dense definition."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from visrec.models.visual.typical import typical_candidate
from visrec.pipeline.training import train
from visrec.serving import Recommender

from conftest import compose_train


def _catalog_with_unrated_items(folder: Path) -> list[str]:
    """30 users × 10 ratings over items i00..i24 (dense: 40 %); a catalog i00..i29 in which i25..i29 are never
    rated; pictures for i00..i26 (i25 and i26: never rated, with a picture). Returns the overrides."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u:02d}", f"i{i:02d}", int(rng.integers(1, 6))) for u in range(30) for i in rng.choice(25, size=10, replace=False)]
    pd.DataFrame(rows, columns=["user", "item", "rating"]).to_csv(folder / "ratings.csv", index=False)
    pd.DataFrame({"item": [f"i{i:02d}" for i in range(30)]}).to_csv(folder / "items.csv", index=False)
    (folder / "images").mkdir()
    for i in range(27):
        pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"i{i:02d}.jpg")
    return ["data=ratings_table", f"data.path={folder / 'ratings.csv'}", f"data.source_args.items_path={folder / 'items.csv'}",
            f"data.source_args.images_dir={folder / 'images'}", "data.source_args.rating_min=1", "data.source_args.rating_max=5",
            "features=random", "trainer.max_epochs=3", "export=true", "logger=none", "test=false", "evaluate=false"]


@pytest.mark.parametrize("model", [["model=ials", "model.visual_mode=head"], ["model=vbpr", "model.cold_scoring=head"]],
                         ids=["ials-head", "vbpr-head"])
def test_never_rated_items_with_uninformative_pictures_do_not_top_the_lists(tmp_path, model):
    overrides = _catalog_with_unrated_items(tmp_path)
    train(compose_train([*overrides, *model], tmp_path))
    rec = Recommender.load(tmp_path / "run" / "export")
    unrated = rec.item_index(["i25", "i26"])
    assert all(rec.scorable_items[unrated]) and not any(rec.known_items[unrated])  # scored from their picture
    top, _ = rec.recommend(list(rec.user_ids), k=2, include_cold=True)
    users_with_one_on_top = int(sum(bool({"i25", "i26"} & set(row)) for row in top))
    # Before: the head's fitted intercept extrapolated, and both were the top 2 of every user's list (30 of 30).
    assert users_with_one_on_top <= 3, users_with_one_on_top


def test_the_typical_candidate_is_the_mean_score_of_the_items_users_have_not_seen():
    g = torch.Generator().manual_seed(0)
    U, N, K = 12, 9, 3
    P, Q, b = torch.rand(U, K, generator=g), torch.randn(N, K, generator=g) + 0.5, torch.randn(N, generator=g)
    known = torch.ones(N, dtype=torch.bool)
    known[-1] = False  # an untrained item is never a candidate
    scores = P @ Q.T  # (U, N)
    seen = scores >= scores[:, :-1].quantile(0.6, dim=1, keepdim=True)  # each user's best-scored items are their positives
    seen[:, -1] = False
    seen[0] = False  # a user without interactions has no candidates counted
    users, items = seen.nonzero(as_tuple=True)
    q_c, b_c = typical_candidate(P, Q, b, known, users, items)
    candidates = ~seen & known[None, :]  # (U, N)
    candidates[0] = False
    mean_q = Q[known].mean(0)
    t = float(scores[candidates].mean() / (P @ mean_q)[:, None].expand(U, N)[candidates].mean())
    assert 0 < t < 1  # the user's own positives lift q̄ above the candidates
    torch.testing.assert_close(q_c, t * mean_q)
    assert b_c == pytest.approx(float(b[None, :].expand(U, N)[candidates].mean()))
