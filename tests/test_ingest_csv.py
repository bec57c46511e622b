"""The fast CSV reader (pyarrow after whole-buffer checks) reads every file it accepts exactly as the exact
reader (csv.reader + pandas) does -- same rows, values and lines -- and leaves every file it cannot vouch
for to the exact reader, so bad input is judged as before."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest

from visrec.data import DataError, RatingsFile
from visrec.data import csv_files
from visrec.data.csv_files import _read_fast, read_csv_columns, read_csv_table

WANTED = ["user", "item", "rating", "ts", "note"]


def quoted(value: str, always: bool) -> str:
    if always or any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def table_text(rng: random.Random, rows: int, always_quote: bool, crlf: bool, blank_every: int, multiline_every: int) -> str:
    """A CSV (user, item, rating, ts, note) with quoted fields, blank lines and fields that span lines."""
    out = [",".join(quoted(name, always_quote) for name in WANTED)]
    for k in range(rows):
        note = rng.choice(["", "plain", "with, comma", 'with "quotes"', "  spaced  ", "ünïcödé", "x" * 30])
        if multiline_every and k % multiline_every == 7:
            note = f"two\nlines {k}"
        out.append(",".join(quoted(v, always_quote) for v in (f"u{rng.randrange(500)}", f"i{rng.randrange(90)}",
                                                               rng.choice(["1", "2.5", "4"]), str(1000 + k), note)))
        if blank_every and k % blank_every == 3:
            out.append("")
    newline = "\r\n" if crlf else "\n"
    return newline.join(out) + newline


def assert_same_as_exact(path: Path, sep: str = ",", encoding: str = "utf-8") -> None:
    fast = _read_fast(path, sep, WANTED, encoding)
    assert fast is not None, "the fast reader declined a well-formed file"
    frame, lines = read_csv_table(path, sep, encoding)
    assert fast.header == list(frame.columns) and fast.num_rows == len(frame)
    for name in WANTED:
        assert fast.columns[name].to_pylist() == frame[name].to_numpy(dtype=object, na_value=None).tolist(), name
    rows = np.unique(np.r_[0, len(frame) - 1, np.random.default_rng(0).integers(0, len(frame), 50)])
    assert [fast.lines(r) for r in rows] == [int(lines[r]) for r in rows]


@pytest.mark.parametrize("always_quote", [False, True])
@pytest.mark.parametrize("crlf", [False, True])
def test_fast_reader_matches_the_exact_one_on_good_files(tmp_path, always_quote, crlf):
    path = tmp_path / "r.csv"
    path.write_text(table_text(random.Random(1), 300, always_quote, crlf, blank_every=17, multiline_every=40), encoding="utf-8")
    assert_same_as_exact(path)


def test_fast_reader_matches_across_pyarrow_blocks_with_records_spanning_lines(tmp_path):
    """~3 MB: pyarrow parses 1 MB blocks in parallel, and quoted newlines must not fool it (or the lines)."""
    path = tmp_path / "r.csv"
    path.write_text(table_text(random.Random(2), 60_000, True, False, blank_every=997, multiline_every=1500), encoding="utf-8")
    assert path.stat().st_size > 2**21
    assert_same_as_exact(path)


def test_fast_reader_in_other_separators_encodings_and_with_a_byte_order_mark(tmp_path):
    text = table_text(random.Random(3), 50, False, False, blank_every=9, multiline_every=0)
    path = tmp_path / "r.csv"
    path.write_bytes(("\ufeff" + text).encode("utf-8"))
    assert_same_as_exact(path)
    path.write_bytes(text.replace("ünïcödé", "café").encode("latin-1"))
    assert_same_as_exact(path, encoding="latin-1")
    path.write_text(text.replace(",", ";"), encoding="utf-8")
    assert_same_as_exact(path, sep=";")


@pytest.mark.parametrize("body, why", [
    ('u1,"ab"c,4\n', "text after a closing quote (csv.reader's strict mode refuses it)"),
    ('u1,ab"c,4\n', "a quote inside an unquoted field"),
    ('u1,"never closed,4\n', "an unclosed quote"),
    ("u1,i1,4\n   \nu2,i2,3\n", "a line of spaces (csv.reader skips it, pyarrow counts its fields)"),
    ("u1,i1,4\nu2,i2\n", "a wrong number of fields"),
    ("u1,i\x001,4\n", "a NUL byte"),
    ("u1,i1,4\ru2,i2,3\n", "a lone carriage return"),
    ("u1,i1,4\nu2," + "x" * (csv.field_size_limit() + 1) + ",3\n", "a field over csv.field_size_limit()"),
])
def test_fast_reader_declines_what_it_cannot_vouch_for(tmp_path, body, why):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + body, encoding="utf-8")
    assert _read_fast(path, ",", ["user", "item", "rating"], "utf-8") is None, why


@pytest.mark.parametrize("text", [
    "user,item,rating,user\nu1,i1,4,u1\n",  # a repeated name
    "item\ni1\n  \ni2\n",  # one column: a line of spaces would read as a value
    'item\ni1\n""\ni2\n',  # one column: "" is a blank line to csv.reader
])
def test_fast_reader_declines_headers_and_one_column_files_it_cannot_vouch_for(tmp_path, text):
    path = tmp_path / "r.csv"
    path.write_text(text, encoding="utf-8")
    assert _read_fast(path, ",", ["item"], "utf-8") is None


def test_undecodable_bytes_in_a_column_nobody_reads_are_still_an_error(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"user,item,rating,comment\nu1,i1,4,ok\nu2,i2,3,caf\xe9\n")
    assert _read_fast(path, ",", ["user", "item", "rating"], "utf-8") is None
    with pytest.raises(DataError, match=r"r\.csv, line 3: cannot decode as utf-8 at byte \d+ \(0xe9\)"):
        RatingsFile(path).load()


def test_good_files_never_reach_the_exact_reader(tmp_path, monkeypatch):
    """A plain file and an R-style fully quoted one (with a field spanning lines) load by the fast path."""
    def refuse(*args, **kwargs):
        raise AssertionError("the exact reader was used")

    monkeypatch.setattr(csv_files, "read_csv_table", refuse)
    plain, quoted_all = tmp_path / "plain.csv", tmp_path / "quoted.csv"
    plain.write_text("user,item,rating\nu1,i1,4\n\nu2,i2,3\n")
    quoted_all.write_text('"user","item","rating"\r\n"u1","i1","4"\r\n"u2","multi\r\nline","3"\r\n')
    assert len(RatingsFile(plain).load().ratings) == 2
    table = RatingsFile(quoted_all).load()
    assert set(table.ratings["item"]) == {"i1", "multi\r\nline"}


def test_error_lines_from_the_fast_reader_are_the_editors(tmp_path):
    """Lines are worked out only when an error names one; after blank lines and records spanning lines,
    deep in a file of several pyarrow blocks, they are still what grep -n shows."""
    rng = random.Random(4)
    text = table_text(rng, 40_000, True, False, blank_every=313, multiline_every=777)
    at = text.index(',"4",', len(text) * 2 // 3)  # a bad rating two thirds in
    text = text[:at] + ',"four",' + text[at + 5:]
    path = tmp_path / "r.csv"
    path.write_text(text, encoding="utf-8")
    expected = next(n for n, line in enumerate(text.split("\n"), start=1) if '"four"' in line)
    assert expected > 1000
    with pytest.raises(DataError) as err:
        RatingsFile(path, timestamp_col="ts").load()
    assert (err.value.line, err.value.field) == (expected, "rating") and "rating is not a number (value 'four'" in str(err.value)


def test_read_csv_columns_falls_back_and_keeps_the_exact_readers_result(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('user,item,rating\nu1,i"1,4\n\nu2,i2,3\n')  # a literal quote: the exact reader's case
    table = read_csv_columns(path, ",", ["user", "item", "rating"])
    assert table.columns["item"].to_pylist() == ['i"1', "i2"] and [table.lines(0), table.lines(1)] == [2, 4]


@pytest.mark.parametrize("stamp, typed", [("17", True), (" 17 ", True), ("007", True), ("-5", True), ("+5", False), ("0x1F", False),
                                          ("17.0", False), ("", False), ("-9223372036854775808", False), ("9223372036854775808", False)])
def test_timestamps_come_as_int64_only_when_parse_int64_would_read_the_same_number(tmp_path, stamp, typed):
    path = tmp_path / "r.csv"
    path.write_text(f"user,item,rating,ts\nu1,i1,4,100\nu2,i2,3,{stamp}\n")
    table = read_csv_columns(path, ",", ["user", "item", "rating", "ts"], integers=("ts",))
    assert (table.columns["ts"].type == "int64") == typed
    if typed:
        assert table.columns["ts"].to_pylist() == [100, int(stamp)]


def test_an_x_anywhere_keeps_timestamps_as_text(tmp_path):
    """pyarrow reads 0x1F as 31, so a file with an x or X (ids like "xbox" included) reads them as text."""
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating,ts\nxbox,i1,4,100\n")
    assert read_csv_columns(path, ",", ["user", "ts"], integers=("ts",)).columns["ts"].type == "string"
