"""A CSV that is not what it seems is refused whole, naming the file, the line and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from histoseek.errors import InputError
from histoseek.ingest.csv_files import read_csv


@pytest.mark.parametrize("data,problem", [
    ("report_id,text\nr1,adenoma\n".encode("utf-16"), r"CSV is UTF-16 text; save it as UTF-8"),
    (b"report_id,text\nr1,ad\xe9nome\n", r"not UTF-8 text \(byte 0xE9 on line 2\)"),
    (b"report_id,text\nr1,ok\nr2,ade\x00nome\n", r"holds a NUL byte on line 3"),
    (b'report_id,text\nr1,"low grade, tubular\nr2,normal\n',
     r"a quote opened on line 2 is never closed"),
    (b"report_id,text\nr1,adenoma, low grade\n", r"line 2 has 3 fields but the header has 2"),
    (b"", r"CSV lacks column\(s\) text; found no header"),
])
def test_a_malformed_csv_is_refused_naming_the_line(tmp_path: Path, data: bytes,
                                                    problem: str) -> None:
    path = tmp_path / "reports.csv"
    path.write_bytes(data)
    with pytest.raises(InputError, match=re.escape(str(path)) + ": .*" + problem):
        read_csv(path, required=("text",))


def test_what_csv_writers_do_is_read(tmp_path: Path) -> None:
    """A BOM, CRLF lines, blank lines, empty trailing fields, short rows, quoted commas and
    newlines, and stray quotes inside an unquoted field are all fine."""
    path = tmp_path / "reports.csv"
    path.write_bytes("\ufeffreport_id,text,label\r\nr1,\"a, b\nc\",x,,\r\n\r\nr2,5\" lesion\r\n"
                     .encode())
    assert read_csv(path, required=("text",)) == [
        {"report_id": "r1", "text": "a, b\nc", "label": "x"},
        {"report_id": "r2", "text": '5" lesion', "label": None}]


@pytest.mark.parametrize("make,problem", [(lambda p: None, "no such CSV file"),
                                          (lambda p: p.mkdir(), "not a CSV file but a folder")])
def test_a_csv_path_that_is_not_a_file(tmp_path: Path, make: object, problem: str) -> None:
    path = tmp_path / "reports.csv"
    make(path)  # type: ignore[operator]
    with pytest.raises(InputError, match=re.escape(f"{path}: {problem}")):
        read_csv(path, required=("text",))
