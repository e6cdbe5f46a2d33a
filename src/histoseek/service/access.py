"""Who touches the library, from which thread: the service's concurrency in one place.

* **Searches** (search, classify, heatmaps) run on one thread that owns its own ``Library``
  (its SQLite connection, FAISS indexes and caches are not shared with any other thread).
  When the library's data version moves (a write here or by another process), that thread
  opens a fresh ``Library`` before its next query, so it sees whole committed writes: each
  ingested file is one SQLite transaction and FAISS files are replaced by an atomic rename,
  and the FAISS index is reconciled with SQLite when loaded. The stale instance is closed
  without saving: a reader's indexes are a private cache and never written back.
* **Look-ups** (info, lists, a source's file) use a third ``Library`` (no encoder) behind a
  lock, on a small thread pool with the slide pictures, so a viewer's tile requests are
  never queued behind a slow search.
* **Writes** run one at a time on their own thread, each on a freshly opened ``Library``
  (as one CLI run does), inside the library's write lock (``index.lock``): a second write
  while one runs is refused with 409, as is a write while another process holds the lock.
  Searches keep running meanwhile on their own connection (SQLite WAL).
* **Encoders** are loaded once and shared by the search and write libraries, each wrapped in
  ``LockedEncoder``: a model may not be thread-safe, so one call runs at a time (an ingest
  and a search interleave batch by batch, neither waits for the other's whole job).

A query that overruns ``--timeout`` is answered 504 at once; its thread cannot be stopped, so
it finishes in the background and the next search waits for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from histoseek.encoders.base import Encoder
from histoseek.library import Library
from histoseek.service.errors import ApiError, log

T = TypeVar("T")


class LockedEncoder(Encoder):
    """An encoder shared between threads: one ``encode_*`` call at a time."""

    def __init__(self, inner: Encoder) -> None:
        self.inner, self.info = inner, inner.info
        self._lock = threading.Lock()

    def encode_images(self, tiles: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.inner.encode_images(tiles)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self.inner.encode_texts(texts)


class Encoders:
    """The image and text encoders every ``Library`` of this service is opened with."""

    def __init__(self, path: Path, device: str = "cpu", image: Encoder | None = None,
                 text: Encoder | None = None) -> None:
        self.path, self.device = path, device
        self.image = None if image is None else LockedEncoder(image)
        self.text = None if text is None else LockedEncoder(text)
        self._lock = threading.Lock()

    def open(self) -> Library:
        """The library with the shared encoders (the text one once the library fixed it)."""
        return Library.open(self.path, device=self.device, encoder=self.image,
                            text_encoder=self.text)

    def adopt(self, lib: Library) -> bool:
        """Take ``lib``'s encoders as the shared ones where none is set yet (loading and
        exercising them: the service keeps them warm); True when ``lib`` must be reopened to
        use them."""
        with self._lock:
            changed = False
            if self.image is None:
                self.image, changed = _exercised(LockedEncoder(lib.encoder)), True
            if self.text is None and lib.manifest.text_encoder_info is not None:
                # only once the library has fixed its text encoder (its first reports):
                # loading it earlier would write the manifest from a read
                self.text, changed = _exercised(LockedEncoder(lib.text_encoder)), True
            return changed


def _exercised(encoder: LockedEncoder) -> LockedEncoder:
    """One tiny call per tower: models finish loading on their first call (seconds), which
    the first user's query should not wait for."""
    if encoder.has_images:
        px = encoder.preprocess.input_px if encoder.preprocess else 224
        encoder.encode_images(np.full((1, px, px, 3), 200, np.uint8))
    if encoder.has_texts:
        encoder.encode_texts(["warm up"])
    return encoder


class SearchWorker:
    """One thread, one search ``Library``, reopened when the library changed."""

    def __init__(self, encoders: Encoders) -> None:
        self.encoders = encoders
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="histoseek-search")
        self._lib: Library | None = None
        self._seen: tuple[int, int] | None = None

    def _current(self) -> Library:
        lib = self._lib
        if lib is not None and lib.store.data_version() == self._seen:
            return lib
        if lib is not None:
            self._lib = None
            lib.store.close()  # not lib.close(): a reader never saves FAISS files
        lib = self.encoders.open()
        if self.encoders.adopt(lib):
            lib.store.close()
            lib = self.encoders.open()
        self._lib, self._seen = lib, lib.store.data_version()
        return lib

    def _job(self, fn: Callable[[Library], T]) -> T:
        lib = self._current()
        try:
            return fn(lib)
        finally:
            if self.encoders.adopt(lib):  # a report search loaded the text encoder
                self._seen = None

    def submit(self, fn: Callable[[Library], T]) -> Future[T]:
        return self._pool.submit(self._job, fn)

    async def run(self, fn: Callable[[Library], T], timeout: float | None) -> T:
        """``fn(library)`` on the search thread; 504 past ``timeout`` seconds (queueing
        behind an earlier search counts)."""
        return await with_timeout(self.submit(fn), timeout, "search")

    def warm(self) -> None:
        """Open the library and load its encoders now, not on the first query."""
        self.submit(lambda lib: None).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._lib is not None:
            self._lib.store.close()
            self._lib = None


