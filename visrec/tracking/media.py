"""Pictures for experiment dashboards, drawn with PIL and numpy (no plotting library needed)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from visrec.features.images import load_rgb

GREY = (200, 200, 200)


def _thumbnail(path, size: int) -> Image.Image:
    image, _ = load_rgb(path)
    if image is None:  # missing or unreadable: a grey tile with a cross
        tile = Image.new("RGB", (size, size), GREY)
        draw = ImageDraw.Draw(tile)
        draw.line((0, 0, size, size), fill=(120, 120, 120))
        draw.line((0, size, size, 0), fill=(120, 120, 120))
        return tile
    image.thumbnail((size, size))
    tile = Image.new("RGB", (size, size), (255, 255, 255))
    tile.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return tile


def poster_grid(rows: Sequence[tuple[str, Sequence, Sequence]], size: int = 72, gap: int = 16) -> Image.Image:
    """One line per user: ``(label, liked image paths, recommended image paths)``. Liked items on the
    left, a gap, the recommendations on the right; missing pictures as crossed grey tiles."""
    width_left = max((len(r[1]) for r in rows), default=0)
    width_right = max((len(r[2]) for r in rows), default=0)
    header = 18
    canvas = Image.new("RGB", ((width_left + width_right) * size + gap, header + len(rows) * (size + header)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), "rated highly", fill=(0, 0, 0))
    draw.text((width_left * size + gap + 2, 2), "recommended", fill=(0, 0, 0))
    for row, (label, liked, recommended) in enumerate(rows):
        top = header + row * (size + header)
        draw.text((2, top + 2), label, fill=(0, 0, 0))
        for col, path in enumerate(liked):
            canvas.paste(_thumbnail(path, size), (col * size, top + header))
        for col, path in enumerate(recommended):
            canvas.paste(_thumbnail(path, size), (width_left * size + gap + col * size, top + header))
    return canvas


def item_map(item_factors: np.ndarray, has_image: np.ndarray, size: int = 480) -> Image.Image:
    """The (N, K) item vectors projected on their top two principal components; blue = item has an
    image, orange = it has none. Items with an all-zero vector (nothing learned) are left out."""
    vectors = np.asarray(item_factors, dtype=np.float64)
    keep = np.linalg.norm(vectors, axis=1) > 0
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if keep.sum() >= 2:
        centred = vectors[keep] - vectors[keep].mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T if vt.shape[0] >= 2 else np.hstack([centred @ vt[:1].T, np.zeros((len(centred), 1))])  # (M, 2)
        low, high = xy.min(0), xy.max(0)
        xy = 10 + (xy - low) / np.where(high > low, high - low, 1.0) * (size - 20)
        for (x, y), image in zip(xy, np.asarray(has_image)[keep]):
            colour = (31, 119, 180) if image else (255, 127, 14)
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    draw.text((4, 4), "item vectors, PCA: blue = has image, orange = no image", fill=(0, 0, 0))
    return canvas
