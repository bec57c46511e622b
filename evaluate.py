"""Evaluate a training run: ``python evaluate.py run_dir=<run directory> [key=value ...]`` (see README)."""
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from visrec.data.errors import DataError
from visrec.pipeline.config import OptionError
from visrec.pipeline.evaluation import evaluate_run
from visrec.utils.atomic import WriteError


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "run_dir"):
        print("evaluate.py: which run? usage: python evaluate.py run_dir=<a training run directory> [ckpt=tested|best|last|refit] "
              "[part=test|val] [key=value ...]", file=sys.stderr)
        sys.exit(2)
    try:
        evaluate_run(cfg)
    except (DataError, OptionError, WriteError) as error:  # bad input or option, a report not written: one line
        print(f"evaluate.py: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
