"""What makes a folder a run's: the files a run that trained leaves (``metrics.json``, checkpoints), and how
its report folders are named."""
from __future__ import annotations

from pathlib import Path

# ``eval/<ckpt>_<part>_<exclude>`` + this + 8 hex digits: a later evaluation under other rules than the report
# already there (visrec.pipeline.evaluation.report_folder); the sweep summary reads only folders without it.
PROTOCOL_VARIANT = "_protocol-"


def held_run_files(folder: Path) -> list[Path]:
    """The files in ``folder`` that show a run trained there: ``metrics.json`` and ``checkpoints/*.ckpt``
    ([] for a missing folder, or one where a run stopped at set-up or diverged before its first checkpoint:
    training again there loses nothing)."""
    folder = Path(folder)
    held = [folder / "metrics.json"] if (folder / "metrics.json").is_file() else []
    return held + (sorted((folder / "checkpoints").glob("*.ckpt")) if (folder / "checkpoints").is_dir() else [])


def reuse_advice(folder: Path) -> str:
    """What to do instead of training a new run into ``folder``."""
    if (Path(folder) / "checkpoints" / "last.ckpt").is_file():
        return f"continue that run with resume_dir={folder}, or give this one its own folder"
    return "give this one its own folder (or delete that one)"
