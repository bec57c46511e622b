"""A Lightning ``WandbLogger`` that works with no network and no API key.

``mode``: ``auto`` (default) = ``online`` when W&B credentials are present (``WANDB_API_KEY`` or a
``~/.netrc`` entry for api.wandb.ai), else ``offline`` (complete runs under ``<save_dir>/wandb/``
that ``wandb sync`` uploads later); or ``online`` / ``offline`` / ``disabled`` explicitly. An
environment ``WANDB_MODE`` wins over ``auto``.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path

from pytorch_lightning.loggers import WandbLogger

MODES = ("auto", "online", "offline", "disabled")


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"logger.wandb.mode must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if has_credentials() else "offline")


def make_wandb_logger(project: str = "visrec", entity: str | None = None, group: str | None = None,
                      tags: list[str] | None = None, name: str | None = None, mode: str = "auto",
                      save_dir: str = ".", run_id: str | None = None, job_type: str = "train") -> WandbLogger:
    """``run_id``: continue that W&B run (set by ``train.py`` when resuming a run directory)."""
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=project, entity=entity, group=group, tags=list(tags or []), name=name,
                       save_dir=save_dir, id=run_id, mode=resolve_mode(mode), job_type=job_type)


def finish_wandb_run(run) -> None:
    """Finish a W&B run and wait until wandb's background service has written all of it.

    ``run.finish()`` can return while wandb's service process is still flushing the run's log
    (offline: ``run-<id>.wandb``); ``wandb.teardown()`` waits for that process to finish (W&B docs,
    "teardown: waits for W&B to finish and frees resources"). So once this returns, the run's files
    are complete: a sweep's next job, ``wandb sync`` or a reader sees the whole run. The next
    ``wandb.init`` in this process starts a fresh service.
    """
    import wandb

    run.finish()
    wandb.teardown()
