"""Instantiate a Hydra config node so that a refused option reaches the user as itself; the config
resolvers the conf/ files use."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

# ${visrec.first_set:a,b}: a unless it is null or empty, else b. conf/hydra/default.yaml: a resumed run's Hydra
# folder (its .hydra/ and train.log) is the run it continues (resume_dir), not a new timestamped folder.
OmegaConf.register_new_resolver("visrec.first_set", lambda first, fallback: first if first not in (None, "") else fallback,
                                replace=True)
# ${visrec.launch_name:<stamp>,<trainer.strategy>}: <stamp>, except in a DDP run that torchrun or an srun step
# started as several processes, where every process must find the same run folder: a name from the launch
# (visrec.data.partition.external_launch_name). Not for other strategies: `srun -n 4 python train.py seed=...`
# runs four separate single-process trainings, which keep a folder each.
OmegaConf.register_new_resolver("visrec.launch_name", lambda stamp, strategy=None: _launch_name(strategy) or stamp, replace=True)


def _launch_name(strategy) -> str | None:
    from visrec.data.partition import external_launch_name

    return external_launch_name() if "ddp" in str(strategy or "") else None


# ${visrec.resumed_seed:seed,storage,study_name}: an Optuna search's sampler seed past the trials its stored
# study already holds (visrec/pipeline/optuna_sampler.py), so a resumed search does not replay its first launch.
OmegaConf.register_new_resolver("visrec.resumed_seed", lambda seed, storage, study: _resumed_seed(seed, storage, study),
                                replace=True)


def _resumed_seed(seed, storage, study_name) -> int:
    from visrec.pipeline.optuna_sampler import resumed_seed

    return resumed_seed(seed, storage, study_name)


def instantiate_node(node, **kwargs):
    """``hydra.utils.instantiate``, except that when the target (or a nested one) raises a
    ``ValueError`` — a :class:`~visrec.data.DataError` naming a file or a config key, or a refused
    option — that error is raised as is, not wrapped in Hydra's ``InstantiationException``."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, ValueError):
            raise cause from None
        raise


class OptionError(ValueError):
    """An option out of range, or a combination of options refused, found while a run is set up; the message
    names the config key a user sets (``model.k must be ...``). train.py prints it as one line (exit 2)."""


_PACKAGE = Path(__file__).resolve().parents[1]  # visrec/


def _raised_by_visrec(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is visrec's own code (a deliberate check), not a
    library's (a ValueError from numpy or torch there is a bug to show with its traceback)."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and Path(frame.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE)


@contextmanager
def refused_options_as_option_errors():
    """Inside the block (a run's set-up), a plain ``ValueError`` raised by visrec's own checks is raised again
    as :class:`OptionError` (chained to it); :class:`~visrec.data.DataError` and every other error pass as they are."""
    try:
        yield
    except ValueError as error:
        if type(error) is ValueError and _raised_by_visrec(error):
            raise OptionError(str(error)) from error
        raise
