"""CSV files with a header, read as columns of strings, with the line of every row as an editor shows it.

Two readers give the same result. The fast one parses with pyarrow (C++, no per-row Python) after a
few whole-buffer checks (bytes scans, numpy on quote and newline positions) that prove pyarrow and
Python's strict ``csv.reader`` see the same records; the line of a row is worked out only when an
error names it. Whenever a check fails -- a file that does not decode, a wrong number of fields,
quoting ``csv.reader`` would refuse, a field over ``csv.field_size_limit()``, whitespace-only lines,
NUL bytes -- the exact reader (``csv.reader`` for the structure, pandas for the values) reads the
file instead and raises the :class:`~visrec.data.errors.DataError` that names the file and line, or
reads what it accepts. So bad or unusual files are slower, never judged differently.
"""
from __future__ import annotations

import codecs
import csv
import logging
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from visrec.data.errors import DataError
from visrec.data.table import decode_error

log = logging.getLogger(__name__)

QUOTE, NEWLINE, CR = ord('"'), ord("\n"), ord("\r")
CHUNK = 1 << 24  # bytes per numpy pass over a file (bounds the temporary arrays)


class RowLines:
    """Row number (0-based, data rows in file order) -> line as an editor shows it (1-based).

    Given the array of lines, a function that computes it (called on first use: the fast CSV reader
    works lines out only when an error names one), or an ``offset`` (row ``i`` is on line ``i + offset``:
    1 for Parquet, where the "line" is the row number).
    """

    def __init__(self, lines: np.ndarray | Callable[[], np.ndarray] | None = None, *, offset: int | None = None):
        self._lines = lines if lines is None or callable(lines) else np.asarray(lines, dtype=np.int64)
        self._offset = offset

    def __call__(self, row: int) -> int:
        if self._offset is not None:
            return int(row) + self._offset
        if callable(self._lines):
            self._lines = self._lines()  # (rows,) int64
        return int(self._lines[row])


@dataclass
class CsvColumns:
    """What :func:`read_csv_columns` returns.

    header: the column names of line 1.
    columns: the requested columns that exist, as pyarrow string arrays (an empty cell is null), or int64
        for a column asked for as ``integers`` that qualifies (see :func:`read_csv_columns`).
    num_rows: data rows (blank lines are not rows).
    lines: each row's line.
    """

    header: list[str]
    columns: dict[str, pa.ChunkedArray]
    num_rows: int
    lines: RowLines


def read_csv_columns(path: Path, sep: str, wanted: list[str], encoding: str = "utf-8", encoding_key: str | None = None,
                     integers: tuple[str, ...] = ()) -> CsvColumns:
    """Columns ``wanted`` (those the header has) of a CSV file with a header, as strings.

    Rows are ``csv.reader``'s records (strict quoting; a record may span lines inside quotes; blank
    and whitespace-only lines are skipped); values are what pandas' C parser reads (empty cells are
    null, nothing else is). A column named in ``integers`` may come back as int64 instead: when pyarrow
    reads every cell of it as a decimal integer strictly between -2**63 and 2**63 (digits, an optional
    ``-``, spaces around; the file has no ``x``, so no ``0x`` hex) -- text that :func:`parse_int64`
    reads as the same number. Raises :class:`DataError` (file and line) for anything
    :func:`read_csv_table` refuses: undecodable bytes, a wrong number of fields, bad quoting, a field
    over ``csv.field_size_limit()``, a header that repeats a name, an empty file.
    """
    fast = _read_fast(path, sep, wanted, encoding, integers)
    if fast is not None:
        return fast
    log.debug("%s: read by the exact CSV reader (csv.reader + pandas)", path)
    frame, lines = read_csv_table(path, sep, encoding, encoding_key)
    header = [str(name) for name in frame.columns]
    columns = {name: pa.chunked_array([pa.array(frame[name].to_numpy(dtype=object, na_value=None), type=pa.string())])
               for name in wanted if name in frame.columns}
    return CsvColumns(header, columns, len(frame), RowLines(lines))


# ---- the fast reader ------------------------------------------------------------------------------
def _utf8_text(path: Path, encoding: str) -> tuple[bytes | mmap.mmap, int] | None:
    """(the file as UTF-8 bytes, where the text starts: 3 after a byte-order mark, else 0), or None when
    a file in another encoding does not decode. A UTF-8 file is memory-mapped, not copied (its pages are
    the page cache's) and not checked (see :func:`_valid_utf8`); one in another encoding is decoded as the
    exact reader decodes it, then encoded as UTF-8."""
    if encoding.replace("_", "-").lower() not in ("utf-8", "utf8"):
        try:
            with open(path, newline="", encoding=encoding) as handle:
                return handle.read().encode("utf-8"), 0
        except (UnicodeError, LookupError):
            return None
    if path.stat().st_size == 0:
        return b"", 0
    with open(path, "rb") as handle:
        data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return data, 3 if data[:3] == b"\xef\xbb\xbf" else 0


