"""Instantiate a Hydra config node so that a refused option reaches the user as itself; the config
resolvers the conf/ files use."""
from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

# ${visrec.first_set:a,b}: a unless it is null or empty, else b. conf/hydra/default.yaml: a resumed run's Hydra
# folder (its .hydra/ and train.log) is the run it continues (resume_dir), not a new timestamped folder.
OmegaConf.register_new_resolver("visrec.first_set", lambda first, fallback: first if first not in (None, "") else fallback,
                                replace=True)


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
