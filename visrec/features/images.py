"""Image loading that never crashes: an RGB picture as an image viewer shows it, or the reason there is none."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

MISSING = "missing"

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def load_rgb(path: str | Path | None) -> tuple[Image.Image | None, str | None]:
    """Return ``(image, None)`` with an 8-bit RGB image, or ``(None, reason)``.

    What comes back is what an image viewer shows:

    - greyscale, CMYK and palette images are converted to RGB; transparency is composited on white;
    - high-bit-depth greyscale is rescaled to 0..255, not clipped: 16-bit (``I;16*``, and ``I`` with
      values in 0..65535) by ``v / 257``; float (``F``) with values in [0, 1] by ``v * 255`` and in
      [0, 255] as is. Other 32-bit ranges (negative, beyond 16 bits, NaN) have no single faithful
      rendering and count as unreadable ("unsupported bit depth ...").

    ``reason`` is ``"missing"`` (no path or no file) or ``"unreadable: ..."``: empty, truncated, not
    an image, an unsupported pixel format, or any other exception the decoder raises (Pillow's
    plugins raise ``NotImplementedError``, ``struct.error``, ``EOFError``, ``IndexError``, ...): a
    bad file never stops a run.
    """
    if path is None or not Path(path).is_file():
        return None, MISSING
    if Path(path).stat().st_size == 0:
        return None, "unreadable: empty file"
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later
            return _to_rgb(img)
    except Exception as err:  # noqa: BLE001 - any decoder failure is "unreadable", never a crash
        return None, f"unreadable: {type(err).__name__}: {err}"


def _to_rgb(img: Image.Image) -> tuple[Image.Image | None, str | None]:
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        return _rescaled_grey(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), None
    return img.convert("RGB"), None


def _rescaled_grey(img: Image.Image) -> tuple[Image.Image | None, str | None]:
    """(H, W) 16/32-bit integer or float greyscale -> 8-bit RGB, scaled as a viewer does."""
    values = np.asarray(img).astype(np.float64)  # (H, W)
    if not np.isfinite(values).all():
        return None, f"unreadable: unsupported bit depth (mode {img.mode} with non-finite values)"
    low, high = float(values.min()), float(values.max())
    if img.mode in _SIXTEEN_BIT_MODES or (img.mode == "I" and low >= 0 and high <= 65535):
        scaled = values / 257.0
    elif img.mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    elif img.mode == "F" and low >= 0 and high <= 255:
        scaled = values
    else:
        return None, f"unreadable: unsupported bit depth (mode {img.mode}, values {low:g}..{high:g})"
    grey = Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8), mode="L")
    return grey.convert("RGB"), None
