"""On-disk feature cache.

One file per backbone key (name + weights digest + preprocessing): ``<cache_dir>/<key>.npz`` with
    digests  (M,)   sha256 of each image file's bytes (salted when its EXIF orientation turns it: see file_digest)
    features (M, D) float32 pooled features of those images
    failed   (F,)   digests of files that could not be decoded (so they are not retried)
    checksum ()     sha256 over the three arrays: a truncated or altered file is detected and rebuilt
An image is looked up by its content digest, so a changed or added image is recomputed alone and a
renamed or duplicated one is not recomputed at all. Loaded with ``allow_pickle=False``; written to a
temporary name and renamed. Saving merges: under an exclusive lock on ``<key>.npz.lock`` (``fcntl``; none
where the platform has no ``fcntl``) the file is read again and the rows another process saved since this one
loaded it are kept, so two runs sharing a cache never drop each other's features.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from pathlib import Path

import numpy as np

from visrec.utils.atomic import atomic_path

log = logging.getLogger(__name__)


def file_digest(path: str | Path) -> str:
    """sha256 of the picture's bytes; for a picture whose EXIF orientation turns it (2..8) the digest is
    salted, because its features are now those of the upright picture: features cached by a version that
    fed it to the CNN sideways are not reused."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data)
    if _turned(data):
        digest.update(b"\0exif-upright")
    return digest.hexdigest()


def _turned(data: bytes) -> bool:
    """Whether the picture in ``data`` has an EXIF orientation that turns it (reads the header only)."""
    if data.startswith(b"\xff\xd8") and b"Exif" not in data[:1 << 16]:  # a JPEG keeps EXIF in APP1, near the start
        return False
    if data.startswith(b"\x89PNG") and b"eXIf" not in data:
        return False
    from PIL import Image

    from visrec.features.images import exif_turned

    try:
        with Image.open(io.BytesIO(data)) as img:
            return exif_turned(img)
    except Exception:  # noqa: BLE001 - not an image: the decoder will say so
        return False


def _checksum(digests: np.ndarray, features: np.ndarray, failed: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in (digests.astype("U64"), np.ascontiguousarray(features, dtype=np.float32), failed.astype("U64")):
        h.update(str(array.shape).encode())
        h.update(array.tobytes())
    return h.hexdigest()


class FeatureCache:
    def __init__(self, cache_dir: str | Path, backbone_key: str, feature_dim: int):
        self.path = Path(cache_dir).expanduser() / f"{backbone_key}.npz"
        self.feature_dim = int(feature_dim)
        self.rows: dict[str, np.ndarray] = {}
        self.failed: set[str] = set()
        self.rebuilt_reason: str | None = None
        self._load()

    def _load(self) -> None:
        read = self._read()
        if read is not None:
            self.rows, self.failed = read

    def _read(self) -> tuple[dict[str, np.ndarray], set[str]] | None:
        """The file's rows and failed digests; None when there is no file or it is corrupt (then
        ``rebuilt_reason`` says why, and it is logged)."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                digests, features, failed = data["digests"], data["features"], data["failed"]
                stored = str(data["checksum"])
            if features.ndim != 2 or features.shape[1] != self.feature_dim or len(digests) != len(features):
                raise ValueError(f"shape {features.shape} does not fit {len(digests)} digests of width {self.feature_dim}")
            if _checksum(digests, features, failed) != stored:
                raise ValueError("checksum mismatch")
            if features.dtype != np.float32 or not np.isfinite(features).all():
                raise ValueError("features are not finite float32 values")
        except Exception as err:  # truncated zip, missing key, bad checksum...: rebuild, never trust
            self.rebuilt_reason = f"{type(err).__name__}: {err}"
            log.warning("feature cache %s is corrupt (%s); rebuilding it", self.path, self.rebuilt_reason)
            return None
        return dict(zip(digests.tolist(), features)), set(failed.tolist())

    def get(self, digest: str) -> np.ndarray | None:
        return self.rows.get(digest)

    def put(self, digest: str, feature: np.ndarray) -> None:
        self.rows[digest] = np.asarray(feature, dtype=np.float32)

    def save(self) -> None:
        """Write the cache: the rows of the file as it is now (another run may have saved since this one
        loaded it) merged with this one's, under the lock; written under a temporary name and renamed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.path.with_name(self.path.name + ".lock")):
            on_disk = self._read()
            if on_disk is not None:
                rows, failed = on_disk
                self.rows = {**rows, **self.rows}
                self.failed = (self.failed | failed) - set(self.rows)
            self._write()

    def _write(self) -> None:
        digests = np.array(sorted(self.rows), dtype="U64")
        features = np.stack([self.rows[d] for d in digests]) if len(digests) else np.zeros((0, self.feature_dim), np.float32)
        failed = np.array(sorted(self.failed), dtype="U64")
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as handle:  # a file handle: np.savez adds no suffix
                np.savez(handle, digests=digests, features=features.astype(np.float32), failed=failed,
                         checksum=np.array(_checksum(digests, features, failed)))


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """An exclusive advisory lock on ``lock_path`` (created if needed) for the ``with`` block; a no-op where
    the platform has no ``fcntl``."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (two runs saving at once may then drop each other's new rows)
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
