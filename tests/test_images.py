"""Images decode to what a viewer shows (high bit depth rescaled, not clipped), and no decoder
exception, whatever its type, escapes load_rgb."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from visrec.features import images
from visrec.features.images import load_rgb


def _gradient() -> np.ndarray:
    return np.tile(np.linspace(0, 255, 64), (16, 1)).round().astype(np.uint8)  # (16, 64) grey ramp


def _write_variants(tmp_path):
    ramp = _gradient()
    Image.fromarray(ramp, mode="L").save(tmp_path / "a8.png")
    Image.fromarray(ramp.astype(np.uint16) * 257).save(tmp_path / "a16.png")  # I;16, full 16-bit range
    Image.fromarray(ramp.astype(np.int32) * 257, mode="I").save(tmp_path / "int32.tif")
    Image.fromarray(ramp.astype(np.float32) / 255, mode="F").save(tmp_path / "float01.tif")
    Image.fromarray(ramp.astype(np.float32), mode="F").save(tmp_path / "float255.tif")
    return ramp


@pytest.mark.parametrize("name", ["a16.png", "int32.tif", "float01.tif", "float255.tif"])
def test_high_bit_depth_greyscale_looks_like_its_8_bit_version(tmp_path, name):
    ramp = _write_variants(tmp_path)
    image, reason = load_rgb(tmp_path / name)
    assert reason is None
    pixels = np.asarray(image)  # (H, W, 3)
    assert pixels.dtype == np.uint8 and pixels.shape == (*ramp.shape, 3)
    assert np.abs(pixels[..., 0].astype(int) - ramp).max() <= 1  # not clipped to white or black


def test_greyscale_with_no_faithful_rendering_is_unreadable(tmp_path):
    values = np.full((8, 8), -5, dtype=np.int32)
    values[0, 0] = 2**30
    Image.fromarray(values, mode="I").save(tmp_path / "wide.tif")
    image, reason = load_rgb(tmp_path / "wide.tif")
    assert image is None and reason.startswith("unreadable: unsupported bit depth")


@pytest.mark.parametrize("error", [NotImplementedError("Unknown pixel format flags 128"), struct.error("unpack"),
                                   EOFError(), IndexError("list index"), ZeroDivisionError()])
def test_any_decoder_exception_is_unreadable_not_a_crash(tmp_path, monkeypatch, error):
    path = tmp_path / "odd.jpg"
    path.write_bytes(b"DDS " + bytes(120))

    def failing_open(*args, **kwargs):
        raise error

    monkeypatch.setattr(images.Image, "open", failing_open)
    image, reason = load_rgb(path)
    assert image is None and reason.startswith(f"unreadable: {type(error).__name__}")
