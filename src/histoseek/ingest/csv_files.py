"""Reading user CSVs with errors that name the file, the line and the columns.

A CSV is refused whole, naming the line, when it is not UTF-8 text (UTF-16, Latin-1, binary
with NUL bytes), when a quote is never closed (the rest of the file would silently become one
field) or when a row has more fields than the header (an unquoted comma would silently shift
its columns).
"""

from __future__ import annotations

import codecs
import csv
import io
import sys
from pathlib import Path
from typing import Any

from histoseek.errors import InputError

# Python's csv refuses fields over 128 KiB by default, which rejects a whole reports file for
# one long report. Fields may be as long as memory allows; callers bound what they accept.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of a UTF-8 CSV with a header holding every ``required`` column."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [c.strip() for c in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(
                f"{path}: CSV lacks column(s) {', '.join(missing)}; "
                f"found {', '.join(header) or 'no header'}")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) > len(header) and any(f.strip() for f in row[len(header):]):
                raise InputError(
                    f"{path}: line {reader.line_num} has {len(row)} fields but the header has "
                    f"{len(header)}; quote a field that holds commas (\"a, b\")")
            row = row[: len(header)] + [None] * (len(header) - len(row))
            rows.append(dict(zip(header, row, strict=True)))
    except csv.Error as exc:
        raise InputError(f"{path}: cannot read CSV (line {reader.line_num}: {exc})") from exc
    line = _unclosed_quote(text)
    if line is not None:
        raise InputError(f"{path}: a quote opened on line {line} is never closed, so the rest "
                         "of the file would be read as one field; close it (\"...\")")
    return rows


def _read_text(path: Path) -> str:
    if not path.exists():
        raise InputError(f"{path}: no such CSV file")
    if not path.is_file():  # a folder, or a FIFO that would block the read
        raise InputError(f"{path}: not a CSV file but a folder or special file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read CSV ({exc.strerror or exc})") from exc
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(f"{path}: CSV is UTF-16 text; save it as UTF-8 (\"CSV UTF-8\")")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}: CSV is not UTF-8 text (byte 0x{data[exc.start]:02X} on line "
                         f"{line}); save it as UTF-8 (\"CSV UTF-8\")") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise InputError(f"{path}: CSV holds a NUL byte on line {line}: it is binary data or "
                         "not UTF-8 text; save it as UTF-8 CSV")
    return text


def _unclosed_quote(text: str) -> int | None:
    """The line of the record whose quote runs to the end of the file, or None."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for _ in reader:
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return start
    return None
