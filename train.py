"""Train a recommender: ``python train.py [group=option ...] [key=value ...]`` (see README)."""
import hydra
from omegaconf import DictConfig

from visrec.pipeline.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric") or "val/rmse_best")  # the value a Hydra sweeper optimizes


if __name__ == "__main__":
    main()