def _valid_utf8(data) -> bool:
    """Whether ``data`` decodes as UTF-8 (one pass over the bytes when they are ASCII; else Python's decoder,
    a slice at a time)."""
    if np.frombuffer(data, dtype=np.uint8).max(initial=0) < 0x80:
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(data), CHUNK):
            decoder.decode(data[start:start + CHUNK], final=start + CHUNK >= len(data))
    except UnicodeDecodeError:
        return False
    return True


def _lone_cr(data, buf: np.ndarray) -> bool:
    """Whether a ``\r`` is not followed by ``\n`` (pyarrow and csv.reader would end the line there)."""
    if data.find(b"\r") < 0:
        return False
    for start in range(0, len(buf), CHUNK):
        cr = np.flatnonzero(buf[start:start + CHUNK] == CR) + start
        if ((cr + 1 >= len(buf)) | (buf[np.minimum(cr + 1, len(buf) - 1)] != NEWLINE)).any():
            return True
    return False


def _parse_header(line: bytes, sep: str) -> list[str] | None:
    """The names on line 1, or None when line 1 is blank or its quoting is not a one-line record."""
    text = line.decode("utf-8")
    if not text.strip() or text.count('"') % 2:
        return None
    if '"' not in text:
        return text.split(sep)
    try:
        return next(csv.reader([text], delimiter=sep, strict=True))
    except (csv.Error, StopIteration):
        return None


