"""Image loading that never crashes: an RGB picture as an image viewer shows it, or the reason there is none."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MISSING = "missing"
EXIF_ORIENTATION = 0x0112

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def image_file_exists(path: str | Path | None) -> bool:
    """Whether ``path`` names a regular file. A path that cannot even be looked up -- a name longer than
    the file system allows (ENAMETOOLONG, e.g. a 300-character item id in ``{item}.jpg``), a NUL byte, a
    folder that cannot be searched -- is a picture that is not there: False, never an exception."""
    if path is None:
        return False
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # ValueError: an embedded NUL byte
        return False


def load_rgb(path: str | Path | None) -> tuple[Image.Image | None, str | None]:
    """Return ``(image, None)`` with an 8-bit RGB image, or ``(None, reason)``.

    What comes back is what an image viewer shows:

    - the picture is turned (and mirrored) as its EXIF orientation says (``ImageOps.exif_transpose``);
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
    if not image_file_exists(path):
        return None, MISSING
    try:
        if Path(path).stat().st_size == 0:
            return None, "unreadable: empty file"
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later
            return _to_rgb(_upright(img))
    except Exception as err:  # noqa: BLE001 - any decoder failure is "unreadable", never a crash
        return None, f"unreadable: {type(err).__name__}: {err}"


def exif_turned(img: Image.Image) -> bool:
    """Whether the picture's EXIF orientation (tag 0x0112) says a viewer shows it turned or mirrored (2..8)."""
    try:
        return img.getexif().get(EXIF_ORIENTATION, 1) in range(2, 9)
    except Exception:  # noqa: BLE001 - broken EXIF: a viewer ignores it, and so do we
        return False


def _upright(img: Image.Image) -> Image.Image:
    """The picture as a viewer shows it: turned and mirrored as its EXIF orientation says (a phone's
    portrait photo is stored sideways with orientation 6). Broken EXIF is ignored, as viewers do."""
    if not exif_turned(img):
        return img
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001
        return img


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
