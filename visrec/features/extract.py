"""Batched feature extraction for a catalog of item images, through the cache.

Only images whose content digest is not cached go through the CNN (each distinct content once);
JPEG decoding and preprocessing run in DataLoader worker processes while the main process runs the
forward passes. Items without a path, paths with no file and unreadable files are counted separately
(:class:`ExtractionReport`), reported with a few example items, and marked ``has_image = False``; they
never stop the run.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from visrec.features.backbone import Backbone
from visrec.features.cache import FeatureCache, file_digest
from visrec.features.images import MISSING, image_file_exists, load_rgb

log = logging.getLogger(__name__)


@dataclass
class ExtractionReport:
    """What happened to the catalog's images in one extraction (counts of items; the parts add up:
    items = no_path + missing + unreadable + images, and found = unreadable + images)."""

    items: int = 0  # items in the catalog
    images: int = 0  # items with a picture that gave features (has_image True): what the model uses
    with_path: int = 0  # items with an image path (the file may not exist)
    found: int = 0  # items whose image file exists
    no_path: int = 0  # items without an image path
    missing: int = 0  # items with a path but no file there
    unreadable: int = 0  # file exists but cannot be decoded (or gives non-finite features)
    from_cache: int = 0  # items whose image content was already in the cache before this run
    forwards: int = 0  # images pushed through the CNN in this run
    seconds: float = 0.0
    cache_rebuilt: str | None = None
    missing_examples: list = field(default_factory=list)
    unreadable_examples: list = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.forwards / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        line = (f"image features: {self.items} items, {self.images} pictures used; {self.unreadable} unreadable, "
                f"{self.missing} not found, {self.no_path} without an image path; {self.from_cache} from cache, "
                f"{self.forwards} computed in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s)")
        if self.missing_examples:
            line += f"; not found e.g. {self.missing_examples}"
        if self.unreadable_examples:
            line += f"; unreadable e.g. {self.unreadable_examples}"
        if self.cache_rebuilt:
            line += f"; cache was corrupt and rebuilt ({self.cache_rebuilt})"
        return line


@dataclass
class ItemFeatures:
    features: torch.Tensor  # (N, D) float32; rows without an image are zero
    has_image: torch.Tensor  # (N,) bool
    report: ExtractionReport
    backbone_key: str
    backbone: dict = field(default_factory=dict)  # name, weights, path, weights_digest, data_config, key
    # (N,) sha256 of the picture each item's features come from (None where has_image is False): what a run
    # records in item_images.parquet, so evaluation and export can check they see the same pictures.
    digests: list = field(default_factory=list)

    @property
    def feature_dim(self) -> int:
        return self.features.shape[1]

    def permuted(self, seed: int) -> "ItemFeatures":
        """A control for experiments: the same feature rows (and has-image flags) dealt to items in a
        random order drawn from ``seed``. The features keep their distribution but no longer describe
        their item, so any gain a model still shows comes from something other than the pictures."""
        order = torch.randperm(len(self.features), generator=torch.Generator().manual_seed(int(seed)))  # (N,)
        digests = [self.digests[i] for i in order.tolist()] if self.digests else self.digests
        return replace(self, features=self.features[order], has_image=self.has_image[order], digests=digests)


def _plain(value):
    """A numpy scalar id as the Python value it holds (for messages and JSON)."""
    return value.item() if hasattr(value, "item") else value


class _Decode(Dataset):
    """(path) -> (preprocessed (3, H, W) tensor or None, reason)."""

    def __init__(self, paths: list[Path], transform):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        image, reason = load_rgb(self.paths[i])
        return i, (None if image is None else self.transform(image)), reason


def _collate(samples):
    """Keep decodable images as one (B, 3, H, W) batch and pass failures through."""
    ok = [(i, t) for i, t, _ in samples if t is not None]
    failed = [(i, reason) for i, t, reason in samples if t is None]
    batch = torch.stack([t for _, t in ok]) if ok else None
    return [i for i, _ in ok], batch, failed


# Save the cache after this many new pictures (or a quarter of the cache, whichever is more, so that saving stays
# a small share of the work), so that an interrupted extraction keeps most of what it computed.
SAVE_EVERY = 512


def extract_item_features(
    image_paths: list,
    backbone: Backbone,
    cache_dir: str | Path,
    item_ids: list | None = None,
    batch_size: int = 64,
    num_workers: int = 1,
    progress: bool = True,
    examples: int = 5,
) -> ItemFeatures:
    """Features (N, D) for the N items whose image paths are given (None = no image)."""
    started = time.perf_counter()
    n = len(image_paths)
    ids = list(item_ids) if item_ids is not None else list(range(n))
    report = ExtractionReport(items=n, with_path=sum(p is not None for p in image_paths))
    cache = FeatureCache(cache_dir, backbone.key, backbone.feature_dim)
    report.cache_rebuilt = cache.rebuilt_reason

    digests: list[str | None] = [None] * n
    reasons: dict[int, str] = {}
    for i, path in enumerate(image_paths):
        if not image_file_exists(path):  # no path, no file, or a path that cannot be looked up (name too long)
            reasons[i] = MISSING
            continue
        try:
            digests[i] = file_digest(path)
        except OSError as err:  # there, but cannot be read (permissions, a folder named like a picture)
            reasons[i] = f"unreadable: {err.strerror or err}"
            continue
        if digests[i] in cache.failed:
            reasons[i] = "unreadable (cached)"

    report.from_cache = sum(1 for i, d in enumerate(digests) if d is not None and i not in reasons and cache.get(d) is not None)
    # Each distinct uncached content goes through the CNN once.
    todo: dict[str, Path] = {}
    for i, digest in enumerate(digests):
        if digest is not None and i not in reasons and cache.get(digest) is None and digest not in todo:
            todo[digest] = Path(image_paths[i])
    if todo:
        todo_digests, todo_paths = list(todo), list(todo.values())
        loader = DataLoader(_Decode(todo_paths, backbone.transform()), batch_size=batch_size,
                            num_workers=num_workers, collate_fn=_collate)
        bar = tqdm(total=len(todo_paths), desc="image features", unit="img", disable=not progress)
        done = saved = 0  # pictures through the CNN (or found unreadable) so far; how many when the cache was last saved
        try:
            with torch.inference_mode():
                for positions, batch, failed in loader:
                    if batch is not None:
                        feats = backbone.model(batch).float().numpy()  # (B, D)
                        report.forwards += len(positions)
                        finite = np.isfinite(feats).all(axis=1)  # (B,) a NaN/inf feature row is no feature
                        for pos, feat, ok in zip(positions, feats, finite):
                            if ok:
                                cache.put(todo_digests[pos], feat)
                            else:
                                cache.failed.add(todo_digests[pos])
                                log.warning("image %s gives non-finite CNN features; counted as unreadable", todo_paths[pos])
                    for pos, reason in failed:
                        cache.failed.add(todo_digests[pos])
                        log.debug("unreadable image %s: %s", todo_paths[pos], reason)
                    bar.update(len(positions) + len(failed))
                    done += len(positions) + len(failed)
                    if done - saved >= max(SAVE_EVERY, len(cache.rows) // 4):  # a kill loses at most this much work
                        cache.save()
                        saved = done
        finally:  # at the end, and on Ctrl-C or an error too: what was computed is kept for the rerun
            bar.close()
            if done > saved:
                cache.save()

    features = np.zeros((n, backbone.feature_dim), dtype=np.float32)
    has_image = np.zeros(n, dtype=bool)
    for i, digest in enumerate(digests):
        row = None if (digest is None or i in reasons) else cache.get(digest)
        if row is None:
            reasons.setdefault(i, "unreadable")
            continue
        features[i], has_image[i] = row, True
    report.images = int(has_image.sum())
    report.no_path = n - report.with_path
    for i, reason in reasons.items():
        if reason == MISSING:
            if image_paths[i] is None:
                continue  # counted in no_path
            report.missing += 1
            if len(report.missing_examples) < examples:
                report.missing_examples.append(_plain(ids[i]))
        else:
            report.unreadable += 1
            if len(report.unreadable_examples) < examples:
                report.unreadable_examples.append(_plain(ids[i]))
    report.found = report.with_path - report.missing
    report.seconds = time.perf_counter() - started
    log.debug(report.summary())  # the pipeline prints it once per run (visrec.pipeline.setup.extract_features)
    used = [digest if has_image[i] else None for i, digest in enumerate(digests)]
    return ItemFeatures(torch.from_numpy(features), torch.from_numpy(has_image), report, backbone.key, backbone.describe(), used)