def _newlines(buf: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Positions of ``\\n`` in ``buf[start:stop]`` (absolute), one bounded chunk at a time."""
    parts = [np.flatnonzero(buf[s:min(s + CHUNK, stop)] == NEWLINE) + s for s in range(start, stop, CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _structural_newlines(buf: np.ndarray, sep: int) -> np.ndarray | None:
    """Positions of the ``\\n`` that end records (not inside quotes), or None when a quote is not one that
    ``csv.reader(strict=True)`` and pyarrow both read as quoting.

    Every quote is taken as structural, so the parity of the quotes before a byte says whether it is
    inside a quoted field; that holds when every opening quote (even-numbered) starts a field -- it
    follows a separator, a newline, the start, or the closing quote of a doubled ``""`` -- and every
    closing quote (odd-numbered) ends one -- a separator, ``\\r``, ``\\n``, the end or a doubled quote
    follows. Anything else (a quote inside an unquoted field, text after a closing quote, an unclosed
    quote) is left to the exact reader.
    """
    n = len(buf)
    ends, seen = [], 0
    for s in range(0, n, CHUNK):
        e = min(s + CHUNK, n)
        quotes = np.flatnonzero(buf[s:e] == QUOTE) + s  # (Q,) absolute positions
        opening = (seen + np.arange(len(quotes))) % 2 == 0
        before = buf[np.maximum(quotes - 1, 0)]
        after = buf[np.minimum(quotes + 1, n - 1)]
        ok_open = (quotes == 0) | (before == sep) | (before == NEWLINE) | (before == QUOTE)
        ok_close = (quotes == n - 1) | (after == sep) | (after == NEWLINE) | (after == CR) | (after == QUOTE)
        if not np.where(opening, ok_open, ok_close).all():
            return None
        newlines = np.flatnonzero(buf[s:e] == NEWLINE) + s
        inside = (seen + np.searchsorted(quotes, newlines)) % 2 == 1
        ends.append(newlines[~inside])
        seen += len(quotes)
    if seen % 2:
        return None  # a quote never closed
    return np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)


def _records(buf: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, lengths) of the non-blank records between record-ending newlines ``ends`` (a record
    of nothing, or of a lone ``\\r``, is a blank line)."""
    starts = np.concatenate([[0], ends + 1])  # (L+1,)
    stops = np.concatenate([ends, [len(buf)]])
    lengths = stops - starts
    last = buf[np.clip(stops - 1, 0, max(len(buf) - 1, 0))] if len(buf) else np.zeros(len(stops), dtype=np.uint8)
    blank = (lengths == 0) | ((lengths == 1) & (last == CR))
    return starts[~blank], lengths[~blank]


def _body_lines(path: Path, encoding: str, sep: str) -> np.ndarray:
    """The line of every data row of a file the fast reader accepted (called only to name a line)."""
    data, skip = _utf8_text(path, encoding)
    start = data.find(b"\n", skip) + 1 or len(data)
    buf = np.frombuffer(data, dtype=np.uint8)[start:]
    every = _newlines(buf, 0, len(buf))
    ends = _structural_newlines(buf, ord(sep)) if data.find(b'"', start) >= 0 else every
    starts, _ = _records(buf, ends)
    return 2 + np.searchsorted(every, starts)  # line 1 is the header; + the newlines before the record


def _plain_records(data, start: int, buf: np.ndarray, quoted: bool, sep: str) -> int | None:
    """Whether every record after the header is one ``csv.reader`` and pyarrow read alike, and none can
    hold a field longer than ``csv.field_size_limit()``: None if not, else the number of records (-1 for
    a file without quotes, where records are its non-blank lines and pyarrow's count is trusted)."""
    limit = csv.field_size_limit()
    if quoted:
        ends = _structural_newlines(buf, ord(sep))
        if ends is None:
            return None
        _, lengths = _records(buf, ends)
        return None if len(lengths) and lengths.max() > limit else len(lengths)  # bytes >= characters
    half = max(limit // 2, 1)  # a line longer than the limit holds a whole aligned block with no newline
    if any(data.find(b"\n", s, s + half) < 0 for s in range(start, len(data) - half + 1, half)):
        return None
    return -1


def _read_fast(path: Path, sep: str, wanted: list[str], encoding: str, integers: tuple[str, ...] = ()) -> CsvColumns | None:
    """The columns, or None when the exact reader must decide (see the module docstring)."""
    import pyarrow.csv as pcsv

    if len(sep) != 1 or not sep.isascii() or not path.is_file():
        return None
    text = _utf8_text(path, encoding)
    if text is None:
        return None
    data, skip = text
    if len(data) == skip or data.find(b"\0") >= 0 or _lone_cr(data, np.frombuffer(data, dtype=np.uint8)):
        return None
    first = data.find(b"\n", skip)
    start = first + 1 if first >= 0 else len(data)
    line_one = data[skip:start].removesuffix(b"\n").removesuffix(b"\r")
    try:
        header = _parse_header(line_one, sep) if len(line_one) <= csv.field_size_limit() else None
    except UnicodeDecodeError:
        return None
    if header is None or len(set(header)) != len(header) or "" in header:
        return None  # a repeated or empty name: the exact reader decides, after the checks that come first
    buf = np.frombuffer(data, dtype=np.uint8)[start:]  # (B,) the body, no copy
    quoted = data.find(b'"', start) >= 0
    expected = _plain_records(data, start, buf, quoted, sep)
    if expected is None:
        return None
    present = [name for name in wanted if name in header]
    if len(header) == 1 and header[0] not in present:
        present = present + header  # a one-column file: its values are checked below
    if set(header) - set(present) and encoding.replace("_", "-").lower() in ("utf-8", "utf8") and not _valid_utf8(data):
        return None  # pyarrow checks the UTF-8 of the columns it reads (all of them, or else this does)
    def parse(types: dict[str, pa.DataType]) -> pa.Table:
        return pcsv.read_csv(
            pa.py_buffer(data).slice(start),
            read_options=pcsv.ReadOptions(column_names=header),
            parse_options=pcsv.ParseOptions(delimiter=sep, quote_char='"' if quoted else False, double_quote=True,
                                            escape_char=False, newlines_in_values=quoted, ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(include_columns=present, column_types=types,
                                                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True),
        )

    strings = {name: pa.string() for name in present}
    typed = [name for name in integers if name in present]
    if typed and data.find(b"x", start) < 0 and data.find(b"X", start) < 0:  # pyarrow reads 0x1F as 31
        try:
            table = parse({**strings, **{name: pa.int64() for name in typed}})
            if any(table.column(name).null_count or pc.min(table.column(name)).as_py() == np.iinfo(np.int64).min for name in typed):
                table = None  # an empty cell, or -2**63 (parse_int64 calls it out of range): as text
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            table = None  # a cell that is not such an integer (or bad structure): as text
    else:
        table = None
    try:
        table = table if table is not None else parse(strings)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if expected >= 0 and table.num_rows != expected:
        return None
    if len(header) == 1 and table.num_rows:
        # csv.reader skips a line that is only whitespace (or ""); pyarrow reads it as a value
        values = table.column(0).combine_chunks().dictionary_encode()
        if values.null_count or any(not value.strip() for value in values.dictionary.to_pylist()):
            return None
    columns = {name: table.column(name) for name in wanted if name in present}
    return CsvColumns(header, columns, table.num_rows, RowLines(lambda: _body_lines(path, encoding, sep)))


# ---- the exact reader -----------------------------------------------------------------------------

def _oversized_column(path: Path, codec: str, sep: str, header: list[str] | None, line: int) -> str | None:
    """The header name of the first field over ``csv.field_size_limit()`` in the record starting on ``line``
    (1-based, as an editor shows it), read again with the limit lifted for that one record; None when the
    record cannot be found or has no such field under a header column."""
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(2 ** 31 - 1)
        with open(path, newline="", encoding=codec) as handle:
            reader = csv.reader(handle, delimiter=sep)
            for row in reader:  # records, not rows of the data: stops at the failing record
                if reader.line_num >= line:
                    too_long = [i for i, value in enumerate(row) if len(value) > limit]
                    if too_long and header is not None and too_long[0] < len(header):
                        return header[too_long[0]]
                    return None
    except (csv.Error, UnicodeError, OSError):
        return None
    finally:
        csv.field_size_limit(limit)
    return None

def read_csv_table(path: Path, sep: str, encoding: str = "utf-8", encoding_key: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV file with a header as a frame of strings (empty cells are NaN), and the line of each row.

    The exact (slow) reader, for files the fast one does not vouch for. Lines are what an editor
    shows (1-based, the header is line 1): blank lines are skipped but counted, and a row whose quoted
    field spans lines is on the line where it starts. One pass of ``csv.reader`` takes the field
    count and ``line_num`` of every record; pandas' C parser then reads the values. A UTF-8
    byte-order mark is ignored. Every failure is a :class:`DataError` naming the file and the line: an
    encoding error (with its byte offset), a wrong number of fields, a field over csv's size limit,
    an unclosed quote, anything pandas' parser rejects.
    """
    hint = f"; save it as UTF-8, or set {encoding_key} to its encoding (e.g. latin-1)" if encoding_key else ""
    codec = "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding
    last_end = [0]  # line_num at the end of the last complete record (for errors inside a record)

    def records(reader):
        for row in reader:
            # A record that is blank or only spaces is skipped (pandas skips it too): field count 0.
            yield 0 if not row or (len(row) == 1 and not row[0].strip()) else len(row)
            yield reader.line_num
            last_end[0] = reader.line_num

    try:
        with open(path, newline="", encoding=codec) as handle:
            reader = csv.reader(handle, delimiter=sep, strict=True)
            header = None
            try:
                header = next(reader, None)
                if header is None:
                    raise DataError(path, "file is empty")
                header_end = last_end[0] = reader.line_num
                flat = np.fromiter(records(reader), dtype=np.int64)
            except csv.Error as err:
                start = last_end[0] + 1
                problem = str(err)
                if "field limit" in problem:
                    problem = (f"a field is longer than csv's limit of {csv.field_size_limit()} characters "
                               f"(reading stopped on line {reader.line_num}; an unclosed quote?)")
                    field = _oversized_column(path, codec, sep, header, start)
                    raise DataError(path, problem, line=start, field=field) from None
                elif "unexpected end of data" in problem:
                    problem = "a quoted field is not closed before the end of the file"
                else:
                    problem = f"cannot parse as CSV: {problem} (reading stopped on line {reader.line_num})"
                raise DataError(path, problem, line=start) from None
    except UnicodeDecodeError:
        raise decode_error(path, encoding, hint=hint) from None
    except UnicodeError as err:  # e.g. "UTF-16 stream does not start with BOM"
        raise DataError(path, f"cannot decode as {encoding}: {err}{hint}") from None
    except LookupError:
        raise DataError(path, f"unknown encoding {encoding!r}" + (f" (set {encoding_key})" if encoding_key else "")) from None
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(path, f"the header names column(s) {repeated} more than once; each column needs its own name",
                        line=1, field=repeated[0])
    counts, ends = flat[0::2], flat[1::2]
    starts = np.concatenate([[header_end], ends[:-1]]) + 1
    bad = np.flatnonzero((counts != len(header)) & (counts != 0))
    if len(bad):
        row = int(bad[0])
        raise DataError(path, f"expected {len(header)} fields as in the header, found {counts[row]} ({len(bad)} such line(s))",
                        line=int(starts[row]))
    lines = starts[counts != 0]
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], index_col=False,
                            encoding=codec, skip_blank_lines=True, engine="c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeError, csv.Error) as err:
        raise DataError(path, f"cannot parse as CSV: {err}") from None
    if len(frame) != len(lines) or list(frame.columns) != _unique_names(header):
        # The two parsers disagree on what a row is (rare quoting): csv.reader's rows are the ones whose
        # lines are known, so build the frame from them (a second, slower pass).
        log.debug("%s: pandas and csv.reader disagree (%d vs %d rows); using csv.reader's rows", path, len(frame), len(lines))
        with open(path, newline="", encoding=codec) as handle:
            rows = [row for row in csv.reader(handle, delimiter=sep, strict=True) if row and not (len(row) == 1 and not row[0].strip())]
        frame = pd.DataFrame(rows[1:], columns=_unique_names(rows[0]), dtype=str).replace("", np.nan)
    return frame, lines


def _unique_names(header: list[str]) -> list[str]:
    """Column names as pandas makes them unique (``a``, ``a.1``, ...)."""
    seen: dict[str, int] = {}
    names = []
    for name in header:
        count = seen.get(name, 0)
        names.append(name if count == 0 else f"{name}.{count}")
        seen[name] = count + 1
    return names