class Writer:
    """Writes one at a time, each on a fresh ``Library``, each written to the audit log."""

    def __init__(self, encoders: Encoders) -> None:
        self.encoders = encoders
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="histoseek-write")
        self._busy = threading.Lock()

    def _job(self, token_id: str, action: str, source: str | None,
             fn: Callable[[Library], tuple[T, dict[str, Any]]]) -> T:
        with self.encoders.open() as lib:
            try:
                result, detail = fn(lib)
            except BaseException as exc:
                outcome = f"failed: {type(exc).__name__}: {exc}"[:1000]
                try:
                    lib.store.log_write(token_id, action, source, outcome)
                except Exception:  # the audit must not hide the write's own error
                    log.exception("cannot write the audit log entry for %s", action)
                raise
            lib.store.log_write(token_id, action, source, "ok", detail)
            self.encoders.adopt(lib)  # the first reports fixed the text encoder
            return result

    async def run(self, token_id: str, action: str, source: str | None,
                  fn: Callable[[Library], tuple[T, dict[str, Any]]]) -> T:
        """Run ``fn(library) -> (result, audit detail)``; 409 while another write runs."""
        if not self._busy.acquire(blocking=False):
            raise ApiError(409, "another write is running in this service; retry when it has "
                                "finished")
        try:
            future = self._pool.submit(self._job, token_id, action, source, fn)
        except BaseException:
            self._busy.release()
            raise
        # released when the write really ends, even if the client has gone away meanwhile
        future.add_done_callback(lambda _: self._busy.release())
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class Catalog:
    """Record look-ups on their own ``Library`` (no encoder loaded), one call at a time."""

    def __init__(self, path: Path) -> None:
        self.lib = Library.open(path)
        self._lock = threading.Lock()
        self._version: tuple[int, int] | None = None
        self._rows: dict[int, dict[str, Any]] = {}
        self._by_path: dict[str, int] = {}

    def call(self, fn: Callable[[Library], T]) -> T:
        with self._lock:
            return fn(self.lib)

    def _refresh(self) -> None:
        version = self.lib.store.data_version()
        if version != self._version:
            rows = self.lib.sources()
            self._rows = {int(r["id"]): r for r in rows}
            self._by_path = {}
            for row in rows:
                self._by_path.setdefault(str(row["path"]), int(row["id"]))
            self._version = version

    def sources(self) -> list[dict[str, Any]]:
        with self._lock:
            self._refresh()
            return list(self._rows.values())

    def source(self, key: int | str) -> dict[str, Any]:
        """A source by id, indexed path, file name or sha256; 404 if none, 400 if several."""
        with self._lock:
            self._refresh()
            text = str(key).strip()
            # isascii: '¹' or '١' pass isdigit, and int() fails on or reinterprets them
            if text.isascii() and text.isdigit() and int(text) in self._rows:
                return self._rows[int(text)]
            found = [r for r in self._rows.values()
                     if text in (str(r["path"]), r["name"], r["sha256"])]
        if not found:
            raise ApiError(404, f"{key}: no such source in this library (give its id, path, "
                                "file name or sha256; GET /sources lists them)")
        if len(found) > 1:
            raise ApiError(400, f"{key}: names {len(found)} sources "
                                f"({', '.join(str(r['id']) for r in found)}); give an id")
        return found[0]

    def ids_by_path(self) -> dict[str, int]:
        with self._lock:
            self._refresh()
            return dict(self._by_path)

    def close(self) -> None:
        with self._lock:
            self.lib.store.close()


async def with_timeout(future: Future[T], timeout: float | None, what: str) -> T:
    """Await a thread's ``future``; 504 after ``timeout`` s (a queued job is cancelled)."""
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
    except TimeoutError:
        raise ApiError(504, f"the {what} took longer than the service's limit of {timeout:g} s "
                            "(histoseek serve --timeout); try a smaller k or query") from None
