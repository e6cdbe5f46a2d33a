"""Labels CSVs must match the files, and say how well they did."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from histoseek.errors import InputError
from histoseek.ingest.discovery import apply_labels, discover, read_labels_csv, shown


def test_a_header_without_label_columns_is_refused_naming_what_was_found(
        tile_folder: Path) -> None:
    csv = tile_folder / "labels.csv"
    csv.write_text("path,class\npink/pink_0.png,pink\n")
    with pytest.raises(InputError, match=r"labels\.csv: labels CSV needs a column label or "
                                         r"source_id or slide_id .*found path, class"):
        read_labels_csv(csv)
    csv.write_text("file,label\npink/pink_0.png,pink\n")
    with pytest.raises(InputError, match=r"lacks column\(s\) path; found file, label"):
        read_labels_csv(csv)


def test_a_csv_matching_no_file_is_an_error_and_partial_matches_are_counted(
        tile_folder: Path) -> None:
    jobs = discover([tile_folder]).jobs
    csv = tile_folder / "labels.csv"
    csv.write_text("path,label\nelsewhere/pink_0.png,pink\n")
    with pytest.raises(InputError, match=r"none of its 1 rows match the 12 files"):
        apply_labels(jobs, read_labels_csv(csv), csv, [])
    csv.write_text("path,label,slide_id\npink/pink_0.png,rose,S-1\nmissing.png,x,S-2\n")
    notes: list[str] = []
    labelled = apply_labels(jobs, read_labels_csv(csv), csv, notes)
    assert notes == ["labels.csv: 1 of 2 rows match files being indexed; 1 rows name other files",
                     "labels.csv: 11 of 12 files have no row (they keep their folder's label, "
                     "if any)"]
    first = next(j for j in labelled if j.path.name == "pink_0.png")
    assert first.label == "rose" and dict(first.metadata) == {"slide_id": "S-1"}


def test_other_formats_are_listed_and_missing_paths_are_problems(tile_folder: Path) -> None:
    (tile_folder / "pink" / "notes.pdf").write_bytes(b"%PDF")
    found = discover([tile_folder, tile_folder / "typo"])
    assert len(found.jobs) == 12 and [p.name for p in found.skipped] == ["notes.pdf"]
    assert found.problems == [(str(tile_folder / "typo"),
                               f"{tile_folder / 'typo'}: no such file or folder")]


def test_fifos_broken_links_and_undecodable_names_are_problems_not_hangs(
        tile_folder: Path) -> None:
    pipe = tile_folder / "pink" / "pipe.png"
    os.mkfifo(pipe)
    (tile_folder / "pink" / "loop.png").symlink_to("loop.png")
    (tile_folder / "pink" / "self").symlink_to("..")  # a folder loop: not followed
    latin1 = tile_folder / os.fsdecode(b"caf\xe9.png")
    latin1.write_bytes(b"\x89PNG\r\n\x1a\n")
    given = tile_folder / "given_pipe.png"
    os.mkfifo(given)
    found = discover([tile_folder, given])
    assert len(found.jobs) == 12
    assert dict(found.problems) == {
        str(pipe): f"{pipe}: not a regular file but a named pipe (FIFO); nothing read",
        str(tile_folder / "pink" / "loop.png"): f"{tile_folder / 'pink' / 'loop.png'}: broken "
                                               "symbolic link (too many levels of symbolic "
                                               "links); nothing read",
        f"{tile_folder}/caf\\xe9.png": f"{tile_folder}/caf\\xe9.png: file name is not valid "
                                       "UTF-8; rename it (histoseek stores paths as UTF-8)",
        str(given): f"{given}: not a regular file but a named pipe (FIFO); nothing read"}
    assert shown(latin1) == f"{tile_folder}/caf\\xe9.png"
    assert all(shown(p) == p for p, _ in found.problems)  # printable and storable


def test_a_folder_that_cannot_be_listed_deeper_down_is_a_problem(tile_folder: Path) -> None:
    locked = tile_folder / "pink" / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop root reading the folder")
        found = discover([tile_folder])
        assert len(found.jobs) == 12
        assert found.problems == [(str(locked), f"{locked}: folder cannot be read "
                                                "(permission denied)")]
    finally:
        locked.chmod(0o755)
