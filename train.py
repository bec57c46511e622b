"""Train a recommender: ``python train.py [group=option ...] [key=value ...]`` (see README)."""
import sys

import hydra
from omegaconf import DictConfig

from visrec.data.errors import DataError
from visrec.models.divergence import DivergedError
from visrec.pipeline.training import train
from visrec.utils.atomic import WriteError


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except DataError as error:  # bad input, named by file, line and field (or config key): one line, no traceback
        print(f"train.py: {error}", file=sys.stderr)
        sys.exit(2)
    except WriteError as error:  # a result that could not be written (disk full, quota, unwritable folder): one line
        print(f"train.py: {error}", file=sys.stderr)
        sys.exit(2)
    except DivergedError as error:  # non-finite loss or weights: no result was written
        print(f"train.py: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    return metrics.get(cfg.get("optimized_metric") or "val/rmse_best")  # the value a Hydra sweeper optimizes


if __name__ == "__main__":
    main()
