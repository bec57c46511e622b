"""The README's picture: a poster grid of the default job's recommendations on the embedded synthetic data.

    .venv/bin/python benchmarks/readme_picture.py [--out docs/recommendations.png] [--users 4]

Trains the default job (``train.py`` with no overrides: iALS on ``data=synthetic``) in a temporary
folder, exports it, and draws :func:`visrec.pipeline.pictures.poster_grid` (the same drawing a W&B run
and the notebooks get): for a few users, the pictures of items they rated >= 4 in training on the left,
their top recommendations on the right. The pictures are the generator's own shapes (no data
file is read or committed). Written atomically.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from visrec.pipeline.exporting import export_run
from visrec.pipeline.pictures import poster_grid
from visrec.pipeline.training import train
from visrec.serving import Recommender
from visrec.utils.atomic import atomic_path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "recommendations.png"))
    ap.add_argument("--users", type=int, default=4, help="rows of the grid")
    ap.add_argument("--k", type=int, default=6, help="recommendations per row")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["logger=none", "trainer.enable_progress_bar=false"])
        with open_dict(cfg):
            cfg.paths.output_dir = str(Path(tmp) / "run")
            cfg.paths.data_dir = str(Path(tmp) / "data")
            cfg.paths.log_dir = str(Path(tmp) / "logs")
        metrics = train(cfg)
        run_dir = Path(cfg.paths.output_dir)
        recommender = Recommender.load(export_run(run_dir))
        grid = poster_grid(run_dir, recommender, count=args.users, k=args.k)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as partial:
            grid.save(partial, format="PNG", optimize=True)
    print(f"wrote {out} ({grid.width} x {grid.height}); the run's test metrics: "
          + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("test/")))


if __name__ == "__main__":
    main()
