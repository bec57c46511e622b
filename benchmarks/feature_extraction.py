"""Extraction throughput on a folder of images: visrec's pipeline vs a bare timm loop, same run.

    .venv/bin/python benchmarks/feature_extraction.py [--images ../shared/datasets/ml-100k/posters]

Prints, for the same images and the same backbone (bundled tf_efficientnet_lite0, final pooling by default):
  pipeline   extract_item_features with an empty cache: hashing, DataLoader workers decoding JPEGs,
             batched forwards, cache write;
  bare       a plain loop: PIL open -> timm transform -> stack -> forward, batch by batch, main process;
  cached     extract_item_features again on the now-filled cache (must do zero forwards).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from visrec.features import BackboneSpec, create_backbone, extract_item_features
from visrec.features.images import load_rgb

REPO = Path(__file__).resolve().parents[1]


def bare_loop(paths, backbone, batch_size: int) -> tuple[int, float]:
    transform = backbone.transform()
    started, done = time.perf_counter(), 0
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            images = [load_rgb(p)[0] for p in paths[start:start + batch_size]]
            batch = torch.stack([transform(img) for img in images if img is not None])
            backbone.model(batch)
            done += len(batch)
    return done, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(REPO.parent / "shared" / "datasets" / "ml-100k" / "posters"))
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--weights", default="bundled")
    parser.add_argument("--pooling", default="final", choices=["final", "stages"], help="features.backbone.pooling")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0 = all)")
    args = parser.parse_args()
    paths = sorted(Path(args.images).glob("*.jpg"))
    if args.limit:
        paths = paths[: args.limit]
    backbone = create_backbone(BackboneSpec(args.backbone, args.weights, pooling=args.pooling))
    print(f"{len(paths)} images from {args.images}; backbone {args.backbone} ({args.weights}, pooling {args.pooling}), D={backbone.feature_dim}, "
          f"batch {args.batch_size}, {torch.get_num_threads()} torch threads, {args.num_workers} decode workers")
    with tempfile.TemporaryDirectory() as cache_dir:
        first = extract_item_features(paths, backbone, cache_dir, batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
        bare_n, bare_s = bare_loop(paths, backbone, args.batch_size)
        second = extract_item_features(paths, backbone, cache_dir, batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
    pipeline_rate = first.report.forwards / first.report.seconds
    bare_rate = bare_n / bare_s
    print(f"{'run':<10} {'images':>7} {'forwards':>9} {'seconds':>8} {'images/s':>9}")
    print(f"{'pipeline':<10} {len(paths):>7} {first.report.forwards:>9} {first.report.seconds:>8.1f} {pipeline_rate:>9.1f}")
    print(f"{'bare':<10} {len(paths):>7} {bare_n:>9} {bare_s:>8.1f} {bare_rate:>9.1f}")
    print(f"{'cached':<10} {len(paths):>7} {second.report.forwards:>9} {second.report.seconds:>8.2f} {'-':>9}")
    print(f"pipeline / bare = {pipeline_rate / bare_rate:.2f}x; unreadable {first.report.unreadable}, not found {first.report.missing}, used {first.report.images}")


if __name__ == "__main__":
    main()
