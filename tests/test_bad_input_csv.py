"""CSV files as users write them: every error names the file and the line an editor shows (header = line 1),
whatever blank lines, quoted newlines, encodings or oversized fields come before it."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from visrec.data import DataError, RatingsFile

HEADER = "user,item,rating,ts\n"


def rows(n: int, start: int = 0) -> str:
    return "".join(f"u{i % 7},i{i},{1 + i % 5},{1000 + i}\n" for i in range(start, start + n))


def write(tmp_path: Path, text: str, name: str = "r.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def load(path: Path, **kw):
    return RatingsFile(path, **({"timestamp_col": "ts"} | kw)).load()


def editor_line(path: Path, needle: str) -> int:
    """The 1-based line of the first line containing ``needle``, as `grep -n` (or an editor) shows it."""
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").split("\n"), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


@pytest.mark.parametrize("layout", ["blank lines", "blank lines with spaces", "quoted newline", "both, CRLF"])
def test_line_numbers_are_the_editors_after_blank_lines_and_quoted_newlines(tmp_path, layout):
    if layout == "blank lines":
        text = HEADER + rows(4) + "\n\n" + rows(20, 4) + "u3,i99,oops,5000\n" + rows(3, 30)
    elif layout == "blank lines with spaces":
        text = HEADER + rows(4) + "   \n\n  \n" + rows(5, 4) + "u3,i99,oops,5000\n"
    elif layout == "quoted newline":
        text = HEADER + rows(2) + 'u1,"item with\na newline",4,999\n' + rows(7, 2) + "u3,i99,oops,5000\n" + rows(2, 20)
    else:
        text = (HEADER + rows(2) + '\nu1,"two\nline\nitem",4,999\n\n' + rows(3, 2) + "u3,i99,oops,5000\n").replace("\n", "\r\n")
    path = write(tmp_path, text)
    expected = editor_line(path, "oops")
    with pytest.raises(DataError) as err:
        load(path)
    assert err.value.line == expected and err.value.field == "rating"
    assert f"r.csv, line {expected}, field 'rating': rating is not a number" in str(err.value)


def test_rows_after_a_quoted_newline_keep_their_own_lines_for_every_check(tmp_path):
    text = HEADER + 'u1,"a\nb",4,1\n' + "u2,i2,3,2\n\n" + "u2,i3,3,2,extra\n"
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=r"r\.csv, line 6: expected 4 fields as in the header, found 5"):
        load(path)
    items = write(tmp_path, 'item\n"i\n1"\n\ni2\n', "items.csv")
    ratings = write(tmp_path, HEADER + "\n" + "u1,i2,4,1\nu1,i7,4,1\n", "ratings.csv")
    with pytest.raises(DataError, match=r"ratings\.csv, line 4, field 'item': item id 'i7' is not in the catalog"):
        load(ratings, items_path=items)
    dups = write(tmp_path, HEADER + 'u1,"x\ny",4,1\n\nu2,i2,3,2\nu1,"x\ny",5,3\n', "dups.csv")
    with pytest.raises(DataError, match=r"dups\.csv, line 6: duplicate \(user, item\) pair \('u1', 'x\\ny'\), first on line 2"):
        load(dups, duplicates="error")


def test_a_good_file_with_blank_lines_and_quoted_fields_loads_every_row(tmp_path):
    text = "\ufeff" + HEADER + rows(3) + "\n" + 'u9,"quoted, with comma",2,7\n' + 'u9,"multi\nline",3,8\n\n'
    table = load(write(tmp_path, text))  # a UTF-8 byte-order mark is not part of the first column's name
    assert len(table.ratings) == 5
    assert set(table.ratings["item"]) >= {"quoted, with comma", "multi\nline"}


def test_latin1_file_names_file_line_and_byte_offset(tmp_path):
    text = HEADER + rows(3) + "u1,Caf\xe9,4,17\n" + rows(2, 5)
    path = write(tmp_path, text, encoding="latin-1")
    offset = path.read_bytes().index(b"\xe9")
    with pytest.raises(DataError) as err:
        load(path)
    message = str(err.value)
    assert err.value.line == 5 and f"at byte {offset}" in message and "0xe9" in message
    assert message.startswith(f"{path}, line 5: cannot decode as utf-8")
    assert "data.source_args.encoding" in message  # the remedy names a key that exists
    table = load(path, encoding="latin-1")
    assert "Caf\xe9" in set(table.ratings["item"])


def test_latin1_test_and_catalog_files_are_named_too(tmp_path):
    ratings = write(tmp_path, HEADER + rows(4))
    test = write(tmp_path, HEADER + "u1,\xe9t\xe9,3,5\n", "test.csv", encoding="latin-1")
    with pytest.raises(DataError, match=r"test\.csv, line 2: cannot decode as utf-8 at byte 23 \(0xe9\)"):
        load(ratings, test_path=test)
    items = write(tmp_path, "item\ni1\n\xe9\n", "items.csv", encoding="cp1252")
    with pytest.raises(DataError, match=r"items\.csv, line 3: cannot decode as utf-8 at byte 8"):
        load(ratings, items_path=items)


def test_field_over_the_csv_limit_names_file_and_line(tmp_path):
    huge = "x" * (csv.field_size_limit() + 10)
    path = write(tmp_path, HEADER + rows(4) + f'u1,"{huge}",4,1\n' + rows(2, 9))
    with pytest.raises(DataError, match=r"r\.csv, line 6, field 'item': a field is longer than csv's limit of \d+ characters"):
        load(path)


def test_unclosed_quote_names_the_line_where_the_record_starts(tmp_path):
    path = write(tmp_path, HEADER + rows(3) + '\nu1,"never closed,4,1\n' + rows(3, 5))
    with pytest.raises(DataError, match=r"r\.csv, line 6: a quoted field is not closed before the end of the file"):
        load(path)


def test_text_after_a_closing_quote_is_a_data_error(tmp_path):
    path = write(tmp_path, HEADER + rows(2) + 'u1,"ab"c,4,1\n')
    with pytest.raises(DataError, match=r"r\.csv, line 4: cannot parse as CSV"):
        load(path)


def test_unknown_encoding_and_bad_separator_are_data_errors(tmp_path):
    path = write(tmp_path, HEADER + rows(3))
    with pytest.raises(DataError, match=r"unknown encoding 'klingon' \(set data\.source_args\.encoding\)"):
        load(path, encoding="klingon")
    with pytest.raises(DataError, match=r"data\.source_args\.sep must be one character"):
        RatingsFile(path, sep="::")


@pytest.mark.parametrize("sep", ["\t", "\\t", "tab"])
def test_tab_separator_as_users_type_it(tmp_path, sep):
    path = write(tmp_path, (HEADER + rows(3)).replace(",", "\t"), "r.tsv")
    assert len(load(path, sep=sep).ratings) == 3
