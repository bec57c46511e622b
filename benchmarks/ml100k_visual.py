"""Visual prior on MovieLens-100K posters: cold-item RMSE by mode, and warm RMSE on fold u1.

    .venv/bin/python benchmarks/ml100k_visual.py [--root ../shared/datasets/ml-100k] [--seeds 0 1 2]

Cold: data/split=cold_item (20% of the items held out with all their ratings; data.split.warm_test_ratio=0,
no warm test part, as when the README figures were measured), one split per seed;
prints test/rmse_cold for visual_mode none (bias-only fallback μ + b_u), reg and init+reg, and the
mean relative change against none. With --controls MODE..., those modes also run on permuted features
(features.permute_seed: the same feature rows dealt to the wrong items), which separates what the
pictures add from what the rest of the model (e.g. the prior's intercept c) adds.
Warm: fold u1 with visual_mode none and each mode given. Everything else is conf/experiment/ml100k_u1.yaml, through the same code as train.py; features come from the cache.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from visrec.pipeline.training import train

REPO = Path(__file__).resolve().parents[1]


def run(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=ml100k_u1", "logger=none", "trainer.enable_progress_bar=false",
                                          "features.progress=false", *overrides])
    with tempfile.TemporaryDirectory() as tmp, open_dict(cfg):
        cfg.paths.output_dir = tmp
        return train(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "datasets" / "ml-100k"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=["none", "reg", "init+reg"])
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run")
    parser.add_argument("--controls", nargs="*", default=[], help="visual modes to run again on permuted features")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm fold-u1 comparison")
    args = parser.parse_args()
    root = f"data.root={args.root}"
    runs = [(mode, []) for mode in args.modes]
    runs += [(f"{mode} (permuted)", ["features.permute_seed=12345"]) for mode in args.controls if mode != "none"]
    cold: dict[str, list[float]] = {name: [] for name, _ in runs}
    for seed in args.seeds:
        for name, control in runs:
            mode = name.split(" ")[0]
            metrics = run([root, "data/split=cold_item", "data.split.warm_test_ratio=0", f"seed={seed}", f"model.visual_mode={mode}", *control, *args.extra])
            cold[name].append(metrics["test/rmse_cold"])
    warm_modes = ["none", *[m for m in args.modes if m != "none"]]
    warm = {} if args.no_warm else {mode: run([root, f"model.visual_mode={mode}", *args.extra])["test/rmse"] for mode in warm_modes}

    print(f"\nMovieLens-100K cold-item split (20% of items), test/rmse_cold; extra overrides: {args.extra or 'none'}")
    print(f"{'mode':<20}" + "".join(f"{'seed ' + str(s):>10}" for s in args.seeds) + f"{'mean':>10}{'vs none':>10}")
    base = sum(cold["none"]) / len(cold["none"]) if "none" in cold else None
    for mode, values in cold.items():
        mean = sum(values) / len(values)
        change = "" if base is None else f"{100 * (mean - base) / base:+.2f}%"
        print(f"{mode:<20}" + "".join(f"{v:>10.4f}" for v in values) + f"{mean:>10.4f}{change:>10}")
    if warm:
        print("\nfold u1 warm test/rmse: " + ", ".join(f"{mode} {value:.4f}" for mode, value in warm.items()))


if __name__ == "__main__":
    main()
