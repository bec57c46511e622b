"""User kNN (model=user_knn: Surprise's KNNBasic / KNNWithMeans / KNNBaseline): similarities and predictions
against hand-computed values, the vectorized neighbour selection against a plain loop, blocks, fallbacks,
option checks, and (with the ``bench`` extra) Surprise's own predictions on the same ratings."""
from __future__ import annotations

import math

import pytest
import torch

from visrec.models.knn.user_scoring import UserKNNScoring, user_similarities
from visrec.models.knn.user_module import UserKNN

# u0: i0=5, i1=3 | u1: i0=4, i1=2, i2=5 | u2: i0=1, i2=2 | u3: no rating; item 3: no rating.
USERS, ITEMS = torch.tensor([0, 0, 1, 1, 1, 2, 2]), torch.tensor([0, 1, 0, 1, 2, 0, 2])
RATINGS = torch.tensor([5.0, 3.0, 4.0, 2.0, 5.0, 1.0, 2.0])
MEANS = (4.0, 11 / 3, 1.5)
COS01 = 26 / math.sqrt(34 * 20)  # over co-rated {i0, i1}: (5·4 + 3·2) / sqrt((25 + 9)(16 + 4))


def fitted(**options) -> UserKNNScoring:
    model = UserKNNScoring(4, 4, global_mean=float(RATINGS.mean()), rating_min=1.0, rating_max=5.0, **options)
    model.set_train_counts(torch.bincount(USERS, minlength=4).float(), torch.bincount(ITEMS, minlength=4).float())
    model.fit(USERS, ITEMS, RATINGS)
    return model


def sparse_ratings():
    return torch.sparse_coo_tensor(torch.stack([USERS, ITEMS]), RATINGS, (4, 4)).coalesce()


def test_cosine_and_pearson_over_co_rated_items():
    block = sparse_ratings().to_dense()[:1]  # u0
    cos = user_similarities(block, sparse_ratings(), "cosine")[0]
    torch.testing.assert_close(cos, torch.tensor([1.0, COS01, 1.0, 0.0]))  # u2 shares only i0: 5·1 / sqrt(25·1)
    pearson = user_similarities(block, sparse_ratings(), "pearson")[0]
    torch.testing.assert_close(pearson, torch.tensor([1.0, 1.0, 0.0, 0.0]))  # (5, 3) vs (4, 2); one co-rated item: 0
    shrunk = user_similarities(block, sparse_ratings(), "cosine", shrinkage=1.0)[0]
    torch.testing.assert_close(shrunk, torch.tensor([2 / 3, COS01 * 2 / 3, 0.5, 0.0]))  # · n / (n + 1)
    support = user_similarities(block, sparse_ratings(), "cosine", min_support=2)[0]
    torch.testing.assert_close(support, torch.tensor([1.0, COS01, 0.0, 0.0]))
    msd = user_similarities(block, sparse_ratings(), "msd")[0]  # 1 / (mean squared difference + 1)
    torch.testing.assert_close(msd, torch.tensor([1.0, 1 / ((1 + 1) / 2 + 1), 1 / (16 + 1), 0.0]))


@pytest.mark.parametrize("options, expected", [
    ({}, 4 + (COS01 * (5 - 11 / 3) + 1.0 * (2 - 1.5)) / (COS01 + 1.0)),  # both raters of i2
    ({"k": 1}, 4 + (2 - 1.5)),  # the most similar rater only: u2 (1.0 > 0.997)
    ({"similarity": "pearson"}, 4 + (5 - 11 / 3)),  # u2's pearson is 0: u1 only (5.33, clipped by predict)
    ({"similarity": "pearson", "min_k": 2}, 4.0),  # fewer than min_k neighbours: μ_u
])
def test_knn_with_means_prediction(options, expected):
    model = fitted(**options)
    score = model.score_users(torch.tensor([0]))[0, 2]
    torch.testing.assert_close(score, torch.tensor(expected))
    torch.testing.assert_close(model.scorer().predict(torch.tensor([0]), torch.tensor([2])), torch.tensor([min(expected, 5.0)]))


def test_fallbacks_unknown_user_gets_the_global_mean_and_an_unrated_item_the_user_mean():
    model = fitted()
    scores = model.score_users(torch.tensor([3, 0]))
    torch.testing.assert_close(scores[0], torch.full((4,), float(RATINGS.mean())))
    assert float(scores[1, 3]) == pytest.approx(MEANS[0])
    assert torch.isfinite(scores).all()


def baselines(users, items, ratings, U, N):
    from visrec.models.factor.bias_als import als_biases

    mu = float(ratings.mean())
    b_u, b_i = als_biases(users, items, ratings, U, N, mu, 15.0, 10.0, torch.zeros(U), 10)
    return lambda u, i: mu + float(b_u[u]) + float(b_i[i])


