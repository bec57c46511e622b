"""One row of metrics in the layout of Lightning's ``CSVLogger`` (``logger=csv``), without importing Lightning.

``evaluate.py`` sends its metrics to the run's CSV logger; importing Lightning for one CSV row would cost
it seconds. The layout is the logger's: ``<save_dir>/<name>/version_<n>/metrics.csv``, n the next free
version, columns the sorted metric names and ``step`` (0) (tests/test_imports.py compares the two).
"""
from __future__ import annotations

import csv
from pathlib import Path

from visrec.utils.atomic import atomic_path

CSV_LOGGER = "pytorch_lightning.loggers.CSVLogger"


def write_csv_metrics(save_dir: str | Path, name: str | None, metrics: dict[str, float]) -> Path:
    """Write ``metrics`` as step 0 of a new version of the CSV log ``<save_dir>/<name>``; returns the file."""
    root = Path(save_dir) / (name or "")
    versions = [int(p.name[len("version_"):]) for p in root.glob("version_*") if p.is_dir() and p.name[len("version_"):].isdigit()]
    log_dir = root / f"version_{max(versions) + 1 if versions else 0}"
    log_dir.mkdir(parents=True, exist_ok=True)
    row = {**metrics, "step": 0}
    path = log_dir / "metrics.csv"
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=sorted(row))
        writer.writeheader()
        writer.writerow(row)
    return path
