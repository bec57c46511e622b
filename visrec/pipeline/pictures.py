"""The pictures of a finished run, for a notebook or a report: a poster grid of a few users'
recommendations and the map of the item vectors, read from the run directory and its serving bundle.

The drawing is :mod:`visrec.tracking.media`'s (the same pictures a W&B run gets); this module only
gathers what they show: ``split.parquet`` (the ratings the run trained on), ``item_images.parquet``
(item id -> image path) and a :class:`~visrec.serving.Recommender` over the run's bundle.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from visrec.features.images import image_file_exists
from visrec.tracking import media

__all__ = ["image_paths", "example_users", "poster_rows", "poster_grid", "item_vector_map"]


def image_paths(run_dir: str | Path) -> dict:
    """Raw item id -> absolute image path (None for an item without one), from ``item_images.parquet``."""
    frame = pd.read_parquet(Path(run_dir) / "item_images.parquet")
    return {item: (None if pd.isna(path) else str(path)) for item, path in zip(frame["item"].tolist(), frame["image_path"].tolist())}


def example_users(run_dir: str | Path, count: int = 4, liked: int = 6, threshold: float = 4.0) -> list[tuple[object, list]]:
    """The first ``count`` users (in the order of the run's user map) with at least ``liked`` training
    ratings >= ``threshold`` (train and validation parts), each with those raw item ids, highest rated
    first (ties: the order of ``split.parquet``)."""
    run_dir = Path(run_dir)
    split = pd.read_parquet(run_dir / "split.parquet")
    seen = split[split["part"].isin(["train", "val"]) & (split["rating"] >= threshold)]
    order = pd.read_parquet(run_dir / "user_map.parquet").iloc[:, 0].tolist()
    groups = {user: frame for user, frame in seen.groupby("user", sort=False)}
    out = []
    for user in order:
        frame = groups.get(user)
        if frame is None or len(frame) < liked:
            continue
        top = frame.sort_values("rating", ascending=False, kind="stable")["item"].tolist()[:liked]
        out.append((user, top))
        if len(out) == count:
            break
    return out


def poster_rows(run_dir: str | Path, recommender, count: int = 4, liked: int = 6, k: int = 6,
                threshold: float = 4.0) -> list[tuple[str, list, list]]:
    """Rows for :func:`visrec.tracking.media.poster_grid`: ``(label, liked image paths, recommended image
    paths)`` for the :func:`example_users` of the run, the recommendations being ``recommender.recommend``'s
    top ``k`` (the user's training items excluded). Padding slots (fewer than ``k`` candidates) are left out."""
    paths = image_paths(run_dir)
    users = example_users(run_dir, count, liked, threshold)
    if not users:
        return []
    ids, _ = recommender.recommend([user for user, _ in users], k=k)
    return [(f"user {user}", [paths.get(item) for item in items], [paths.get(item) for item in row if item is not None])
            for (user, items), row in zip(users, ids)]


def poster_grid(run_dir: str | Path, recommender, count: int = 4, liked: int = 6, k: int = 6, size: int = 72,
                threshold: float = 4.0) -> Image.Image:
    """The poster grid of :func:`poster_rows`: liked items on the left, recommendations on the right."""
    return media.poster_grid(poster_rows(run_dir, recommender, count, liked, k, threshold), size=size)


def item_vector_map(run_dir: str | Path, recommender, size: int = 480) -> Image.Image:
    """:func:`visrec.tracking.media.item_map` of the bundle's item vectors, coloured by whether the item
    has an image file (``item_images.parquet``; a path whose file is gone counts as none)."""
    paths = image_paths(run_dir)
    has_image = np.array([image_file_exists(paths.get(item)) for item in recommender.item_ids], dtype=bool)
    return media.item_map(recommender.item_factors, has_image, size=size)
