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


@pytest.mark.parametrize("model", [["model=ials", "model.visual_mode=head"], ["model=vbpr", "model.cold_scoring=head"],
                                   ["model=biased_mf", "model.visual_mode=head"]],
                         ids=["ials-head", "vbpr-head", "biased-mf-head"])
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


def test_a_rating_models_cold_items_rank_from_the_typical_candidate_and_predict_with_the_head():
    """Biased MF's cold items: the evaluator's rating predictions are the head's (RMSE-optimal intercepts c, e),
    its ranking tables start from the typical candidate (shifted by q_c − e, b_c − c), and the order among
    cold items is the same with both (the shift is one per user)."""
    from visrec.interactions import Interactions
    from visrec.models.factor.module import RatingModule

    g = torch.Generator().manual_seed(0)
    U, N, K, D = 20, 12, 3, 6
    model = RatingModule(U, N, k=K, global_mean=3.0, rating_min=1.0, rating_max=5.0, visual_mode="head", feature_dim=D,
                         visual_pca_dim=4)
    users = torch.arange(U).repeat_interleave(4)  # (80,): each user rates 4 of the first 9 items
    items = torch.stack([torch.randperm(9, generator=g)[:4] for _ in range(U)]).reshape(-1)
    ratings = torch.randint(1, 6, (len(users),), generator=g).float()
    train = Interactions(users, items, ratings)
    model.set_train_counts(torch.bincount(users, minlength=U), torch.bincount(items, minlength=N))
    with torch.no_grad():
        for table in (model.net.user_factors.weight, model.net.item_factors.weight, model.net.item_bias.weight):
            table.copy_(torch.randn(table.shape, generator=g))
    model.attach_features(torch.randn(N, D, generator=g), torch.ones(N, dtype=torch.bool))
    with torch.no_grad():
        model.visual.set_head(torch.randn(K, 4, generator=g), torch.full((K,), 2.0), torch.randn(4, generator=g), 1.5)
    model.set_cold_rank_shift(train)
    assert model.cold_rank_shift.abs().sum() > 0 and model.cold_rank_bias_shift != 0
    scorer = model.scorer()
    cold = torch.arange(9, N)  # (3,) never rated, with a picture
    all_users = torch.arange(U)
    pairs_u, pairs_i = all_users.repeat_interleave(len(cold)), cold.repeat(U)
    torch.testing.assert_close(scorer.predict(pairs_u, pairs_i), model.predict_ratings(pairs_u, pairs_i))
    ranking = scorer.score_users(all_users)[:, cold]  # (U, 3)
    with torch.no_grad():
        rating = (model.net.predict(pairs_u, pairs_i) + model._visual_cold_terms(pairs_u, pairs_i)).reshape(U, -1)  # unclipped
    shift = ranking - rating  # (U, 3): one value per user
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift))
    expected = model.net.user_factors.weight.detach() @ model.cold_rank_shift + model.cold_rank_bias_shift  # (U,)
    torch.testing.assert_close(shift[:, 0], expected)
    # Warm items rank and predict as before.
    warm = torch.arange(9)
    torch.testing.assert_close(scorer.score_users(all_users)[:, warm],
                               model.net.predict(all_users.repeat_interleave(9), warm.repeat(U)).reshape(U, 9).detach())
