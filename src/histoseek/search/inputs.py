"""Turning user arguments into work: file discovery, label CSVs, report CSVs, regions."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histoseek.errors import InputError
from histoseek.index.store import ReportRecord
from histoseek.slides.reader import SUPPORTED_SUFFIXES


@dataclass(frozen=True)
class FileJob:
    """One file to ingest with what the user told us about it."""

    path: Path
    label: str | None = None
    source_id: str | None = None
    metadata: tuple[tuple[str, Any], ...] = ()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _is_candidate(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and (
        path.suffix.lower() in SUPPORTED_SUFFIXES)


def _is_skipped(path: Path) -> bool:
    """A visible file inside a folder that histoseek does not read (a CSV, a PDF, ...)."""
    return path.is_file() and not path.name.startswith(".") and not _is_candidate(path)


def discover(paths: list[Path], problems: list[tuple[str, str]],
             skipped: list[Path] | None = None) -> list[FileJob]:
    """Expand files and folders; ``DIR/<class>/<file>`` folders give the class as label.

    Unreadable folders are reported in ``problems`` rather than raised, so one bad folder does
    not stop a batch. Files of other types found in folders go to ``skipped``, so the caller
    can say so instead of dropping them silently; a file named directly is always tried.
    """
    skipped = [] if skipped is None else skipped
    jobs: list[FileJob] = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            problems.append((str(root), f"{root}: no such file or folder"))
            continue
        if root.is_file():
            jobs.append(FileJob(root.resolve()))
            continue
        try:
            children = sorted(root.iterdir())
        except PermissionError:
            problems.append((str(root), f"{root}: folder cannot be read (permission denied)"))
            continue
        class_dirs = [c for c in children if c.is_dir() and not c.name.startswith(".")]
        for child in children:
            if _is_candidate(child):
                jobs.append(FileJob(child.resolve()))
            elif _is_skipped(child):
                skipped.append(child)
        for class_dir in class_dirs:
            try:
                inside = sorted(class_dir.rglob("*"))
                files = [p for p in inside if _is_candidate(p)]
                skipped.extend(p for p in inside if _is_skipped(p))
            except PermissionError:
                problems.append((str(class_dir),
                                 f"{class_dir}: folder cannot be read (permission denied)"))
                continue
            jobs.extend(FileJob(f.resolve(), label=class_dir.name) for f in files)
    seen: set[Path] = set()
    unique = []
    for job in jobs:
        if job.path not in seen:
            seen.add(job.path)
            unique.append(job)
    return unique


def read_labels_csv(path: Path) -> dict[Path, dict[str, Any]]:
    """``path,label,source_id[,...]`` rows keyed by resolved file path (relative to the CSV)."""
    rows = _read_csv(path, required=("path",))
    out: dict[Path, dict[str, Any]] = {}
    for row in rows:
        file_path = Path(row.pop("path"))
        if not file_path.is_absolute():
            file_path = path.parent / file_path
        out[file_path.resolve()] = {k: v for k, v in row.items() if v not in (None, "")}
    return out


def apply_labels(jobs: list[FileJob], labels: dict[Path, dict[str, Any]]) -> list[FileJob]:
    out = []
    for job in jobs:
        row = dict(labels.get(job.path, {}))
        label = row.pop("label", None) or job.label
        source_id = row.pop("source_id", None) or job.source_id
        out.append(FileJob(job.path, label, source_id, tuple(sorted(row.items()))))
    return out


def read_reports(source: Path | list[Any]) -> list[ReportRecord]:
    """Reports from a CSV (``report_id,text[,source_id,label,...]``), text files or a list.

    List items may be strings (ids are made from their hash) or dicts with the CSV's keys.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if path.suffix.lower() == ".txt":
            return [ReportRecord(report_id=path.stem, text=_read_text(path))]
        items: list[Any] = _read_csv(path, required=("text",))
    else:
        items = list(source)
    records = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict):
            raise InputError(f"report #{i}: expected text or a dict, got {type(item).__name__}")
        item = dict(item)
        text = str(item.pop("text", "") or "")
        report_id = str(item.pop("report_id", "") or "") or (
            "r-" + hashlib.sha256(text.encode()).hexdigest()[:12])
        records.append(ReportRecord(
            report_id=report_id, text=text,
            source_id=item.pop("source_id", None) or None,
            label=item.pop("label", None) or None,
            metadata={k: v for k, v in item.items() if v not in (None, "")},
        ))
    return records


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as UTF-8 text ({exc})") from exc


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"{path}: no such CSV file")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(
                    f"{path}: CSV lacks column(s) {', '.join(missing)}; "
                    f"found {', '.join(reader.fieldnames or []) or 'no header'}"
                )
            return [dict(row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read CSV ({exc})") from exc


def parse_region(spec: str) -> tuple[Path, int, int, int, int]:
    """``FILE:x,y,w,h`` (level-0 pixels) into its parts."""
    path_part, sep, box = spec.rpartition(":")
    try:
        x, y, w, h = (int(float(v)) for v in box.split(","))
    except ValueError:
        raise InputError(
            f"region '{spec}' must look like FILE:x,y,w,h in level-0 pixels") from None
    if not sep or w <= 0 or h <= 0:
        raise InputError(f"region '{spec}' must look like FILE:x,y,w,h with w, h > 0")
    return Path(path_part), x, y, w, h


def parse_filters(pairs: list[str] | None) -> dict[str, list[str]]:
    """``key=value`` CLI pairs into a filter dict (repeated keys mean any of the values)."""
    out: dict[str, list[str]] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"filter '{pair}' must look like key=value")
        out.setdefault(key.strip(), []).append(value.strip())
    return out