def plain_similarities(users, items, ratings, U, N, similarity, shrinkage=0.0):
    """(U, U) similarities by their plain formulas (module docstring of visrec.models.knn.user_scoring), pair by pair."""
    R = torch.sparse_coo_tensor(torch.stack([users, items]), ratings, (U, N)).coalesce().to_dense()
    base = baselines(users, items, ratings, U, N)
    out = torch.zeros(U, U)
    for u in range(U):
        for v in range(U):
            common = [i for i in range(N) if R[u, i] > 0 and R[v, i] > 0]
            n = len(common)
            if n == 0:
                continue
            x, y = [float(R[u, i]) for i in common], [float(R[v, i]) for i in common]
            if similarity == "pearson_baseline":
                x, y = [a - base(u, i) for a, i in zip(x, common)], [b - base(v, i) for b, i in zip(y, common)]
            if similarity in ("cosine", "pearson_baseline"):
                den = math.sqrt(sum(a * a for a in x) * sum(b * b for b in y))
                s = sum(a * b for a, b in zip(x, y)) / den if den > 0 else 0.0
            elif similarity == "msd":
                s = 1 / (sum((a - b) ** 2 for a, b in zip(x, y)) / n + 1)
            else:
                mx, my = sum(x) / n, sum(y) / n
                den = math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
                s = sum((a - mx) * (b - my) for a, b in zip(x, y)) / den if den > 0 else 0.0
            if similarity == "pearson_baseline":
                out[u, v] = s * (n - 1) / (n - 1 + shrinkage) if n - 1 + shrinkage > 0 else 0.0
            else:
                out[u, v] = s * n / (n + shrinkage)
    return out


def vectorized_similarities(users, items, ratings, U, N, similarity, shrinkage=0.0):
    """(U, U) similarities from visrec's vectorized function, given the values each similarity is computed on."""
    values = ratings
    if similarity == "pearson_baseline":
        base = baselines(users, items, ratings, U, N)
        values = ratings - torch.tensor([base(int(u), int(i)) for u, i in zip(users, items)])
    matrix = torch.sparse_coo_tensor(torch.stack([users, items]), values, (U, N)).coalesce()
    mask = torch.sparse_coo_tensor(torch.stack([users, items]), torch.ones_like(values), (U, N)).to_dense()
    return user_similarities(matrix.to_dense(), matrix, similarity, shrinkage=shrinkage, block_mask=mask)


def reference_scores(users, items, ratings, U, N, k, min_k, sim, variant="with_means"):
    """Surprise's kNN algorithms by plain loops over a (U, U) similarity matrix ``sim`` (ties: lower index)."""
    R = torch.sparse_coo_tensor(torch.stack([users, items]), ratings, (U, N)).coalesce().to_dense()
    mu = float(ratings.mean())
    base = baselines(users, items, ratings, U, N)
    means = [float(R[u][R[u] > 0].mean()) if (R[u] > 0).any() else mu for u in range(U)]
    out = torch.zeros(U, N)
    for u in range(U):
        for i in range(N):
            raters = [(float(sim[u, v]), v) for v in range(U) if v != u and R[v, i] > 0 and sim[u, v] > 0]
            raters = sorted(raters, key=lambda t: (-t[0], t[1]))[:k]
            offset = {"basic": lambda v: 0.0, "with_means": lambda v: means[v], "baseline": lambda v: base(v, i)}[variant]
            dev = sum(s * (float(R[v, i]) - offset(v)) for s, v in raters)
            total = sum(s for s, _ in raters)
            enough = len(raters) >= min_k and total > 0
            if variant == "basic":
                out[u, i] = dev / total if enough else mu
            else:
                start = means[u] if variant == "with_means" else base(u, i)
                out[u, i] = start + (dev / total if enough else 0.0)
    return out


