"""Report texts from a CSV, text files or a Python list, one bad row never failing the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histoseek.errors import InputError
from histoseek.hashing import sha256_text
from histoseek.index.store import ReportRecord
from histoseek.ingest.csv_files import read_csv

# Longer texts are not diagnostic reports (whole records, dumps); embedding models read the
# first few hundred tokens anyway. Such a row is refused on its own.
MAX_REPORT_CHARS = 100_000


@dataclass
class ReportInputs:
    records: list[ReportRecord] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (report id or row, why)


def read_reports(source: str | Path | list[Any]) -> ReportInputs:
    """Reports from a CSV (``report_id,text[,source_id,label,...]``), a .txt file or a list.

    List items may be strings (ids are made from their hash) or dicts with the CSV's keys.
    """
    out = ReportInputs()
    if isinstance(source, str | Path):
        path = Path(source)
        if path.suffix.lower() == ".txt":
            items: list[Any] = [{"report_id": path.stem, "text": _read_text(path)}]
        else:
            items = read_csv(path, required=("text",))
    else:
        items = list(source)
    seen: dict[str, str] = {}  # report_id -> its first text
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict):
            raise InputError(f"report #{i}: expected text or a dict, got {type(item).__name__}")
        item = dict(item)
        text = str(item.pop("text", "") or "")
        report_id = str(item.pop("report_id", "") or "") or "r-" + sha256_text(text)[:12]
        if report_id in seen:  # two texts for one id: which to keep would be a guess
            if seen[report_id] != text:
                out.rejected.append((report_id, f"duplicate report_id: item {i + 1} repeats it "
                                                "with another text; the first is kept"))
            continue
        seen[report_id] = text
        if len(text) > MAX_REPORT_CHARS:
            out.rejected.append((report_id, f"report is {len(text):,} characters; the limit is "
                                            f"{MAX_REPORT_CHARS:,}"))
            continue
        out.records.append(ReportRecord(
            report_id=report_id, text=text,
            source_id=item.pop("source_id", None) or None,
            label=item.pop("label", None) or None,
            metadata={k: v for k, v in item.items() if v not in (None, "")},
        ))
    return out


def _read_text(path: Path) -> str:
    if path.exists() and not path.is_file():  # a folder, or a FIFO that would block the read
        raise InputError(f"{path}: not a regular text file")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as UTF-8 text ({exc})") from exc
