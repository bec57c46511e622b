"""Atomic file writes: write to a temporary name in the same folder, then rename.

A crash while writing leaves the previous file (or nothing) in place, never half a file.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class NonFiniteValueError(ValueError):
    """A NaN or infinite number was about to be written as a result."""


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as strict JSON (RFC 8259: no ``NaN`` / ``Infinity``), atomically.

    Raises :class:`NonFiniteValueError` naming the file and the key of the first non-finite number:
    a non-finite number is never a result, so nothing is written.
    """
    bad = _first_non_finite(obj)
    if bad is not None:
        raise NonFiniteValueError(f"{path}: refusing to write the non-finite value {bad[1]!r} at {bad[0]!r} (strict JSON has no NaN/Infinity)")
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _first_non_finite(obj: Any, where: str = "") -> tuple[str, float] | None:
    """(key path, value) of the first NaN/inf float in nested dicts and lists, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "<top>", obj)
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        found = _first_non_finite(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None
