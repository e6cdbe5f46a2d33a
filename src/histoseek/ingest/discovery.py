"""From the paths and CSVs a user gives to the list of files to ingest, saying what was left out.

Folders are walked (``DIR/<class>/<file>`` gives the class as label); files of formats
histoseek does not read are counted, not dropped silently; a labels CSV must match the files.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histoseek.errors import InputError
from histoseek.ingest.csv_files import read_csv
from histoseek.slides.reader import SUPPORTED_SUFFIXES

LABEL_COLUMNS = ("label", "source_id", "slide_id")


@dataclass(frozen=True)
class FileJob:
    """One file to ingest with what the user told us about it."""

    path: Path
    label: str | None = None
    source_id: str | None = None
    metadata: tuple[tuple[str, Any], ...] = ()


@dataclass
class Discovery:
    """The jobs found, and what was not: missing paths, unreadable folders, other formats."""

    jobs: list[FileJob] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    skipped: list[Path] = field(default_factory=list)


def shown(path: Path | str) -> str:
    """``path`` as text that prints and stores anywhere: bytes of a name that are not UTF-8
    become ``\\xNN`` escapes (Linux file names are bytes; SQLite and terminals want UTF-8)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _not_readable_as_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as an image file, or None for a regular file or folder.

    A FIFO would block the reader forever and a device never ends, so neither is opened.
    """
    if shown(path) != str(path):
        return "file name is not valid UTF-8; rename it (histoseek stores paths as UTF-8)"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if path.is_symlink():
            return f"broken symbolic link ({exc.strerror.lower()}); nothing read"
        return None  # not there at all: the caller says so
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    what = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device")
    return f"not a regular file but {what}; nothing read"


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _is_candidate(path: Path) -> bool:
    return _visible(path) and path.suffix.lower() in SUPPORTED_SUFFIXES and path.is_file()


def _is_skipped(path: Path) -> bool:
    """A visible file inside a folder that histoseek does not read (a CSV, a PDF, ...)."""
    return _visible(path) and path.suffix.lower() not in SUPPORTED_SUFFIXES and path.is_file()


def _files_under(folder: Path, found: Discovery) -> list[Path]:
    """Every entry below ``folder`` (symlinked folders not followed, so loops end); folders
    that cannot be listed go to ``found.problems``."""
    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else folder
        found.problems.append((shown(where), f"{shown(where)}: folder cannot be read "
                                             f"({(exc.strerror or str(exc)).lower()})"))

    out = []
    for top, _, files in os.walk(folder, onerror=unreadable):
        out.extend(Path(top) / name for name in files)
    return sorted(out)


def _sort(entries: list[Path], found: Discovery, label: str | None) -> list[FileJob]:
    """Jobs for the images among ``entries``; others skipped, or problems if they look like
    images but cannot be read as files."""
    jobs = []
    for path in entries:
        why = _not_readable_as_file(path) if _visible(path) else None
        if why and (path.suffix.lower() in SUPPORTED_SUFFIXES or "UTF-8" in why):
            found.problems.append((shown(path), f"{shown(path)}: {why}"))
        elif _is_candidate(path):
            jobs.append(FileJob(path.resolve(), label=label))
        elif _is_skipped(path):
            found.skipped.append(path)
    return jobs


def discover(paths: list[Path]) -> Discovery:
    """Expand files and folders; a file named directly is always tried, whatever its suffix.

    Unreadable folders, FIFOs, devices, broken links and names that are not UTF-8 go to
    ``problems`` rather than raising, so one bad entry does not stop a batch.
    """
    found = Discovery()
    jobs: list[FileJob] = []
    for root in map(Path, paths):
        why = _not_readable_as_file(root)
        if why:
            found.problems.append((shown(root), f"{shown(root)}: {why}"))
            continue
        if not root.exists():
            found.problems.append((str(root), f"{root}: no such file or folder"))
            continue
        if root.is_file():
            jobs.append(FileJob(root.resolve()))
            continue
        try:
            children = sorted(root.iterdir())
        except OSError as exc:
            found.problems.append((str(root), f"{root}: folder cannot be read "
                                              f"({(exc.strerror or str(exc)).lower()})"))
            continue
        jobs.extend(_sort([c for c in children if not c.is_dir()], found, None))
        for class_dir in (c for c in children if c.is_dir() and _visible(c)):
            jobs.extend(_sort(_files_under(class_dir, found), found, class_dir.name))
    seen: set[Path] = set()
    for job in jobs:
        if job.path not in seen:
            seen.add(job.path)
            found.jobs.append(job)
    return found


def read_labels_csv(path: Path) -> dict[Path, dict[str, Any]]:
    """``path`` plus ``label``/``source_id``/``slide_id`` (and any metadata) keyed by file.

    Relative paths are taken from the CSV's folder, as a CSV beside its images writes them.
    """
    rows = read_csv(path, required=("path",))
    if rows and not any(c in rows[0] for c in LABEL_COLUMNS):
        raise InputError(
            f"{path}: labels CSV needs a column {' or '.join(LABEL_COLUMNS)} beside 'path'; "
            f"found {', '.join(rows[0])}")
    out: dict[Path, dict[str, Any]] = {}
    for row in rows:
        file_path = Path(row.pop("path"))
        if not file_path.is_absolute():
            file_path = path.parent / file_path
        out[file_path.resolve()] = {k: v for k, v in row.items() if v not in (None, "")}
    return out


def apply_labels(jobs: list[FileJob], labels: dict[Path, dict[str, Any]], csv_path: Path,
                 notes: list[str]) -> list[FileJob]:
    """Attach each file's CSV row; refuse a CSV that matches none, note partial matches."""
    matched = [job for job in jobs if job.path in labels]
    if labels and jobs and not matched:
        example = next(iter(labels))
        raise InputError(
            f"{csv_path}: none of its {len(labels)} rows match the {len(jobs)} files being "
            f"indexed (a row's path is read relative to the CSV's folder: the first row is "
            f"{example}, a file being indexed is {jobs[0].path})")
    if len(matched) < len(labels):
        notes.append(f"{csv_path.name}: {len(matched)} of {len(labels)} rows match files being "
                     f"indexed; {len(labels) - len(matched)} rows name other files")
    if len(matched) < len(jobs):
        notes.append(f"{csv_path.name}: {len(jobs) - len(matched)} of {len(jobs)} files have no "
                     "row (they keep their folder's label, if any)")
    out = []
    for job in jobs:
        row = dict(labels.get(job.path, {}))
        label = row.pop("label", None) or job.label
        source_id = row.pop("source_id", None) or job.source_id
        out.append(FileJob(job.path, label, source_id, tuple(sorted(row.items()))))
    return out


def with_metadata(jobs: list[FileJob], metadata: dict[str, Any]) -> list[FileJob]:
    return [FileJob(j.path, j.label, j.source_id,
                    tuple(sorted({**dict(j.metadata), **metadata}.items()))) for j in jobs]
