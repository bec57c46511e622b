"""The run's per-epoch metrics as one CSV file, ``<run dir>/metrics_per_epoch.csv`` (``logger=csv``).

One row per epoch: ``epoch``, ``step`` (optimizer steps so far), then the metric names in sorted order
(``train/loss``, ``val/rmse``, ...); a metric the epoch did not log is left empty. Lightning's CSVLogger
starts a new ``csv/version_<n>`` folder in every process, so a resumed run's epochs landed in another file
and every ``evaluate.py`` call added one more. This file belongs to the run directory instead:

- A resumed run (``resume_dir``) reads it back and continues it. The first epoch the resumed run logs,
  and every later one, replace the rows already there for them: an interrupted run may have logged
  epochs after its ``last.ckpt``, and those epochs are trained again. Each epoch appears once, with the
  values of the run that completed it.
- Test metrics (``test/*``) belong to no epoch: they are in ``metrics.json``. ``evaluate.py`` writes its
  report under ``eval/`` and leaves this file alone.
- Every save rewrites the whole file under a temporary name and renames it (:mod:`visrec.utils.atomic`):
  a crash leaves the previous file, never half of one. The file is a few hundred rows at most.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

from visrec.data.errors import DataError
from visrec.utils.atomic import atomic_path

FILENAME = "metrics_per_epoch.csv"


class EpochCSVLogger(Logger):
    """Lightning logger writing one row per epoch to ``<save_dir>/<filename>`` (see the module docstring).

    ``skip_prefixes``: metrics whose names start with one of these are not an epoch's and are not written."""

    def __init__(self, save_dir: str | Path, filename: str = FILENAME, skip_prefixes: Iterable[str] = ("test/",)) -> None:
        super().__init__()
        self._save_dir = str(save_dir)
        self.path = Path(save_dir) / filename
        self.skip_prefixes = tuple(skip_prefixes)
        self._rows: dict[int, dict[str, Any]] = read_epoch_rows(self.path)  # epoch -> {column: value}
        self._continuing = False  # set once this process has logged its first epoch
        self._last_epoch = max(self._rows, default=0)
        self._dirty = False

    @property
    def name(self) -> str:
        return Path(self.path).stem

    @property
    def version(self) -> int:
        return 0  # one file per run directory, never a new version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def log_dir(self) -> str:
        return self._save_dir

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: the run's ``config.yaml`` holds the resolved config."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        values = {key: _scalar(value) for key, value in metrics.items()
                  if key not in ("epoch", "step") and not key.startswith(self.skip_prefixes)}
        if not values:
            return
        epoch = int(metrics["epoch"]) if "epoch" in metrics else self._last_epoch
        if not self._continuing:  # this process's first epoch: it and later ones are (re)trained here
            self._rows = {e: row for e, row in self._rows.items() if e < epoch}
            self._continuing = True
        row = self._rows.setdefault(epoch, {})
        row.update(values)
        if step is not None:
            row["step"] = int(step)
        self._last_epoch = epoch
        self._dirty = True

    @rank_zero_only
    def save(self) -> None:
        if not self._dirty:
            return
        metric_names = sorted({key for row in self._rows.values() for key in row} - {"step"})
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["epoch", "step", *metric_names])
            for epoch in sorted(self._rows):
                row = self._rows[epoch]
                writer.writerow([epoch, row.get("step", ""), *(row.get(name, "") for name in metric_names)])
        self._dirty = False

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def read_epoch_rows(path: Path) -> dict[int, dict[str, Any]]:
    """The rows of an existing per-epoch file by epoch (values as written; empty cells left out); {} if none.
    Raises :class:`~visrec.data.DataError` naming the file when it is not one this logger wrote."""
    if not path.is_file():
        return {}
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        try:
            return {int(row.pop("epoch")): {key: value for key, value in row.items() if key is not None and value not in ("", None)}
                    for row in reader}
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(path, f"line {reader.line_num}: not a per-epoch metrics file (an integer `epoch` column) to continue "
                            f"({type(error).__name__}: {error}); move it away to start a new one") from error


def _scalar(value: Any) -> float | int:
    """A logged value as a plain number (Lightning passes Python scalars; a tensor is converted)."""
    return value.item() if hasattr(value, "item") else value
