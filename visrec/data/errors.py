"""The one error type for bad input data: it always names the file, and the row and field when known."""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data.

    The message reads ``<file>[, line <n>][, field '<name>']: <problem>``, where ``line`` is the
    1-based line number in the file as a text editor shows it (header included); with no file (an option
    refused, or a split that leaves a part empty) it is the problem alone, which names the config key.
    """

    def __init__(self, file: str | Path | None, problem: str, *, line: int | None = None, field: str | None = None):
        self.file = None if file is None else str(file)
        self.line = line
        self.field = field
        self.problem = problem
        where = [] if self.file is None else [self.file]  # no file: the problem names the config key or the data
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(", ".join(where) + ": " + problem if where else problem)


def show(value) -> str:
    """repr of a value as a user wrote it (``99``, not ``np.int64(99)``)."""
    return repr(value.item() if hasattr(value, "item") else value)
