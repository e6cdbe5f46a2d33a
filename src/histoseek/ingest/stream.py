"""Streaming ingest: read and tile files in a background thread, encode in full batches.

Tiles from many small files share a batch (an ImageFolder of 224 px tiles encodes at full
batch speed) and a large slide never holds more than a few batches of pixels. A file's
records are committed only once all its tiles are encoded, in one transaction, so an
interrupted ingest leaves whole files or nothing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histoseek.encoders.base import Encoder
from histoseek.errors import HistoseekError
from histoseek.hashing import sha256_file
from histoseek.index.store import SourceRecord
from histoseek.ingest.discovery import FileJob
from histoseek.ingest.events import (
    FileEnded,
    FileFailed,
    FileSkipped,
    FileStarted,
    IngestEvent,
    TilesRead,
)
from histoseek.slides.reader import open_slide
from histoseek.slides.tiling import TilingConfig, iter_tile_batches, tile_slide

_DONE = object()


@dataclass
class _Pending:
    record: SourceRecord
    vectors: list[np.ndarray]
    remaining: int


@dataclass(frozen=True)
class FileResult:
    """Outcome of one file: a finished record, a skip, or a failure message."""

    path: Path
    record: SourceRecord | None = None
    skipped: bool = False
    problem: str | None = None
    note: str | None = None


def iter_file_events(
    jobs: list[FileJob], tiling: TilingConfig, mpp: float | None, batch_size: int,
    is_known: Callable[[str], bool],
) -> Iterator[IngestEvent]:
    """Each file's events in order: skipped or failed, or started, tiles..., ended."""
    done: set[str] = set()  # finished in this run: a second copy is skipped, not inserted twice
    for job in jobs:
        try:
            sha = sha256_file(job.path)
        except OSError as exc:
            yield FileFailed(job.path, f"{job.path}: cannot read file ({exc.strerror})")
            continue
        if is_known(sha) or sha in done:
            yield FileSkipped(job.path)
            continue
        try:
            slide = open_slide(job.path, mpp=mpp)
        except HistoseekError as exc:
            yield FileFailed(job.path, str(exc))
            continue
        try:
            grid = tile_slide(slide, tiling)
            width, height = slide.dimensions
            record = SourceRecord(
                path=str(job.path), name=job.path.name, sha256=sha,
                kind="slide" if slide.is_pyramid else "image", width=width, height=height,
                mpp=slide.mpp, mpp_source=slide.mpp_source, label=job.label,
                source_id=job.source_id, metadata=dict(job.metadata),
                boxes_l0=grid.boxes_l0, tile_mpp=grid.mpp, tissue=grid.tissue_fraction,
            )
            yield FileStarted(record, len(grid), grid.notes)
            for _idx, tiles in iter_tile_batches(slide, grid, batch_size):
                yield TilesRead(record, tiles)
            yield FileEnded(record)
            done.add(sha)
        except HistoseekError as exc:
            yield FileFailed(job.path, str(exc))
        finally:
            slide.close()


def _prefetch(events: Iterator[IngestEvent], depth: int) -> Iterator[IngestEvent]:
    """Run ``events`` in a thread, ``depth`` items ahead, so reading overlaps encoding."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    error: list[BaseException] = []

    def work() -> None:
        try:
            for item in events:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:
            error.append(exc)
        finally:
            q.put(_DONE)

    thread = threading.Thread(target=work, name="histoseek-reader", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not _DONE:
            yield item
        if error:
            raise error[0]
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def encode_files(
    jobs: list[FileJob], encoder: Encoder, tiling: TilingConfig, mpp: float | None,
    is_known: Callable[[str], bool], batch_size: int = 64, prefetch: int = 4,
    on_tiles: Callable[[int], None] | None = None,
) -> Iterator[list[FileResult]]:
    """Encode every new file; yield groups of finished files ready to commit together."""
    pending: dict[int, _Pending] = {}  # keyed by id(record)
    buffer: list[tuple[SourceRecord, np.ndarray]] = []
    buffered = 0
    finished: list[FileResult] = []
    ended: set[int] = set()

    flushed = False

    def flush() -> None:
        nonlocal buffer, buffered, flushed
        flushed = True
        if not buffer:
            return
        tiles = np.concatenate([t for _, t in buffer])
        vectors = encoder.encode_images(tiles)
        start = 0
        for record, part in buffer:
            p = pending[id(record)]
            p.vectors.append(vectors[start : start + len(part)])
            p.remaining -= len(part)
            start += len(part)
        if on_tiles:
            on_tiles(len(tiles))
        buffer, buffered = [], 0
        _collect()

    def _collect() -> None:
        for key in list(ended):
            p = pending[key]
            if p.remaining == 0:
                rec = p.record
                rec.vectors = (np.concatenate(p.vectors) if p.vectors
                               else np.zeros((0, encoder.dim), np.float32))
                finished.append(FileResult(Path(rec.path), record=rec))
                del pending[key]
                ended.discard(key)

    for event in _prefetch(iter_file_events(jobs, tiling, mpp, batch_size, is_known), prefetch):
        match event:
            case FileSkipped(path):
                finished.append(FileResult(path, skipped=True))
            case FileFailed(path, problem):
                # drop anything half-read from this file
                for key, p in list(pending.items()):
                    if Path(p.record.path) == path:
                        buffer = [(r, t) for r, t in buffer if id(r) != key]
                        buffered = sum(len(t) for _, t in buffer)
                        del pending[key]
                        ended.discard(key)
                finished.append(FileResult(path, problem=problem))
            case FileStarted(record, n_tiles, notes):
                pending[id(record)] = _Pending(record, [], n_tiles)
                finished.extend(FileResult(Path(record.path), note=note) for note in notes)
            case TilesRead(record, tiles):
                buffer.append((record, tiles))
                buffered += len(tiles)
                if buffered >= batch_size:
                    flush()
            case FileEnded(record):
                ended.add(id(record))
                _collect()
        if finished and flushed:
            # commit in groups of about one batch: few transactions, little to redo on a crash
            yield finished
            finished, flushed = [], False
    flush()
    _collect()
    if finished:
        yield finished
