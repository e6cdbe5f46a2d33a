"""Typed events of the file reader, in the order a file goes through them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histoseek.index.store import SourceRecord


@dataclass(frozen=True)
class FileSkipped:
    """Already in the library (same sha256), or a second copy in this run."""

    path: Path


@dataclass(frozen=True)
class FileFailed:
    path: Path
    problem: str


@dataclass(frozen=True)
class FileStarted:
    record: SourceRecord
    n_tiles: int
    notes: tuple[str, ...]


@dataclass(frozen=True)
class TilesRead:
    record: SourceRecord
    tiles: np.ndarray  # uint8 [n, px, px, 3]


@dataclass(frozen=True)
class FileEnded:
    record: SourceRecord


IngestEvent = FileSkipped | FileFailed | FileStarted | TilesRead | FileEnded
