"""The embedded default dataset: synthetic items with pictures and a known ground truth.

Each item has visual attributes (shape, colour, texture) drawn procedurally with PIL. Ground truth:
    a_i ∈ {0,1}^(S+C+T)   one-hot shape, colour and texture of item i
    q_i = A a_i + σ_q ε_i  item vector depends on what the item looks like, plus item-specific noise
    b_i = w · a_i + σ_b ε  item bias also depends on looks
    p_u ~ N(0, I/K), b_u ~ N(0, σ_u²)  random users
    r_ui = clip(round(μ + b_u + b_i + s · p_u·q_i + σ_r ε), 1, 5)      μ = 3.6, s = 1.2
The number of ratings per user is log-normal. Which items a user rates (the choice model) is sampled
without replacement, by Gumbel top-k over the keys log π_ui + g_ui, g_ui ~ Gumbel(0, 1), i.e. with
    π_ui ∝ exp(log_pop_i + β · a_ui)
    log_pop_i = −γ log rank_i                 long-tailed (Zipf) popularity over a random item ranking
    a_ui = (x_ui − mean_j x_uj) / sd_j x_uj,  x_ui = b_i + s · p_u·q_i
a_ui is user u's true affinity for item i — the item-dependent part of the same ground truth that
produces the ratings (b_u is constant over a user's items, so it cannot influence the choice),
standardized over the catalogue for each user, so β (``choice_strength``) is in units of that user's
spread of taste. β = 0: items are picked by popularity alone, independently of preference (missing at
random given popularity; the generator's original behaviour, reproduced draw for draw). β > 0: users
pick what they expect to like, so ratings are missing not at random and which items a user rates
carries a personal signal, as in real data: Marlin & Zemel 2009, "Collaborative prediction and ranking
with non-random missing data" (RecSys; with Marlin, Zemel, Roweis & Slaney 2007, UAI: Yahoo! users
rate songs chosen for them at random far lower than songs they chose); Steck 2010, "Training and
testing of recommender systems on data missing not at random" (KDD). Schnabel et al. 2016,
"Recommendations as treatments" (ICML), simulate MNAR data the same way: observation propensities
that grow with the true preference. How β was set: conf/data/synthetic.yaml and
``benchmarks/synthetic_ranking.py``.
With β > 0 the picked pairs' x_ui are recentred, x_ui − (mean over picks − mean over all pairs), so the
rating scale keeps the level of unselected pairs (mean ≈ 3.5, about half the ratings >= 4, as in
MovieLens-100K) and selection shows in who rates what, not in every rating drifting to 5 (without it,
β = 2 gave mean 4.44 and 85% >= 4). At β = 0 the correction is skipped (its mean over picks is then the
popularity-weighted mean, and the original data is kept byte for byte).
Everything is a pure function of the parameters and seed.

The generator writes the same on-disk format a researcher's own data would have, read by
:class:`~visrec.data.readers.RatingsFile`: ``ratings.csv`` (user, item, rating, timestamp),
``items.csv`` (item, image, shape, colour, texture) and ``images/<item>.png``; plus ``truth.npz``
(ground-truth arrays, no pickle) and ``params.json``. A folder is written under a temporary name and
renamed when complete, and reused when its parameters match.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from visrec.data.readers import RatingsFile
from visrec.data.table import RatingsTable

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (220, 40, 40), "orange": (240, 140, 20), "yellow": (235, 215, 30), "green": (40, 170, 60),
    "cyan": (30, 190, 200), "blue": (40, 70, 220), "purple": (140, 50, 190), "black": (25, 25, 25),
}
TEXTURES = ("plain", "stripes", "dots")
FORMAT_VERSION = 1
RATING_MEAN = 3.6  # μ of the ground truth
FACTOR_SCALE = 1.2  # s: weight of the taste term p_u·q_i


@dataclass(frozen=True)
class SyntheticParams:
    num_users: int = 600
    num_items: int = 400
    k: int = 8
    mean_ratings_per_user: float = 40.0
    popularity_exponent: float = 0.8
    item_noise: float = 0.15
    rating_noise: float = 0.4
    missing_image_ratio: float = 0.02
    image_size: int = 64
    seed: int = 0
    # β of the choice model: how strongly a user's true affinity, not just popularity, decides which
    # items they rate (0: popularity alone, the original generator). See the module docstring.
    choice_strength: float = 0.0

    def __post_init__(self):
        beta = self.choice_strength
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not np.isfinite(beta) or beta < 0:
            raise ValueError(f"data.generator.choice_strength must be a finite number >= 0, got {beta!r}")
        object.__setattr__(self, "choice_strength", float(beta))  # 1 and 1.0: the same dataset and folder

    def fields(self) -> dict:
        """The parameters as written to params.json and hashed into the folder name. β = 0 is left out:
        that data is the original generator's, so its folders (and their names) stay valid."""
        fields = asdict(self)
        if not fields["choice_strength"]:
            del fields["choice_strength"]
        else:
            fields["choice_recentred"] = True  # β > 0 data with recentred ratings: not the folders of the first choice model
        return fields

    def digest(self) -> str:
        text = json.dumps({"format": FORMAT_VERSION, **self.fields()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _attributes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rng.integers(len(SHAPES), size=n), rng.integers(len(COLOURS), size=n), rng.integers(len(TEXTURES), size=n)


def _one_hot(shape: np.ndarray, colour: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """(N, S+C+T) one-hot attribute matrix."""
    n = len(shape)
    parts = [np.eye(len(SHAPES))[shape], np.eye(len(COLOURS))[colour], np.eye(len(TEXTURES))[texture]]
    return np.concatenate(parts, axis=1).reshape(n, -1)


def draw_item(shape: str, colour: str, texture: str, size: int, rng: np.random.Generator) -> Image.Image:
    """An RGB picture of one coloured, textured shape on a light background (small random jitter)."""
    bg = tuple(int(v) for v in rng.integers(215, 250, size=3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    fill = COLOURS[colour]
    m = size * (0.12 + 0.08 * rng.random())
    box = (m, m, size - m, size - m)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(size / 2, m), (size - m, size - m), (m, size - m)], fill=fill)
    else:  # diamond
        draw.polygon([(size / 2, m), (size - m, size / 2), (size / 2, size - m), (m, size / 2)], fill=fill)
    mark = (255, 255, 255) if colour != "yellow" else (60, 60, 60)
    step = max(4, size // 8)
    if texture == "stripes":
        for x in range(0, size, step):
            draw.line([(x, 0), (x, size)], fill=bg, width=max(1, step // 3))
    elif texture == "dots":
        for x in range(step // 2, size, step):
            for y in range(step // 2, size, step):
                r = max(1, step // 5)
                draw.ellipse((x - r, y - r, x + r, y + r), fill=mark)
    return img


def affinity(user_factors: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray) -> np.ndarray:
    """(U, N) standardized true affinity a_ui: x_ui = b_i + s · p_u·q_i, z-scored over items per user."""
    x = item_bias[None, :] + FACTOR_SCALE * (user_factors @ item_factors.T)
    x -= x.mean(axis=1, keepdims=True)
    return x / np.maximum(x.std(axis=1, keepdims=True), 1e-12)


def generate(params: SyntheticParams, folder: Path) -> None:
    """Write the dataset for ``params`` into ``folder`` (which must not exist yet)."""
    rng = np.random.default_rng(params.seed)
    U, N, K = params.num_users, params.num_items, params.k
    shape, colour, texture = _attributes(rng, N)
    attrs = _one_hot(shape, colour, texture)  # (N, A)
    A = rng.normal(size=(K, attrs.shape[1]))  # (K, A)
    item_factors = attrs @ A.T / np.sqrt(3.0) + params.item_noise * rng.normal(size=(N, K))  # (N, K)
    item_bias = attrs @ rng.normal(scale=0.35, size=attrs.shape[1]) + 0.1 * rng.normal(size=N)  # (N,)
    user_factors = rng.normal(scale=1.0 / np.sqrt(K), size=(U, K))  # (U, K)
    user_bias = rng.normal(scale=0.3, size=U)  # (U,)

    # Long-tailed popularity: Zipf weights over a random ranking of the items.
    rank = rng.permutation(N) + 1
    log_pop = -params.popularity_exponent * np.log(rank)  # (N,)
    counts = np.clip(rng.lognormal(np.log(params.mean_ratings_per_user) - 0.32, 0.8, size=U), 5, N).astype(int)
    users, items = [], []
    for start in range(0, U, 1024):  # blocks of users bound memory at 1024 x N
        block = slice(start, min(start + 1024, U))
        keys = log_pop[None, :] + rng.gumbel(size=(block.stop - block.start, N))  # Gumbel top-k = sampling w/o replacement
        if params.choice_strength:  # no extra random draws: β = 0 reproduces the popularity-only data exactly
            keys += params.choice_strength * affinity(user_factors[block], item_factors, item_bias)
        order = np.argsort(-keys, axis=1)
        take = np.arange(N)[None, :] < counts[block, None]
        u_idx = np.broadcast_to(np.arange(block.start, block.stop)[:, None], order.shape)
        users.append(u_idx[take])
        items.append(order[take])
    users, items = np.concatenate(users), np.concatenate(items)
    taste = item_bias[items] + FACTOR_SCALE * (user_factors[users] * item_factors[items]).sum(1)  # (R,) x_ui of the picks
    if params.choice_strength:  # users picked what they like: recentre, so the mean rating stays that of unselected pairs
        taste = taste - (taste.mean() - (item_bias.mean() + FACTOR_SCALE * user_factors.mean(0) @ item_factors.mean(0)))
    score = RATING_MEAN + user_bias[users] + taste + params.rating_noise * rng.normal(size=len(users))
    ratings = np.clip(np.rint(score), 1, 5).astype(int)
    timestamps = 1_600_000_000 + np.sort(rng.integers(0, 10_000_000, size=len(users)))
    shuffle = rng.permutation(len(users))

    folder.mkdir(parents=True)
    (folder / "images").mkdir()
    item_ids = np.array([f"i{i:05d}" for i in range(N)])
    user_ids = np.array([f"u{u:05d}" for u in range(U)])
    pd.DataFrame({
        "user": user_ids[users[shuffle]], "item": item_ids[items[shuffle]],
        "rating": ratings[shuffle], "timestamp": timestamps,
    }).to_csv(folder / "ratings.csv", index=False)
    has_image = rng.random(N) >= params.missing_image_ratio
    image_col = []
    for i in range(N):
        name = f"images/{item_ids[i]}.png"
        image_col.append(name if has_image[i] else "")
        if has_image[i]:
            draw_item(SHAPES[shape[i]], list(COLOURS)[colour[i]], TEXTURES[texture[i]], params.image_size, rng).save(folder / name)
    pd.DataFrame({
        "item": item_ids, "image": image_col, "shape": np.array(SHAPES)[shape],
        "colour": np.array(list(COLOURS))[colour], "texture": np.array(TEXTURES)[texture],
    }).to_csv(folder / "items.csv", index=False)
    np.savez(folder / "truth.npz", item_ids=item_ids, user_ids=user_ids, item_factors=item_factors,
             item_bias=item_bias, user_factors=user_factors, user_bias=user_bias, attributes=attrs, has_image=has_image)
    (folder / "params.json").write_text(json.dumps({"format": FORMAT_VERSION, **params.fields()}, indent=2))


def ensure_generated(root: str | Path, params: SyntheticParams) -> Path:
    """Folder ``root/<params digest>`` holding the dataset, generated atomically if missing."""
    root = Path(root).expanduser()
    folder = root / f"synthetic-{params.digest()}"
    if (folder / "params.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root))
    try:
        generate(params, tmp / "data")
        try:
            os.replace(tmp / "data", folder)
        except OSError:  # another process finished first: its copy is identical
            if not (folder / "params.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class SyntheticSource:
    """Generates (once) and reads the synthetic dataset through the generic table reader."""

    def __init__(self, root: str, duplicates: str = "error", **params):
        self.root = root
        self.params = SyntheticParams(**params)
        self.duplicates = duplicates

    def load(self) -> RatingsTable:
        folder = ensure_generated(self.root, self.params)
        return RatingsFile(
            folder / "ratings.csv", timestamp_col="timestamp", rating_min=1, rating_max=5,
            items_path=folder / "items.csv", image_col="image", duplicates=self.duplicates,
            config_prefix=None,  # generated files: their reader options are not in the config
        ).load()
