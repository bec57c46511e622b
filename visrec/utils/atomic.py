"""Atomic file writes: write to a temporary name in the same folder, then rename.

A crash while writing leaves the previous file (or nothing) in place, never half a file; a folder
(:func:`atomic_dir`: a report, a bundle) is written the same way, whole or not at all.

Output that cannot be written (a full disk, a quota, a file-size limit, a folder that is not writable)
raises :class:`WriteError` naming the file as the user will look for it (not the temporary name) and
the reason; the entry points print it as one line, as they print a DataError.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

# errno -> what the user can check. None: a short write that carried no errno (numpy's "N requested and M written").
_SPACE = "disk full, quota or file-size limit?"
_HINTS = {errno.ENOSPC: _SPACE, errno.EFBIG: _SPACE, getattr(errno, "EDQUOT", -1): _SPACE, None: _SPACE,
          errno.EACCES: "is the folder writable?", errno.EPERM: "is the folder writable?", errno.EROFS: "is the folder writable?"}
SPACE_ERRNOS = (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))


class WriteError(OSError):
    """Output that could not be written: ``cannot write <path>: <reason> (<hint>)[; <note>]``.

    ``path`` is the file (or folder) the user would look for; ``note`` says what was left as it was
    (e.g. "nothing written; the bundle at <folder> is unchanged"). An OSError still (code that catches
    those keeps working), with the ``errno`` of the write that failed."""

    def __init__(self, path: str | os.PathLike, error: OSError, note: str = ""):
        self.path, self.error, self.note = str(path), error, note
        self.message = f"cannot write {self.path}: {describe_os_error(error)}" + (f"; {note}" if note else "")
        super().__init__(self.message)
        self.errno, self.strerror, self.filename = error.errno, error.strerror, self.path

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return type(self), (self.path, self.error, self.note)


def describe_os_error(error: OSError) -> str:
    """Why a write failed, in words, with what to check: ``No space left on device (disk full, quota or
    file-size limit?)``; a short write without errno (``1920 requested and 224 written``) reads ``only 224
    of 1920 bytes could be written``."""
    code = error.errno
    short = re.fullmatch(r"(\d+) requested and (\d+) written", str(error))
    reason = (f"only {short.group(2)} of {short.group(1)} bytes could be written" if short
              else os.strerror(code) if code is not None else str(error) or type(error).__name__)
    hint = _HINTS.get(code)
    return f"{reason} ({hint})" if hint else reason


@contextmanager
def writing(path: str | os.PathLike, note: str = "") -> Iterator[None]:
    """Turn an OSError raised by the block (which writes ``path``, perhaps under a temporary name) into
    :class:`WriteError` naming ``path``. A WriteError of an inner block (a temporary name) is renamed to
    ``path`` too, keeping its note unless ``note`` is given."""
    try:
        yield
    except WriteError as error:
        raise WriteError(path, error.error, note or error.note) from error.error
    except OSError as error:
        raise WriteError(path, error, note) from error


def _missing_parents(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet, deepest first."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) that are empty: what a failed write created and left."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    An OSError (from the block too) becomes :class:`WriteError` naming ``path``; the previous file stays,
    and folders created for it are removed again."""
    path = Path(path)
    created = _missing_parents(path)
    done = False
    tmp = None
    try:
        with writing(path, "nothing written" if not path.exists() else f"nothing written; {path} is unchanged"):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            yield tmp
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; give the file ordinary permissions
            os.replace(tmp, path)
            done = True
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
        if not done:
            _remove_empty(created)


@contextmanager
def atomic_dir(path: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; when the block succeeds it takes the place of
    ``path`` (a ``what`` already there is swapped out only then, and removed). When the block fails the
    temporary folder, and any folders created above it, are removed: ``path`` stays as it was. An
    OSError becomes :class:`WriteError` naming ``path`` (use :func:`writing` inside the block to name
    the file)."""
    path = Path(path)
    note = f"nothing written; the {what} at {path} is unchanged" if path.exists() else "nothing written"
    created = _missing_parents(path)
    done = False
    tmp = None
    try:
        with writing(path, note):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            yield tmp
        except WriteError as error:  # names the file in the folder (see writing); the note says what was kept
            raise WriteError(error.path, error.error, note) from error.error
        except OSError as error:
            raise WriteError(path, error, note) from error
        with writing(path, note):
            os.chmod(tmp, 0o755)
            _swap_in(tmp, path)
        done = True
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            _remove_empty(created)


def _swap_in(new: Path, path: Path) -> None:
    """Rename folder ``new`` to ``path``; a folder already at ``path`` is moved aside first and removed after."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        if old is not None:
            os.replace(old, path)  # put the previous folder back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
    write_text_atomic(path, strict_json_text(path, obj))


def strict_json_text(path: str | os.PathLike, obj: Any) -> str:
    """``obj`` as strict JSON text for ``path``; raises :class:`NonFiniteValueError` (see :func:`write_json_atomic`)."""
    bad = _first_non_finite(obj)
    if bad is not None:
        raise NonFiniteValueError(f"{path}: refusing to write the non-finite value {bad[1]!r} at {bad[0]!r} (strict JSON has no NaN/Infinity)")
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


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
