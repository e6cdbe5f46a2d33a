"""One over-long report is refused on its own; the rest of the file is read."""

from __future__ import annotations

import csv
from pathlib import Path

from histoseek.ingest.report_inputs import MAX_REPORT_CHARS, read_reports


def test_a_report_longer_than_the_csv_field_limit_rejects_only_its_row(tmp_path: Path) -> None:
    path = tmp_path / "reports.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["report_id", "text"])
        writer.writerow(["ok-1", "tubular adenoma"])
        writer.writerow(["long-but-fine", "x" * MAX_REPORT_CHARS])
        writer.writerow(["huge", "y" * 200_000])  # over Python's csv field limit (131,072)
        writer.writerow(["ok-2", "adenocarcinoma"])
    inputs = read_reports(path)
    assert [r.report_id for r in inputs.records] == ["ok-1", "long-but-fine", "ok-2"]
    assert inputs.rejected == [("huge", f"report is 200,000 characters; the limit is "
                                        f"{MAX_REPORT_CHARS:,}")]


def test_a_repeated_report_id_keeps_the_first_text(tmp_path: Path) -> None:
    """Two texts under one id would both be embedded while SQLite keeps one row: the second is
    refused by name; an exact repeat is dropped quietly."""
    path = tmp_path / "reports.csv"
    path.write_text("report_id,text\nr1,tubular adenoma\nr2,normal\nr1,normal mucosa\n"
                    "r2,normal\n")
    inputs = read_reports(path)
    assert [(r.report_id, r.text) for r in inputs.records] == [("r1", "tubular adenoma"),
                                                               ("r2", "normal")]
    assert inputs.rejected == [("r1", "duplicate report_id: item 3 repeats it with another "
                                      "text; the first is kept")]
    assert len(read_reports(["same text", "same text"]).records) == 1
