"""Reading user CSVs with errors that name the file, the row and the columns."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

from histoseek.errors import InputError

# Python's csv refuses fields over 128 KiB by default, which rejects a whole reports file for
# one long report. Fields may be as long as memory allows; callers bound what they accept.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of a UTF-8 CSV with a header holding every ``required`` column."""
    if not path.is_file():
        raise InputError(f"{path}: no such CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            found = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in required if c not in found]
            if missing:
                raise InputError(
                    f"{path}: CSV lacks column(s) {', '.join(missing)}; "
                    f"found {', '.join(found) or 'no header'}")
            reader.fieldnames = found
            return [dict(row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read CSV ({exc})") from exc