def random_ratings(U=12, N=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cells = torch.randperm(U * N, generator=gen)[:50]
    users, items = cells // N, cells % N
    users[:U], items[:U] = torch.arange(U), torch.arange(U) % N  # every user has a rating
    cells = torch.unique(users * N + items)
    users, items = cells // N, cells % N
    ratings = torch.randint(1, 6, (len(cells),), generator=gen).float()
    return users, items, ratings


@pytest.mark.parametrize("similarity, shrinkage", [("cosine", 0.0), ("pearson", 0.0), ("msd", 0.0), ("msd", 2.0),
                                                   ("pearson_baseline", 3.0), ("cosine", 1.0)])
def test_vectorized_similarities_match_their_plain_formulas(similarity, shrinkage):
    U, N = 12, 9
    users, items, ratings = random_ratings(U, N)
    expected = plain_similarities(users, items, ratings, U, N, similarity, shrinkage)
    torch.testing.assert_close(vectorized_similarities(users, items, ratings, U, N, similarity, shrinkage), expected,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("similarity, variant, shrinkage", [
    ("cosine", "with_means", 0.0), ("pearson", "with_means", 0.0), ("msd", "with_means", 0.0),
    ("cosine", "basic", 0.0), ("msd", "basic", 2.0), ("pearson_baseline", "baseline", 3.0), ("cosine", "baseline", 0.0),
])
def test_vectorized_neighbours_match_a_plain_loop_in_small_blocks(similarity, variant, shrinkage):
    U, N = 12, 9
    users, items, ratings = random_ratings(U, N)
    model = UserKNNScoring(U, N, global_mean=float(ratings.mean()), k=3, min_k=2, similarity=similarity, variant=variant,
                           shrinkage=shrinkage, max_block_elements=40)
    model.set_train_counts(torch.bincount(users, minlength=U).float(), torch.bincount(items, minlength=N).float())
    model.fit(users, items, ratings)
    sim = vectorized_similarities(users, items, ratings, U, N, similarity, shrinkage)
    expected = reference_scores(users, items, ratings, U, N, 3, 2, sim, variant)
    torch.testing.assert_close(model.score_users(torch.arange(U)), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("algorithm, similarity, shrinkage", [
    ("KNNBasic", "cosine", 0.0), ("KNNBasic", "msd", 0.0), ("KNNWithMeans", "pearson", 0.0),
    ("KNNWithMeans", "msd", 0.0), ("KNNBaseline", "pearson_baseline", 100.0), ("KNNBaseline", "cosine", 0.0),
])
def test_predictions_equal_surprises_on_the_same_ratings(algorithm, similarity, shrinkage):
    surprise = pytest.importorskip("surprise", reason="Surprise is in the bench extra")
    import pandas as pd

    U, N = 30, 20
    gen = torch.Generator().manual_seed(1)
    cells = torch.unique(torch.randint(0, U * N, (260,), generator=gen))
    users, items = cells // N, cells % N
    ratings = torch.randint(1, 6, (len(cells),), generator=gen).float()
    frame = pd.DataFrame({"user": users.numpy(), "item": items.numpy(), "rating": ratings.numpy()})
    trainset = surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=(1, 5))).build_full_trainset()
    sim_options = {"name": similarity, "user_based": True, "shrinkage": shrinkage}
    algo = getattr(surprise, algorithm)(k=40, sim_options=sim_options, verbose=False)
    algo.fit(trainset)
    variant = {"KNNBasic": "basic", "KNNWithMeans": "with_means", "KNNBaseline": "baseline"}[algorithm]
    model = UserKNNScoring(U, N, global_mean=float(ratings.mean()), rating_min=1.0, rating_max=5.0, similarity=similarity,
                           variant=variant, shrinkage=shrinkage)
    model.set_train_counts(torch.bincount(users, minlength=U).float(), torch.bincount(items, minlength=N).float())
    model.fit(users, items, ratings)
    known_u, known_i = sorted(set(users.tolist())), sorted(set(items.tolist()))
    pu, pi = torch.tensor(known_u).repeat_interleave(len(known_i)), torch.tensor(known_i).repeat(len(known_u))
    unrated = ~torch.isin(pu * N + pi, cells)  # on a training pair Surprise counts the user as its own neighbour
    pu, pi = pu[unrated], pi[unrated]
    expected = torch.tensor([algo.predict(int(u), int(i)).est for u, i in zip(pu, pi)], dtype=torch.float32)
    torch.testing.assert_close(model.scorer().predict(pu, pi), expected, atol=1e-4, rtol=1e-4)


def test_checkpoint_state_restores_the_ratings_of_another_size():
    model = fitted()
    again = UserKNNScoring(4, 4, global_mean=0.0, rating_min=1.0, rating_max=5.0)
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again.score_users(torch.arange(4)), model.score_users(torch.arange(4)))


@pytest.mark.parametrize("key, value", [("k", 0), ("min_k", -1), ("similarity", "jaccard"), ("shrinkage", -1.0),
                                        ("min_support", 1.5), ("max_block_elements", 0), ("variant", "item_based"),
                                        ("bsl_reg_user", -1.0), ("bsl_n_epochs", 0)])
def test_bad_options_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"model.{key}"):
        UserKNN(num_users=3, num_items=3, global_mean=3.0, **{key: value})


def test_min_k_above_k_is_refused():
    with pytest.raises(ValueError, match="model.min_k=5 > model.k=2"):
        UserKNN(num_users=3, num_items=3, global_mean=3.0, k=2, min_k=5)
