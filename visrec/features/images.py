"""Image loading that never crashes: an RGB picture, or the reason there is none."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

MISSING = "missing"


def load_rgb(path: str | Path | None) -> tuple[Image.Image | None, str | None]:
    """Return ``(image, None)`` with an RGB image, or ``(None, reason)``.

    Greyscale, CMYK and palette images are converted to RGB; transparency is composited on white.
    ``reason`` is ``"missing"`` (no path or no file) or ``"unreadable: ..."`` (empty, truncated,
    not an image, ...).
    """
    if path is None or not Path(path).is_file():
        return None, MISSING
    if Path(path).stat().st_size == 0:
        return None, "unreadable: empty file"
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            if has_alpha:
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(white, rgba).convert("RGB"), None
            return img.convert("RGB"), None
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        return None, f"unreadable: {type(err).__name__}: {err}"
