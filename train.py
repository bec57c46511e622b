"""Train a recommender: ``python train.py [group=option ...] [key=value ...]`` (see README)."""
import os
import sys
import traceback

import hydra
from omegaconf import DictConfig

from visrec.data.errors import DataError
from visrec.models.divergence import DivergedError
from visrec.pipeline.config import OptionError
from visrec.pipeline.training import train
from visrec.utils.atomic import WriteError

# Errors a user can act on from one line: bad input (file, line, field or config key), an option refused at
# set-up (its config key), a result that could not be written (disk full, quota, unwritable folder), a diverged
# run (no result was written). HYDRA_FULL_ERROR=1 shows the traceback instead.
ONE_LINE_ERRORS = (DataError, OptionError, WriteError, DivergedError)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _sweep_goes_on() -> bool:
    """Whether the sweeper runs the next jobs after a failed one. Hydra's basic sweeper does (a job that
    returns is done); the Optuna sweeper (hydra-optuna-sweeper 1.2) ends the study at any failed trial
    whatever the job returns, so there the error is raised as in a single run (the trial is stored as
    failed; with hydra.sweeper.storage a relaunch resumes the study)."""
    from hydra.core.hydra_config import HydraConfig

    return "optuna" not in str(HydraConfig.get().sweeper.get("_target_", "")).lower()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except ONE_LINE_ERRORS as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" and not _in_multirun():
            raise
        message = f"{type(error).__name__}: {error}" if isinstance(error, DivergedError) else str(error)
        print(f"train.py: {message}", file=sys.stderr)
        if _in_multirun():  # one job of a sweep: recorded, left out of the summary; the other jobs run
            if not getattr(error, "leaves_folder_alone", False):  # a folder holding an earlier run stays as it was
                _record_failure(cfg, error, str(error))
            if _sweep_goes_on():
                return float("nan")
        sys.exit(1 if isinstance(error, DivergedError) else 2)
    except Exception as error:  # noqa: BLE001 - a sweep's other jobs still run; a single run shows the traceback
        if not _in_multirun():
            raise
        _record_failure(cfg, error, str(error))
        if not _sweep_goes_on():
            raise
        traceback.print_exc()
        return float("nan")
    return metrics.get(cfg.get("optimized_metric") or "val/rmse_best")  # the value a Hydra sweeper optimizes


def _record_failure(cfg: DictConfig, error: BaseException, message: str) -> None:
    """A failed multirun job: ``failed.json`` in its run directory (the sweep summary lists it)."""
    from visrec.pipeline.cross_validation import record_job_failure

    record_job_failure(cfg.paths.output_dir, type(error).__name__, message)


if __name__ == "__main__":
    main()
