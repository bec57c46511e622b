"""Visual prior on the embedded synthetic dataset, cold-item split (``data.split.warm_test_ratio=0``, as the README
figures were measured): test/rmse_cold by visual mode.

    .venv/bin/python benchmarks/synthetic_visual.py [--modes none init reg init+reg head]

The synthetic ground truth makes item vectors depend on the pictures, so this checks the whole
pathway (procedural images -> bundled CNN features -> whitening -> prior -> cold scoring). Target:
reg at least 30% below none (the bias-only fallback μ + b_u) on the popularity-only data
(``--extra data.generator.choice_strength=0``, what tests/test_visual_recovery.py checks); the default
data (choice model, β 1.5) gives about 26%. Same code as train.py.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from visrec.pipeline.training import train

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["none", "init", "reg", "init+reg", "head"])
    parser.add_argument("--extra", nargs="*", default=[])
    args = parser.parse_args()
    results = {}
    for mode in args.modes:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=["model=biased_mf", "data/split=cold_item", "data.split.warm_test_ratio=0", f"model.visual_mode={mode}", "logger=none",
                                              "trainer.enable_progress_bar=false", "features.progress=false", *args.extra])
        with tempfile.TemporaryDirectory() as tmp, open_dict(cfg):
            cfg.paths.output_dir = tmp
            results[mode] = train(cfg)
    base = results.get("none", {}).get("test/rmse_cold")
    print(f"\nsynthetic cold-item split: {int(results[args.modes[0]]['test/ratings_cold'])} cold test ratings")
    print(f"{'mode':<10}{'rmse_cold':>10}{'mae_cold':>10}{'vs none':>10}")
    for mode, m in results.items():
        change = "" if base is None else f"{100 * (m['test/rmse_cold'] - base) / base:+.1f}%"
        print(f"{mode:<10}{m['test/rmse_cold']:>10.4f}{m['test/mae_cold']:>10.4f}{change:>10}")


if __name__ == "__main__":
    main()
